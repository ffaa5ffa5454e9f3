"""SQL of the audience projection (services.campaigns.audience): contacts, their consents and
handles as identity's events say, and their profile as enrichment's events say."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

CONTACT_FIELDS = ("email", "phone", "first_name", "last_name", "locale", "timezone", "attributes", "suppressed",
                  "birth_date", "last_purchase_at")


# -- contacts ----------------------------------------------------------------------------------
def save_contact_if_newer(uow: UnitOfWork, tenant_id: str, contact_id: str, version: datetime,
                          fields: dict[str, Any]) -> bool:
    """Stores identity's state of the contact unless a later one is stored. The last purchase
    keeps the later of the CRM's value and a conversion recorded here."""
    row = uow.execute(
        "INSERT INTO campaigns.audience AS a (tenant_id, contact_id, contact_version, email, phone, first_name,"
        " last_name, locale, timezone, attributes, suppressed, birth_date, last_purchase_at)"
        " VALUES (%(tenant)s, %(contact)s, %(version)s, %(email)s, %(phone)s, %(first_name)s, %(last_name)s,"
        " %(locale)s, %(timezone)s, %(attributes)s, %(suppressed)s, %(birth_date)s, %(last_purchase_at)s)"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET contact_version = EXCLUDED.contact_version,"
        " email = EXCLUDED.email, phone = EXCLUDED.phone, first_name = EXCLUDED.first_name,"
        " last_name = EXCLUDED.last_name, locale = EXCLUDED.locale, timezone = EXCLUDED.timezone,"
        " attributes = EXCLUDED.attributes, suppressed = EXCLUDED.suppressed, birth_date = EXCLUDED.birth_date,"
        " last_purchase_at = greatest(a.last_purchase_at, EXCLUDED.last_purchase_at)"
        " WHERE a.contact_version IS NULL OR a.contact_version < EXCLUDED.contact_version"
        " RETURNING 1",
        {"tenant": tenant_id, "contact": contact_id, "version": version,
         **{k: Jsonb(v) if k == "attributes" else v for k, v in fields.items()}},
    ).fetchone()
    return row is not None


def contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT * FROM campaigns.audience WHERE tenant_id = %s AND contact_id = %s", (tenant_id, contact_id),
    ).fetchone()


def contacts(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> dict[str, dict[str, Any]]:
    """These contacts' rows, by contact id (as text); the unknown ones are missing."""
    rows = uow.execute(
        "SELECT * FROM campaigns.audience WHERE tenant_id = %s AND contact_id = ANY(%s::uuid[])",
        (tenant_id, contact_ids),
    ).fetchall()
    return {str(row["contact_id"]): row for row in rows}


def drop_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> None:
    uow.execute("DELETE FROM campaigns.audience WHERE tenant_id = %s AND contact_id = %s", (tenant_id, contact_id))


# -- the profile, section by section -----------------------------------------------------------
def save_demographics(uow: UnitOfWork, tenant_id: str, contact_id: str, at: datetime, values: dict[str, Any]) -> None:
    uow.execute(
        "INSERT INTO campaigns.audience AS a (tenant_id, contact_id, age_min, age_max, city, country, profession,"
        " interests, demographics_at) VALUES (%(tenant)s, %(contact)s, %(age_min)s, %(age_max)s, %(city)s,"
        " %(country)s, %(profession)s, %(interests)s, %(at)s)"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET age_min = EXCLUDED.age_min, age_max = EXCLUDED.age_max,"
        " city = EXCLUDED.city, country = EXCLUDED.country, profession = EXCLUDED.profession,"
        " interests = EXCLUDED.interests, demographics_at = EXCLUDED.demographics_at"
        " WHERE a.demographics_at IS NULL OR a.demographics_at <= EXCLUDED.demographics_at",
        {"tenant": tenant_id, "contact": contact_id, "at": at, **values},
    )


def save_influence(uow: UnitOfWork, tenant_id: str, contact_id: str, at: datetime, values: dict[str, Any]) -> None:
    uow.execute(
        "INSERT INTO campaigns.audience AS a (tenant_id, contact_id, influence_tier, influence_score, influence_at)"
        " VALUES (%(tenant)s, %(contact)s, %(tier)s, %(score)s, %(at)s)"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET influence_tier = EXCLUDED.influence_tier,"
        " influence_score = EXCLUDED.influence_score, influence_at = EXCLUDED.influence_at"
        " WHERE a.influence_at IS NULL OR a.influence_at <= EXCLUDED.influence_at",
        {"tenant": tenant_id, "contact": contact_id, "at": at, **values},
    )


def save_engagement(uow: UnitOfWork, tenant_id: str, contact_id: str, at: datetime, values: dict[str, Any]) -> None:
    uow.execute(
        "INSERT INTO campaigns.audience AS a (tenant_id, contact_id, sentiment, satisfaction, engagement_at)"
        " VALUES (%(tenant)s, %(contact)s, %(sentiment)s, %(satisfaction)s, %(at)s)"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET sentiment = EXCLUDED.sentiment,"
        " satisfaction = EXCLUDED.satisfaction, engagement_at = EXCLUDED.engagement_at"
        " WHERE a.engagement_at IS NULL OR a.engagement_at <= EXCLUDED.engagement_at",
        {"tenant": tenant_id, "contact": contact_id, "at": at, **values},
    )


def save_geolocation(uow: UnitOfWork, tenant_id: str, contact_id: str, at: datetime, values: dict[str, Any]) -> None:
    uow.execute(
        "INSERT INTO campaigns.audience AS a (tenant_id, contact_id, last_checkin_at, last_checkin_place,"
        " last_checkin_lat, last_checkin_lon, geolocation_at) VALUES (%(tenant)s, %(contact)s, %(checkin_at)s,"
        " %(place)s, %(lat)s, %(lon)s, %(at)s)"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET last_checkin_at = EXCLUDED.last_checkin_at,"
        " last_checkin_place = EXCLUDED.last_checkin_place, last_checkin_lat = EXCLUDED.last_checkin_lat,"
        " last_checkin_lon = EXCLUDED.last_checkin_lon, geolocation_at = EXCLUDED.geolocation_at"
        " WHERE a.geolocation_at IS NULL OR a.geolocation_at <= EXCLUDED.geolocation_at",
        {"tenant": tenant_id, "contact": contact_id, "at": at, **values},
    )


def record_purchase(uow: UnitOfWork, tenant_id: str, contact_id: str, at: datetime) -> None:
    """A conversion moves the last purchase forward, never back."""
    uow.execute(
        "UPDATE campaigns.audience SET last_purchase_at = greatest(last_purchase_at, %s)"
        " WHERE tenant_id = %s AND contact_id = %s",
        (at, tenant_id, contact_id),
    )


# -- consents ----------------------------------------------------------------------------------
def save_consent_if_newer(uow: UnitOfWork, tenant_id: str, contact_id: str, state: dict[str, Any]) -> bool:
    """Stores a purpose's state unless the stored one comes from a later record (captured_at,
    then record id, which is time-ordered)."""
    row = uow.execute(
        "INSERT INTO campaigns.audience_consents AS c (tenant_id, contact_id, purpose, status, record_id,"
        " captured_at, expires_at) VALUES (%(tenant)s, %(contact)s, %(purpose)s, %(status)s, %(record_id)s,"
        " %(captured_at)s, %(expires_at)s)"
        " ON CONFLICT (tenant_id, contact_id, purpose) DO UPDATE SET status = EXCLUDED.status,"
        " record_id = EXCLUDED.record_id, captured_at = EXCLUDED.captured_at, expires_at = EXCLUDED.expires_at"
        " WHERE c.captured_at IS NULL OR (EXCLUDED.captured_at, EXCLUDED.record_id) > (c.captured_at, c.record_id)"
        " RETURNING 1",
        {"tenant": tenant_id, "contact": contact_id, **state},
    ).fetchone()
    return row is not None


def consents_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT purpose, status, record_id, captured_at, expires_at FROM campaigns.audience_consents"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY purpose",
        (tenant_id, contact_id),
    ).fetchall()


def is_allowed(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str, now: datetime) -> bool:
    """Only a stored, unexpired grant says yes."""
    return uow.execute(
        "SELECT 1 FROM campaigns.audience_consents WHERE tenant_id = %s AND contact_id = %s AND purpose = %s"
        " AND status = 'granted' AND (expires_at IS NULL OR expires_at > %s)",
        (tenant_id, contact_id, purpose, now),
    ).fetchone() is not None


def allowed(uow: UnitOfWork, tenant_id: str, contact_ids: list[str], now: datetime) -> set[tuple[str, str]]:
    """The (contact id, purpose) pairs these contacts have a stored, unexpired grant for."""
    rows = uow.execute(
        "SELECT contact_id::text AS contact_id, purpose FROM campaigns.audience_consents WHERE tenant_id = %s"
        " AND contact_id = ANY(%s::uuid[]) AND status = 'granted' AND (expires_at IS NULL OR expires_at > %s)",
        (tenant_id, contact_ids, now),
    ).fetchall()
    return {(row["contact_id"], row["purpose"]) for row in rows}


# -- handles -----------------------------------------------------------------------------------
def link_handle(uow: UnitOfWork, tenant_id: str, identity: dict[str, Any]) -> None:
    uow.execute(
        "INSERT INTO campaigns.audience_handles (tenant_id, network, handle, contact_id, identity_id,"
        " network_user_id) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, network, handle)"
        " DO UPDATE SET contact_id = EXCLUDED.contact_id, identity_id = EXCLUDED.identity_id,"
        " network_user_id = EXCLUDED.network_user_id",
        (tenant_id, identity["network"], identity["handle"], identity["contact_id"], identity["id"],
         identity.get("network_user_id")),
    )


def unlink_handle(uow: UnitOfWork, tenant_id: str, identity_id: str) -> None:
    """By identity id: a handle since linked again (a new identity) stays linked."""
    uow.execute("DELETE FROM campaigns.audience_handles WHERE tenant_id = %s AND identity_id = %s",
                (tenant_id, identity_id))


def handles_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT network, handle, network_user_id, identity_id FROM campaigns.audience_handles"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY network, handle",
        (tenant_id, contact_id),
    ).fetchall()


# -- merge and erasure -------------------------------------------------------------------------
def merge(uow: UnitOfWork, tenant_id: str, duplicate_id: str, survivor_id: str) -> None:
    """The duplicate's handles and consents become the survivor's (per purpose the later record
    wins); the duplicate's row goes (identity publishes the merged contact; enrichment the
    survivor's profile)."""
    params = {"tenant": tenant_id, "from": duplicate_id, "to": survivor_id}
    uow.execute(
        "UPDATE campaigns.audience_handles SET contact_id = %(to)s WHERE tenant_id = %(tenant)s"
        " AND contact_id = %(from)s",
        params,
    )
    uow.execute(
        "INSERT INTO campaigns.audience_consents AS c (tenant_id, contact_id, purpose, status, record_id,"
        " captured_at, expires_at) SELECT tenant_id, %(to)s, purpose, status, record_id, captured_at, expires_at"
        " FROM campaigns.audience_consents WHERE tenant_id = %(tenant)s AND contact_id = %(from)s"
        " ON CONFLICT (tenant_id, contact_id, purpose) DO UPDATE SET status = EXCLUDED.status,"
        " record_id = EXCLUDED.record_id, captured_at = EXCLUDED.captured_at, expires_at = EXCLUDED.expires_at"
        " WHERE c.captured_at IS NULL OR (EXCLUDED.captured_at, EXCLUDED.record_id) > (c.captured_at, c.record_id)",
        params,
    )
    uow.execute("DELETE FROM campaigns.audience_consents WHERE tenant_id = %(tenant)s AND contact_id = %(from)s",
                params)
    uow.execute("DELETE FROM campaigns.audience WHERE tenant_id = %(tenant)s AND contact_id = %(from)s", params)


def erase(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> dict[str, int]:
    """Deletes the audience rows, consents and handles filed under these contact ids, and strips
    their deliveries of what identified them (the address and the message as sent, which holds
    their name); the deliveries stay, so campaign reports keep adding up."""
    counts = {}
    for table in ("audience", "audience_consents", "audience_handles", "deliveries"):
        counts[table] = uow.execute(
            _ERASE[table], {"tenant": tenant_id, "ids": contact_ids},
        ).rowcount
    return counts


_ERASE = {
    "audience": "DELETE FROM campaigns.audience WHERE tenant_id = %(tenant)s AND contact_id = ANY(%(ids)s::uuid[])",
    "audience_consents": "DELETE FROM campaigns.audience_consents WHERE tenant_id = %(tenant)s"
                         " AND contact_id = ANY(%(ids)s::uuid[])",
    "audience_handles": "DELETE FROM campaigns.audience_handles WHERE tenant_id = %(tenant)s"
                        " AND contact_id = ANY(%(ids)s::uuid[])",
    "deliveries": "UPDATE campaigns.deliveries SET address = NULL, content = NULL WHERE tenant_id = %(tenant)s"
                  " AND contact_id = ANY(%(ids)s::uuid[]) AND (address IS NOT NULL OR content IS NOT NULL)",
}


def deliveries_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    """The contact's deliveries, with what was sent (for the access export)."""
    return uow.execute(
        "SELECT id, campaign_id, trigger_id, channel, status, reason, address, content, created_at, sent_at,"
        " delivered_at, opened_at, clicked_at FROM campaigns.deliveries WHERE tenant_id = %s AND contact_id = %s"
        " ORDER BY id",
        (tenant_id, contact_id),
    ).fetchall()


def conversions_of(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT id, campaign_id, delivery_id, channel, value, currency, occurred_at FROM campaigns.conversions"
        " WHERE tenant_id = %s AND contact_id = %s ORDER BY occurred_at",
        (tenant_id, contact_id),
    ).fetchall()
