"""The rights of access and erasure, as every service takes part in them the same way.

Erasure: identity publishes `liaison.identity.contact.erasure_requested` with the contact's ids
(merged duplicates' included) and handles; each service deletes what it holds under them, then
answers with `liaison.<service>.erasure.completed` (identity marks its part done) and
`liaison.<service>.audit.recorded` (identity chains it into the tenant's audit trail), in the
transaction of the deletion. Access: each service answers its part of the export as JSON.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from shared.events import CloudEvent, rfc3339, utcnow


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
