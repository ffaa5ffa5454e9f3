"""Test helpers that start the services' machinery around their apps, shared by the integration,
contract and end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from kombu import Connection

from services.campaigns import SCHEMA as CAMPAIGNS
from services.campaigns.worker import handlers as campaigns_handlers
from services.enrichment import SCHEMA as ENRICHMENT
from services.enrichment import jobs
from services.enrichment.worker import handlers as enrichment_handlers
from services.identity import SCHEMA as IDENTITY
from services.identity.worker import handlers as identity_handlers
from services.webhooks import SCHEMA as WEBHOOKS
from services.webhooks.worker import handlers as webhooks_handlers
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.outbox import OutboxRelay


@contextmanager
def three_services(settings, identity_app, enrichment_app, campaigns_app,
                   job_runner: Callable[[Any], Handler] | None = None,
                   webhooks_app: Any = None) -> Iterator[SimpleNamespace]:
    """The three services' relays and consumers on the real broker (with `job_runner`, enrichment's
    jobs consumer too, on its own queue as in the worker; with `webhooks_app`, webhooks' too).
    `sync()` runs them, round after round, until a whole round moves nothing: the events of the
    last change have been handled, and so have those they caused (identity → enrichment →
    campaigns → identity for an erasure)."""
    dbs = {"identity": identity_app.extensions["liaison"].db, "enrichment": enrichment_app.extensions["liaison"].db,
           "campaigns": campaigns_app.extensions["liaison"].db}
    schemas = {"identity": IDENTITY, "enrichment": ENRICHMENT, "campaigns": CAMPAIGNS}
    all_handlers = {"identity": identity_handlers(), "enrichment": enrichment_handlers(),
                    "campaigns": campaigns_handlers()}
    if webhooks_app is not None:
        dbs["webhooks"] = webhooks_app.extensions["liaison"].db
        schemas["webhooks"] = WEBHOOKS
        all_handlers["webhooks"] = webhooks_handlers()
    consumers = [EventConsumer.from_settings(name, dbs[name], schemas[name], all_handlers[name], settings)
                 for name in dbs]
    if job_runner is not None:
        consumers.insert(2, EventConsumer.from_settings(
            "enrichment-jobs", dbs["enrichment"], ENRICHMENT, {jobs.JOB_REQUESTED: job_runner(dbs["enrichment"])},
            settings, prefetch=1))
    relays = [OutboxRelay(dbs[name], Publisher.from_settings(settings), [schemas[name]]) for name in dbs]
    with Connection(settings.broker_url) as connection:
        for consumer in consumers:
            consumer.topology.declare(connection)

    def sync() -> None:
        for _ in range(10):
            # Published with confirms, an event is in its queue before a consumer looks: a short
            # idle wait is enough.
            moved = sum(relay.drain() for relay in relays) + sum(c.drain(idle=0.2) for c in consumers)
            if not moved:
                return
        raise AssertionError("the services kept exchanging events for 10 rounds")

    try:
        yield SimpleNamespace(sync=sync)
    finally:
        for relay in relays:
            relay.publisher.close()
