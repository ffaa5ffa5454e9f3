"""Use cases of contacts: upsert by CRM reference (one or ten thousand at once), read, change,
find and merge. Each change raises its event and its audit entry in the same transaction."""

from __future__ import annotations

import re
from typing import Any

from services.identity import SCHEMA, SOURCE
from services.identity.audit import AuditEntry, record
from services.identity.repository import contacts as repo
from services.identity.repository import identities as identity_repo
from services.identity.repository import tenants as tenant_repo
from services.identity.suppression import contact_pairs
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339
from shared.ids import new_id

CONTACT_UPSERTED = "liaison.identity.contact.upserted"
CONTACT_MERGED = "liaison.identity.contact.merged"

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_phone(raw: str) -> str:
    """E.164: `+33 6 12-34-56.78` becomes `+33612345678`; `00` counts as the `+` prefix."""
    phone = _PHONE_SEPARATORS.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _E164.match(phone):
        raise ValueError("Not an E.164 phone number (+ country code and number, e.g. +33612345678).")
    return phone


def normalize_email(raw: str) -> str:
    """Trimmed and lower-cased: mailboxes are case-insensitive in practice, and the suppression
    list and lookups must match however the CRM spelled it."""
    email = raw.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValueError("Not a valid email address.")
    return email


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A contact as the API and the events show it."""
    return {
        "id": str(row["id"]),
        "crm_ref": {"system": row["crm_system"], "id": row["crm_id"]},
        "email": row["email"],
        "phone": row["phone"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "locale": row["locale"],
        "timezone": row["timezone"],
        "attributes": row["attributes"],
        "suppressed": row["suppressed"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def _upserted_event(tenant_id: str, contact: dict[str, Any], created: bool) -> CloudEvent:
    return CloudEvent(CONTACT_UPSERTED, SOURCE, tenant_id, {"created": created, "contact": contact},
                      subject=contact["id"])


def upsert_contacts(uow: UnitOfWork, tenant_id: str, actor: str, contacts: list[dict[str, Any]], *,
                    with_contacts: bool = True) -> list[tuple[dict[str, Any] | None, bool]]:
    """Upserts validated contacts by CRM reference; returns (contact, created) in input order
    (contact None unless `with_contacts`). Each change's event and audit entry are written by the
    same statement.

    A field a contact does not carry keeps its stored value. Contacts whose email or phone is on
    the suppression list are flagged `suppressed`. Rows must have distinct CRM references."""
    if not contacts:
        return []
    # Two HMACs a row are a tenth of a bulk import's time: skip them while nobody was erased.
    if repo.has_suppressions(uow, tenant_id):
        salt = tenant_repo.erasure_salt(uow, tenant_id)
        pairs_by_row = [contact_pairs(salt, c.get("email"), c.get("phone")) for c in contacts]
        suppressed = repo.suppressed_hashes(uow, tenant_id, sorted({p for pairs in pairs_by_row for p in pairs}))
    else:
        pairs_by_row, suppressed = [[] for _ in contacts], set()
    rows = []
    for ord_, (contact, pairs) in enumerate(zip(contacts, pairs_by_row, strict=True)):
        crm_ref = contact["crm_ref"]
        rows.append({
            "ord": ord_,
            "id": str(new_id()),
            "crm_system": crm_ref["system"],
            "crm_id": crm_ref["id"],
            **{name: contact.get(name) for name in repo.WRITABLE if name not in ("crm_system", "crm_id")},
            "present": [name for name in repo.WRITABLE if name in contact],
            "suppressed": any(p in suppressed for p in pairs),
        })
    results: dict[int, dict[str, Any]] = {}
    pending = rows
    for _ in range(3):  # a row that raced another writer's insert is retried, then as an update
        for row in repo.upsert_batch(uow, tenant_id, actor, pending, event_type=CONTACT_UPSERTED,
                                     source=SOURCE, with_contacts=with_contacts):
            results[row["ord"]] = row
        pending = [r for r in rows if r["ord"] not in results]
        if not pending:
            break
    if pending:
        raise errors.Conflict("Some contacts were being written by another request at the same time; retry.")
    return [(results[i]["contact"], results[i]["inserted"]) for i in range(len(rows))]


def get_contact(uow: UnitOfWork, tenant_id: str, contact_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, contact_id, lock=lock)
    if row is None:
        raise errors.NotFound.of("contact", contact_id)
    return row


def update_contact(uow: UnitOfWork, tenant_id: str, actor: str, contact_id: str,
                   changes: dict[str, Any]) -> dict[str, Any]:
    get_contact(uow, tenant_id, contact_id, lock=True)
    flat = {k: v for k, v in changes.items() if k != "crm_ref"}
    if "crm_ref" in changes:
        flat["crm_system"] = changes["crm_ref"]["system"]
        flat["crm_id"] = changes["crm_ref"]["id"]
        clash = repo.find(uow, tenant_id, email=None, crm_system=flat["crm_system"],
                          crm_id=flat["crm_id"], after=None, limit=1)
        if clash and str(clash[0]["id"]) != contact_id:
            raise errors.Conflict("Another contact has this CRM reference.",
                                  contact_id=str(clash[0]["id"]))
    if flat.get("email") or flat.get("phone"):
        salt = tenant_repo.erasure_salt(uow, tenant_id)
        pairs = contact_pairs(salt, flat.get("email"), flat.get("phone"))
        flat["suppressed"] = bool(repo.suppressed_hashes(uow, tenant_id, pairs))
    row = repo.update(uow, tenant_id, contact_id, flat)
    contact = view(row)
    uow.publish(SCHEMA, _upserted_event(tenant_id, contact, False))
    record(uow, tenant_id, actor, AuditEntry("contact.updated", f"contact/{contact_id}", contact_id,
                                             {"fields": sorted(flat)}))
    return contact


def find_contacts(uow: UnitOfWork, tenant_id: str, *, email: str | None, crm_system: str | None,
                  crm_id: str | None, after: str | None, limit: int) -> list[dict[str, Any]]:
    rows = repo.find(uow, tenant_id, email=email, crm_system=crm_system, crm_id=crm_id,
                     after=after, limit=limit)
    return [view(r) for r in rows]


def merge_contacts(uow: UnitOfWork, tenant_id: str, actor: str, survivor_id: str,
                   duplicate_id: str) -> dict[str, Any]:
    """Moves the duplicate's identities and consent history to the survivor, then removes the
    duplicate. The survivor keeps its own values and takes the duplicate's where it has none."""
    if survivor_id == duplicate_id:
        raise errors.ValidationFailed({"duplicate_id": ["A contact cannot be merged into itself."]})
    # Lock both rows in a fixed order so two opposite merges cannot deadlock.
    locked = {contact_id: get_contact(uow, tenant_id, contact_id, lock=True)
              for contact_id in sorted((survivor_id, duplicate_id))}
    duplicate = locked[duplicate_id]
    salt = tenant_repo.erasure_salt(uow, tenant_id)
    repo.keep_merged_identifiers(uow, tenant_id, survivor_id, duplicate_id,
                                 contact_pairs(salt, duplicate["email"], duplicate["phone"]))
    moved = identity_repo.move(uow, tenant_id, duplicate_id, survivor_id)
    row = repo.fill_blanks_from(uow, tenant_id, survivor_id, duplicate_id)
    repo.record_merge(uow, tenant_id, survivor_id, duplicate_id)
    repo.delete(uow, tenant_id, duplicate_id)
    contact = view(row)
    uow.publish_many(SCHEMA, [
        CloudEvent(CONTACT_MERGED, SOURCE, tenant_id,
                   {"contact_id": survivor_id, "duplicate_id": duplicate_id,
                    "identities_moved": [str(m["id"]) for m in moved]},
                   subject=survivor_id),
        _upserted_event(tenant_id, contact, False),
    ])
    record(uow, tenant_id, actor, AuditEntry(
        "contact.merged", f"contact/{survivor_id}", survivor_id,
        {"duplicate_id": duplicate_id, "identities_moved": len(moved)},
    ))
    return contact
