"""The RabbitMQ definitions a production broker loads at start (infra/rabbitmq/definitions.json),
generated from the consumers the workers really build, so that the file cannot drift from the
code: `shared.bus.definitions` turns each consumer's topology into exchanges, quorum queues,
bindings and dead-letter policies.

    python -m infra.rabbitmq          # rewrites definitions.json
    python -m infra.rabbitmq --check  # exits 1 if definitions.json is not what the code declares

The consumers are found by building every worker the way it starts (`build()` of
services.<service>.worker and of the campaigns channel workers, for every channel) with a pool
that is never opened: no database or broker is reached. This lives in infra/ and not in shared/
because shared/ never imports a service.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.bus import ConsumerTopology, definitions
from shared.consumer import EventConsumer
from shared.db import Database
from shared.settings import Settings

HERE = Path(__file__).resolve().parent
DEFINITIONS = HERE / "definitions.json"

# Placeholders: building a worker reads settings but connects to nothing.
_GENERATOR_ENV = {
    "DATABASE_URL": "postgresql://definitions-generator/unused",
    "BROKER_URL": "amqp://definitions-generator//",
    "LIAISON_SECRET_KEY": "definitions-generator-not-a-secret",
    "BUS_QUEUE_TYPE": "quorum",
}


def _module_exists(module: str) -> bool:
    root = HERE.parent.parent
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _consumers_in(value: Any) -> Iterator[EventConsumer]:
    if isinstance(value, EventConsumer):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _consumers_in(item)


def built_consumers(settings: Settings) -> list[EventConsumer]:
    """Every EventConsumer the workers of this checkout build at start."""
    from scripts.run import SERVICES

    db = Database(settings.database_url, min_size=0, max_size=1, name="definitions-generator")  # never opened
    consumers: list[EventConsumer] = []
    for service in SERVICES:
        if _module_exists(f"services.{service}.worker"):
            worker = importlib.import_module(f"services.{service}.worker")
            consumers += _consumers_in(worker.build(settings, db))
    if _module_exists("services.campaigns.channel_worker"):
        from services.campaigns import CHANNELS
        from services.campaigns.channel_worker import build

        # Adapters, renderer and links only matter when a message is sent.
        consumers += build(settings, db, CHANNELS, {}, None, None)  # type: ignore[arg-type]
    return consumers


def topologies(settings: Settings | None = None) -> list[ConsumerTopology]:
    """Each consumer's topology as a deployment declares it: quorum queues, no prefix, no expiry."""
    settings = settings or Settings.from_env(_GENERATOR_ENV)
    found = {c.name: c.topology.routing_keys for c in built_consumers(settings)}
    return [ConsumerTopology.from_settings(name, keys, settings) for name, keys in sorted(found.items())]


def render() -> str:
    """definitions.json's text as the code declares the topology now."""
    return json.dumps(definitions(topologies()), indent=2, sort_keys=True) + "\n"
