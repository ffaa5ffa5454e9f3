"""identity's background process: relays its outbox to the bus and consumes the events it
needs (erasure completions, other services' audit entries), and seals the audit trail's new
entries into each tenant's hash chain every second (`audit_chain.seal_pending`, a periodic task).

    python -m services.identity.worker
"""

from __future__ import annotations

import logging
from functools import partial

from services.identity import SCHEMA, audit_chain, erasure, unsubscribe
from services.identity.app import MIGRATIONS
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


def handlers() -> dict[str, Handler]:
    """Event type (or topic pattern) → handler, for identity's consumer."""
    return {
        erasure.ERASURE_COMPLETED: erasure.on_erasure_completed,
        audit_chain.AUDIT_RECORDED: audit_chain.on_audit_recorded,
        unsubscribe.UNSUBSCRIBE_REQUESTED: unsubscribe.on_unsubscribe_requested,
    }


def build(settings: Settings, db: Database) -> tuple[OutboxRelay, list[EventConsumer]]:
    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA], batch=settings.outbox_batch)
    consumers = []
    if handlers():
        consumers.append(EventConsumer.from_settings("identity", db, SCHEMA, handlers(), settings))
    return relay, consumers


def main() -> None:
    settings = Settings.from_env()
    json_logging.configure("identity-worker", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=1, max_size=4, name="identity-worker").open()
    relay, consumers = build(settings, db)
    try:
        run_worker("identity", relay, consumers, [
        PeriodicTask("audit sealing", audit_chain.SEAL_INTERVAL, partial(audit_chain.seal_pending, db)),
        PeriodicTask("idempotency key expiry", 600.0, partial(expire_idempotency_keys, db, SCHEMA)),
    ])
    finally:
        db.close()


if __name__ == "__main__":
    main()
