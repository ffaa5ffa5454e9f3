"""SQL of triggers and of the deliveries they make."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

COLUMNS = sql.SQL("id, name, event, conditions, channel, content, cooldown_hours, active, created_at")


def insert(uow: UnitOfWork, tenant_id: str, trigger: dict[str, Any]) -> dict[str, Any]:
    return uow.execute(sql.SQL(
        "INSERT INTO campaigns.triggers (tenant_id, id, name, event, conditions, channel, content, cooldown_hours)"
        " VALUES (%(tenant)s, %(id)s, %(name)s, %(event)s, %(conditions)s, %(channel)s, %(content)s,"
        " %(cooldown_hours)s) RETURNING {}").format(COLUMNS),
        {"tenant": tenant_id, **trigger, "conditions": Jsonb(trigger["conditions"]),
         "content": Jsonb(trigger["content"])},
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, trigger_id: str) -> dict[str, Any] | None:
    return uow.execute(sql.SQL("SELECT {} FROM campaigns.triggers WHERE tenant_id = %s AND id = %s").format(COLUMNS),
                       (tenant_id, trigger_id)).fetchone()


def page(uow: UnitOfWork, tenant_id: str, limit: int, after: str | None) -> list[dict[str, Any]]:
    return uow.execute(sql.SQL(
        "SELECT {} FROM campaigns.triggers WHERE tenant_id = %(tenant)s"
        " AND (%(after)s::uuid IS NULL OR id < %(after)s::uuid) ORDER BY id DESC LIMIT %(limit)s").format(COLUMNS),
        {"tenant": tenant_id, "after": after, "limit": limit},
    ).fetchall()


def deactivate(uow: UnitOfWork, tenant_id: str, trigger_id: str) -> bool:
    return uow.execute("UPDATE campaigns.triggers SET active = false WHERE tenant_id = %s AND id = %s AND active",
                       (tenant_id, trigger_id)).rowcount == 1


def active_for(uow: UnitOfWork, tenant_id: str, event: str) -> list[dict[str, Any]]:
    return uow.execute(sql.SQL(
        "SELECT {} FROM campaigns.triggers WHERE tenant_id = %s AND event = %s AND active ORDER BY id"
    ).format(COLUMNS), (tenant_id, event)).fetchall()


def recently_sent(uow: UnitOfWork, tenant_id: str, trigger_id: str, contact_id: str, since: datetime) -> bool:
    """Has the trigger made a delivery (not a suppressed one) to the contact since `since`?"""
    return uow.execute(
        "SELECT 1 FROM campaigns.deliveries WHERE tenant_id = %s AND trigger_id = %s AND contact_id = %s"
        " AND created_at > %s AND status <> 'suppressed' LIMIT 1",
        (tenant_id, trigger_id, contact_id, since),
    ).fetchone() is not None


def insert_delivery(uow: UnitOfWork, tenant_id: str, delivery: dict[str, Any]) -> None:
    uow.execute(
        "INSERT INTO campaigns.deliveries (tenant_id, id, trigger_id, contact_id, channel, status, reason, address,"
        " send_after, created_at) VALUES (%(tenant)s, %(id)s, %(trigger_id)s, %(contact_id)s, %(channel)s,"
        " %(status)s, %(reason)s, %(address)s, %(send_after)s, %(created_at)s)",
        {"tenant": tenant_id, **delivery},
    )


def deliveries(uow: UnitOfWork, tenant_id: str, trigger_id: str, limit: int, after: str | None,
               status: str | None) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT id, campaign_id, trigger_id, contact_id, channel, status, reason, send_after, attempts,"
        " provider_message_id, cost, created_at, sent_at, delivered_at, opened_at, clicked_at"
        " FROM campaigns.deliveries WHERE tenant_id = %(tenant)s AND trigger_id = %(trigger)s"
        " AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)"
        " AND (%(status)s::text IS NULL OR status = %(status)s OR (%(status)s = 'queued' AND status = 'sending'))"
        " ORDER BY id LIMIT %(limit)s",
        {"tenant": tenant_id, "trigger": trigger_id, "after": after, "status": status, "limit": limit},
    ).fetchall()
