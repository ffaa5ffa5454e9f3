"""SQL of inbound offers: a contact's open offers (see services.campaigns.offers)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.db import UnitOfWork


def open_offers(uow: UnitOfWork, tenant_id: str, contact_id: str, now: datetime,
                default_length: timedelta) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT c.id AS campaign_id, c.content,"
        " coalesce(c.offer_ends_at, c.launched_at + %(length)s) AS ends_at, d.id AS delivery_id"
        " FROM campaigns.campaigns c"
        " JOIN LATERAL (SELECT id FROM campaigns.deliveries WHERE tenant_id = c.tenant_id AND campaign_id = c.id"
        "  AND contact_id = %(contact)s AND reason IS DISTINCT FROM 'suppression_list' ORDER BY id LIMIT 1) d ON true"
        " WHERE c.tenant_id = %(tenant)s AND c.status IN ('running', 'completed') AND c.content ? 'web'"
        " AND coalesce(c.offer_ends_at, c.launched_at + %(length)s) > %(now)s"
        " ORDER BY c.launched_at DESC",
        {"tenant": tenant_id, "contact": contact_id, "now": now, "length": default_length},
    ).fetchall()
