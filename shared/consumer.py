"""The consumer loop every service's worker runs.

Each event is handled in one database transaction together with the record of its id, so a
redelivered event is recognised and skipped. A handler that raises is retried with exponential
backoff; after `max_attempts` the message is moved to the consumer's dead-letter queue, where an
operator can list and replay it (`python -m shared.deadletters`)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from kombu import Connection, Consumer, Message
from psycopg import sql

from shared.bus import ACCEPT, ConsumerTopology, broker_errors, is_amqp
from shared.db import Database, UnitOfWork
from shared.events import parse_envelope
from shared.metrics import EVENTS_CONSUMED
from shared.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, dict[str, Any]], None]


class DatabaseUnavailable(RuntimeError):
    """The database did not answer: no fault of the event, which goes back to the queue."""
ATTEMPTS_HEADER = "x-liaison-attempts"
ERROR_HEADER = "x-liaison-error"
# drain(): how long nothing may arrive before the queue's counts are asked whether all was handled.
DRAIN_SETTLE = 0.05


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` is zero or more words."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


class EventConsumer:
    def __init__(
        self,
        name: str,
        db: Database,
        schema: str,
        broker_url: str,
        handlers: dict[str, Handler],
        *,
        prefix: str = "",
        max_attempts: int = 5,
        base_delay: float = 1.0,
        prefetch: int = 50,
        queue_expires: float | None = None,
        queue_type: str = "classic",
    ):
        self.name = name
        self.db = db
        self.schema = schema
        self.broker_url = broker_url
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.prefetch = prefetch
        # Until when a message this consumer sent to wait out a retry delay may still come back.
        self._retry_due = 0.0
        self.topology = ConsumerTopology(
            name, tuple(handlers), prefix=prefix, amqp=is_amqp(broker_url), expires=queue_expires,
            queue_type=queue_type,
        )

    @classmethod
    def from_settings(cls, name: str, db: Database, schema: str, handlers: dict[str, Handler],
                      settings: Settings, **overrides: Any) -> EventConsumer:
        """A consumer with the deployment's queue prefix, retry limit, queue expiry and queue type."""
        options: dict[str, Any] = {
            "prefix": settings.bus_prefix,
            "max_attempts": settings.consumer_max_attempts,
            "queue_expires": settings.bus_queue_expires,
            "queue_type": settings.bus_queue_type,
        }
        return cls(name, db, schema, settings.broker_url, handlers, **{**options, **overrides})

    def handler_for(self, event_type: str) -> Handler | None:
        for pattern, handler in self.handlers.items():
            if topic_matches(pattern, event_type):
                return handler
        return None

    # -- one message -----------------------------------------------------------------------
    def process(self, connection: Connection, body: Any, message: Message) -> None:
        headers = message.headers or {}
        attempts = int(headers.get(ATTEMPTS_HEADER, 0)) + 1
        try:
            envelope = parse_envelope(body)
            tenant_id = str(uuid.UUID(str(envelope["tenantid"])))
        except ValueError as exc:
            # Malformed events never get better by retrying: straight to the dead letters.
            self._dead_letter(connection, body, message, f"malformed event: {exc}", attempts)
            message.ack()
            EVENTS_CONSUMED.labels(self.name, "malformed").inc()
            return
        handler = self.handler_for(envelope["type"])
        try:
            with self.db.transaction() as uow:
                first_time = uow.execute(
                    sql.SQL(
                        "INSERT INTO {}.handled_events (tenant_id, consumer, event_id)"
                        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
                    ).format(sql.Identifier(self.schema)),
                    (tenant_id, self.name, envelope["id"]),
                ).fetchone()
                if first_time and handler is not None:
                    handler(uow, envelope)
            EVENTS_CONSUMED.labels(self.name, "handled" if first_time else "repeat").inc()
        except psycopg.OperationalError as exc:
            # PostgreSQL is restarting or unreachable: the event is not at fault, so it goes back
            # to the queue without spending an attempt, and the loop waits before going on.
            message.requeue()
            raise DatabaseUnavailable(str(exc)) from exc
        except Exception as exc:
            log.exception(
                "event handler failed",
                extra={"consumer": self.name, "event_id": envelope["id"], "attempt": attempts},
            )
            EVENTS_CONSUMED.labels(self.name, "failed").inc()
            if attempts >= self.max_attempts:
                self._dead_letter(connection, body, message, repr(exc), attempts)
            else:
                self._retry(connection, body, message, attempts)
        message.ack()

    def _republish(
        self, connection: Connection, body: Any, message: Message, routing_key: str, **extra: Any
    ) -> None:
        headers = dict(message.headers or {})
        headers.update(extra.pop("headers", {}))
        connection.Producer().publish(
            body,
            exchange=self.topology.direct_exchange_name,
            routing_key=routing_key,
            serializer="cloudevents" if isinstance(body, dict) else None,
            headers=headers,
            delivery_mode=2,
            retry=True,
            **extra,
        )

    def _retry(self, connection: Connection, body: Any, message: Message, attempts: int) -> None:
        delay = min(self.base_delay * 2 ** (attempts - 1), 300.0)
        queue = self.topology.queue_name
        self._retry_due = max(self._retry_due, time.monotonic() + delay + 1.0)
        if self.topology.amqp:
            # Waits out its delay in Q.retry, then RabbitMQ dead-letters it back to Q.
            self._republish(
                connection, body, message, f"{queue}.retry",
                headers={ATTEMPTS_HEADER: attempts}, expiration=delay,
            )
        else:
            # The embedded broker has no per-message TTL: wait here, briefly, then requeue.
            time.sleep(min(delay, 2.0))
            self._republish(connection, body, message, queue, headers={ATTEMPTS_HEADER: attempts})

    def _dead_letter(
        self, connection: Connection, body: Any, message: Message, error: str, attempts: int
    ) -> None:
        log.error("event dead-lettered", extra={"consumer": self.name, "error": error})
        self._republish(
            connection, body, message, f"{self.topology.queue_name}.dead",
            headers={ATTEMPTS_HEADER: attempts, ERROR_HEADER: error[:1000]},
        )

    # -- loops -----------------------------------------------------------------------------
    def _consume(self, connection: Connection, stop: threading.Event, idle_exit: float | None) -> int:
        self.topology.declare(connection)
        handled = 0
        last = time.monotonic()

        def on_message(body: Any, message: Message) -> None:
            nonlocal handled, last
            self.process(connection, body, message)
            handled += 1
            last = time.monotonic()

        queue = next(q for q in self.topology.queues() if q.name == self.topology.queue_name)
        with Consumer(
            connection.default_channel,
            queues=[queue],
            callbacks=[on_message],
            accept=ACCEPT,
            prefetch_count=self.prefetch,
        ):
            while not stop.is_set():
                try:
                    connection.drain_events(timeout=0.2 if idle_exit is None else DRAIN_SETTLE)
                except TimeoutError:
                    connection.heartbeat_check()
                    if idle_exit is not None and (time.monotonic() - last > idle_exit
                                                  or self._nothing_waiting(connection)):
                        break
        return handled

    def _nothing_waiting(self, connection: Connection) -> bool:
        """No message ready in the queue, nor waiting out a retry delay (ours, or one the queue
        holds). What was delivered to us is handled by then: the broker had DRAIN_SETTLE seconds
        to hand it over on a local link."""
        if time.monotonic() < self._retry_due:
            return False
        names = [self.topology.queue_name] + ([f"{self.topology.queue_name}.retry"] if self.topology.amqp else [])
        channel = connection.default_channel
        return all(channel.queue_declare(queue=name, passive=True).message_count == 0 for name in names)

    def drain(self, idle: float = 0.5) -> int:
        """Handles what is queued (tests): returns once the queue and its retries are empty and
        nothing arrived for a moment, or nothing arrived for `idle` seconds."""
        with Connection(self.broker_url, connect_timeout=5) as connection:
            return self._consume(connection, threading.Event(), idle)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        lost_broker = broker_errors(self.broker_url)
        while not stop.is_set():
            try:
                with Connection(self.broker_url, connect_timeout=5, heartbeat=30) as connection:
                    connection.ensure_connection(max_retries=1)
                    log.info("consumer started", extra={"consumer": self.name})
                    backoff = 0.5
                    self._consume(connection, stop, None)
            except (*lost_broker, DatabaseUnavailable) as exc:
                log.warning("consumer lost the broker or the database; reconnecting",
                            extra={"consumer": self.name, "error": str(exc), "wait": backoff})
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
