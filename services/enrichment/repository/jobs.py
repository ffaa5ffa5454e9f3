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
        " %(finished_at)s) RETURNING id, contact_id, status, reason, providers, created_at, started_at,"
        " finished_at",
        {"tenant": tenant_id, **job},
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, job_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT id, contact_id, status, reason, providers, created_at, started_at, finished_at"
        " FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND id = %s",
        (tenant_id, job_id),
    ).fetchone()


def of_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT id, contact_id, status, reason, providers, created_at, started_at, finished_at"
        " FROM enrichment.enrichment_jobs"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY created_at, id",
        (tenant_id, contact_id),
    ).fetchall()


def claim(uow: UnitOfWork, tenant_id: str, job_id: str, now: datetime) -> dict[str, Any] | None:
    """queued → running; None when the job is not queued (already run, or unknown)."""
    return uow.execute(
        "UPDATE enrichment.enrichment_jobs SET status = 'running', started_at = %s"
        " WHERE tenant_id = %s AND id = %s AND status = 'queued'"
        " RETURNING id, contact_id, status, reason, providers, created_at, started_at, finished_at",
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
