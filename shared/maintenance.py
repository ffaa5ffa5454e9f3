"""Housekeeping a service's worker runs on a timer: expiring stored Idempotency-Key replies, and
the loop that runs any such task every so often, backing off while the database is away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from shared.db import Database

log = logging.getLogger(__name__)

# As Stripe does: a key replays its first response for a day; after that it is a new request.
IDEMPOTENCY_KEY_HOURS = 24


def run_periodically(stop: threading.Event, interval: float, task: Callable[[], object], name: str) -> None:
    """Runs `task` every `interval` seconds until `stop` is set; a database error is logged and
    the task retried with a growing wait, so a restart of PostgreSQL does not end the loop."""
    wait = interval
    while not stop.is_set():
        try:
            task()
            wait = interval
        except (psycopg.Error, TimeoutError, OSError) as exc:
            wait = min(wait * 2, max(interval, 30.0))
            log.warning("periodic task failed; retrying", extra={"task": name, "error": str(exc), "wait": wait})
        stop.wait(wait)


def expire_idempotency_keys(db: Database, schema: str, hours: int = IDEMPOTENCY_KEY_HOURS,
                            batch: int = 10_000) -> int:
    """Deletes the stored replies older than `hours`, a batch per transaction; returns how many."""
    deleted = 0
    while True:
        with db.transaction() as uow:
            count = uow.execute(
                sql.SQL(
                    "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table}"
                    " WHERE created_at < now() - make_interval(hours => %s) LIMIT %s)"
                ).format(table=sql.Identifier(schema, "idempotency_keys")),
                (hours, batch),
            ).rowcount
        deleted += count
        if count < batch:
            return deleted
