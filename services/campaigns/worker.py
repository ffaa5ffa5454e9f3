"""campaigns' background process: relays its outbox to the bus and keeps the audience
(services.campaigns.audience) from identity's and enrichment's events.

    python -m services.campaigns.worker
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from services.campaigns import SCHEMA, audience
from shared import logging as json_logging
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.db import Database
from shared.maintenance import expire_idempotency_keys
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.worker import PeriodicTask, run_worker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def handlers() -> dict[str, Handler]:
    """Event type → handler, for campaigns' consumer."""
    return {
        audience.CONTACT_UPSERTED: audience.on_contact_upserted,
        audience.CONSENT_RECORDED: audience.on_consent_recorded,
        audience.HANDLE_LINKED: audience.on_handle_linked,
        audience.HANDLE_UNLINKED: audience.on_handle_unlinked,
        audience.CONTACT_MERGED: audience.on_contact_merged,
        audience.PROFILE_UPDATED: audience.on_profile_updated,
        audience.ERASURE_REQUESTED: audience.on_erasure_requested,
    }


def build(settings: Settings, db: Database) -> tuple[OutboxRelay, list[EventConsumer]]:
    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA], batch=settings.outbox_batch)
    consumers = [EventConsumer.from_settings("campaigns", db, SCHEMA, handlers(), settings)]
    return relay, consumers


def main() -> None:
    settings = Settings.from_env()
    json_logging.configure("campaigns-worker", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=1, max_size=4, name="campaigns-worker").open()
    relay, consumers = build(settings, db)
    try:
        run_worker("campaigns", relay, consumers, [
            PeriodicTask("idempotency key expiry", 600.0, partial(expire_idempotency_keys, db, SCHEMA)),
        ])
    finally:
        db.close()


if __name__ == "__main__":
    main()
