"""gunicorn settings shared by the three services (each gets its own `--bind` from the Procfile).

    gunicorn --config gunicorn.conf.py --bind 127.0.0.1:8001 'services.identity.app:create_app()'

Worker type: gthread. A request to a Liaison service spends most of its time waiting on
PostgreSQL (and sometimes on another service over HTTP); psycopg releases the GIL while it waits,
so a few threads per process overlap those waits, where a sync worker would sit idle and queue
every other request behind the slow one. gthread also keeps client connections alive between
requests (sync workers close each one), which matters to a CRM pushing thousands of calls. An
async worker (gevent) would need psycopg's and kombu's I/O monkey-patched; not worth it here.

Each worker process opens its own connection pool (`DB_POOL_MAX`, default 10 ≥ `WEB_THREADS`),
so the app is not preloaded in the master: a pool opened before fork would share sockets.
"""

import os

from prometheus_client import multiprocess

# Two processes on this 2-core machine; raise WEB_CONCURRENCY (~ one or two per core) on bigger ones.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
preload_app = False

# A request that takes 30 s is stuck: the worker is recycled and the client gets a 502 from the
# proxy instead of waiting forever. Shutdown waits this long for requests in flight.
timeout = 30
graceful_timeout = 4  # below honcho's 5 s before it kills what is left on Ctrl-C
keepalive = 5

# The services log JSON lines themselves; gunicorn's own messages go to stderr too.
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None


def child_exit(server, worker):
    """Drops a dead worker's live gauges from the shared metrics folder (prometheus multiprocess
    mode, `PROMETHEUS_MULTIPROC_DIR`), so /metrics does not count it any more."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)

# gunicorn ≥ 24 opens a control socket at one fixed path per user by default; three services on
# one machine would fight over it, and nothing here uses it.
control_socket_disable = True
