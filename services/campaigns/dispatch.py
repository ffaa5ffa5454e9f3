"""Dispatch: how deliveries travel from a launch (or a trigger) to the channel workers.

A launch writes its deliveries, then publishes, through the outbox in the same transaction, one
`liaison.campaigns.dispatch.<channel>` event per batch of up to BATCH deliveries of a channel:

    data = {"campaign_id": str | None, "trigger_id": str | None, "channel": "email",
            "delivery_ids": [str, ...]}

so a million recipients cost a few thousand broker messages, not a million. Each channel has its
own consumer (`campaigns-email`, `campaigns-sms`, `campaigns-social_dm`), a queue that any
number of worker processes share as competing consumers. The consumer records the event as
handled only once the whole batch is done; a worker killed mid-batch leaves it unacknowledged, so
the batch is delivered again, and each delivery's own status says what is left: `sent` ones are
skipped, `sending` ones (handed to the provider when the worker died) are sent again with the same
idempotency key, which the provider recognises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from services.campaigns import CHANNELS, SOURCE
from shared.events import CloudEvent

BATCH = 500
DISPATCH = {channel: f"liaison.campaigns.dispatch.{channel}" for channel in CHANNELS}


def batches(delivery_ids: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    batch: list[str] = []
    for delivery_id in delivery_ids:
        batch.append(delivery_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def dispatch_events(tenant_id: str, channel: str, delivery_ids: Iterable[str], *, campaign_id: str | None = None,
                    trigger_id: str | None = None) -> list[CloudEvent]:
    """The dispatch events for these deliveries of one channel, BATCH ids each."""
    return [CloudEvent(DISPATCH[channel], SOURCE, tenant_id,
                       {"campaign_id": campaign_id, "trigger_id": trigger_id, "channel": channel,
                        "delivery_ids": batch})
            for batch in batches(delivery_ids)]
