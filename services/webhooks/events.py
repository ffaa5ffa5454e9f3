"""Which endpoints want an event: subscriptions name event types, or patterns over them.

A pattern is `*` (everything) or a prefix of whole words followed by `.*`
(`liaison.identity.*`: every type that starts with `liaison.identity.`, however many words follow).
An event's type is matched by computing once every pattern that covers it, so that the database
compares two arrays (`event_types && patterns`) instead of running the matching per endpoint."""

from __future__ import annotations

from typing import Any

import orjson

from services.webhooks import EVENT_TYPES


def covering_patterns(event_type: str) -> list[str]:
    """The type itself, `*`, and `<each prefix of words>.*`."""
    words = event_type.split(".")
    return [event_type, "*", *(".".join(words[:n]) + ".*" for n in range(1, len(words)))]


def matches(pattern: str, event_type: str) -> bool:
    return pattern in covering_patterns(event_type)


def unknown_event_types(subscribed: list[str]) -> list[str]:
    """The entries that are neither a contract event type nor a pattern matching at least one."""
    return [entry for entry in subscribed if not any(matches(entry, known) for known in EVENT_TYPES)]


def encode(envelope: dict[str, Any]) -> str:
    """The request body: the CloudEvent envelope as JSON, as the bus carried it."""
    return orjson.dumps(envelope).decode()
