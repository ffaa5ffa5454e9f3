"""Recording to the audit trail. Entries are appended unsealed in the caller's transaction, so an
entry exists if and only if its change committed; `services.identity.audit_chain` seals them into
the tenant's hash chain. Details name what changed, never the personal data itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork


@dataclass(frozen=True)
class AuditEntry:
    action: str  # e.g. contact.created, consent.recorded, contact.exported
    resource: str  # e.g. contact/<id>
    contact_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def record(uow: UnitOfWork, tenant_id: str, actor: str, entry: AuditEntry) -> None:
    record_many(uow, tenant_id, actor, [entry])


def record_many(uow: UnitOfWork, tenant_id: str, actor: str, entries: Iterable[AuditEntry]) -> None:
    with uow.conn.cursor() as cur:
        with cur.copy(
            "COPY identity.audit_log (tenant_id, actor, action, resource, contact_id, details)"
            " FROM STDIN"
        ) as copy:
            for e in entries:
                copy.write_row(
                    (tenant_id, actor, e.action, e.resource, e.contact_id, Jsonb(e.details))
                )
