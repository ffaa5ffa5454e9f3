"""The transactional outbox: events are written in the transaction of the change they describe,
and the relay publishes them, deleting each batch only once the broker has confirmed it.

The relay may publish a batch twice if it dies between the broker's confirmation and its own
commit; consumers record handled event ids, so a repeat changes nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from shared.bus import Publisher, PublishError, SerializedEvent, broker_errors
from shared.db import Database, run_when_notified
from shared.events import CloudEvent
from shared.metrics import EVENTS_RELAYED

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "liaison_outbox"


def write_events(conn: psycopg.Connection[Any], schema: str, events: Iterable[CloudEvent]) -> None:
    """Adds events to `schema`'s outbox inside the caller's transaction (COPY: bulk changes
    write thousands of events at once)."""
    events = list(events)
    if not events:
        return
    with conn.cursor() as cur:
        with cur.copy(
            sql.SQL("COPY {}.outbox (tenant_id, routing_key, envelope) FROM STDIN").format(
                sql.Identifier(schema)
            )
        ) as copy:
            for event in events:
                copy.write_row((event.tenant_id, event.type, Jsonb(event.envelope())))


class OutboxRelay:
    """Moves events from one or more service schemas' outboxes to the broker.

    Several relays may run at once (replicas, or threads): each batch is claimed with
    `FOR UPDATE SKIP LOCKED`, so they share the work without publishing the same row together."""

    def __init__(self, db: Database, publisher: Publisher, schemas: list[str], batch: int = 500):
        self.db = db
        self.publisher = publisher
        self.schemas = schemas
        self.batch = batch

    def relay_once(self, schema: str) -> int:
        """Publishes one batch from `schema`; returns how many events it moved."""
        with self.db.transaction() as uow:
            rows = uow.execute(
                sql.SQL(
                    "SELECT id, routing_key, envelope::text AS body, envelope->>'id' AS event_id FROM {}.outbox"
                    " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(sql.Identifier(schema)),
                (self.batch,),
            ).fetchall()
            if not rows:
                return 0
            self.publisher.publish_batch(
                (row["routing_key"], SerializedEvent(row["event_id"], row["body"])) for row in rows
            )
            EVENTS_RELAYED.labels(schema).inc(len(rows))
            uow.execute(
                sql.SQL("DELETE FROM {}.outbox WHERE id = ANY(%s)").format(sql.Identifier(schema)),
                ([row["id"] for row in rows],),
            )
        return len(rows)

    def drain(self) -> int:
        """Publishes until every outbox is empty (tests and shutdown)."""
        total = 0
        while True:
            moved = sum(self.relay_once(schema) for schema in self.schemas)
            total += moved
            if not moved:
                return total

    def run(self, stop: threading.Event, idle_wait: float = 1.0) -> None:
        """Relays until `stop` is set. Wakes on NOTIFY from a committing writer, else polls."""
        try:
            run_when_notified(self.db.url, NOTIFY_CHANNEL, stop,
                              lambda: sum(self.relay_once(schema) for schema in self.schemas),
                              what="outbox relay", idle_wait=idle_wait,
                              errors=(*broker_errors(self.publisher.broker_url), PublishError),
                              on_error=self.publisher.close)
        finally:
            self.publisher.close()


def outbox_lag(db: Database, schemas: list[str]) -> dict[str, dict[str, float]]:
    """Per schema: how many events wait for the relay and the age of the oldest, in seconds."""
    lag = {}
    with db.transaction() as uow:
        for schema in schemas:
            row = uow.execute(
                sql.SQL(
                    "SELECT count(*) AS events,"
                    " COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS age FROM {}.outbox"
                ).format(sql.Identifier(schema))
            ).fetchone()
            lag[schema] = {"events": float(row["events"]), "age": float(row["age"])}
    return lag
