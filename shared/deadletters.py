"""List and replay a consumer's dead-lettered events (an operator's command).

    python -m shared.deadletters list identity
    python -m shared.deadletters replay identity [--id EVENT_ID ...]

Listing takes the messages without acknowledging them, so the broker puts them all back when the
connection closes. Replaying sends each chosen message back to the consumer's own queue with its
attempt count reset, and only then removes it from the dead letters."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from kombu import Connection

from shared.bus import ACCEPT, QUEUE_TYPES, ConsumerTopology, is_amqp
from shared.consumer import ATTEMPTS_HEADER, ERROR_HEADER
from shared.settings import SettingsError, env_number


def topology_of(consumer: str, env: Mapping[str, str] | None = None) -> tuple[str, ConsumerTopology]:
    """The broker URL and the queues of `consumer`, named and declared as the consumer itself
    declares them (BROKER_URL, BUS_PREFIX, BUS_QUEUE_EXPIRES, BUS_QUEUE_TYPE): an operator's tool
    needs no database or secret key, only the broker."""
    env = os.environ if env is None else env
    broker_url = env.get("BROKER_URL", "")
    if not broker_url:
        raise SettingsError("BROKER_URL is not set (amqp://user:pass@host:5672//)")
    expires = env_number(env, "BUS_QUEUE_EXPIRES", None, 1.0, 30 * 86400.0, float)
    queue_type = env.get("BUS_QUEUE_TYPE") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise SettingsError(f"BUS_QUEUE_TYPE={queue_type!r} is not one of {', '.join(QUEUE_TYPES)}")
    return broker_url, ConsumerTopology(consumer, (), prefix=env.get("BUS_PREFIX", ""), amqp=is_amqp(broker_url),
                                        expires=expires, queue_type=queue_type)


def list_dead(broker_url: str, topology: ConsumerTopology, limit: int = 1000) -> list[dict[str, Any]]:
    found = []
    with Connection(broker_url) as connection:
        queue = topology.dead()(connection.default_channel)
        queue.declare()
        while len(found) < limit:
            message = queue.get(no_ack=False, accept=ACCEPT)
            if message is None:
                break
            body = message.payload
            found.append({
                "id": body.get("id") if isinstance(body, dict) else None,
                "type": body.get("type") if isinstance(body, dict) else None,
                "attempts": (message.headers or {}).get(ATTEMPTS_HEADER),
                "error": (message.headers or {}).get(ERROR_HEADER),
                "event": body,
            })
    return found


def replay(broker_url: str, topology: ConsumerTopology, event_ids: set[str] | None = None) -> int:
    replayed = 0
    with Connection(broker_url) as connection:
        channel = connection.default_channel
        queue = topology.dead()(channel)
        queue.declare()
        producer = connection.Producer(channel)
        kept = []
        while True:
            message = queue.get(no_ack=False, accept=ACCEPT)
            if message is None:
                break
            body = message.payload
            if event_ids is not None and (not isinstance(body, dict) or body.get("id") not in event_ids):
                kept.append(message)
                continue
            producer.publish(body, exchange=topology.direct_exchange_name, routing_key=topology.queue_name,
                             serializer="cloudevents", headers={ATTEMPTS_HEADER: 0}, delivery_mode=2)
            message.ack()
            replayed += 1
        for message in kept:
            message.requeue()
    return replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.deadletters", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("consumer", help="the consumer's name, e.g. identity")
    parser.add_argument("--id", action="append", dest="ids", help="replay only this event id (repeatable)")
    args = parser.parse_args(argv)
    broker_url, topology = topology_of(args.consumer)
    if args.action == "list":
        for entry in list_dead(broker_url, topology):
            print(json.dumps(entry, default=str))
    else:
        count = replay(broker_url, topology, set(args.ids) if args.ids else None)
        print(f"replayed {count} event(s) to {topology.queue_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
