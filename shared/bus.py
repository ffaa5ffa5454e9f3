"""The bus topology, declared alike by producers and consumers, and the confirmed publisher.

- `liaison.events`: one durable topic exchange; routing key = CloudEvent type.
- `liaison.direct`: a direct exchange that addresses one consumer's queue by its name, used to
  send a message back to the queue it failed in (retry) and for operator replays.
- For each consumer `Q`: `Q` (bound to the event types it handles and to its own name on
  `liaison.direct`), `Q.retry` (messages wait out their backoff there, then dead-letter back to
  `Q`; RabbitMQ only) and `Q.dead` (what failed too often, for an operator to list and replay).

Queues are classic by default (the embedded and test brokers) or quorum (`BUS_QUEUE_TYPE=quorum`,
replicated over a RabbitMQ cluster: the deployments in infra/). `definitions()` turns the same
topology into a RabbitMQ definitions document, so what a broker loads at start is what the code
declares: RabbitMQ refuses (PRECONDITION_FAILED) a declaration whose arguments differ.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from kombu import Connection, Exchange, Queue, binding
from kombu.exceptions import OperationalError as BrokerError
from kombu.serialization import register

from shared.settings import Settings

log = logging.getLogger(__name__)

EVENTS_EXCHANGE = "liaison.events"
DIRECT_EXCHANGE = "liaison.direct"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
QUEUE_TYPES = ("classic", "quorum")
# A message a quorum queue has handed out this often without an acknowledgement (its consumer
# process died on it every time, say) goes to the consumer's dead letters instead of looping.
# High, because a consumer also hands back what it holds when the database is away (each
# reconnection counts), and those messages are not at fault.
POISON_DELIVERY_LIMIT = 100

# CloudEvents' structured content mode over AMQP: the whole envelope as JSON.
register(
    "cloudevents",
    lambda obj: orjson.dumps(obj).decode(),
    orjson.loads,
    content_type=CLOUDEVENTS_CONTENT_TYPE,
    content_encoding="utf-8",
)
ACCEPT = ["cloudevents", "json"]


# BUS_PREFIX names a whole environment on a shared broker, exchanges included, so that two
# environments (two test runs, say) never see each other's events. Unset, the names are the
# contract's: liaison.events and liaison.direct.
def events_exchange(prefix: str = "") -> Exchange:
    return Exchange(f"{prefix}{EVENTS_EXCHANGE}", type="topic", durable=True)


def direct_exchange(prefix: str = "") -> Exchange:
    return Exchange(f"{prefix}{DIRECT_EXCHANGE}", type="direct", durable=True)


def broker_errors(broker_url: str) -> tuple[type[BaseException], ...]:
    """What losing the broker raises, whatever the transport: kombu's own error, the socket's, and
    the transport's connection and channel errors (amqp's ConnectionForced when RabbitMQ shuts
    down, for one, which is none of the others). A loop that outlives the broker catches these."""
    connection = Connection(broker_url)  # not connected: it only names the transport
    return (BrokerError, OSError, *connection.connection_errors, *connection.channel_errors)


def is_amqp(broker_url: str) -> bool:
    return broker_url.split("://", 1)[0] in {"amqp", "pyamqp", "amqps"}


@dataclass(frozen=True)
class ConsumerTopology:
    """The three queues of one consumer. `prefix` isolates test runs on a shared broker."""

    name: str
    routing_keys: tuple[str, ...]
    prefix: str = ""
    amqp: bool = True
    # RabbitMQ deletes the queues once unused for this long (x-expires): for short-lived
    # environments such as test runs, never for a deployment's consumers.
    expires: float | None = None
    # "classic", or "quorum" (replicated, durable only; RabbitMQ >= 3.10 for the retry queue's
    # per-message TTL and at-least-once dead-lettering). Classic queues are declared with no
    # x-queue-type, as they always were, so queues that exist keep matching.
    queue_type: str = "classic"

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be one of {', '.join(QUEUE_TYPES)}, not {self.queue_type!r}")

    @classmethod
    def from_settings(cls, name: str, routing_keys: Iterable[str], settings: Settings) -> ConsumerTopology:
        """The topology with the deployment's prefix, queue expiry and queue type."""
        return cls(name, tuple(routing_keys), prefix=settings.bus_prefix, amqp=is_amqp(settings.broker_url),
                   expires=settings.bus_queue_expires, queue_type=settings.bus_queue_type)

    @property
    def quorum(self) -> bool:
        return self.amqp and self.queue_type == "quorum"

    def _arguments(self, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
        arguments = dict(extra or {})
        if self.expires is not None and self.amqp:
            arguments["x-expires"] = int(self.expires * 1000)
        if self.quorum:
            arguments["x-queue-type"] = "quorum"
        return arguments or None

    @property
    def direct_exchange_name(self) -> str:
        return f"{self.prefix}{DIRECT_EXCHANGE}"

    @property
    def queue_name(self) -> str:
        return f"{self.prefix}{self.name}"

    def queues(self) -> list[Queue]:
        """Every queue and binding, for declaring."""
        main = Queue(
            self.queue_name,
            bindings=[binding(events_exchange(self.prefix), routing_key=key) for key in self.routing_keys]
            + [binding(direct_exchange(self.prefix), routing_key=self.queue_name)],
            durable=True,
            queue_arguments=self._arguments(),
        )
        queues = [main, self.dead()]
        if self.amqp:
            queues.append(
                Queue(
                    f"{self.queue_name}.retry",
                    exchange=direct_exchange(self.prefix),
                    routing_key=f"{self.queue_name}.retry",
                    durable=True,
                    queue_arguments=self._arguments(self._retry_dead_lettering()),
                )
            )
        return queues

    def _retry_dead_lettering(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": self.direct_exchange_name,
            "x-dead-letter-routing-key": self.queue_name,
        }
        if self.quorum:
            # A quorum queue dead-letters at most once by default: a message whose backoff ends
            # while the main queue's leader is moving would be lost. At least once needs
            # reject-publish (the retry queue has no length limit, so nothing is ever rejected).
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        return arguments

    def dead(self) -> Queue:
        """Where events that failed too often wait for an operator."""
        return Queue(
            f"{self.queue_name}.dead",
            exchange=direct_exchange(self.prefix),
            routing_key=f"{self.queue_name}.dead",
            durable=True,
            queue_arguments=self._arguments(),
        )

    def declare(self, connection: Connection) -> None:
        channel = connection.default_channel
        for queue in self.queues():
            queue(channel).declare()


def _exchange_definition(exchange: Exchange, vhost: str) -> dict[str, Any]:
    return {"name": exchange.name, "vhost": vhost, "type": exchange.type, "durable": exchange.durable,
            "auto_delete": exchange.auto_delete, "internal": False, "arguments": exchange.arguments or {}}


def definitions(topologies: Iterable[ConsumerTopology], *, vhost: str = "/",
                delivery_limit: int | None = POISON_DELIVERY_LIMIT) -> dict[str, Any]:
    """The RabbitMQ definitions document (as `load_definitions` and `rabbitmqctl
    import_definitions` read it) of these consumers' topology: the vhost, both exchanges, every
    queue with exactly the arguments `ConsumerTopology.declare` uses, its bindings, and for quorum
    queues one policy per main queue that dead-letters a message handed out `delivery_limit` times
    to the consumer's dead letters. No users: credentials are no part of the topology."""
    topologies = sorted(topologies, key=lambda t: t.queue_name)
    prefixes = {t.prefix for t in topologies}
    if len(prefixes) > 1:
        raise ValueError(f"one environment's definitions take one prefix, not {sorted(prefixes)}")
    prefix = prefixes.pop() if prefixes else ""
    queues, bindings, policies = [], [], []
    for topology in topologies:
        if not topology.amqp:
            raise ValueError(f"{topology.name}: definitions describe a RabbitMQ topology")
        for queue in topology.queues():
            queues.append({"name": queue.name, "vhost": vhost, "durable": queue.durable,
                           "auto_delete": queue.auto_delete, "arguments": queue.queue_arguments or {}})
            for bound in queue.bindings or [binding(queue.exchange, routing_key=queue.routing_key)]:
                bindings.append({"source": bound.exchange.name, "vhost": vhost, "destination": queue.name,
                                 "destination_type": "queue", "routing_key": bound.routing_key, "arguments": {}})
        if topology.quorum and delivery_limit is not None:
            policies.append({
                "vhost": vhost,
                "name": f"{topology.queue_name}.poison",
                "pattern": f"^{re.escape(topology.queue_name)}$",
                "apply-to": "queues",
                "priority": 10,
                "definition": {
                    "delivery-limit": delivery_limit,
                    "dead-letter-exchange": topology.direct_exchange_name,
                    "dead-letter-routing-key": f"{topology.queue_name}.dead",
                },
            })
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [_exchange_definition(events_exchange(prefix), vhost),
                      _exchange_definition(direct_exchange(prefix), vhost)],
        "queues": queues,
        "bindings": sorted(bindings, key=lambda b: (b["source"], b["destination"], b["routing_key"])),
        "policies": policies,
    }


@dataclass(frozen=True)
class SerializedEvent:
    """An envelope already in its JSON form (as the outbox stores it): published as it is."""

    id: str
    body: str


class PublishError(RuntimeError):
    """The broker did not confirm every message of a batch."""


class Publisher:
    """Publishes batches to `liaison.events` and returns only once the broker has them.

    On RabbitMQ the channel is put in confirm mode and a whole batch is published before waiting
    for the acknowledgements, which costs one round trip per batch instead of one per message.
    On the embedded Redis broker a publish is a synchronous LPUSH, so its return is the
    confirmation."""

    def __init__(self, broker_url: str, *, prefix: str = "", confirm_timeout: float = 10.0):
        self.broker_url = broker_url
        self.prefix = prefix
        self.confirm_timeout = confirm_timeout
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self._acked = 0
        self._nacked = False
        self._sent = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Publisher:
        return cls(settings.broker_url, prefix=settings.bus_prefix)

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = Connection(self.broker_url, connect_timeout=5, heartbeat=0)
            connection.ensure_connection(max_retries=1)
            events_exchange(self.prefix)(connection.default_channel).declare()
            direct_exchange(self.prefix)(connection.default_channel).declare()
            if is_amqp(self.broker_url):
                channel = connection.default_channel
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
            self._connection = connection
            self._acked = self._sent = 0
            self._nacked = False
        return self._connection

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._acked = max(self._acked, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True

    def publish_batch(
        self, messages: Iterable[tuple[str, dict[str, Any] | SerializedEvent]], *, exchange: str | None = None
    ) -> int:
        """Publishes (routing_key, envelope) pairs; raises if any is not confirmed."""
        with self._lock:
            try:
                return self._publish(messages, exchange or f"{self.prefix}{EVENTS_EXCHANGE}")
            except Exception:
                self.close()
                raise

    def _publish(self, messages: Iterable[tuple[str, dict[str, Any] | SerializedEvent]], exchange: str) -> int:
        connection = self._connect()
        producer = connection.Producer(serializer="cloudevents")
        count = 0
        for routing_key, envelope in messages:
            if isinstance(envelope, SerializedEvent):
                # With its content type given, kombu sends the body as it is: no decode/encode.
                producer.publish(envelope.body, exchange=exchange, routing_key=routing_key, delivery_mode=2,
                                 message_id=envelope.id, content_type=CLOUDEVENTS_CONTENT_TYPE,
                                 content_encoding="utf-8")
            else:
                producer.publish(envelope, exchange=exchange, routing_key=routing_key, delivery_mode=2,
                                 message_id=envelope.get("id"))
            count += 1
        if count and is_amqp(self.broker_url):
            self._sent += count
            deadline = time.monotonic() + self.confirm_timeout
            while self._acked < self._sent and not self._nacked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishError(f"broker confirmed {self._acked} of {self._sent} messages")
                try:
                    connection.drain_events(timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
            if self._nacked:
                raise PublishError("broker refused (nacked) a message of the batch")
        return count

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except OSError:
                log.debug("closing a broken broker connection", exc_info=True)
            self._connection = None
