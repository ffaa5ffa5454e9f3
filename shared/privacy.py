"""The rights of access and erasure, as every service takes part in them the same way.

Erasure: identity publishes `liaison.identity.contact.erasure_requested` with the contact's ids
(merged duplicates' included) and handles; each service deletes what it holds under them, then
answers with `liaison.<service>.erasure.completed` (identity marks its part done) and
`liaison.<service>.audit.recorded` (identity chains it into the tenant's audit trail), in the
transaction of the deletion. Each service remembers the ids it erased (`<schema>.erased_contacts`)
and ignores events about them that were still in flight: an erased person's data is never filed
again. Access: each service answers its part of the export as JSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow


def remember_erased(uow: UnitOfWork, schema: str, tenant_id: str, contact_ids: list[str]) -> None:
    uow.execute(sql.SQL(
        "INSERT INTO {}.erased_contacts (tenant_id, contact_id) SELECT %s, unnest(%s::uuid[]) ON CONFLICT DO NOTHING"
    ).format(sql.Identifier(schema)), (tenant_id, contact_ids))


def skipping_erased(schema: str, handler: Callable[[UnitOfWork, dict[str, Any]], None],
                    ) -> Callable[[UnitOfWork, dict[str, Any]], None]:
    """`handler`, except for events whose subject (the contact, in every event about one) this
    service has erased: those are in flight from before the erasure and are dropped."""

    def guarded(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        if was_erased(uow, schema, envelope["tenantid"], envelope.get("subject")):
            return
        handler(uow, envelope)

    return guarded


def was_erased(uow: UnitOfWork, schema: str, tenant_id: str, contact_id: str | None) -> bool:
    """Has this service erased the contact? (An event about them is then ignored.)"""
    if contact_id is None:
        return False
    return uow.execute(sql.SQL("SELECT 1 FROM {}.erased_contacts WHERE tenant_id = %s AND contact_id = %s")
                       .format(sql.Identifier(schema)), (tenant_id, contact_id)).fetchone() is not None


def erased_contact_ids(data: dict[str, Any]) -> list[str]:
    """The ids an erasure request covers: the contact's and its merged duplicates', in order."""
    return list(dict.fromkeys([data["contact_id"], *data.get("contact_ids", [])]))


def erasure_answer(service: str, source: str, tenant_id: str, data: dict[str, Any],
                   counts: dict[str, int]) -> list[CloudEvent]:
    """The two events a service publishes once it has erased a contact: its completion, and the
    audit entry saying what went (`counts`: rows per kind, never the data itself)."""
    contact_id = data["contact_id"]
    return [
        CloudEvent(f"liaison.{service}.erasure.completed", source, tenant_id,
                   {"erasure_id": data["erasure_id"], "service": service}, subject=contact_id),
        CloudEvent(f"liaison.{service}.audit.recorded", source, tenant_id, {
            "actor": f"service:{service}",
            "action": "contact.erased",
            "resource": f"contact/{contact_id}",
            "contact_id": contact_id,
            "details": {"erasure_id": data["erasure_id"], "counts": counts},
            "at": rfc3339(utcnow()),
        }, subject=contact_id),
    ]


def exported(row: dict[str, Any]) -> dict[str, Any]:
    """A database row as the access export shows it: times in RFC 3339, ids and numbers as JSON."""
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, Decimal):
            value = float(value)
        out[key] = value
    return out
