"""The consent ledger's rules that need no database: which record decides, expiry, the evidence
hash, Kantara receipts and CSV cells."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import permutations
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from services.identity.consents import (
    LEGAL_BASES,
    PURPOSES,
    STATUSES,
    build_receipt,
    csv_row,
    evidence_hash,
    fold_current,
    purpose_state,
)

KANTARA = Draft4Validator(json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "kantara_cr_v1_1.schema.json").read_text("utf-8")
))
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def row(purpose: str = "email_marketing", status: str = "granted", *, captured: datetime = NOW,
        recorded: datetime | None = None, expires: datetime | None = None, **extra) -> dict:
    return {
        "id": uuid.uuid4(), "contact_id": uuid.uuid4(), "purpose": purpose, "status": status,
        "legal_basis": "consent", "source_system": "hubspot", "source_form": None,
        "notice_version": "v3", "captured_at": captured, "expires_at": expires,
        "recorded_at": recorded or NOW, "evidence_hash": None, "ip": None, "user_agent": None,
        "proof": None, "has_evidence": False, **extra,
    }


def test_every_purpose_is_listed_and_none_when_nothing_is_recorded():
    current = fold_current([], NOW)
    assert list(current) == list(PURPOSES)
    assert all(state == {"status": "none", "record_id": None, "captured_at": None, "expires_at": None}
               for state in current.values())


def test_the_latest_captured_at_decides_whatever_the_order_of_the_rows():
    old = row(status="withdrawn", captured=NOW - timedelta(days=3), recorded=NOW)
    new = row(captured=NOW - timedelta(days=1), recorded=NOW - timedelta(days=1))
    other = row("sms_marketing", "withdrawn", captured=NOW - timedelta(days=9))
    for rows in permutations([old, new, other]):
        current = fold_current(rows, NOW)
        assert current["email_marketing"]["record_id"] == str(new["id"])
        assert current["email_marketing"]["status"] == "granted"
        assert current["sms_marketing"]["status"] == "withdrawn"


def test_a_tie_on_captured_at_goes_to_the_later_recorded():
    first = row(recorded=NOW - timedelta(seconds=1))
    second = row(status="withdrawn", recorded=NOW)
    for rows in ([first, second], [second, first]):
        assert fold_current(rows, NOW)["email_marketing"]["record_id"] == str(second["id"])


def test_a_grant_expires_at_its_expiry_and_a_withdrawal_never_does():
    grant = row(captured=NOW - timedelta(days=1), expires=NOW)
    assert purpose_state(grant, NOW - timedelta(microseconds=1))["status"] == "granted"
    assert purpose_state(grant, NOW)["status"] == "expired"
    assert purpose_state(row(status="withdrawn"), NOW + timedelta(days=999))["status"] == "withdrawn"
    state = purpose_state(grant, NOW)
    assert state["captured_at"] == "2025-05-31T12:00:00Z" and state["expires_at"] == "2025-06-01T12:00:00Z"


def test_the_evidence_hash_binds_evidence_record_and_salt():
    salt, record_id = b"s" * 32, str(uuid.uuid4())
    digest = evidence_hash(salt, record_id, "203.0.113.7", "Mozilla", {"form": "x"})
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == evidence_hash(salt, record_id, "203.0.113.7", "Mozilla", {"form": "x"})
    assert digest != evidence_hash(b"t" * 32, record_id, "203.0.113.7", "Mozilla", {"form": "x"})
    assert digest != evidence_hash(salt, str(uuid.uuid4()), "203.0.113.7", "Mozilla", {"form": "x"})
    assert digest != evidence_hash(salt, record_id, "203.0.113.8", "Mozilla", {"form": "x"})
    assert digest != evidence_hash(salt, record_id, "203.0.113.7", "Mozilla", {"form": "y"})
    assert evidence_hash(salt, record_id, None, None, None) is None


@pytest.mark.parametrize("purpose", list(PURPOSES))
@pytest.mark.parametrize("legal_basis", LEGAL_BASES)
@pytest.mark.parametrize("status", STATUSES)
def test_every_receipt_is_valid_against_the_kantara_schema(purpose, legal_basis, status):
    record = row(purpose, status, legal_basis=legal_basis, source_form="signup",
                 captured=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
                 expires=datetime(2026, 1, 2, tzinfo=UTC) if status == "granted" else None)
    receipt = build_receipt(record, "principal-id", "Acme", {})
    KANTARA.validate(receipt)
    assert receipt["consentTimestamp"] == 1735787045  # integer epoch seconds of captured_at
    assert receipt["consentReceiptID"] == str(record["id"])
    assert receipt["piiPrincipalId"] == "principal-id"
    assert receipt["collectionMethod"] == "hubspot, form signup"
    [purpose_doc] = receipt["services"][0]["purposes"]
    assert purpose_doc["consentType"] == ("EXPLICIT" if legal_basis == "consent" else "N/A")
    assert purpose_doc["purposeCategory"] == list(PURPOSES[purpose].purpose_categories)
    assert purpose_doc["piiCategory"] == list(PURPOSES[purpose].pii_categories)


def test_receipt_fallbacks_and_settings():
    fallback = build_receipt(row(), "p", "Acme", {})
    assert fallback["jurisdiction"] == "EU" and fallback["language"] == "en"
    assert fallback["policyUrl"] == ""
    assert fallback["piiControllers"] == [{"piiController": "Acme", "onBehalf": False, "contact": "Acme",
                                           "address": {}, "email": "", "phone": ""}]
    assert fallback["services"][0]["purposes"][0]["termination"] == "Until withdrawn"

    set_up = build_receipt(row(), "p", "Acme", {"controller": {"name": "Acme SA", "url": "https://acme.example"}})
    assert set_up["policyUrl"] == "https://acme.example"  # the controller's site when no policy_url
    assert set_up["piiControllers"][0]["piiController"] == "Acme SA"
    assert set_up["piiControllers"][0]["contact"] == "Acme SA"
    assert set_up["piiControllers"][0]["piiControllerUrl"] == "https://acme.example"
    KANTARA.validate(set_up)


def test_csv_cells_are_safe_for_spreadsheets():
    cells = dict(zip(
        ("id", "contact_id", "purpose", "status", "legal_basis", "source_system", "source_form",
         "source_ip", "source_user_agent", "notice_version", "proof", "captured_at", "expires_at",
         "recorded_at", "evidence_hash", "evidence_erased"),
        csv_row(row(source_form="=cmd|' /C calc'!A0", user_agent="+1", ip="10.0.0.1",
                    proof={"a": 1}, evidence_hash="ab", has_evidence=False)),
        strict=True,
    ))
    assert cells["source_form"] == "'=cmd|' /C calc'!A0"
    assert cells["source_user_agent"] == "'+1"
    assert cells["source_ip"] == "10.0.0.1"
    assert cells["proof"] == '{"a":1}'
    assert cells["captured_at"] == "2025-06-01T12:00:00Z" and cells["expires_at"] == ""
    assert cells["evidence_erased"] == "true"
