from __future__ import annotations

from typing import Any

from shared.db import UnitOfWork


def insert(uow: UnitOfWork, tenant_id: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    """Links a handle; None when the tenant already has that handle on that network."""
    return uow.execute(
        "INSERT INTO identity.identities (tenant_id, id, contact_id, network, handle,"
        " network_user_id, verified, source)"
        " VALUES (%(tenant)s, %(id)s, %(contact_id)s, %(network)s, %(handle)s,"
        " %(network_user_id)s, %(verified)s, %(source)s)"
        " ON CONFLICT (tenant_id, network, handle) DO NOTHING"
        " RETURNING id, contact_id, network, handle, network_user_id, verified, source, created_at",
        {"tenant": tenant_id, **identity},
    ).fetchone()


def by_handle(uow: UnitOfWork, tenant_id: str, network: str, handle: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT id, contact_id, network, handle, network_user_id, verified, source, created_at"
        " FROM identity.identities WHERE tenant_id = %s AND network = %s AND handle = %s",
        (tenant_id, network, handle),
    ).fetchone()


def contact_of_handle(uow: UnitOfWork, tenant_id: str, network: str, handle: str) -> dict[str, Any] | None:
    """resolve's one indexed lookup, reading only the two columns it answers with."""
    return uow.execute(
        "SELECT contact_id, id FROM identity.identities WHERE tenant_id = %s AND network = %s AND handle = %s",
        (tenant_id, network, handle),
    ).fetchone()


def of_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT id, contact_id, network, handle, network_user_id, verified, source, created_at"
        " FROM identity.identities WHERE tenant_id = %s AND contact_id = %s ORDER BY created_at, id",
        (tenant_id, contact_id),
    ).fetchall()


def delete(uow: UnitOfWork, tenant_id: str, contact_id: str, identity_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "DELETE FROM identity.identities WHERE tenant_id = %s AND contact_id = %s AND id = %s"
        " RETURNING id, contact_id, network, handle",
        (tenant_id, contact_id, identity_id),
    ).fetchone()


def move(uow: UnitOfWork, tenant_id: str, from_contact: str, to_contact: str) -> list[dict[str, Any]]:
    return uow.execute(
        "UPDATE identity.identities SET contact_id = %s WHERE tenant_id = %s AND contact_id = %s"
        " RETURNING id, contact_id, network, handle",
        (to_contact, tenant_id, from_contact),
    ).fetchall()


def resolve_many(uow: UnitOfWork, tenant_id: str, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One query for a whole batch, answered in the order asked."""
    return uow.execute(
        "SELECT q.ord, i.contact_id, i.id AS identity_id"
        " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS q(network, handle, ord)"
        " LEFT JOIN identity.identities i"
        "   ON i.tenant_id = %s AND i.network = q.network AND i.handle = q.handle"
        " ORDER BY q.ord",
        ([n for n, _ in pairs], [h for _, h in pairs], tenant_id),
    ).fetchall()
