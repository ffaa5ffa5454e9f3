"""webhooks' background process: relays its outbox (erasure answers), consumes every contract
event type into deliveries (services.webhooks.deliveries), sends deliveries as soon as they are
made (woken by NOTIFY) and retries as they fall due (a poll a second), and deletes deliveries
past their 30 days every hour.

    python -m services.webhooks.worker

Several may run: each claims its own deliveries (FOR UPDATE SKIP LOCKED). WEBHOOK_CONCURRENCY
(default 8) is how many requests one process has in flight.
"""

from __future__ import annotations

import logging
import os
from functools import partial

from services.webhooks import ERASURE_REQUESTED, EVENT_TYPES, SCHEMA, deliveries
from services.webhooks.app import MIGRATIONS
from services.webhooks.endpoints import secret_box
from shared import logging as json_logging
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.db import Database
from shared.maintenance import expire_idempotency_keys
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from shared.settings import Settings, env_number
from shared.worker import PeriodicTask, run_worker

log = logging.getLogger(__name__)


def handlers() -> dict[str, Handler]:
    """Every contract event type → a delivery to each endpoint that wants it."""
    found: dict[str, Handler] = {kind: deliveries.on_event for kind in EVENT_TYPES}
    found[ERASURE_REQUESTED] = deliveries.on_erasure_requested
    return found


def build(settings: Settings, db: Database) -> tuple[OutboxRelay, list[EventConsumer]]:
    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA], batch=settings.outbox_batch)
    consumers = [EventConsumer.from_settings("webhooks", db, SCHEMA, handlers(), settings)]
    return relay, consumers


def main() -> None:
    settings = Settings.from_env()
    json_logging.configure("webhooks-worker", settings.log_level)
    concurrency = env_number(os.environ, "WEBHOOK_CONCURRENCY", 8, 1, 256)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=1, max_size=4, name="webhooks-worker").open()
    relay, consumers = build(settings, db)
    dispatcher = deliveries.Dispatcher(db, secret_box(settings.secret_key), concurrency=concurrency)
    try:
        run_worker("webhooks", relay, consumers, [
            PeriodicTask("webhook retention", 3600.0, partial(deliveries.purge_expired, db)),
            PeriodicTask("idempotency key expiry", 600.0, partial(expire_idempotency_keys, db, SCHEMA)),
        ], loops=[("webhook deliveries", dispatcher.run)])
    finally:
        dispatcher.close()
        db.close()


if __name__ == "__main__":
    main()
