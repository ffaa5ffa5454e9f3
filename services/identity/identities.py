"""Use cases of social identities: link a handle to a contact, unlink it, resolve handles."""

from __future__ import annotations

from typing import Any

from psycopg.errors import UniqueViolation

from services.identity import SCHEMA, SOURCE
from services.identity.audit import AuditEntry, record
from services.identity.contacts import get_contact
from services.identity.handles import InvalidHandle, normalize
from services.identity.repository import contacts as contact_repo
from services.identity.repository import identities as repo
from services.identity.repository import tenants as tenant_repo
from services.identity.suppression import handle_pair
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339
from shared.ids import new_id

HANDLE_LINKED = "liaison.identity.handle.linked"
HANDLE_UNLINKED = "liaison.identity.handle.unlinked"


def view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "contact_id": str(row["contact_id"]),
        "network": row["network"],
        "handle": row["handle"],
        "network_user_id": row["network_user_id"],
        "verified": row["verified"],
        "source": row["source"],
        "created_at": rfc3339(row["created_at"]),
    }


def link_handle(uow: UnitOfWork, tenant_id: str, actor: str, contact_id: str,
                link: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Links a handle; returns (identity, created). Linking the same handle to the same contact
    again answers the existing link; to another contact, a conflict naming that contact."""
    # Locked, so that an erasure of this contact running at the same moment either comes first
    # (then this is a 404) or waits for the link and erases it too.
    get_contact(uow, tenant_id, contact_id, lock=True)
    try:
        handle = normalize(link["network"], link["handle"])
    except InvalidHandle as exc:
        raise errors.ValidationFailed({"handle": [str(exc)]}) from None
    existing = repo.by_handle(uow, tenant_id, link["network"], handle)
    if existing is None:
        try:
            with uow.conn.transaction():  # a savepoint: a racing link must not abort the request
                existing = repo.insert(uow, tenant_id, {
                    "id": str(new_id()), "contact_id": contact_id, "network": link["network"],
                    "handle": handle, "network_user_id": link.get("network_user_id"),
                    "verified": bool(link.get("verified", False)), "source": link.get("source"),
                })
        except UniqueViolation:
            existing = None
        if existing is not None:
            identity = view(existing)
            _on_linked(uow, tenant_id, actor, identity)
            return identity, True
        existing = repo.by_handle(uow, tenant_id, link["network"], handle)
    if str(existing["contact_id"]) != contact_id:
        raise errors.Conflict(
            f"This {link['network']} handle is already linked to contact {existing['contact_id']}.",
            contact_id=str(existing["contact_id"]),
        )
    return view(existing), False


def _on_linked(uow: UnitOfWork, tenant_id: str, actor: str, identity: dict[str, Any]) -> None:
    salt = tenant_repo.erasure_salt(uow, tenant_id)
    pair = handle_pair(salt, identity["network"], identity["handle"])
    if contact_repo.suppressed_hashes(uow, tenant_id, [pair]):
        contact_repo.update(uow, tenant_id, identity["contact_id"], {"suppressed": True})
    uow.publish(SCHEMA, CloudEvent(HANDLE_LINKED, SOURCE, tenant_id, {"identity": identity},
                                   subject=identity["contact_id"]))
    record(uow, tenant_id, actor, AuditEntry(
        "handle.linked", f"identity/{identity['id']}", identity["contact_id"],
        {"network": identity["network"]},
    ))


def list_handles(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    get_contact(uow, tenant_id, contact_id)
    return [view(r) for r in repo.of_contact(uow, tenant_id, contact_id)]


def unlink_handle(uow: UnitOfWork, tenant_id: str, actor: str, contact_id: str, identity_id: str) -> None:
    get_contact(uow, tenant_id, contact_id)
    row = repo.delete(uow, tenant_id, contact_id, identity_id)
    if row is None:
        raise errors.NotFound.of("identity", identity_id)
    uow.publish(SCHEMA, CloudEvent(
        HANDLE_UNLINKED, SOURCE, tenant_id,
        {"identity_id": identity_id, "contact_id": contact_id, "network": row["network"],
         "handle": row["handle"]},
        subject=contact_id,
    ))
    record(uow, tenant_id, actor, AuditEntry(
        "handle.unlinked", f"identity/{identity_id}", contact_id, {"network": row["network"]},
    ))


def resolve(uow: UnitOfWork, tenant_id: str, network: str, handle: str) -> dict[str, Any]:
    try:
        normalized = normalize(network, handle)
    except InvalidHandle as exc:
        raise errors.ValidationFailed({"handle": [str(exc)]}) from None
    row = repo.contact_of_handle(uow, tenant_id, network, normalized)
    if row is None:
        raise errors.NotFound(f"No contact has the {network} handle {normalized!r}.")
    return {"contact_id": str(row["contact_id"]), "identity_id": str(row["id"])}


def resolve_many(uow: UnitOfWork, tenant_id: str, items: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Answers in the order asked; an unparseable handle resolves to null with its reason."""
    normalized: list[str | None] = []
    for item in items:
        try:
            normalized.append(normalize(item["network"], item["handle"]))
        except InvalidHandle:
            normalized.append(None)
    rows = repo.resolve_many(uow, tenant_id, [
        (item["network"], handle or "") for item, handle in zip(items, normalized, strict=True)
    ])
    answers = []
    for item, handle, row in zip(items, normalized, rows, strict=True):
        answer: dict[str, Any] = {
            "network": item["network"],
            "handle": handle if handle is not None else item["handle"],
            "contact_id": str(row["contact_id"]) if row["contact_id"] else None,
        }
        if handle is None:
            answer["error"] = "not a valid handle on this network"
        answers.append(answer)
    return answers
