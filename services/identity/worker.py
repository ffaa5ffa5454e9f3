"""identity's background process: relays its outbox to the bus and consumes the events it
needs (erasure completions, other services' audit entries), and seals the audit trail's new
entries into each tenant's hash chain every second (`audit_chain.run_sealer`).

    python -m services.identity.worker
"""

from __future__ import annotations

import logging
import signal
import threading
from functools import partial

from services.identity import SCHEMA, audit_chain, erasure
from services.identity.app import MIGRATIONS
from shared import logging as json_logging
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.db import Database
from shared.maintenance import expire_idempotency_keys, run_periodically
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from shared.settings import Settings

log = logging.getLogger(__name__)


def handlers() -> dict[str, Handler]:
    """Event type (or topic pattern) → handler, for identity's consumer."""
    return {
        erasure.ERASURE_COMPLETED: erasure.on_erasure_completed,
        audit_chain.AUDIT_RECORDED: audit_chain.on_audit_recorded,
    }


def build(settings: Settings, db: Database) -> tuple[OutboxRelay, list[EventConsumer]]:
    relay = OutboxRelay(db, Publisher(settings.broker_url), [SCHEMA], batch=settings.outbox_batch)
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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=relay.run, args=(stop,), name="relay")]
    threads += [threading.Thread(target=c.run, args=(stop,), name=c.name) for c in consumers]
    threads.append(threading.Thread(target=audit_chain.run_sealer, args=(db, stop), name="audit-sealer"))
    threads.append(threading.Thread(
        target=run_periodically,
        args=(stop, 600.0, partial(expire_idempotency_keys, db, SCHEMA), "expire idempotency keys"),
        name="idempotency-expiry",
    ))
    for thread in threads:
        thread.start()
    log.info("identity worker started", extra={"consumers": [c.name for c in consumers]})
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
    db.close()


if __name__ == "__main__":
    main()
