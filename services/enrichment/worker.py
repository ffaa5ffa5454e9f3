"""enrichment's background process: relays its outbox to the bus, consumes identity's events
into its projections (consents, handles), withdrawing data when consent goes and erasing it when
asked (services.enrichment.projections), runs the enrichment jobs (services.enrichment.jobs), and
every minute deletes what lapsed consents covered, queues the re-enrichment of stale profiles
(services.enrichment.freshness) and hands out again the jobs a dead worker abandoned.

    python -m services.enrichment.worker
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from services.enrichment import SCHEMA, jobs, projections, social
from services.enrichment.freshness import FreshnessPolicy, queue_stale_profiles
from services.enrichment.providers import adapters
from shared import logging as json_logging
from shared.bus import Publisher
from shared.consumer import EventConsumer, Handler
from shared.db import Database
from shared.maintenance import expire_idempotency_keys
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from shared.privacy import skipping_erased
from shared.ratelimit import PostgresRateLimiter
from shared.settings import Settings
from shared.worker import PeriodicTask, run_worker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def handlers() -> dict[str, Handler]:
    """Event type → handler, for enrichment's consumer. Events about a contact enrichment has
    erased (still in flight at the erasure) are dropped."""
    about_contacts = {
        projections.CONSENT_RECORDED: projections.on_consent_recorded,
        projections.HANDLE_LINKED: social.on_handle_linked,
        projections.HANDLE_UNLINKED: projections.on_handle_unlinked,
        projections.CONTACT_MERGED: social.on_contact_merged,
    }
    return {**{kind: skipping_erased(SCHEMA, handler) for kind, handler in about_contacts.items()},
            projections.ERASURE_REQUESTED: projections.on_erasure_requested}


def build(settings: Settings, db: Database) -> tuple[OutboxRelay, list[EventConsumer]]:
    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA], batch=settings.outbox_batch)
    # The provider adapters are built once per process: their circuit breakers must see every
    # call the process makes. Their rate limits are shared with the other replicas through the
    # database: a provider counts calls per credential, whichever process makes them.
    providers = adapters(limiter=PostgresRateLimiter(db, SCHEMA))
    # Jobs have a queue of their own: a job waits on the providers' rate limits (up to
    # <P>_MAX_WAIT), and consent events, a withdrawal above all, must never wait behind it.
    jobs_consumer = EventConsumer.from_settings(
        "enrichment-jobs", db, SCHEMA, {jobs.JOB_REQUESTED: jobs.job_handler(providers, db, settings.secret_key)},
        settings, prefetch=1)
    consumers = [EventConsumer.from_settings("enrichment", db, SCHEMA, handlers(), settings), jobs_consumer]
    return relay, consumers


def main() -> None:
    settings = Settings.from_env()
    json_logging.configure("enrichment-worker", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=1, max_size=8, name="enrichment-worker").open()
    relay, consumers = build(settings, db)
    freshness = FreshnessPolicy.from_env()
    try:
        run_worker("enrichment", relay, consumers, [
            PeriodicTask("idempotency key expiry", 600.0, partial(expire_idempotency_keys, db, SCHEMA)),
            PeriodicTask("lapsed consent sweep", 60.0, partial(projections.sweep_lapsed_consents, db)),
            PeriodicTask("freshness scheduler", 60.0, partial(queue_stale_profiles, db, freshness)),
            PeriodicTask("abandoned job hand-out", 60.0, partial(jobs.hand_out_abandoned_jobs, db)),
        ])
    finally:
        db.close()


if __name__ == "__main__":
    main()
