"""SQL of the profiles enrichment gathers (the part the enrichment jobs write) and of what the
profile view reads next to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork


def for_update(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT contact_id, demographics, influence, engagement, last_checkin, sources, enriched_at,"
        " updated_at FROM enrichment.profiles WHERE tenant_id = %s AND contact_id = %s FOR UPDATE",
        (tenant_id, contact_id),
    ).fetchone()


def save_enrichment(uow: UnitOfWork, tenant_id: str, contact_id: str, demographics: dict[str, Any],
                    influence: dict[str, Any], sources: list[dict[str, Any]], now: datetime) -> None:
    """Writes what a job gathered; leaves engagement and the last check-in (the feed's) alone."""
    uow.execute(
        "INSERT INTO enrichment.profiles (tenant_id, contact_id, demographics, influence, sources,"
        " enriched_at, updated_at) VALUES (%(tenant)s, %(contact)s, %(demographics)s, %(influence)s,"
        " %(sources)s, %(now)s, %(now)s) ON CONFLICT (tenant_id, contact_id) DO UPDATE SET"
        " demographics = EXCLUDED.demographics, influence = EXCLUDED.influence,"
        " sources = EXCLUDED.sources, enriched_at = EXCLUDED.enriched_at, updated_at = EXCLUDED.updated_at",
        {"tenant": tenant_id, "contact": contact_id, "demographics": Jsonb(demographics),
         "influence": Jsonb(influence), "sources": Jsonb(sources), "now": now},
    )


def mention_scores(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    """The contact's mentions in the feed: their sentiment, network and time."""
    return uow.execute(
        "SELECT network, sentiment, occurred_at FROM enrichment.social_events"
        " WHERE tenant_id = %s AND contact_id = %s AND type = 'mention' ORDER BY occurred_at",
        (tenant_id, contact_id),
    ).fetchall()


def known(uow: UnitOfWork, tenant_id: str, contact_id: str) -> bool:
    """Has enrichment heard of the contact at all (a consent, a handle, a feed event, a profile)?"""
    return uow.execute(
        "SELECT EXISTS (SELECT 1 FROM enrichment.contact_consents WHERE tenant_id = %(t)s AND contact_id = %(c)s)"
        " OR EXISTS (SELECT 1 FROM enrichment.contact_handles WHERE tenant_id = %(t)s AND contact_id = %(c)s)"
        " OR EXISTS (SELECT 1 FROM enrichment.social_events WHERE tenant_id = %(t)s AND contact_id = %(c)s)"
        " OR EXISTS (SELECT 1 FROM enrichment.profiles WHERE tenant_id = %(t)s AND contact_id = %(c)s)"
        " AS known",
        {"t": tenant_id, "c": contact_id},
    ).fetchone()["known"]
