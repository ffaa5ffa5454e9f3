from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork


def insert(uow: UnitOfWork, tenant_id: str, erasure_id: str, contact_id: str, requested_by: str,
           services: dict[str, str]) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO identity.erasures (tenant_id, id, contact_id, requested_by, services)"
        " VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id, contact_id, status, services, requested_at, completed_at",
        (tenant_id, erasure_id, contact_id, requested_by, Jsonb(services)),
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, erasure_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    query = (
        "SELECT id, contact_id, status, services, requested_at, completed_at FROM identity.erasures"
        " WHERE tenant_id = %s AND id = %s"
    )
    if lock:
        query += " FOR UPDATE"
    return uow.execute(query, (tenant_id, erasure_id)).fetchone()


def find(uow: UnitOfWork, tenant_id: str, *, contact_id: str | None, status: str | None,
         after: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first (ids are time-ordered UUIDs)."""
    return uow.execute(
        "SELECT id, contact_id, status, services, requested_at, completed_at FROM identity.erasures"
        " WHERE tenant_id = %(tenant)s"
        "   AND (%(contact)s::uuid IS NULL OR contact_id = %(contact)s::uuid)"
        "   AND (%(status)s::text IS NULL OR status = %(status)s)"
        "   AND (%(after)s::uuid IS NULL OR id < %(after)s::uuid)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"tenant": tenant_id, "contact": contact_id, "status": status, "after": after, "limit": limit},
    ).fetchall()


def set_progress(uow: UnitOfWork, tenant_id: str, erasure_id: str, services: dict[str, str],
                 completed: bool) -> dict[str, Any]:
    return uow.execute(
        "UPDATE identity.erasures SET services = %s,"
        " status = CASE WHEN %s THEN 'completed' ELSE status END,"
        " completed_at = CASE WHEN %s THEN now() ELSE completed_at END"
        " WHERE tenant_id = %s AND id = %s"
        " RETURNING id, contact_id, status, services, requested_at, completed_at",
        (Jsonb(services), completed, completed, tenant_id, erasure_id),
    ).fetchone()


def forget_stored_responses(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> int:
    """Deletes the Idempotency-Key replies that show one of these contacts (a stored POST
    response holds the contact as it was then); a retry with such a key after the erasure is a
    new request. Only the tenant's keys are read, and they expire."""
    return uow.execute(
        "DELETE FROM identity.idempotency_keys k WHERE k.tenant_id = %s AND k.response_body IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS c(id)"
        "             WHERE position(convert_to(c.id, 'UTF8') IN k.response_body) > 0)",
        (tenant_id, contact_ids),
    ).rowcount
