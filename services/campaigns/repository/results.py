"""SQL of what campaigns achieved: the report per channel, conversions and their attribution."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.db import UnitOfWork


def by_channel(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> list[dict[str, Any]]:
    """Per channel: deliveries by outcome, opens, clicks, the deliveries that converted, their
    revenue, and the cost of what was sent. One pass over the campaign's deliveries."""
    return uow.execute(
        "SELECT d.channel,"
        " count(*) FILTER (WHERE d.status IN ('queued', 'sending', 'deferred')) AS queued,"
        " count(*) FILTER (WHERE d.status IN ('sent', 'delivered')) AS sent,"
        " count(*) FILTER (WHERE d.status = 'delivered') AS delivered,"
        " count(*) FILTER (WHERE d.status = 'failed') AS failed,"
        " count(*) FILTER (WHERE d.opened_at IS NOT NULL) AS opened,"
        " count(*) FILTER (WHERE d.clicked_at IS NOT NULL) AS clicked,"
        " count(*) FILTER (WHERE c.delivery_id IS NOT NULL) AS converted,"
        " coalesce(sum(c.revenue), 0)::float8 AS revenue,"
        " coalesce(sum(d.cost) FILTER (WHERE d.status IN ('sent', 'delivered')), 0)::float8 AS cost"
        " FROM campaigns.deliveries d"
        " LEFT JOIN (SELECT delivery_id, sum(value) AS revenue FROM campaigns.conversions"
        "  WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s AND delivery_id IS NOT NULL"
        "  GROUP BY delivery_id) c ON c.delivery_id = d.id"
        " WHERE d.tenant_id = %(tenant)s AND d.campaign_id = %(campaign)s AND d.status <> 'suppressed'"
        " GROUP BY d.channel ORDER BY d.channel",
        {"tenant": tenant_id, "campaign": campaign_id},
    ).fetchall()


def suppressed(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> dict[str, int]:
    rows = uow.execute(
        "SELECT reason, count(*) AS n FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
        " AND status = 'suppressed' GROUP BY reason",
        (tenant_id, campaign_id),
    ).fetchall()
    return {r["reason"]: r["n"] for r in rows}


def reach_and_conversions(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> dict[str, Any]:
    """Contacts reached (anything sent), contacts who converted, and the campaign's revenue
    (conversions attributed to the campaign, with or without a delivery)."""
    return uow.execute(
        "SELECT (SELECT count(DISTINCT contact_id) FROM campaigns.deliveries WHERE tenant_id = %(tenant)s"
        "  AND campaign_id = %(campaign)s AND status IN ('sent', 'delivered')) AS reach,"
        " (SELECT count(DISTINCT contact_id) FROM campaigns.conversions WHERE tenant_id = %(tenant)s"
        "  AND campaign_id = %(campaign)s) AS converted,"
        " (SELECT coalesce(sum(value), 0)::float8 FROM campaigns.conversions WHERE tenant_id = %(tenant)s"
        "  AND campaign_id = %(campaign)s) AS revenue",
        {"tenant": tenant_id, "campaign": campaign_id},
    ).fetchone()


def last_touch(uow: UnitOfWork, tenant_id: str, contact_id: str, occurred_at: datetime, window: timedelta,
               campaign_id: str | None) -> dict[str, Any] | None:
    """The contact's last delivery sent within `window` before the conversion (of the campaign,
    when one is given)."""
    return uow.execute(
        "SELECT id, campaign_id, channel FROM campaigns.deliveries WHERE tenant_id = %(tenant)s"
        " AND contact_id = %(contact)s AND status IN ('sent', 'delivered') AND campaign_id IS NOT NULL"
        " AND sent_at <= %(at)s AND sent_at > %(since)s"
        " AND (%(campaign)s::uuid IS NULL OR campaign_id = %(campaign)s::uuid)"
        " ORDER BY sent_at DESC LIMIT 1",
        {"tenant": tenant_id, "contact": contact_id, "at": occurred_at, "since": occurred_at - window,
         "campaign": campaign_id},
    ).fetchone()


def insert_conversion(uow: UnitOfWork, tenant_id: str, conversion: dict[str, Any]) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO campaigns.conversions (tenant_id, id, contact_id, campaign_id, delivery_id, channel, value,"
        " currency, occurred_at) VALUES (%(tenant)s, %(id)s, %(contact_id)s, %(campaign_id)s, %(delivery_id)s,"
        " %(channel)s, %(value)s, %(currency)s, %(occurred_at)s)"
        " RETURNING id, contact_id, campaign_id, delivery_id, channel, value, currency, occurred_at, created_at",
        {"tenant": tenant_id, **conversion},
    ).fetchone()


def campaign_exists(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> bool:
    return uow.execute("SELECT 1 FROM campaigns.campaigns WHERE tenant_id = %s AND id = %s",
                       (tenant_id, campaign_id)).fetchone() is not None


def timeline(uow: UnitOfWork, tenant_id: str, campaign_id: str, bucket: str) -> list[dict[str, Any]]:
    """Per hour (or day) that saw anything: messages sent, opened, clicked, and conversions
    attributed to the campaign. `bucket` is a date_trunc unit the caller chose from a fixed list."""
    return uow.execute(
        "SELECT date_trunc(%(bucket)s, e.at, 'UTC') AS at,"
        " count(*) FILTER (WHERE e.kind = 'sent') AS sent,"
        " count(*) FILTER (WHERE e.kind = 'opened') AS opened,"
        " count(*) FILTER (WHERE e.kind = 'clicked') AS clicked,"
        " count(*) FILTER (WHERE e.kind = 'converted') AS converted"
        " FROM ("
        "  SELECT sent_at AS at, 'sent' AS kind FROM campaigns.deliveries"
        "   WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s AND sent_at IS NOT NULL"
        "  UNION ALL SELECT opened_at, 'opened' FROM campaigns.deliveries"
        "   WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s AND opened_at IS NOT NULL"
        "  UNION ALL SELECT clicked_at, 'clicked' FROM campaigns.deliveries"
        "   WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s AND clicked_at IS NOT NULL"
        "  UNION ALL SELECT occurred_at, 'converted' FROM campaigns.conversions"
        "   WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s"
        " ) e GROUP BY 1 ORDER BY 1",
        {"tenant": tenant_id, "campaign": campaign_id, "bucket": bucket},
    ).fetchall()
