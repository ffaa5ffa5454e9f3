"""SQL of the consent ledger (identity.consent_records, append-only) and of the evidence behind
each record (identity.consent_evidence, deleted on erasure)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

# A record read with its evidence (null columns once the evidence is erased).
SELECT_RECORDS = """
SELECT r.tenant_id, r.id, r.contact_id, r.purpose, r.status, r.legal_basis, r.source_system,
       r.source_form, r.notice_version, r.captured_at, r.expires_at, r.recorded_at,
       r.evidence_hash, host(e.ip) AS ip, e.user_agent, e.proof,
       e.record_id IS NOT NULL AS has_evidence
FROM identity.consent_records r
LEFT JOIN identity.consent_evidence e ON e.tenant_id = r.tenant_id AND e.record_id = r.id
"""

# "Latest" is the latest captured_at; a tie goes to the later recorded, then the larger id
# (UUIDv7, so also the later recorded). services.identity.consents folds history with the same
# order; history and latest() below sort by it.


def insert(uow: UnitOfWork, tenant_id: str, record: dict[str, Any]) -> dict[str, Any]:
    uow.execute(
        "INSERT INTO identity.consent_records (tenant_id, id, contact_id, purpose, status,"
        " legal_basis, source_system, source_form, notice_version, captured_at, expires_at,"
        " evidence_hash)"
        " VALUES (%(tenant)s, %(id)s, %(contact_id)s, %(purpose)s, %(status)s, %(legal_basis)s,"
        " %(source_system)s, %(source_form)s, %(notice_version)s, %(captured_at)s,"
        " %(expires_at)s, %(evidence_hash)s)",
        {"tenant": tenant_id, **record},
    )
    if record["evidence_hash"] is not None:
        uow.execute(
            "INSERT INTO identity.consent_evidence (tenant_id, record_id, ip, user_agent, proof)"
            " VALUES (%s, %s, %s, %s, %s)",
            (tenant_id, record["id"], record["ip"], record["user_agent"],
             Jsonb(record["proof"]) if record["proof"] is not None else None),
        )
    return get(uow, tenant_id, record["id"])


def get(uow: UnitOfWork, tenant_id: str, record_id: str) -> dict[str, Any] | None:
    return uow.execute(
        SELECT_RECORDS + " WHERE r.tenant_id = %s AND r.id = %s", (tenant_id, record_id)
    ).fetchone()


def history(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> list[dict[str, Any]]:
    """Every record of these contact ids (a contact and its merged duplicates), oldest first."""
    return uow.execute(
        SELECT_RECORDS + " WHERE r.tenant_id = %s AND r.contact_id = ANY(%s::uuid[])"
        " ORDER BY r.captured_at, r.recorded_at, r.id",
        (tenant_id, contact_ids),
    ).fetchall()


def latest(uow: UnitOfWork, tenant_id: str, contact_ids: list[str], purpose: str) -> dict[str, Any] | None:
    """The record that decides the contact's current state for one purpose."""
    return uow.execute(
        "SELECT r.id, r.contact_id, r.purpose, r.status, r.captured_at, r.expires_at, r.recorded_at"
        " FROM identity.consent_records r"
        " WHERE r.tenant_id = %s AND r.contact_id = ANY(%s::uuid[]) AND r.purpose = %s"
        " ORDER BY r.captured_at DESC, r.recorded_at DESC, r.id DESC LIMIT 1",
        (tenant_id, contact_ids, purpose),
    ).fetchone()


def survivor_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> str | None:
    """The contact a merged duplicate now lives on, or None when it was never merged."""
    row = uow.execute(
        "SELECT survivor_id FROM identity.contact_merges WHERE tenant_id = %s AND duplicate_id = %s",
        (tenant_id, contact_id),
    ).fetchone()
    return str(row["survivor_id"]) if row else None


def _matching(purpose: str | None, status: str | None, since: datetime | None,
              until: datetime | None, after: tuple[str, str] | None) -> sql.Composed:
    """The WHERE clause of a listing, with only the conditions asked for: a condition like
    `%s IS NULL OR ...` would keep a cached generic plan from using the index range."""
    conditions = [sql.SQL("r.tenant_id = %(tenant)s")]
    if purpose is not None:
        conditions.append(sql.SQL("r.purpose = %(purpose)s"))
    if status is not None:
        conditions.append(sql.SQL("r.status = %(status)s"))
    if since is not None:
        conditions.append(sql.SQL("r.captured_at >= %(from)s"))
    if until is not None:
        conditions.append(sql.SQL("r.captured_at < %(to)s"))
    if after is not None:
        conditions.append(sql.SQL("(r.captured_at, r.id) > (%(after_at)s, %(after_id)s::uuid)"))
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def find(uow: UnitOfWork, tenant_id: str, *, purpose: str | None, status: str | None,
         since: datetime | None, until: datetime | None, after: tuple[datetime, str] | None,
         limit: int) -> list[dict[str, Any]]:
    """One page of the tenant's ledger in (captured_at, id) order, after the keyset `after`."""
    query = (sql.SQL(SELECT_RECORDS) + _matching(purpose, status, since, until, after)
             + sql.SQL(" ORDER BY r.captured_at, r.id LIMIT %(limit)s"))
    return uow.execute(query, {
        "tenant": tenant_id, "purpose": purpose, "status": status, "from": since, "to": until,
        "after_at": after[0] if after else None, "after_id": after[1] if after else None,
        "limit": limit,
    }).fetchall()


def stream(uow: UnitOfWork, tenant_id: str, *, purpose: str | None, status: str | None,
           since: datetime | None, until: datetime | None,
           batch: int = 2000) -> Iterator[list[dict[str, Any]]]:
    """All matching records in (captured_at, id) order, `batch` rows at a time, from a
    server-side cursor: memory stays flat however large the ledger."""
    query = (sql.SQL(SELECT_RECORDS) + _matching(purpose, status, since, until, None)
             + sql.SQL(" ORDER BY r.captured_at, r.id"))
    with uow.conn.cursor(name="consent_export") as cursor:
        cursor.execute(query, {"tenant": tenant_id, "purpose": purpose, "status": status,
                               "from": since, "to": until})
        while rows := cursor.fetchmany(batch):
            yield rows


def delete_evidence(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> int:
    cursor = uow.execute(
        "DELETE FROM identity.consent_evidence e USING identity.consent_records r"
        " WHERE e.tenant_id = %s AND r.tenant_id = e.tenant_id AND r.id = e.record_id"
        "   AND r.contact_id = ANY(%s::uuid[])",
        (tenant_id, contact_ids),
    )
    return cursor.rowcount
