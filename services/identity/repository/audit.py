from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

# Each query reads an entry with the same columns: what the hash covers, plus the chain's own.


def lock_chain(uow: UnitOfWork, tenant_id: str) -> None:
    """Serializes sealing per tenant until the transaction ends; writers never take it."""
    uow.execute("SELECT pg_advisory_xact_lock(hashtextextended('audit-chain:' || %s, 0))", (tenant_id,))


def head(uow: UnitOfWork, tenant_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT seq, hash FROM identity.audit_chain_heads WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()


def set_head(uow: UnitOfWork, tenant_id: str, seq: int, hash_: str) -> None:
    uow.execute(
        "INSERT INTO identity.audit_chain_heads (tenant_id, seq, hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (tenant_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash,"
        " sealed_at = now()",
        (tenant_id, seq, hash_),
    )


def unsealed(uow: UnitOfWork, tenant_id: str, after_id: int, limit: int) -> list[dict[str, Any]]:
    """The oldest unsealed entries after `after_id`, in the order they were written (the partial
    index `audit_log_unsealed` holds exactly these)."""
    return uow.execute(
        "SELECT id, seq, at, actor, action, resource, contact_id, details, prev_hash, hash"
        " FROM identity.audit_log"
        " WHERE tenant_id = %s AND seq IS NULL AND id > %s ORDER BY id LIMIT %s",
        (tenant_id, after_id, limit),
    ).fetchall()


def seal_entries(uow: UnitOfWork, tenant_id: str, ids: list[int], seqs: list[int],
                 prev_hashes: list[str], hashes: list[str]) -> None:
    """One statement for a whole batch."""
    uow.execute(
        "UPDATE identity.audit_log a SET seq = s.seq, prev_hash = s.prev_hash, hash = s.hash"
        " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS s(id, seq, prev_hash, hash)"
        " WHERE a.tenant_id = %s AND a.id = s.id AND a.seq IS NULL",
        (ids, seqs, prev_hashes, hashes, tenant_id),
    )


def tenants_with_unsealed(uow: UnitOfWork) -> list[str]:
    rows = uow.execute("SELECT DISTINCT tenant_id FROM identity.audit_log WHERE seq IS NULL").fetchall()
    return [str(r["tenant_id"]) for r in rows]


def append(uow: UnitOfWork, tenant_id: str, entry: dict[str, Any]) -> None:
    """Appends an unsealed entry written elsewhere (another service), keeping its own time."""
    uow.execute(
        "INSERT INTO identity.audit_log (tenant_id, at, actor, action, resource, contact_id, details)"
        " VALUES (%s, COALESCE(%s, clock_timestamp()), %s, %s, %s, %s, %s)",
        (tenant_id, entry.get("at"), entry["actor"], entry["action"], entry["resource"],
         entry.get("contact_id"), Jsonb(entry.get("details") or {})),
    )


def find(uow: UnitOfWork, tenant_id: str, *, contact_ids: list[str] | None, since: datetime | None,
         until: datetime | None, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """Sealed entries in chain order; `until` is exclusive."""
    return uow.execute(
        "SELECT id, seq, at, actor, action, resource, contact_id, details, prev_hash, hash"
        " FROM identity.audit_log"
        " WHERE tenant_id = %(tenant)s AND seq > %(after)s"
        "   AND (%(contacts)s::uuid[] IS NULL OR contact_id = ANY(%(contacts)s::uuid[]))"
        "   AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
        "   AND (%(until)s::timestamptz IS NULL OR at < %(until)s)"
        " ORDER BY seq LIMIT %(limit)s",
        {"tenant": tenant_id, "after": after_seq, "contacts": contact_ids, "since": since,
         "until": until, "limit": limit},
    ).fetchall()


def stream_chain(uow: UnitOfWork, tenant_id: str, batch: int = 10_000) -> Iterator[dict[str, Any]]:
    """Every sealed entry in seq order through a server-side cursor: memory stays flat however
    long the chain is. Must run inside the caller's transaction."""
    with uow.conn.cursor(name="audit_chain_stream") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT id, seq, at, actor, action, resource, contact_id, details, prev_hash, hash"
            " FROM identity.audit_log"
            " WHERE tenant_id = %s AND seq IS NOT NULL ORDER BY seq",
            (tenant_id,),
        )
        yield from cur
