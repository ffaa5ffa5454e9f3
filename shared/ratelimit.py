"""Token buckets: `RateLimiter` is what a caller of an outside API needs; `PostgresRateLimiter`
shares the buckets between the replicas of a service, `LocalRateLimiter` keeps them in one process.

An outside API limits calls per credential (X: so many lookups per 15 minutes per app token),
whichever of our processes makes them; buckets kept in each process would let N replicas spend N
times the budget. Here each bucket is a row of `<schema>.rate_buckets` (a plumbing table every
service schema has), taken under a row lock, with the database's clock as the one clock every
replica agrees on. It costs one short transaction per call, which is nothing beside the HTTP
call it guards; callers of the same key queue on the row lock only for that transaction, never
for the wait itself.

A granted reservation may leave the bucket in debt (tokens below zero): callers arriving
together are spaced 1/rate apart rather than all waking at once. A reservation whose wait would
exceed `max_wait` takes nothing and is refused, so the caller can give the work back rather
than hold a worker.
"""

from __future__ import annotations

import threading
from typing import NamedTuple, Protocol

from psycopg import sql

from shared.db import Database


class Reservation(NamedTuple):
    granted: bool
    wait: float  # seconds to sleep before calling (granted), or until a token frees up (refused)


class RateLimiter(Protocol):
    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> Reservation:
        """Take a token from `key`'s bucket, or refuse (taking nothing) when the wait for it
        would exceed `max_wait`."""


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...


class LocalRateLimiter:
    """The same buckets in this process only: each replica gets the whole budget."""

    def __init__(self, clock: MonotonicClock):
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> Reservation:
        with self._lock:
            now = self.clock.monotonic()
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            wait = max(0.0, (1.0 - tokens) / rate)
            if wait > max_wait:
                self._buckets[key] = (tokens, now)
                return Reservation(False, wait)
            self._buckets[key] = (tokens - 1.0, now)
            return Reservation(True, wait)


class PostgresRateLimiter:
    def __init__(self, db: Database, schema: str):
        self.db = db
        self._ensure = sql.SQL(
            "INSERT INTO {}.rate_buckets (key, tokens, at) VALUES (%s, %s, clock_timestamp())"
            " ON CONFLICT (key) DO NOTHING"
        ).format(sql.Identifier(schema))
        # Refilled to the moment of the read, under the row lock.
        self._read = sql.SQL(
            "SELECT least(%s::float8, tokens + extract(epoch FROM clock_timestamp() - at)::float8 * %s)"
            " AS tokens, clock_timestamp() AS now FROM {}.rate_buckets WHERE key = %s FOR UPDATE"
        ).format(sql.Identifier(schema))
        self._write = sql.SQL("UPDATE {}.rate_buckets SET tokens = %s, at = %s WHERE key = %s").format(
            sql.Identifier(schema))

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> Reservation:
        """Take a token from `key`'s bucket (`burst` tokens, refilled at `rate` a second), or
        refuse, taking nothing, when the wait for it would exceed `max_wait`."""
        with self.db.transaction() as uow:
            uow.execute(self._ensure, (key, float(burst)))
            row = uow.execute(self._read, (burst, rate, key)).fetchone()
            tokens = row["tokens"]
            wait = max(0.0, (1.0 - tokens) / rate)
            if wait > max_wait:
                uow.execute(self._write, (tokens, row["now"], key))
                return Reservation(False, wait)
            uow.execute(self._write, (tokens - 1.0, row["now"], key))
            return Reservation(True, wait)
