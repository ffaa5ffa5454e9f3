"""The audience: campaigns' own copy of what it needs about each contact, so that segments,
launches and sends never wait on another service (DESIGN). Each handler is a use case taking the
consumer's unit of work and the event's envelope; the consumer records the event id in the same
transaction, so a repeat changes nothing, and each part of a row keeps the version it was
written from, so events arriving out of order never put an older state back.

- identity's contact.upserted: contact fields, by the contact's `updated_at`. From the CRM's
  `attributes`: `birth_date` (YYYY-MM-DD) gives an exact age that moves with birthdays, and
  `last_purchase_at` (RFC 3339) the last purchase, which a recorded conversion also moves forward.
- consent.recorded: the state after the record (`current`), unless a later record is stored.
- handle.linked / handle.unlinked: the handles social DMs are sent to.
- contact.merged: the duplicate's consents and handles become the survivor's.
- enrichment's profile.updated: each section it carries (demographics, influence, engagement,
  geolocation), by the event's `at`; a null section clears its fields.
- contact.erasure_requested: everything filed under the contact's ids goes (their deliveries stay
  for the reports, stripped of the address and the message as sent), then
  `liaison.campaigns.erasure.completed` and an audit entry are published.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from services.campaigns import SCHEMA, SOURCE
from services.campaigns.repository import audience as repo
from shared.db import UnitOfWork
from shared.privacy import erased_contact_ids, erasure_answer, exported, remember_erased

CONTACT_UPSERTED = "liaison.identity.contact.upserted"
CONSENT_RECORDED = "liaison.identity.consent.recorded"
HANDLE_LINKED = "liaison.identity.handle.linked"
HANDLE_UNLINKED = "liaison.identity.handle.unlinked"
CONTACT_MERGED = "liaison.identity.contact.merged"
ERASURE_REQUESTED = "liaison.identity.contact.erasure_requested"
PROFILE_UPDATED = "liaison.enrichment.profile.updated"

# "30-39", "25 - 34", "65+", "18+"
_AGE_RANGE = re.compile(r"^\s*(\d{1,3})\s*(?:-\s*(\d{1,3})|\+)\s*$")


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _birth_date(attributes: dict[str, Any]) -> date | None:
    raw = attributes.get("birth_date")
    if not isinstance(raw, str):
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        return None  # a CRM attribute we cannot read is not a reason to refuse the contact


def _purchase(attributes: dict[str, Any]) -> datetime | None:
    raw = attributes.get("last_purchase_at")
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else None  # a time without its offset is ambiguous: unknown


def age_bounds(age: Any) -> tuple[int | None, int | None]:
    """An age range as enrichment shows it ("30-39", "65+") → (min, max), max None when open."""
    if isinstance(age, int):
        return age, age
    match = _AGE_RANGE.match(age) if isinstance(age, str) else None
    if not match:
        return None, None
    low = int(match.group(1))
    return low, int(match.group(2)) if match.group(2) else None


# -- identity's events -------------------------------------------------------------------------
def on_contact_upserted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    contact = envelope["data"]["contact"]
    attributes = contact.get("attributes") or {}
    repo.save_contact_if_newer(uow, envelope["tenantid"], contact["id"], _moment(contact["updated_at"]), {
        "email": contact.get("email"),
        "phone": contact.get("phone"),
        "first_name": contact.get("first_name"),
        "last_name": contact.get("last_name"),
        "locale": contact.get("locale"),
        "timezone": contact.get("timezone"),
        "attributes": attributes,
        "suppressed": bool(contact.get("suppressed")),
        "birth_date": _birth_date(attributes),
        "last_purchase_at": _purchase(attributes),
    })


def on_consent_recorded(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data, current = envelope["data"], envelope["data"]["current"]
    repo.save_consent_if_newer(uow, envelope["tenantid"], data["contact_id"], {
        "purpose": data["purpose"],
        "status": current["status"],
        "record_id": current["record_id"],
        "captured_at": _moment(current["captured_at"]),
        "expires_at": _moment(current["expires_at"]),
    })


def on_handle_linked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    repo.link_handle(uow, envelope["tenantid"], envelope["data"]["identity"])


def on_handle_unlinked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    repo.unlink_handle(uow, envelope["tenantid"], envelope["data"]["identity_id"])


def on_contact_merged(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    repo.merge(uow, envelope["tenantid"], data["duplicate_id"], data["contact_id"])


# -- enrichment's events -----------------------------------------------------------------------
def on_profile_updated(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    tenant_id, data = envelope["tenantid"], envelope["data"]
    contact_id, at, sections = data["contact_id"], _moment(data.get("at")) or _moment(envelope["time"]), \
        data.get("profile") or {}
    if "demographics" in sections:
        demographics = sections["demographics"] or {}
        low, high = age_bounds(demographics.get("age"))
        repo.save_demographics(uow, tenant_id, contact_id, at, {
            "age_min": low, "age_max": high,
            "city": demographics.get("city"),
            "country": demographics.get("country"),
            "profession": demographics.get("profession"),
            "interests": sorted({str(i).casefold() for i in demographics.get("interests") or []}),
        })
    if "influence" in sections:
        influence = sections["influence"] or {}
        repo.save_influence(uow, tenant_id, contact_id, at,
                            {"tier": influence.get("tier"), "score": influence.get("score")})
    if "engagement" in sections:
        engagement = sections["engagement"] or {}
        repo.save_engagement(uow, tenant_id, contact_id, at,
                             {"sentiment": engagement.get("sentiment"), "satisfaction": engagement.get("satisfaction")})
    if "geolocation" in sections:
        checkin = (sections["geolocation"] or {}).get("last_checkin") or {}
        repo.save_geolocation(uow, tenant_id, contact_id, at, {
            "checkin_at": _moment(checkin.get("at")), "place": checkin.get("place"),
            "lat": checkin.get("lat"), "lon": checkin.get("lon"),
        })


# -- erasure and the right of access -----------------------------------------------------------
def on_erasure_requested(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    tenant_id, data = envelope["tenantid"], envelope["data"]
    remember_erased(uow, SCHEMA, tenant_id, erased_contact_ids(data))
    counts = repo.erase(uow, tenant_id, erased_contact_ids(data))
    uow.publish_many(SCHEMA, erasure_answer("campaigns", SOURCE, tenant_id, data, counts))


def export_for_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any]:
    """What the audience holds about the contact, for the access export."""
    row = repo.contact(uow, tenant_id, contact_id)
    return {
        "audience": exported({k: v for k, v in row.items() if k != "tenant_id"}) if row else None,
        "consents": [exported(r) for r in repo.consents_of(uow, tenant_id, contact_id)],
        "handles": [exported(r) for r in repo.handles_of(uow, tenant_id, contact_id)],
        "deliveries": [exported(r) for r in repo.deliveries_of(uow, tenant_id, contact_id)],
        "conversions": [exported(r) for r in repo.conversions_of(uow, tenant_id, contact_id)],
    }
