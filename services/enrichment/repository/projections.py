"""SQL of the projections enrichment keeps from identity's events (consents, handles) and of
the deletions that erasure and consent withdrawal make in what enrichment gathered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db import UnitOfWork


# -- consents ----------------------------------------------------------------------------------
def consent(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT contact_id, purpose, status, record_id, captured_at, expires_at, updated_at"
        " FROM enrichment.contact_consents"
        " WHERE tenant_id = %s AND contact_id = %s AND purpose = %s",
        (tenant_id, contact_id, purpose),
    ).fetchone()


def consents_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT contact_id, purpose, status, record_id, captured_at, expires_at, updated_at"
        " FROM enrichment.contact_consents"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY purpose",
        (tenant_id, contact_id),
    ).fetchall()


def save_consent_if_newer(uow: UnitOfWork, tenant_id: str, contact_id: str, state: dict[str, Any]) -> bool:
    """Stores a purpose's state unless the stored one comes from a later record (captured_at,
    then record id, which is time-ordered). True when it was stored."""
    row = uow.execute(
        "INSERT INTO enrichment.contact_consents AS c (tenant_id, contact_id, purpose, status,"
        " record_id, captured_at, expires_at, updated_at)"
        " VALUES (%(tenant)s, %(contact_id)s, %(purpose)s, %(status)s, %(record_id)s,"
        " %(captured_at)s, %(expires_at)s, now())"
        " ON CONFLICT (tenant_id, contact_id, purpose) DO UPDATE SET status = EXCLUDED.status,"
        " record_id = EXCLUDED.record_id, captured_at = EXCLUDED.captured_at,"
        " expires_at = EXCLUDED.expires_at, updated_at = now()"
        " WHERE c.captured_at IS NULL OR (EXCLUDED.captured_at, EXCLUDED.record_id)"
        " > (c.captured_at, c.record_id)"
        " RETURNING 1",
        {"tenant": tenant_id, "contact_id": contact_id, **state},
    ).fetchone()
    return row is not None


def move_consents(uow: UnitOfWork, tenant_id: str, from_id: str, to_id: str) -> None:
    """A merged duplicate's consent rows become the survivor's; per purpose the row of the later
    record wins."""
    uow.execute(
        "INSERT INTO enrichment.contact_consents AS c (tenant_id, contact_id, purpose, status,"
        " record_id, captured_at, expires_at, updated_at)"
        " SELECT tenant_id, %(to)s, purpose, status, record_id, captured_at, expires_at, now()"
        " FROM enrichment.contact_consents WHERE tenant_id = %(tenant)s AND contact_id = %(from)s"
        " ON CONFLICT (tenant_id, contact_id, purpose) DO UPDATE SET status = EXCLUDED.status,"
        " record_id = EXCLUDED.record_id, captured_at = EXCLUDED.captured_at,"
        " expires_at = EXCLUDED.expires_at, updated_at = now()"
        " WHERE c.captured_at IS NULL OR (EXCLUDED.captured_at, EXCLUDED.record_id)"
        " > (c.captured_at, c.record_id)",
        {"tenant": tenant_id, "from": from_id, "to": to_id},
    )
    uow.execute(
        "DELETE FROM enrichment.contact_consents WHERE tenant_id = %s AND contact_id = %s",
        (tenant_id, from_id),
    )


def is_allowed(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str, now: datetime) -> bool:
    row = uow.execute(
        "SELECT 1 FROM enrichment.contact_consents WHERE tenant_id = %s AND contact_id = %s"
        " AND purpose = %s AND status = 'granted' AND (expires_at IS NULL OR expires_at > %s)",
        (tenant_id, contact_id, purpose, now),
    ).fetchone()
    return row is not None


def expire_lapsed_grants(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Marks up to `limit` grants whose time ran out as expired (oldest first) and returns them
    (tenant_id, contact_id, purpose). SKIP LOCKED: two workers sweeping share the work."""
    return uow.execute(
        "UPDATE enrichment.contact_consents c SET status = 'expired', updated_at = now()"
        " FROM (SELECT tenant_id, contact_id, purpose FROM enrichment.contact_consents"
        "  WHERE status = 'granted' AND expires_at <= %s ORDER BY expires_at LIMIT %s"
        "  FOR UPDATE SKIP LOCKED) lapsed"
        " WHERE c.tenant_id = lapsed.tenant_id AND c.contact_id = lapsed.contact_id AND c.purpose = lapsed.purpose"
        " RETURNING c.tenant_id, c.contact_id, c.purpose",
        (now, limit),
    ).fetchall()


def clear_gathered_profiles(uow: UnitOfWork, contacts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Clears what the providers and the feed's mentions said about these (tenant id, contact id)
    pairs (demographics, influence, engagement, sources); the last check-in, which geolocation
    consent covers, stays. Returns the pairs that had something to clear."""
    rows = uow.execute(
        "UPDATE enrichment.profiles p SET demographics = NULL, influence = NULL, engagement = NULL,"
        " sources = '[]', enriched_at = NULL, updated_at = now()"
        " FROM unnest(%s::uuid[], %s::uuid[]) AS gone(tenant_id, contact_id)"
        " WHERE p.tenant_id = gone.tenant_id AND p.contact_id = gone.contact_id"
        " AND (p.demographics IS NOT NULL OR p.influence IS NOT NULL OR p.engagement IS NOT NULL"
        "  OR p.sources <> '[]')"
        " RETURNING p.tenant_id, p.contact_id",
        ([t for t, _ in contacts], [c for _, c in contacts]),
    ).fetchall()
    _drop_empty_profiles(uow, contacts)
    return rows


def clear_checkins(uow: UnitOfWork, contacts: list[tuple[str, str]]) -> tuple[int, list[dict[str, Any]]]:
    """Deletes the check-ins of these (tenant id, contact id) pairs and clears their profiles'
    last check-in. Returns how many check-ins went, and the pairs that lost any."""
    params = ([t for t, _ in contacts], [c for _, c in contacts])
    deleted = uow.execute(
        "DELETE FROM enrichment.social_events e USING unnest(%s::uuid[], %s::uuid[]) AS gone(tenant_id, contact_id)"
        " WHERE e.tenant_id = gone.tenant_id AND e.contact_id = gone.contact_id AND e.type = 'checkin'"
        " RETURNING e.tenant_id, e.contact_id",
        params,
    ).fetchall()
    cleared = uow.execute(
        "UPDATE enrichment.profiles p SET last_checkin = NULL, updated_at = now()"
        " FROM unnest(%s::uuid[], %s::uuid[]) AS gone(tenant_id, contact_id)"
        " WHERE p.tenant_id = gone.tenant_id AND p.contact_id = gone.contact_id AND p.last_checkin IS NOT NULL"
        " RETURNING p.tenant_id, p.contact_id",
        params,
    ).fetchall()
    _drop_empty_profiles(uow, contacts)
    touched = {(str(r["tenant_id"]), str(r["contact_id"])) for r in [*deleted, *cleared]}
    return len(deleted), [{"tenant_id": t, "contact_id": c} for t, c in sorted(touched)]


def _drop_empty_profiles(uow: UnitOfWork, contacts: list[tuple[str, str]]) -> None:
    """A profile row with nothing left in it goes."""
    uow.execute(
        "DELETE FROM enrichment.profiles p USING unnest(%s::uuid[], %s::uuid[]) AS gone(tenant_id, contact_id)"
        " WHERE p.tenant_id = gone.tenant_id AND p.contact_id = gone.contact_id AND p.demographics IS NULL"
        " AND p.influence IS NULL AND p.engagement IS NULL AND p.last_checkin IS NULL AND p.sources = '[]'",
        ([t for t, _ in contacts], [c for _, c in contacts]),
    )


# -- handles -----------------------------------------------------------------------------------
def link_handle(uow: UnitOfWork, tenant_id: str, network: str, handle: str, contact_id: str,
                identity_id: str) -> None:
    uow.execute(
        "INSERT INTO enrichment.contact_handles (tenant_id, network, handle, contact_id, identity_id)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, network, handle)"
        " DO UPDATE SET contact_id = EXCLUDED.contact_id, identity_id = EXCLUDED.identity_id",
        (tenant_id, network, handle, contact_id, identity_id),
    )


def unlink_handle(uow: UnitOfWork, tenant_id: str, identity_id: str) -> int:
    """By identity id: a handle since linked again (a new identity) stays linked."""
    return uow.execute(
        "DELETE FROM enrichment.contact_handles WHERE tenant_id = %s AND identity_id = %s",
        (tenant_id, identity_id),
    ).rowcount


def handles_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT network, handle, identity_id FROM enrichment.contact_handles"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY network, handle",
        (tenant_id, contact_id),
    ).fetchall()


def contact_of_handle(uow: UnitOfWork, tenant_id: str, network: str, handle: str) -> str | None:
    row = uow.execute(
        "SELECT contact_id FROM enrichment.contact_handles"
        " WHERE tenant_id = %s AND network = %s AND handle = %s",
        (tenant_id, network, handle),
    ).fetchone()
    return str(row["contact_id"]) if row else None


def move_handles(uow: UnitOfWork, tenant_id: str, from_id: str, to_id: str) -> None:
    uow.execute(
        "UPDATE enrichment.contact_handles SET contact_id = %s WHERE tenant_id = %s AND contact_id = %s",
        (to_id, tenant_id, from_id),
    )


# -- social events and profiles ----------------------------------------------------------------
def claim_prospect_events(uow: UnitOfWork, tenant_id: str, network: str, handle: str,
                          contact_id: str) -> int:
    """A prospect's history becomes the contact's once the handle is linked; it is no longer a
    prospect."""
    uow.execute(
        "DELETE FROM enrichment.prospects WHERE tenant_id = %s AND network = %s AND handle = %s",
        (tenant_id, network, handle),
    )
    return uow.execute(
        "UPDATE enrichment.social_events SET contact_id = %s"
        " WHERE tenant_id = %s AND network = %s AND handle = %s AND contact_id IS NULL",
        (contact_id, tenant_id, network, handle),
    ).rowcount


def move_events(uow: UnitOfWork, tenant_id: str, from_id: str, to_id: str) -> None:
    uow.execute(
        "UPDATE enrichment.social_events SET contact_id = %s WHERE tenant_id = %s AND contact_id = %s",
        (to_id, tenant_id, from_id),
    )


def move_profile_unless_present(uow: UnitOfWork, tenant_id: str, from_id: str, to_id: str) -> None:
    """The duplicate's profile becomes the survivor's when it has none; otherwise it is dropped
    (the survivor's is the one kept up to date, and a new enrichment gathers afresh)."""
    uow.execute(
        "UPDATE enrichment.profiles SET contact_id = %(to)s, updated_at = now()"
        " WHERE tenant_id = %(tenant)s AND contact_id = %(from)s AND NOT EXISTS"
        " (SELECT 1 FROM enrichment.profiles WHERE tenant_id = %(tenant)s AND contact_id = %(to)s)",
        {"tenant": tenant_id, "from": from_id, "to": to_id},
    )
    uow.execute(
        "DELETE FROM enrichment.profiles WHERE tenant_id = %s AND contact_id = %s",
        (tenant_id, from_id),
    )


def profile(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT contact_id, demographics, influence, engagement, last_checkin, sources, enriched_at,"
        " updated_at FROM enrichment.profiles WHERE tenant_id = %s AND contact_id = %s",
        (tenant_id, contact_id),
    ).fetchone()


def events_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT id, type, network, handle, occurred_at, text, sentiment, label, language, place_name,"
        " lat, lon, brand_account, created_at FROM enrichment.social_events"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY occurred_at, id",
        (tenant_id, contact_id),
    ).fetchall()


# -- erasure -----------------------------------------------------------------------------------
def erase(uow: UnitOfWork, tenant_id: str, contact_ids: list[str],
          handles: list[tuple[str, str]]) -> dict[str, int]:
    """Deletes everything held under the contact ids, and the feed's events of the handles
    (prospect events recorded before a link). Returns how many rows of each kind went."""
    networks = [n for n, _ in handles]
    names = [h for _, h in handles]
    params = {"tenant": tenant_id, "ids": contact_ids, "networks": networks, "names": names}
    counts = {}
    counts["profiles"] = uow.execute(
        "DELETE FROM enrichment.profiles WHERE tenant_id = %(tenant)s AND contact_id = ANY(%(ids)s::uuid[])",
        params,
    ).rowcount
    counts["social_events"] = uow.execute(
        "DELETE FROM enrichment.social_events WHERE tenant_id = %(tenant)s"
        " AND (contact_id = ANY(%(ids)s::uuid[]) OR (network, handle) IN"
        " (SELECT * FROM unnest(%(networks)s::text[], %(names)s::text[])))",
        params,
    ).rowcount
    counts["prospects"] = uow.execute(
        "DELETE FROM enrichment.prospects WHERE tenant_id = %(tenant)s AND (network, handle) IN"
        " (SELECT * FROM unnest(%(networks)s::text[], %(names)s::text[]))",
        params,
    ).rowcount
    counts["consents"] = uow.execute(
        "DELETE FROM enrichment.contact_consents WHERE tenant_id = %(tenant)s"
        " AND contact_id = ANY(%(ids)s::uuid[])",
        params,
    ).rowcount
    counts["handles"] = uow.execute(
        "DELETE FROM enrichment.contact_handles WHERE tenant_id = %(tenant)s"
        " AND (contact_id = ANY(%(ids)s::uuid[]) OR (network, handle) IN"
        " (SELECT * FROM unnest(%(networks)s::text[], %(names)s::text[])))",
        params,
    ).rowcount
    return counts
