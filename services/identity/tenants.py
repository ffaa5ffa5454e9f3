"""Use cases of tenants and API keys (the admin key's business)."""

from __future__ import annotations

import os
from typing import Any

from services.identity.repository import tenants as repo
from shared import errors
from shared.auth import Principal, generate_key, hash_key
from shared.db import Database, UnitOfWork
from shared.ids import new_id


def create_tenant(uow: UnitOfWork, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    return repo.insert_tenant(uow, str(new_id()), name, settings, os.urandom(32))


def get_tenant(uow: UnitOfWork, tenant_id: str) -> dict[str, Any]:
    tenant = repo.get_tenant(uow, tenant_id)
    if tenant is None:
        raise errors.NotFound.of("tenant", tenant_id)
    return tenant


def update_tenant(uow: UnitOfWork, tenant_id: str, name: str | None,
                  settings: dict[str, Any] | None) -> dict[str, Any]:
    tenant = repo.update_tenant(uow, tenant_id, name, settings)
    if tenant is None:
        raise errors.NotFound.of("tenant", tenant_id)
    return tenant


def create_key(uow: UnitOfWork, tenant_id: str, name: str, scopes: list[str]) -> dict[str, Any]:
    """Returns the key in clear: the only time it is shown. Only its hash is stored."""
    get_tenant(uow, tenant_id)
    key = generate_key()
    row = repo.insert_key(uow, tenant_id, str(new_id()), name, hash_key(key), sorted(set(scopes)))
    return {**row, "key": key}


def revoke_key(uow: UnitOfWork, key_id: str) -> None:
    if not repo.revoke_key(uow, key_id):
        raise errors.NotFound.of("API key", key_id)


class DatabaseKeyVerifier:
    """identity's own key store: one indexed lookup by hash."""

    def __init__(self, db: Database):
        self.db = db

    def verify(self, key: str) -> Principal | None:
        with self.db.read() as uow:
            row = repo.key_by_hash(uow, hash_key(key))
        if row is None:
            return None
        return Principal(str(row["id"]), str(row["tenant_id"]), frozenset(row["scopes"]))
