"""campaigns' background process: relays its outbox to the bus, keeps the audience
(services.campaigns.audience) from identity's and enrichment's events, runs launches
(services.campaigns.campaigns) and triggers (services.campaigns.triggers), and every few seconds
launches scheduled campaigns whose time has come, releases deliveries deferred by quiet hours,
and completes campaigns with nothing left to send. The channel workers
(services.campaigns.channel_worker) send.

    python -m services.campaigns.worker
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from services.campaigns import SCHEMA, audience, campaigns, triggers
from shared import logging as json_logging
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.db import Database, UnitOfWork
from shared.maintenance import expire_idempotency_keys
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from shared.privacy import skipping_erased
from shared.settings import Settings
from shared.worker import PeriodicTask, run_worker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def handlers() -> dict[str, Handler]:
    """Event type → handler, for campaigns' consumer. Events about a contact campaigns has
    erased (still in flight at the erasure) are dropped."""
    about_contacts = {
        audience.CONTACT_UPSERTED: triggers.on_contact_upserted,
        audience.CONSENT_RECORDED: audience.on_consent_recorded,
        audience.HANDLE_LINKED: audience.on_handle_linked,
        audience.HANDLE_UNLINKED: audience.on_handle_unlinked,
        audience.CONTACT_MERGED: audience.on_contact_merged,
        audience.PROFILE_UPDATED: audience.on_profile_updated,
        triggers.CHECKIN: triggers.on_checkin,
        triggers.FOLLOW: triggers.on_follow,
    }
    return {**{kind: skipping_erased(SCHEMA, handler) for kind, handler in about_contacts.items()},
            audience.ERASURE_REQUESTED: audience.on_erasure_requested,
            campaigns.LAUNCH_REQUESTED: campaigns.on_launch_requested}


def in_transaction(db: Database, task: Callable[[UnitOfWork], object]) -> Callable[[], object]:
    def run() -> object:
        with db.transaction() as uow:
            return task(uow)

    return run


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
            PeriodicTask("scheduled launches", 5.0, in_transaction(db, campaigns.launch_due)),
            PeriodicTask("deferred deliveries", 15.0, in_transaction(db, campaigns.release_deferred)),
            PeriodicTask("campaign completion", 5.0, in_transaction(db, campaigns.finish_done)),
        ])
    finally:
        db.close()


if __name__ == "__main__":
    main()
