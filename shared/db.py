"""The connection pool and units of work. One pool per process, created by the app factory or
the worker's bootstrap, never at import time."""

from __future__ import annotations

import logging
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import ConnectionPool

from shared.events import CloudEvent

log = logging.getLogger(__name__)

# jsonb parameters (events, audit details, bulk rows) are encoded with orjson: several times faster
# than the standard library, which shows in bulk imports that write three JSON documents a contact.
set_json_dumps(orjson.dumps)

# A connection back from a request less than this long ago is handed out again unchecked: under
# load, checking every checkout would add a round trip to each request; an idle one is checked,
# so connections broken by a database restart are replaced instead of failing a request.
CHECK_IF_IDLE_SECONDS = 2.0


class Database:
    """Owns a psycopg pool. `transaction()` is the unit of work: one connection, one transaction,
    and the outbox events written in it."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, name: str = "liaison"):
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "application_name": name, "autocommit": False},
            open=False,
            name=name,
            check=self._check_if_idle,
            reset=self._note_return,
        )
        self._returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    def _note_return(self, conn: psycopg.Connection[Any]) -> None:
        self._returned_at[conn] = time.monotonic()

    def _check_if_idle(self, conn: psycopg.Connection[Any]) -> None:
        if time.monotonic() - self._returned_at.get(conn, 0.0) > CHECK_IF_IDLE_SECONDS:
            ConnectionPool.check_connection(conn)

    def open(self, wait: bool = True, timeout: float = 30.0) -> Database:
        self.pool.open(wait=wait, timeout=timeout)
        return self

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        with self.pool.connection() as conn:
            with conn.transaction():
                yield UnitOfWork(conn)

    @contextmanager
    def read(self) -> Iterator[UnitOfWork]:
        """For a read that is one statement: autocommit, so no BEGIN and COMMIT round trips."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                yield UnitOfWork(conn)
            finally:
                conn.autocommit = False

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=2.0) as conn:
                conn.execute("SELECT 1")
            return True
        except (psycopg.Error, TimeoutError, OSError):
            return False


class UnitOfWork:
    """A connection inside one transaction. Use cases receive it, pass it to repositories and add
    the events their change raises; the events reach the outbox in the same transaction."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]):
        self.conn = conn

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[dict[str, Any]]:
        return self.conn.execute(query, params)

    def publish(self, schema: str, event: CloudEvent) -> None:
        from shared.outbox import write_events

        write_events(self.conn, schema, [event])

    def publish_many(self, schema: str, events: list[CloudEvent]) -> None:
        from shared.outbox import write_events

        write_events(self.conn, schema, events)


def run_when_notified(url: str, channel: str, stop: threading.Event, work: Callable[[], int], *, what: str,
                      idle_wait: float = 1.0, errors: tuple[type[BaseException], ...] = (),
                      on_error: Callable[[], object] | None = None) -> None:
    """Runs `work` until it does nothing (returns 0), then sleeps until a NOTIFY on `channel`, or
    `idle_wait` seconds, and again, until `stop` is set: a loop that answers within milliseconds of
    a committing writer without polling the database hard. A database error, or one of `errors`,
    is logged, `on_error` called, and the loop retried after a growing wait (a restart of
    PostgreSQL or the broker does not end it)."""
    backoff = 0.5
    listener: psycopg.Connection[Any] | None = None
    while not stop.is_set():
        try:
            if listener is None:
                listener = psycopg.connect(url, autocommit=True)
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            done = work()
            backoff = 0.5
            if done:
                continue
            select.select([listener.fileno()], [], [], idle_wait)
            for _ in listener.notifies(timeout=0):
                pass
        except (psycopg.Error, OSError, TimeoutError, *errors) as exc:
            log.warning(f"{what} failed; retrying", extra={"error": str(exc), "wait": backoff})
            if on_error is not None:
                on_error()
            if listener is not None:
                listener.close()
                listener = None
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
    if listener is not None:
        listener.close()
