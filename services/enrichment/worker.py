"""enrichment's background process: relays its outbox to the bus and consumes identity's events
into its projections (consents, handles), withdrawing data when consent goes and erasing it when
asked (services.enrichment.projections).

    python -m services.enrichment.worker
"""

from __future__ import annotations

import logging
import signal
import threading
from functools import partial
from pathlib import Path

from services.enrichment import SCHEMA, projections
from shared import logging as json_logging
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.db import Database
from shared.maintenance import expire_idempotency_keys, run_periodically
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from shared.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def handlers() -> dict[str, Handler]:
    """Event type → handler, for enrichment's consumer."""
    return {
        projections.CONSENT_RECORDED: projections.on_consent_recorded,
        projections.HANDLE_LINKED: projections.on_handle_linked,
        projections.HANDLE_UNLINKED: projections.on_handle_unlinked,
        projections.CONTACT_MERGED: projections.on_contact_merged,
        projections.ERASURE_REQUESTED: projections.on_erasure_requested,
    }


def build(settings: Settings, db: Database) -> tuple[OutboxRelay, list[EventConsumer]]:
    relay = OutboxRelay(db, Publisher(settings.broker_url), [SCHEMA], batch=settings.outbox_batch)
    consumers = [EventConsumer.from_settings("enrichment", db, SCHEMA, handlers(), settings)]
    return relay, consumers


def main() -> None:
    settings = Settings.from_env()
    json_logging.configure("enrichment-worker", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=1, max_size=4, name="enrichment-worker").open()
    relay, consumers = build(settings, db)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=relay.run, args=(stop,), name="relay")]
    threads += [threading.Thread(target=c.run, args=(stop,), name=c.name) for c in consumers]
    threads.append(threading.Thread(
        target=run_periodically,
        args=(stop, 600.0, partial(expire_idempotency_keys, db, SCHEMA), "expire idempotency keys"),
        name="idempotency-expiry",
    ))
    for thread in threads:
        thread.start()
    log.info("enrichment worker started", extra={"consumers": [c.name for c in consumers]})
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
    db.close()


if __name__ == "__main__":
    main()
