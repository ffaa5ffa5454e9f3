"""Use cases of the GDPR consent ledger: record a consent or its withdrawal, read a contact's
current state and history, answer whether a purpose is allowed now, issue a Kantara consent
receipt, list and export the ledger; and, for the erasure and access flows, erase a contact's
evidence and export everything the ledger holds about a contact.

The ledger is append-only (the database refuses any change to a record). "Current" is decided per
purpose by the record with the latest `captured_at` (a tie goes to the one recorded later), so a
CRM that syncs old records late cannot override a newer choice. A contact's history is the union
of its own records and those of the duplicates merged into it."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.identity import SCHEMA, SOURCE
from services.identity.audit import AuditEntry, record
from services.identity.contacts import get_contact
from services.identity.repository import consents as repo
from services.identity.repository import contacts as contact_repo
from services.identity.repository import tenants as tenant_repo
from services.identity.suppression import identifier_hash
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow
from shared.ids import new_id

CONSENT_RECORDED = "liaison.identity.consent.recorded"

STATUSES = ("granted", "withdrawn")
LEGAL_BASES = ("consent", "legitimate_interest", "contract")
# How far ahead of our clock a captured_at may be: the CRM's clock may run a little fast.
CLOCK_SKEW = timedelta(minutes=5)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a receipt's consentTimestamp is epoch seconds >= 0

RECEIPT_VERSION = "KI-CR-v1.1.0"
# Receipt fallbacks when the tenant has not set them (PATCH /v1/tenants/{id} settings).
DEFAULT_JURISDICTION = "EU"  # the ledger exists for the GDPR
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Purpose:
    """How a purpose reads on a consent receipt. Categories are the Kantara Consent Receipt
    v1.1 lists (Appendix: purpose categories, PII categories), numbered as the spec's example."""

    service: str
    description: str
    purpose_categories: tuple[str, ...]
    pii_categories: tuple[str, ...]


PURPOSES: dict[str, Purpose] = {
    "email_marketing": Purpose(
        "Email marketing", "Sending marketing messages by email",
        ("6 - Marketing",), ("2 - Contact",)),
    "sms_marketing": Purpose(
        "SMS marketing", "Sending marketing messages by SMS",
        ("6 - Marketing",), ("2 - Contact",)),
    "social_dm_marketing": Purpose(
        "Social direct-message marketing",
        "Sending marketing messages as direct messages on social networks",
        ("6 - Marketing",), ("2 - Contact", "4 - Communications/Social")),
    "profile_enrichment": Purpose(
        "Profile enrichment",
        "Enriching the contact's profile with data from their public social-network profiles",
        ("5 - Personalize Experience", "6 - Marketing"),
        ("4 - Communications/Social", "16 - Profiling")),
    "geolocation": Purpose(
        "Location-based offers",
        "Using the contact's location (such as social check-ins) to tailor offers",
        ("5 - Personalize Experience", "6 - Marketing"), ("15 - Behavioral",)),
}

LEGAL_BASIS_TEXT = {
    "consent": "consent (GDPR art. 6(1)(a))",
    "legitimate_interest": "legitimate interest (GDPR art. 6(1)(f))",
    "contract": "performance of a contract (GDPR art. 6(1)(b))",
}


# -- views -------------------------------------------------------------------------------------
def _at(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def view(row: dict[str, Any], *, evidence: bool = True) -> dict[str, Any]:
    """A ledger record as the API shows it; `evidence=False` leaves out the personal data it was
    captured with (IP address, user agent, proof), as events and audit entries must."""
    source: dict[str, Any] = {"system": row["source_system"], "form": row["source_form"]}
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "contact_id": str(row["contact_id"]),
        "purpose": row["purpose"],
        "status": row["status"],
        "legal_basis": row["legal_basis"],
        "source": source,
        "notice_version": row["notice_version"],
    }
    if evidence:
        source["ip"] = row["ip"]
        source["user_agent"] = row["user_agent"]
        out["proof"] = row["proof"]
    out.update(
        captured_at=rfc3339(row["captured_at"]),
        expires_at=_at(row["expires_at"]),
        recorded_at=rfc3339(row["recorded_at"]),
        evidence_hash=row["evidence_hash"],
        # The evidence was erased (right to erasure); its hash still proves what it was.
        evidence_erased=row["evidence_hash"] is not None and not row["has_evidence"],
    )
    return out


def _order(row: dict[str, Any]) -> tuple[datetime, datetime, uuid.UUID]:
    """The "latest" order, as repository.consents sorts in SQL."""
    return (row["captured_at"], row["recorded_at"], row["id"])


def purpose_state(row: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """What the deciding record of one purpose means now: granted, withdrawn, expired or none."""
    if row is None:
        return {"status": "none", "record_id": None, "captured_at": None, "expires_at": None}
    status = row["status"]
    if status == "granted" and row["expires_at"] is not None and row["expires_at"] <= now:
        status = "expired"
    return {"status": status, "record_id": str(row["id"]), "captured_at": rfc3339(row["captured_at"]),
            "expires_at": _at(row["expires_at"])}


def fold_current(rows: Iterable[dict[str, Any]], now: datetime) -> dict[str, dict[str, Any]]:
    """Every purpose's current state from a contact's records, in any order."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        best = latest.get(row["purpose"])
        if best is None or _order(row) > _order(best):
            latest[row["purpose"]] = row
    return {purpose: purpose_state(latest.get(purpose), now) for purpose in PURPOSES}


REASONS = {"granted": "granted", "withdrawn": "withdrawn", "expired": "expired", "none": "no_record"}


# -- evidence ----------------------------------------------------------------------------------
def evidence_hash(salt: bytes, record_id: str, ip: str | None, user_agent: str | None,
                  proof: Any) -> str | None:
    """HMAC-SHA256, under the tenant's erasure salt, of the record's evidence as canonical JSON
    (sorted keys, no spaces, UTF-8): `{"ip", "proof", "record_id", "user_agent"}`. The record id
    binds the evidence to its record. Kept in the ledger when the evidence itself is erased, so
    the controller can prove a past consent by re-hashing its own copy. None without evidence."""
    if ip is None and user_agent is None and proof is None:
        return None
    canonical = json.dumps(
        {"record_id": record_id, "ip": ip, "user_agent": user_agent, "proof": proof},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return identifier_hash(salt, canonical)


# -- recording ---------------------------------------------------------------------------------
def _check_dates(status: str, captured_at: datetime, expires_at: datetime | None,
                 now: datetime) -> None:
    problems: dict[str, list[str]] = {}
    if captured_at > now + CLOCK_SKEW:
        problems["captured_at"] = [
            "Must not be in the future (more than 5 minutes ahead of the server's clock)."]
    elif captured_at < EARLIEST:
        problems["captured_at"] = ["Must not be before 1970-01-01 (receipts count from then)."]
    if expires_at is not None:
        if status != "granted":
            problems["expires_at"] = ["Only a grant can expire; a withdrawal lasts until a new grant."]
        elif expires_at <= captured_at:
            problems["expires_at"] = ["Must be after captured_at."]
    if problems:
        raise errors.ValidationFailed(problems)


def record_consent(uow: UnitOfWork, tenant_id: str, actor: str, contact_id: str,
                   consent: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Appends a validated consent (or withdrawal) for a contact of the tenant; publishes
    `consent.recorded` and audits it in the same transaction. Returns the record with evidence."""
    now = now or utcnow()
    # Locks the contact: a merge or an erasure of it waits for this record, and vice versa.
    get_contact(uow, tenant_id, contact_id, lock=True)
    captured_at = consent.get("captured_at") or now
    expires_at = consent.get("expires_at")
    _check_dates(consent["status"], captured_at, expires_at, now)
    source = consent["source"]
    record_id = str(new_id())
    ip = str(source["ip"]) if source.get("ip") is not None else None
    user_agent = source.get("user_agent")
    proof = consent.get("proof")
    salt = tenant_repo.erasure_salt(uow, tenant_id)
    row = repo.insert(uow, tenant_id, {
        "id": record_id, "contact_id": contact_id, "purpose": consent["purpose"],
        "status": consent["status"], "legal_basis": consent["legal_basis"],
        "source_system": source["system"], "source_form": source.get("form"),
        "notice_version": consent["notice_version"], "captured_at": captured_at,
        "expires_at": expires_at, "ip": ip, "user_agent": user_agent, "proof": proof,
        "evidence_hash": evidence_hash(salt, record_id, ip, user_agent, proof),
    })
    ids = contact_repo.merged_ids(uow, tenant_id, contact_id)
    current = purpose_state(repo.latest(uow, tenant_id, ids, consent["purpose"]), now)
    public = view(row, evidence=False)
    uow.publish(SCHEMA, CloudEvent(
        CONSENT_RECORDED, SOURCE, tenant_id,
        # `current`: the contact's state for this purpose after this record, which a late,
        # older record does not change.
        {**public, "current": current},
        subject=contact_id,
    ))
    record(uow, tenant_id, actor, AuditEntry(
        "consent.recorded", f"consent/{record_id}", contact_id,
        {"purpose": row["purpose"], "status": row["status"], "legal_basis": row["legal_basis"],
         "notice_version": row["notice_version"], "source_system": row["source_system"],
         "captured_at": public["captured_at"], "expires_at": public["expires_at"],
         "evidence_hash": row["evidence_hash"]},
    ))
    return view(row)


# -- reading -----------------------------------------------------------------------------------
def contact_consents(uow: UnitOfWork, tenant_id: str, contact_id: str, *,
                     now: datetime | None = None) -> dict[str, Any]:
    """{"current": {purpose: state} for all five purposes, "history": records oldest first}."""
    get_contact(uow, tenant_id, contact_id)
    return _state_and_history(uow, tenant_id, contact_id, now or utcnow())


def _state_and_history(uow: UnitOfWork, tenant_id: str, contact_id: str, now: datetime) -> dict[str, Any]:
    rows = repo.history(uow, tenant_id, contact_repo.merged_ids(uow, tenant_id, contact_id))
    return {"current": fold_current(rows, now), "history": [view(r) for r in rows]}


def check(uow: UnitOfWork, tenant_id: str, contact_id: str, purpose: str, *,
          now: datetime | None = None) -> dict[str, Any]:
    """May the contact's data be used for `purpose` now? Only a current, unexpired grant says
    yes; nothing recorded means no."""
    get_contact(uow, tenant_id, contact_id)
    ids = contact_repo.merged_ids(uow, tenant_id, contact_id)
    state = purpose_state(repo.latest(uow, tenant_id, ids, purpose), now or utcnow())
    return {"allowed": state["status"] == "granted", "record_id": state["record_id"],
            "reason": REASONS[state["status"]]}


def get_record(uow: UnitOfWork, tenant_id: str, record_id: str) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, record_id)
    if row is None:
        raise errors.NotFound.of("consent record", record_id)
    return row


def list_records(uow: UnitOfWork, tenant_id: str, *, purpose: str | None = None,
                 status: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, after: list[str] | None = None,
                 limit: int = 50) -> list[dict[str, Any]]:
    """The tenant's ledger in (captured_at, id) order, `captured_at` in [since, until).
    `after` is the (captured_at, id) keyset of the last record of the previous page."""
    keyset = None
    if after is not None:
        try:
            keyset = (datetime.fromisoformat(after[0].replace("Z", "+00:00")), str(uuid.UUID(after[1])))
        except ValueError:
            raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None
    rows = repo.find(uow, tenant_id, purpose=purpose, status=status, since=since, until=until,
                     after=keyset, limit=limit)
    return [view(r) for r in rows]


# -- receipts ----------------------------------------------------------------------------------
def receipt(uow: UnitOfWork, tenant_id: str, record_id: str) -> dict[str, Any]:
    """The record as a Kantara Consent Receipt v1.1."""
    row = get_record(uow, tenant_id, record_id)
    tenant = tenant_repo.get_tenant(uow, tenant_id)
    # A merged duplicate's record names the contact it now belongs to.
    principal = repo.survivor_of(uow, tenant_id, str(row["contact_id"])) or str(row["contact_id"])
    return build_receipt(row, principal, tenant["name"], tenant["settings"] or {})


def build_receipt(row: dict[str, Any], principal_id: str, tenant_name: str,
                  settings: dict[str, Any]) -> dict[str, Any]:
    """A Kantara Consent Receipt v1.1 of one ledger record.

    From the tenant's settings: `controller` {name, contact, email, phone, address, url},
    `jurisdiction`, `policy_url`, `language`. Fallbacks: the controller's name is the tenant's
    name, its contact its name; missing email and phone are empty strings and a missing address
    an empty object (the schema requires them); jurisdiction "EU", language "en", policyUrl the
    controller's url or else an empty string.

    consentType is EXPLICIT for legal basis `consent`; for `legitimate_interest` and `contract`
    no consent is the authority, so it is "N/A", as the spec's own example does for processing
    on another legal basis (the basis is named in the purpose). thirdPartyDisclosure is false:
    Liaison shares the data with processors only. A withdrawal's receipt says so in
    `termination`."""
    controller = settings.get("controller") or {}
    purpose = PURPOSES[row["purpose"]]
    name = controller.get("name") or tenant_name
    pii_controller: dict[str, Any] = {
        "piiController": name,
        "onBehalf": False,
        "contact": controller.get("contact") or name,
        "address": controller.get("address") or {},
        "email": controller.get("email") or "",
        "phone": controller.get("phone") or "",
    }
    if controller.get("url"):
        pii_controller["piiControllerUrl"] = controller["url"]
    if row["status"] == "withdrawn":
        termination = f"Withdrawn on {rfc3339(row['captured_at'])}"
    elif row["expires_at"] is not None:
        termination = f"Until withdrawn, and at the latest {rfc3339(row['expires_at'])}"
    else:
        termination = "Until withdrawn"
    method = row["source_system"]
    if row["source_form"]:
        method += f", form {row['source_form']}"
    return {
        "version": RECEIPT_VERSION,
        "jurisdiction": settings.get("jurisdiction") or DEFAULT_JURISDICTION,
        "consentTimestamp": int(row["captured_at"].timestamp()),
        "collectionMethod": method,
        "consentReceiptID": str(row["id"]),
        "language": settings.get("language") or DEFAULT_LANGUAGE,
        "piiPrincipalId": principal_id,
        "piiControllers": [pii_controller],
        "policyUrl": settings.get("policy_url") or controller.get("url") or "",
        "services": [{
            "service": purpose.service,
            "purposes": [{
                "purpose": (f"{purpose.description}. Legal basis: {LEGAL_BASIS_TEXT[row['legal_basis']]}."
                            f" Notice version {row['notice_version']}."),
                "consentType": "EXPLICIT" if row["legal_basis"] == "consent" else "N/A",
                "purposeCategory": list(purpose.purpose_categories),
                "piiCategory": list(purpose.pii_categories),
                "primaryPurpose": False,
                "termination": termination,
                "thirdPartyDisclosure": False,
            }],
        }],
        "sensitive": False,
        "spiCat": [],
    }


# -- CSV export --------------------------------------------------------------------------------
CSV_COLUMNS = ("id", "contact_id", "purpose", "status", "legal_basis", "source_system",
               "source_form", "source_ip", "source_user_agent", "notice_version", "proof",
               "captured_at", "expires_at", "recorded_at", "evidence_hash", "evidence_erased")
# A cell starting with one of these is a formula to a spreadsheet (CSV injection): such cells get
# a leading apostrophe, which spreadsheets hide.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return rfc3339(value)
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_row(row: dict[str, Any]) -> list[str]:
    return [_cell(v) for v in (
        str(row["id"]), str(row["contact_id"]), row["purpose"], row["status"], row["legal_basis"],
        row["source_system"], row["source_form"], row["ip"], row["user_agent"],
        row["notice_version"], row["proof"], row["captured_at"], row["expires_at"],
        row["recorded_at"], row["evidence_hash"],
        row["evidence_hash"] is not None and not row["has_evidence"],
    )]


def export_csv(uow: UnitOfWork, tenant_id: str, *, purpose: str | None = None,
               status: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> Iterator[str]:
    """The matching records as CSV text (header first), a few thousand rows per chunk, read
    from a server-side cursor: a million rows never sit in memory at once."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for rows in repo.stream(uow, tenant_id, purpose=purpose, status=status, since=since, until=until):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(csv_row(r) for r in rows)
        yield buffer.getvalue()


def audit_export(uow: UnitOfWork, tenant_id: str, actor: str, filters: dict[str, Any]) -> None:
    """An export of the ledger is audited before it starts (the filters, not the data)."""
    record(uow, tenant_id, actor, AuditEntry(
        "consents.exported", "consents", None,
        {name: (rfc3339(v) if isinstance(v, datetime) else v) for name, v in filters.items()},
    ))


# -- for the erasure and access flows ----------------------------------------------------------
def _with_merged(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> list[str]:
    ids: dict[str, None] = {}
    for contact_id in contact_ids:
        ids.update(dict.fromkeys(contact_repo.merged_ids(uow, tenant_id, contact_id)))
    return list(ids)


def erase_evidence(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> int:
    """Deletes the evidence (IP address, user agent, proof) of every record of these contacts
    and of the duplicates merged into them; returns how many evidence rows it deleted. The
    ledger rows stay, with their evidence hash, as proof of past consent. The caller audits the
    erasure; call this before removing the contacts' merge links."""
    if not contact_ids:
        return 0
    return repo.delete_evidence(uow, tenant_id, _with_merged(uow, tenant_id, contact_ids))


def export_for_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any]:
    """Everything the ledger holds about a contact (right of access): the current state of every
    purpose and the full history with its evidence, including merged duplicates' records. Does
    not check that the contact exists: the caller does."""
    return _state_and_history(uow, tenant_id, contact_id, utcnow())
