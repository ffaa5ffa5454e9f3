"""enrichment's copy of what it needs from identity, fed by identity's events, and its part of
consent withdrawal and erasure. Each handler is a use case: it takes the consumer's unit of
work and the event's envelope (the consumer records the event id in the same transaction, so a
repeat changes nothing).

- consent.recorded: the contact's state for the purpose after the record (`current`), unless the
  stored state comes from a later record. When it leaves `profile_enrichment` not allowed
  (withdrawn or expired), what was gathered under it is deleted: demographics, influence,
  engagement and sources (a new grant lets a new enrichment gather them again); when it leaves
  `geolocation` not allowed, the contact's check-ins are deleted and the profile's last check-in
  cleared (CONTRACT section 3). Either publishes `profile.updated` with the sections set to null.
- handle.linked / handle.unlinked: the handle → contact table the feed resolves handles with; a
  link carries a prospect's history (events seen under the handle) over to the contact.
- contact.merged: the duplicate's handles, consents, events and profile become the survivor's;
  per purpose the consent of the later record wins.
- consent that runs out (`expires_at` passed) sends no event: `sweep_lapsed_consents`, run by the
  worker, treats it as a withdrawal.
- contact.erasure_requested: everything held under the contact ids and the handles is deleted,
  then `liaison.enrichment.erasure.completed` and an audit entry are published."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.enrichment import GEOLOCATION, PROFILE_ENRICHMENT, SCHEMA, SOURCE, profiles
from services.enrichment.repository import projections as repo
from shared.db import Database, UnitOfWork
from shared.events import utcnow
from shared.privacy import erased_contact_ids, erasure_answer, exported, remember_erased

CONSENT_RECORDED = "liaison.identity.consent.recorded"
HANDLE_LINKED = "liaison.identity.handle.linked"
HANDLE_UNLINKED = "liaison.identity.handle.unlinked"
CONTACT_MERGED = "liaison.identity.contact.merged"
ERASURE_REQUESTED = "liaison.identity.contact.erasure_requested"
ERASURE_COMPLETED = "liaison.enrichment.erasure.completed"
AUDIT_RECORDED = "liaison.enrichment.audit.recorded"

SWEEP_BATCH = 1000



def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- consents ----------------------------------------------------------------------------------
def allowed(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str,
            now: datetime | None = None) -> bool:
    """May enrichment use the contact's data for `purpose` now? Only a stored, unexpired grant
    says yes; no record says no."""
    return repo.is_allowed(uow, tenant_id, contact_id, purpose, now or utcnow())


def on_consent_recorded(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    tenant_id, data = envelope["tenantid"], envelope["data"]
    contact_id, purpose, current = data["contact_id"], data["purpose"], data["current"]
    repo.save_consent_if_newer(uow, tenant_id, contact_id, {
        "purpose": purpose,
        "status": current["status"],
        "record_id": current["record_id"],
        "captured_at": _moment(current["captured_at"]),
        "expires_at": _moment(current["expires_at"]),
    })
    # Decided on what is stored, not on the event: an ignored late event deletes nothing that
    # the stored state allows, and a repeated withdrawal finds nothing left.
    enforce_consent(uow, tenant_id, contact_id, purpose)


def enforce_consent(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str,
                    now: datetime | None = None) -> dict[str, int]:
    """Deletes the data gathered under `purpose` when the contact no longer allows it."""
    if purpose not in (PROFILE_ENRICHMENT, GEOLOCATION) or allowed(uow, tenant_id, contact_id, purpose, now):
        return {}
    return delete_gathered(uow, purpose, [(tenant_id, contact_id)], profiles.CONSENT_WITHDRAWN, now or utcnow())


def delete_gathered(uow: UnitOfWork, purpose: str, contacts: list[tuple[str, str]], reason: str,
                    now: datetime) -> dict[str, int]:
    """Deletes what was gathered under `purpose` about these (tenant id, contact id) pairs, and
    publishes `profile.updated` (the sections set to null, with `reason`) for each that lost any:
    for profile_enrichment, demographics, influence and engagement; for geolocation, the
    check-ins and the last check-in."""
    if purpose == PROFILE_ENRICHMENT:
        touched = repo.clear_gathered_profiles(uow, contacts)
        counts = {"profiles": len(touched)}
        changed, sections = profiles.deleted_sections(("demographics", "influence", "engagement"), reason)
    else:
        deleted, touched = repo.clear_checkins(uow, contacts)
        counts = {"checkins": deleted}
        changed, sections = profiles.deleted_sections(("geolocation",), reason)
    uow.publish_many(SCHEMA, [profiles.updated_event(str(t["tenant_id"]), str(t["contact_id"]), changed, sections,
                                                     now, reason) for t in touched])
    return counts


def sweep_lapsed_consents(db: Database, now: Callable[[], datetime] = utcnow,
                          batch: int = SWEEP_BATCH) -> dict[str, int]:
    """Consent that expires sends no event: identity's ledger simply answers `expired` from then
    on. This sweep (the worker runs it every minute) finds the grants whose `expires_at` has
    passed, marks them expired and deletes what was gathered under them, exactly as a withdrawal
    would: the profile for `profile_enrichment`, the check-ins for `geolocation`. A batch per
    transaction, until none is left. Returns how many grants lapsed and rows went."""
    totals = {"consents": 0, "profiles": 0, "checkins": 0}
    while True:
        with db.transaction() as uow:
            moment = now()
            lapsed = repo.expire_lapsed_grants(uow, moment, batch)
            by_purpose: dict[str, list[tuple[str, str]]] = {PROFILE_ENRICHMENT: [], GEOLOCATION: []}
            for row in lapsed:
                if row["purpose"] in by_purpose:
                    by_purpose[row["purpose"]].append((str(row["tenant_id"]), str(row["contact_id"])))
            totals["consents"] += len(lapsed)
            for purpose, contacts in by_purpose.items():
                if contacts:
                    for kind, count in delete_gathered(uow, purpose, contacts, profiles.CONSENT_EXPIRED,
                                                       moment).items():
                        totals[kind] += count
        if len(lapsed) < batch:
            return totals


# -- handles -----------------------------------------------------------------------------------
def on_handle_linked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    tenant_id, identity = envelope["tenantid"], envelope["data"]["identity"]
    repo.link_handle(uow, tenant_id, identity["network"], identity["handle"], identity["contact_id"],
                     identity["id"])
    repo.claim_prospect_events(uow, tenant_id, identity["network"], identity["handle"],
                               identity["contact_id"])


def on_handle_unlinked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    repo.unlink_handle(uow, envelope["tenantid"], envelope["data"]["identity_id"])


def on_contact_merged(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    tenant_id, data = envelope["tenantid"], envelope["data"]
    survivor, duplicate = data["contact_id"], data["duplicate_id"]
    repo.move_handles(uow, tenant_id, duplicate, survivor)
    repo.move_consents(uow, tenant_id, duplicate, survivor)
    repo.move_events(uow, tenant_id, duplicate, survivor)
    repo.move_profile_unless_present(uow, tenant_id, duplicate, survivor)
    # What came over was gathered under the duplicate's consent; the survivor's decides now.
    for purpose in (PROFILE_ENRICHMENT, GEOLOCATION):
        enforce_consent(uow, tenant_id, survivor, purpose)


# -- erasure -----------------------------------------------------------------------------------
def on_erasure_requested(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    tenant_id, data = envelope["tenantid"], envelope["data"]
    handles = [(h["network"], h["handle"]) for h in data.get("handles", [])]
    remember_erased(uow, SCHEMA, tenant_id, erased_contact_ids(data))
    counts = repo.erase(uow, tenant_id, erased_contact_ids(data), handles)
    uow.publish_many(SCHEMA, erasure_answer("enrichment", SOURCE, tenant_id, data, counts))


# -- the right of access -----------------------------------------------------------------------
def export_for_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any]:
    """Everything enrichment holds about the contact, for the export (right of access)."""
    profile = repo.profile(uow, tenant_id, contact_id)
    return {
        "consents": [exported(r) for r in repo.consents_of(uow, tenant_id, contact_id)],
        "handles": [exported(r) for r in repo.handles_of(uow, tenant_id, contact_id)],
        "profile": exported(profile) if profile else None,
        "social_events": [exported(r) for r in repo.events_of(uow, tenant_id, contact_id)],
    }
