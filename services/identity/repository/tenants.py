from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork


def insert_tenant(uow: UnitOfWork, tenant_id: str, name: str, settings: dict[str, Any],
                  salt: bytes) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO identity.tenants (id, name, settings, erasure_salt) VALUES (%s, %s, %s, %s)"
        " RETURNING id, name, settings, created_at",
        (tenant_id, name, Jsonb(settings), salt),
    ).fetchone()


def get_tenant(uow: UnitOfWork, tenant_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT id, name, settings, created_at FROM identity.tenants WHERE id = %s", (tenant_id,)
    ).fetchone()


def update_tenant(uow: UnitOfWork, tenant_id: str, name: str | None,
                  settings: dict[str, Any] | None) -> dict[str, Any] | None:
    return uow.execute(
        "UPDATE identity.tenants SET name = COALESCE(%s, name),"
        " settings = settings || COALESCE(%s, '{}'::jsonb)"
        " WHERE id = %s RETURNING id, name, settings, created_at",
        (name, Jsonb(settings) if settings is not None else None, tenant_id),
    ).fetchone()


def erasure_salt(uow: UnitOfWork, tenant_id: str) -> bytes:
    row = uow.execute(
        "SELECT erasure_salt FROM identity.tenants WHERE id = %s", (tenant_id,)
    ).fetchone()
    return bytes(row["erasure_salt"])


def insert_key(uow: UnitOfWork, tenant_id: str, key_id: str, name: str, key_hash: str,
               scopes: list[str]) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO identity.api_keys (tenant_id, id, name, key_hash, scopes)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id, tenant_id, name, scopes, created_at",
        (tenant_id, key_id, name, key_hash, scopes),
    ).fetchone()


def revoke_key(uow: UnitOfWork, key_id: str) -> bool:
    row = uow.execute(
        "UPDATE identity.api_keys SET revoked_at = COALESCE(revoked_at, now())"
        " WHERE id = %s RETURNING 1",
        (key_id,),
    ).fetchone()
    return row is not None


def key_by_hash(uow: UnitOfWork, key_hash: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT id, tenant_id, scopes FROM identity.api_keys"
        " WHERE key_hash = %s AND revoked_at IS NULL",
        (key_hash,),
    ).fetchone()
