"""The right to erasure, orchestrated by identity.

`request_erasure` does identity's whole part in one transaction: the contact's email, phone and
handles go on the suppression list as salted hashes, the evidence behind its consent records is
deleted (the ledger keeps the records, whose identifiers are already pseudonymous, as proof of
past consent), the contact and its identities are deleted, so are the stored Idempotency-Key
replies that show it, and two events go out:
`liaison.identity.contact.erasure_requested`, for the other services to delete what they hold,
and `liaison.identity.erasure.completed` for identity's own part. Each taking-part service answers
with `liaison.<service>.erasure.completed` {"erasure_id", "service"}; once all have, the erasure is
`completed` and the audit trail says `contact.erased`.

The audit trail itself is kept: its entries name what changed, never the personal data.
The merge records (`contact_merges`: pairs of ids) are kept too, so that the erased contact's
audit trail can still be read as one with its merged duplicates'.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from services.identity import SCHEMA, SOURCE, consents
from services.identity.audit import AuditEntry, record
from services.identity.contacts import get_contact
from services.identity.repository import contacts as contact_repo
from services.identity.repository import erasures as repo
from services.identity.repository import identities as identity_repo
from services.identity.repository import tenants as tenant_repo
from services.identity.suppression import contact_pairs, handle_pair
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339
from shared.ids import new_id

log = logging.getLogger(__name__)

# The services that hold personal data and must each confirm their part of an erasure. A constant
# rather than a setting: shared.settings belongs to the platform, and a deployment without one of
# these services would still need it to confirm (it holds nothing, so it can answer at once).
PARTICIPANTS = ("identity", "enrichment", "campaigns", "webhooks")

ERASURE_REQUESTED = "liaison.identity.contact.erasure_requested"
IDENTITY_ERASURE_COMPLETED = "liaison.identity.erasure.completed"
ERASURE_COMPLETED = "liaison.*.erasure.completed"  # what identity's consumer listens to

PENDING, COMPLETED = "pending", "completed"
SYSTEM_ACTOR = "service:identity"


def view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "contact_id": str(row["contact_id"]),
        "status": row["status"],
        "services": {name: row["services"].get(name, PENDING) for name in PARTICIPANTS},
        "requested_at": rfc3339(row["requested_at"]),
        "completed_at": rfc3339(row["completed_at"]) if row["completed_at"] else None,
    }


def request_erasure(uow: UnitOfWork, tenant_id: str, actor: str, contact_id: str) -> dict[str, Any]:
    """Erases what identity holds about the contact and asks the other services to do the same.
    An unknown contact, or one already erased (it no longer exists), is a 404."""
    contact = get_contact(uow, tenant_id, contact_id, lock=True)
    contact_ids = contact_repo.merged_ids(uow, tenant_id, contact_id)
    handles = identity_repo.of_contact(uow, tenant_id, contact_id)

    salt = tenant_repo.erasure_salt(uow, tenant_id)
    pairs = contact_pairs(salt, contact["email"], contact["phone"])
    pairs += [handle_pair(salt, h["network"], h["handle"]) for h in handles]
    # The addresses of duplicates merged into this contact, kept as hashes since their merge.
    pairs += contact_repo.take_merged_identifiers(uow, tenant_id, contact_id)
    contact_repo.add_suppressions(uow, tenant_id, pairs)

    consents.erase_evidence(uow, tenant_id, contact_ids)
    for erased_id in contact_ids:  # the duplicates' rows are gone since their merge; be sure
        contact_repo.delete(uow, tenant_id, erased_id)  # identities go with it (ON DELETE CASCADE)
    repo.forget_stored_responses(uow, tenant_id, contact_ids)

    erasure_id = str(new_id())
    services = {name: COMPLETED if name == "identity" else PENDING for name in PARTICIPANTS}
    row = repo.insert(uow, tenant_id, erasure_id, contact_id, actor, services)

    uow.publish_many(SCHEMA, [
        CloudEvent(ERASURE_REQUESTED, SOURCE, tenant_id, {
            "erasure_id": erasure_id,
            "contact_id": contact_id,
            # Every id the person's data may be filed under elsewhere: merged duplicates' too.
            "contact_ids": contact_ids,
            # Enrichment files what it saw of handles not yet linked (prospects) by handle.
            "handles": [{"network": h["network"], "handle": h["handle"]} for h in handles],
        }, subject=contact_id),
        CloudEvent(IDENTITY_ERASURE_COMPLETED, SOURCE, tenant_id,
                   {"erasure_id": erasure_id, "service": "identity"}, subject=contact_id),
    ])
    record(uow, tenant_id, actor, AuditEntry(
        "contact.erasure_requested", f"contact/{contact_id}", contact_id,
        {"erasure_id": erasure_id, "merged_ids": contact_ids[1:], "identities": len(handles),
         "suppressed": sorted({kind for kind, _ in pairs})},
    ))
    return view(row)


def get_erasure(uow: UnitOfWork, tenant_id: str, erasure_id: str) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, erasure_id)
    if row is None:
        raise errors.NotFound.of("erasure", erasure_id)
    return view(row)


def find_erasures(uow: UnitOfWork, tenant_id: str, *, contact_id: str | None, status: str | None,
                  after: str | None, limit: int) -> list[dict[str, Any]]:
    rows = repo.find(uow, tenant_id, contact_id=contact_id, status=status, after=after, limit=limit)
    return [view(r) for r in rows]


def complete_part(uow: UnitOfWork, tenant_id: str, erasure_id: str, service: str) -> dict[str, Any] | None:
    """Marks one service's part done; the erasure completes when every part is. A repeat, an
    unknown erasure (or another tenant's) or a service that takes no part changes nothing."""
    if service not in PARTICIPANTS:
        log.warning("erasure completion from a service that takes no part",
                    extra={"service": service, "erasure_id": erasure_id})
        return None
    row = repo.get(uow, tenant_id, erasure_id, lock=True)
    if row is None:
        log.warning("completion of an unknown erasure", extra={"erasure_id": erasure_id,
                                                               "tenant_id": tenant_id})
        return None
    if row["services"].get(service) == COMPLETED:
        return view(row)
    services = {**row["services"], service: COMPLETED}
    done = all(services.get(name) == COMPLETED for name in PARTICIPANTS)
    row = repo.set_progress(uow, tenant_id, erasure_id, services, done)
    if done:
        contact_id = str(row["contact_id"])
        record(uow, tenant_id, SYSTEM_ACTOR, AuditEntry(
            "contact.erased", f"contact/{contact_id}", contact_id,
            {"erasure_id": erasure_id, "services": list(PARTICIPANTS)},
        ))
    return view(row)


def on_erasure_completed(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Consumer of `liaison.<service>.erasure.completed` {"erasure_id", "service"}. A malformed
    one raises, so that it ends among the dead letters where an operator sees it."""
    data = envelope.get("data")
    if not isinstance(data, dict) or not data.get("erasure_id"):
        raise ValueError("erasure.completed: data.erasure_id is missing")
    erasure_id = str(uuid.UUID(str(data["erasure_id"])))  # ValueError when it is not a UUID
    service = data.get("service") or envelope["type"].split(".")[1]
    complete_part(uow, envelope["tenantid"], erasure_id, str(service))
