"""Profiles age: followers grow, people move and change jobs. The freshness scheduler queues a new
enrichment for each profile last enriched longer ago than the freshness limit, as a CRM would by
calling `POST /v1/enrichments`, so segments built on profiles stay current without anyone asking.

Rules:
- Only contacts that still allow `profile_enrichment` (a lapsed or withdrawn consent has already
  deleted the profile, see projections).
- Oldest first, at most `batch` jobs per run (the worker runs it every minute), so a backlog (a
  million profiles imported the same day, coming due the same day) is spread out rather than
  dropped on the providers at once; their rate limits pace the jobs further.
- A contact with any job since `retry_after` ago gets none: a profile whose providers keep
  failing (its `enriched_at` does not move) is retried at that pace, not every minute.
- One scheduler at a time across worker replicas (an advisory lock); the jobs and their
  `job.requested` events commit together, so a crash queues nothing half-way.

Settings: ENRICHMENT_FRESHNESS_DAYS (30), ENRICHMENT_RETRY_HOURS (24),
ENRICHMENT_SCHEDULER_BATCH (500 jobs a run).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.enrichment import SCHEMA
from services.enrichment.jobs import requested_event
from services.enrichment.repository import jobs as repo
from shared.db import Database
from shared.events import utcnow
from shared.ids import new_id
from shared.settings import env_number

FRESHNESS = "freshness"


@dataclass(frozen=True)
class FreshnessPolicy:
    max_age: timedelta = timedelta(days=30)
    retry_after: timedelta = timedelta(hours=24)
    batch: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FreshnessPolicy:
        env = os.environ if env is None else env
        return cls(
            max_age=timedelta(days=env_number(env, "ENRICHMENT_FRESHNESS_DAYS", 30.0, 0.01, 3650.0, float)),
            retry_after=timedelta(hours=env_number(env, "ENRICHMENT_RETRY_HOURS", 24.0, 0.01, 24.0 * 365, float)),
            batch=env_number(env, "ENRICHMENT_SCHEDULER_BATCH", 500, 1, 100_000),
        )


def queue_stale_profiles(db: Database, policy: FreshnessPolicy,
                         now: Callable[[], datetime] = utcnow) -> int:
    """Queues a job for each stale profile the policy allows in one run; returns how many."""
    moment = now()
    with db.transaction() as uow:
        if not repo.try_lock_scheduler(uow):
            return 0  # another replica is at it
        stale = repo.stale_profiles(uow, moment - policy.max_age, moment - policy.retry_after, moment,
                                    policy.batch)
        if not stale:
            return 0
        jobs = [(str(row["tenant_id"]), str(new_id()), str(row["contact_id"])) for row in stale]
        repo.insert_queued(uow, jobs, FRESHNESS, moment)
        uow.publish_many(SCHEMA, [requested_event(tenant, job, contact) for tenant, job, contact in jobs])
        return len(jobs)
