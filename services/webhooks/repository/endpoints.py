"""SQL of the endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from shared.db import UnitOfWork

COLUMNS = sql.SQL("id, url, description, event_types, enabled, disabled_reason, secret, previous_secret,"
                  " previous_secret_until, created_at, updated_at")


def insert(uow: UnitOfWork, tenant_id: str, endpoint: dict[str, Any]) -> dict[str, Any]:
    return uow.execute(sql.SQL(
        "INSERT INTO webhooks.endpoints (tenant_id, id, url, description, event_types, enabled, secret)"
        " VALUES (%(tenant)s, %(id)s, %(url)s, %(description)s, %(event_types)s, %(enabled)s, %(secret)s)"
        " RETURNING {}").format(COLUMNS),
        {"tenant": tenant_id, **endpoint},
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, endpoint_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    return uow.execute(
        sql.SQL("SELECT {} FROM webhooks.endpoints WHERE tenant_id = %s AND id = %s{}").format(
            COLUMNS, sql.SQL(" FOR UPDATE" if lock else "")),
        (tenant_id, endpoint_id),
    ).fetchone()


def page(uow: UnitOfWork, tenant_id: str, limit: int, after: str | None) -> list[dict[str, Any]]:
    return uow.execute(sql.SQL(
        "SELECT {} FROM webhooks.endpoints WHERE tenant_id = %(tenant)s"
        " AND (%(after)s::uuid IS NULL OR id < %(after)s::uuid) ORDER BY id DESC LIMIT %(limit)s").format(COLUMNS),
        {"tenant": tenant_id, "after": after, "limit": limit},
    ).fetchall()


def update(uow: UnitOfWork, tenant_id: str, endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """`changes`: any of url, description, event_types, enabled, disabled_reason (names are
    this module's own, never the client's)."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in changes)
    return uow.execute(
        sql.SQL("UPDATE webhooks.endpoints SET {}, updated_at = now()"
                " WHERE tenant_id = %(tenant)s AND id = %(id)s RETURNING {}").format(assignments, COLUMNS),
        {**changes, "tenant": tenant_id, "id": endpoint_id},
    ).fetchone()


def rotate(uow: UnitOfWork, tenant_id: str, endpoint_id: str, secret: bytes, previous: bytes | None,
           previous_until: datetime | None) -> dict[str, Any]:
    return uow.execute(sql.SQL(
        "UPDATE webhooks.endpoints SET secret = %s, previous_secret = %s, previous_secret_until = %s,"
        " updated_at = now() WHERE tenant_id = %s AND id = %s RETURNING {}").format(COLUMNS),
        (secret, previous, previous_until, tenant_id, endpoint_id),
    ).fetchone()


def delete(uow: UnitOfWork, tenant_id: str, endpoint_id: str) -> bool:
    return uow.execute("DELETE FROM webhooks.endpoints WHERE tenant_id = %s AND id = %s",
                       (tenant_id, endpoint_id)).rowcount == 1
