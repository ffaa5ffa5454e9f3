"""gunicorn settings shared by the three services (each gets its own `--bind` from the Procfile).

    gunicorn --config gunicorn.conf.py --bind 127.0.0.1:8001 'services.identity.app:create_app()'

Worker type: sync, two processes per core. Measured with `make bench` on 2 cores, 32 keep-alive
clients on GET /v1/identities/resolve: sync x 4 gave 1,960-2,080 req/s with p99 21 ms; gthread
2 x 4 gave 1,800-1,900 req/s with p99 35-47 ms, because a gthread worker keeps every keep-alive
connection it accepted and one worker often ended up with 29 of the 32 while the other core
idled. A sync worker answers one request per connection and the kernel spreads the next
connection to whichever process is free. gunicorn recommends sync workers behind a buffering
proxy, which is how a deployment runs (see infra/ in a later issue).

The price: a sync worker is busy for the whole of a long request (a CSV export of a million
consent records streams for about 30 s), so `timeout` leaves room for one, and WEB_CONCURRENCY
is the number of requests a service answers at once on one machine: raise it for more.

Each worker process opens its own connection pool, so the app is not preloaded in the master: a
pool opened before fork would share sockets between processes.
"""

import multiprocessing
import os

from prometheus_client import multiprocess

workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * multiprocessing.cpu_count())))
worker_class = os.environ.get("WEB_WORKER_CLASS", "sync")
threads = int(os.environ.get("WEB_THREADS", "1"))
preload_app = False

# A request still running after this long is stuck: the worker is recycled. Long enough for the
# largest streamed export; shutdown waits graceful_timeout for requests in flight.
timeout = 120
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


# gunicorn >= 24 opens a control socket at one fixed path per user by default; three services on
# one machine would fight over it, and nothing here uses it.
control_socket_disable = True
