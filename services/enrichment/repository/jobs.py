"""SQL of enrichment jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork


def insert(uow: UnitOfWork, tenant_id: str, job: dict[str, Any]) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO enrichment.enrichment_jobs (tenant_id, id, contact_id, status, reason, created_at,"
        " finished_at) VALUES (%(tenant)s, %(id)s, %(contact_id)s, %(status)s, %(reason)s, %(created_at)s,"
        " %(finished_at)s) RETURNING id, contact_id, status, reason, providers, requested_by, created_at,"
        " started_at, finished_at",
        {"tenant": tenant_id, **job},
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, job_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT id, contact_id, status, reason, providers, requested_by, created_at, started_at, finished_at"
        " FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND id = %s",
        (tenant_id, job_id),
    ).fetchone()


def of_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT id, contact_id, status, reason, providers, requested_by, created_at, started_at, finished_at"
        " FROM enrichment.enrichment_jobs"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY created_at, id",
        (tenant_id, contact_id),
    ).fetchall()


def claim(uow: UnitOfWork, tenant_id: str, job_id: str, now: datetime) -> dict[str, Any] | None:
    """queued → running; None when the job is not queued (already run, or unknown)."""
    return uow.execute(
        "UPDATE enrichment.enrichment_jobs SET status = 'running', started_at = %s"
        " WHERE tenant_id = %s AND id = %s AND status = 'queued'"
        " RETURNING id, contact_id, status, reason, providers, requested_by, created_at, started_at, finished_at",
        (now, tenant_id, job_id),
    ).fetchone()


def finish(uow: UnitOfWork, tenant_id: str, job_id: str, status: str, reason: str | None,
           providers: list[dict[str, Any]], now: datetime) -> None:
    uow.execute(
        "UPDATE enrichment.enrichment_jobs SET status = %s, reason = %s, providers = %s, finished_at = %s"
        " WHERE tenant_id = %s AND id = %s",
        (status, reason, Jsonb(providers), now, tenant_id, job_id),
    )


def lock_consent(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str) -> None:
    """Holds the contact's consent row for `purpose` until the transaction ends, so a withdrawal
    (which deletes what was gathered) cannot commit between our consent check and our write."""
    uow.execute(
        "SELECT 1 FROM enrichment.contact_consents WHERE tenant_id = %s AND contact_id = %s AND purpose = %s"
        " FOR SHARE",
        (tenant_id, contact_id, purpose),
    )


# -- the freshness scheduler -------------------------------------------------------------------
def try_lock_scheduler(uow: UnitOfWork) -> bool:
    """One scheduler at a time across the worker replicas, until the transaction ends."""
    return uow.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('enrichment.freshness', 0)) AS locked"
    ).fetchone()["locked"]


def stale_profiles(uow: UnitOfWork, enriched_before: datetime, no_job_since: datetime, now: datetime,
                   limit: int) -> list[dict[str, Any]]:
    """Up to `limit` (tenant_id, contact_id) whose profile was last enriched before
    `enriched_before`, oldest first, that still allow profile_enrichment and have had no job
    since `no_job_since` (so a contact whose providers keep failing is retried at that pace)."""
    return uow.execute(
        "SELECT p.tenant_id, p.contact_id FROM enrichment.profiles p"
        " JOIN enrichment.contact_consents c ON c.tenant_id = p.tenant_id AND c.contact_id = p.contact_id"
        "  AND c.purpose = 'profile_enrichment' AND c.status = 'granted'"
        "  AND (c.expires_at IS NULL OR c.expires_at > %(now)s)"
        " WHERE p.enriched_at < %(enriched_before)s AND NOT EXISTS (SELECT 1 FROM enrichment.enrichment_jobs j"
        "  WHERE j.tenant_id = p.tenant_id AND j.contact_id = p.contact_id AND j.created_at >= %(no_job_since)s)"
        " ORDER BY p.enriched_at LIMIT %(limit)s",
        {"enriched_before": enriched_before, "no_job_since": no_job_since, "now": now, "limit": limit},
    ).fetchall()


def insert_queued(uow: UnitOfWork, jobs: list[tuple[str, str, str]], requested_by: str, now: datetime) -> None:
    """Queued jobs for (tenant_id, job id, contact_id) triples, in one statement."""
    uow.execute(
        "INSERT INTO enrichment.enrichment_jobs (tenant_id, id, contact_id, status, requested_by, created_at)"
        " SELECT tenant_id, id, contact_id, 'queued', %s, %s FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[])"
        " AS j(tenant_id, id, contact_id)",
        (requested_by, now, [t for t, _, _ in jobs], [j for _, j, _ in jobs], [c for _, _, c in jobs]),
    )


# -- abandoned jobs ----------------------------------------------------------------------------
# A job's last sign of life is greatest(created_at, handed_out_at, started_at): greatest() skips nulls.


def hand_out_abandoned(uow: UnitOfWork, idle_since: datetime, max_attempts: int, now: datetime,
                       limit: int) -> list[dict[str, Any]]:
    """Up to `limit` jobs queued or running with no sign of life since `idle_since` go back to
    queued (attempts + 1); returns their (tenant_id, id, contact_id). SKIP LOCKED: a job being
    finished right now is left to its worker."""
    return uow.execute(
        "UPDATE enrichment.enrichment_jobs j SET status = 'queued', started_at = NULL,"
        " handed_out_at = %(now)s, attempts = j.attempts + 1"
        " FROM (SELECT tenant_id, id FROM enrichment.enrichment_jobs"
        "  WHERE status IN ('queued', 'running') AND greatest(created_at, handed_out_at, started_at) < %(idle)s"
        "  AND attempts < %(max)s ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) stuck"
        " WHERE j.tenant_id = stuck.tenant_id AND j.id = stuck.id"
        " RETURNING j.tenant_id, j.id, j.contact_id",
        {"now": now, "idle": idle_since, "max": max_attempts, "limit": limit},
    ).fetchall()


def fail_exhausted(uow: UnitOfWork, idle_since: datetime, max_attempts: int, reason: str, now: datetime) -> int:
    """Jobs stuck again after `max_attempts` hand-outs end failed with `reason`."""
    return uow.execute(
        "UPDATE enrichment.enrichment_jobs SET status = 'failed', reason = %s, finished_at = %s"
        " WHERE status IN ('queued', 'running') AND greatest(created_at, handed_out_at, started_at) < %s"
        " AND attempts >= %s",
        (reason, now, idle_since, max_attempts),
    ).rowcount
