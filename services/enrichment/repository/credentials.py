"""SQL of tenants' own provider credentials (sealed: services.enrichment.credentials)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db import UnitOfWork


def upsert(uow: UnitOfWork, tenant_id: str, network: str, secret: bytes, key_hint: str,
           now: datetime) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO enrichment.provider_credentials (tenant_id, network, secret, key_hint, updated_at)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant_id, network) DO UPDATE"
        " SET secret = EXCLUDED.secret, key_hint = EXCLUDED.key_hint, updated_at = EXCLUDED.updated_at"
        " RETURNING network, key_hint, updated_at",
        (tenant_id, network, secret, key_hint, now),
    ).fetchone()


def delete(uow: UnitOfWork, tenant_id: str, network: str) -> bool:
    return uow.execute(
        "DELETE FROM enrichment.provider_credentials WHERE tenant_id = %s AND network = %s",
        (tenant_id, network),
    ).rowcount > 0


def summaries(uow: UnitOfWork, tenant_id: str) -> list[dict[str, Any]]:
    """What may be shown of the tenant's credentials: never the secret."""
    return uow.execute(
        "SELECT network, key_hint, updated_at FROM enrichment.provider_credentials WHERE tenant_id = %s",
        (tenant_id,),
    ).fetchall()


def sealed(uow: UnitOfWork, tenant_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT network, secret FROM enrichment.provider_credentials WHERE tenant_id = %s",
        (tenant_id,),
    ).fetchall()
