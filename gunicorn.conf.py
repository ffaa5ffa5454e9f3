"""gunicorn settings shared by the services (each gets its own `--bind` from the Procfile, the
compose file or its Kubernetes Deployment).

    gunicorn --config gunicorn.conf.py --bind 127.0.0.1:8001 'services.identity.app:create_app()'

Every value below has a default that suits `make run` and an environment variable a deployment
sets (infra/compose.yaml, infra/k8s/base/config.yaml); docs/deployment.md lists them.

Worker type: sync, two processes per core. Measured with `make bench` on 2 cores, 32 keep-alive
clients on GET /v1/identities/resolve: sync x 4 gave 1,960-2,080 req/s with p99 21 ms; gthread
2 x 4 gave 1,800-1,900 req/s with p99 35-47 ms, because a gthread worker keeps every keep-alive
connection it accepted and one worker often ended up with 29 of the 32 while the other core
idled. A sync worker answers one request per connection and the kernel spreads the next
connection to whichever process is free. gunicorn recommends sync workers behind a buffering
proxy, which is how a deployment runs (an ingress controller or a load balancer in front).

"Cores" are the CPUs this process may use: in a container, its CPU limit (cgroup `cpu.max`),
not the node's core count, which would start 64 workers in a pod limited to 2 CPUs.

The price of sync workers: one is busy for the whole of a long request (a CSV export of a million
consent records streams for about 30 s), so `timeout` leaves room for one, and WEB_CONCURRENCY is
the number of requests a process answers at once: raise it, or add replicas, for more.

Each worker process opens its own connection pool, so the app is not preloaded in the master: a
pool opened before fork would share sockets between processes.
"""

import glob
import math
import os
import re

from prometheus_client import multiprocess


def _usable_cpus() -> float:
    """The CPU limit of this container (cgroup v2, then v1), else the CPUs we may run on."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period_us = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        if quota_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return float(len(os.sched_getaffinity(0)))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


workers = _int("WEB_CONCURRENCY", 2 * max(1, math.ceil(_usable_cpus())))
worker_class = os.environ.get("WEB_WORKER_CLASS", "sync")
threads = _int("WEB_THREADS", 1)
preload_app = False

# A request still running after this long is stuck: the worker is recycled. Long enough for the
# largest streamed export.
timeout = _int("GUNICORN_TIMEOUT", 120)
# On SIGTERM, requests in flight get this long to finish. 4 s by default, below honcho's 5 s
# before it kills what is left on Ctrl-C; a Deployment sets more (its terminationGracePeriodSeconds
# is longer still, and its preStop sleep lets the load balancer stop sending first).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 4)
# Keep-alive applies to gthread workers only (a sync worker closes after each response). Behind a
# load balancer that reuses connections, it must be longer than the balancer's idle timeout
# (60 s on most): otherwise gunicorn closes a connection the balancer is about to reuse, and the
# client gets a 502. Kubernetes sets GUNICORN_KEEPALIVE=75.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle a worker after this many requests (with jitter, so they do not all restart at once):
# bounds the memory any slow leak can take. 0 (never) by default.
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 10)
# The workers' heartbeat files: on tmpfs when there is one, since a container's root filesystem
# is read-only and a disk-backed /tmp can stall the heartbeat under I/O load.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# The services log JSON lines themselves; gunicorn's own messages go to stderr too. The access
# log is off unless GUNICORN_ACCESS_LOG names a file or "-" (stdout): the services' metrics count
# requests already. Its lines are JSON too, with the request id the services return and the
# duration in milliseconds (no user agent: gunicorn does not escape quotes inside values).
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = (
    '{"time": "%(t)s", "logger": "gunicorn.access", "remote": "%(h)s", "method": "%(m)s", '
    '"path": "%(U)s", "query": "%(q)s", "status": %(s)s, "bytes": %(B)s, "duration_ms": %(M)s, '
    '"request_id": "%({x-request-id}o)s"}'
)

# X-Forwarded-* are trusted from these addresses only (gunicorn also reads FORWARDED_ALLOW_IPS
# itself): a deployment sets the load balancer's range, or "*" inside a cluster network.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

_METRIC_FILE = re.compile(r"_(\d+)\.db$")


def on_starting(server):
    """prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`): the folder must exist,
    and must not hold the files of processes that are gone from an earlier run (a container
    restarted in the same pod keeps its emptyDir), or /metrics would add their stale values.
    Files of live processes stay: under `make run` the services share one folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    for path in glob.glob(os.path.join(folder, "*.db")):
        found = _METRIC_FILE.search(path)
        if found and not _alive(int(found.group(1))):
            os.remove(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_exit(server, worker):
    """Drops a dead worker's live gauges from the shared metrics folder, so /metrics does not
    count it any more."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


# gunicorn >= 24 opens a control socket at one fixed path per user by default; several services
# on one machine would fight over it, and nothing here uses it.
control_socket_disable = True
