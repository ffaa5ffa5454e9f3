"""The consent ledger as CRMs, marketers and compliance officers use it, on real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from jsonschema import Draft4Validator
from psycopg.rows import dict_row

from services.identity import consents
from services.identity.consents import CSV_COLUMNS, evidence_hash

# A verbatim copy of the contract's specs/kantara_cr_v1_1.schema.json (JSON Schema draft-04).
KANTARA_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "kantara_cr_v1_1.schema.json").read_text("utf-8")
)
PURPOSES = ["email_marketing", "sms_marketing", "social_dm_marketing", "profile_enrichment", "geolocation"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def make_contact(client, tenant, crm_id: str | None = None) -> str:
    response = client.post("/v1/contacts", json={
        "crm_ref": {"system": "hubspot", "id": crm_id or uuid.uuid4().hex},
        "email": f"{uuid.uuid4().hex[:8]}@example.com",
    }, headers=tenant.crm)
    assert response.status_code == 201, response.json
    return response.json["id"]


def consent(**overrides):
    body = {
        "purpose": "email_marketing",
        "status": "granted",
        "legal_basis": "consent",
        "source": {"system": "hubspot", "form": "newsletter-footer", "ip": "203.0.113.7",
                   "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
        "notice_version": "2024-05",
        "proof": {"double_opt_in": "token-123", "confirmed": True},
    }
    body.update(overrides)
    return body


def record(client, tenant, contact_id: str, **overrides) -> dict:
    response = client.post(f"/v1/contacts/{contact_id}/consents", json=consent(**overrides),
                           headers=tenant.crm)
    assert response.status_code == 201, response.json
    return response.json


def assert_problem(response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    if field is not None:
        assert field in response.json["errors"], response.json


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def db(identity_app):
    return identity_app.extensions["liaison"].db


# -- recording ---------------------------------------------------------------------------------
def test_recording_answers_the_record_with_its_evidence_and_salted_hash(identity, tenant, sql):
    contact_id = make_contact(identity, tenant)
    before = datetime.now(UTC)
    created = record(identity, tenant, contact_id, expires_at=iso(ago(days=-365)))
    after = datetime.now(UTC)

    uuid.UUID(created["id"])
    assert created["contact_id"] == contact_id
    assert created["purpose"] == "email_marketing" and created["status"] == "granted"
    assert created["legal_basis"] == "consent" and created["notice_version"] == "2024-05"
    assert created["source"] == {"system": "hubspot", "form": "newsletter-footer", "ip": "203.0.113.7",
                                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    assert created["proof"] == {"double_opt_in": "token-123", "confirmed": True}
    # captured_at defaults to the moment of recording.
    assert before - timedelta(seconds=1) <= parse(created["captured_at"]) <= after + timedelta(seconds=1)
    assert parse(created["expires_at"]) > parse(created["captured_at"])
    assert created["evidence_erased"] is False

    salt = bytes(sql.execute("SELECT erasure_salt FROM identity.tenants WHERE id = %s",
                             (tenant.id,)).fetchone()["erasure_salt"])
    assert created["evidence_hash"] == evidence_hash(
        salt, created["id"], "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64)",
        {"double_opt_in": "token-123", "confirmed": True})
    # The personal data lives in the evidence table, not in the ledger row.
    ledger = sql.execute("SELECT * FROM identity.consent_records WHERE id = %s", (created["id"],)).fetchone()
    assert "203.0.113.7" not in json.dumps(ledger, default=str)
    assert "Mozilla" not in json.dumps(ledger, default=str)


def test_a_record_without_evidence_has_no_hash(identity, tenant):
    contact_id = make_contact(identity, tenant)
    created = record(identity, tenant, contact_id, source={"system": "salesforce"}, proof=None)
    assert created["source"] == {"system": "salesforce", "form": None, "ip": None, "user_agent": None}
    assert created["proof"] is None and created["evidence_hash"] is None
    assert created["evidence_erased"] is False


def test_an_unknown_contact_or_another_tenants_contact_is_404(identity, tenant, other_tenant):
    theirs = make_contact(identity, other_tenant)
    for contact_id in (str(uuid.uuid4()), theirs):
        response = identity.post(f"/v1/contacts/{contact_id}/consents", json=consent(), headers=tenant.crm)
        assert_problem(response, 404)
        assert_problem(identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm), 404)
        assert_problem(identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=geolocation",
                                    headers=tenant.crm), 404)
    # Nothing landed on the other tenant's contact.
    theirs_now = identity.get(f"/v1/contacts/{theirs}/consents", headers=other_tenant.crm).json
    assert theirs_now["history"] == []


# -- current state -----------------------------------------------------------------------------
def test_current_lists_every_purpose_none_where_nothing_is_recorded(identity, tenant):
    contact_id = make_contact(identity, tenant)
    empty = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.marketing)
    assert empty.status_code == 200
    assert empty.json == {
        "current": {p: {"status": "none", "record_id": None, "captured_at": None, "expires_at": None}
                    for p in PURPOSES},
        "history": [],
    }

    granted = record(identity, tenant, contact_id, purpose="sms_marketing")
    state = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.compliance).json
    assert list(state["current"]) == PURPOSES
    assert state["current"]["sms_marketing"] == {
        "status": "granted", "record_id": granted["id"], "captured_at": granted["captured_at"],
        "expires_at": None}
    assert all(state["current"][p]["status"] == "none" for p in PURPOSES if p != "sms_marketing")
    assert state["history"] == [granted]


def test_a_grant_whose_expiry_has_passed_is_expired(identity, tenant):
    contact_id = make_contact(identity, tenant)
    lapsed = record(identity, tenant, contact_id, purpose="geolocation",
                    captured_at=iso(ago(days=30)), expires_at=iso(ago(days=1)))
    lasting = record(identity, tenant, contact_id, purpose="profile_enrichment",
                     captured_at=iso(ago(days=30)), expires_at=iso(ago(days=-30)))
    current = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json["current"]
    assert current["geolocation"]["status"] == "expired"
    assert current["geolocation"]["record_id"] == lapsed["id"]
    assert current["geolocation"]["expires_at"] == lapsed["expires_at"]
    assert current["profile_enrichment"]["status"] == "granted"
    assert current["profile_enrichment"]["record_id"] == lasting["id"]

    check = identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=geolocation",
                         headers=tenant.marketing)
    assert check.json == {"allowed": False, "record_id": lapsed["id"], "reason": "expired"}


def test_the_latest_captured_at_wins_whatever_the_order_of_recording(identity, tenant):
    contact_id = make_contact(identity, tenant)
    grant = record(identity, tenant, contact_id, captured_at=iso(ago(hours=1)))
    # A CRM syncs an older withdrawal late: it joins the history but does not override the grant.
    old_withdrawal = record(identity, tenant, contact_id, status="withdrawn",
                            captured_at=iso(ago(days=2)))
    state = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json
    assert state["current"]["email_marketing"]["status"] == "granted"
    assert state["current"]["email_marketing"]["record_id"] == grant["id"]
    assert [r["id"] for r in state["history"]] == [old_withdrawal["id"], grant["id"]]  # oldest first
    check = identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=email_marketing",
                         headers=tenant.crm).json
    assert check == {"allowed": True, "record_id": grant["id"], "reason": "granted"}

    withdrawal = record(identity, tenant, contact_id, status="withdrawn")
    check = identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=email_marketing",
                         headers=tenant.crm).json
    assert check == {"allowed": False, "record_id": withdrawal["id"], "reason": "withdrawn"}


def test_with_equal_captured_at_the_later_recorded_wins(identity, tenant):
    contact_id = make_contact(identity, tenant)
    moment = iso(ago(minutes=10))
    record(identity, tenant, contact_id, captured_at=moment)
    later = record(identity, tenant, contact_id, status="withdrawn", captured_at=moment)
    current = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json["current"]
    assert current["email_marketing"]["record_id"] == later["id"]
    assert current["email_marketing"]["status"] == "withdrawn"


def test_check_without_any_record_is_not_allowed(identity, tenant):
    contact_id = make_contact(identity, tenant)
    record(identity, tenant, contact_id, purpose="email_marketing")
    for headers in (tenant.crm, tenant.marketing, tenant.compliance):
        check = identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=sms_marketing",
                             headers=headers)
        assert check.status_code == 200
        assert check.json == {"allowed": False, "record_id": None, "reason": "no_record"}


def test_check_validates_its_query(identity, tenant):
    contact_id = make_contact(identity, tenant)
    assert_problem(identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=fax",
                                headers=tenant.crm), 422, "purpose")
    assert_problem(identity.get("/v1/consents/check?purpose=sms_marketing", headers=tenant.crm),
                   422, "contact_id")
    assert_problem(identity.get("/v1/consents/check?contact_id=nope&purpose=sms_marketing",
                                headers=tenant.crm), 422, "contact_id")


# -- merged contacts ---------------------------------------------------------------------------
def test_a_merged_contact_has_the_union_of_both_histories(identity, tenant):
    survivor = make_contact(identity, tenant)
    duplicate = make_contact(identity, tenant)
    own_grant = record(identity, tenant, survivor, captured_at=iso(ago(days=3)))
    newer_withdrawal = record(identity, tenant, duplicate, status="withdrawn", captured_at=iso(ago(days=1)))
    sms_grant = record(identity, tenant, duplicate, purpose="sms_marketing", captured_at=iso(ago(days=2)))
    older_sms_withdrawal = record(identity, tenant, survivor, purpose="sms_marketing",
                                  status="withdrawn", captured_at=iso(ago(days=5)))

    merged = identity.post(f"/v1/contacts/{survivor}/merge", json={"duplicate_id": duplicate},
                           headers=tenant.crm)
    assert merged.status_code == 200, merged.json

    state = identity.get(f"/v1/contacts/{survivor}/consents", headers=tenant.crm).json
    assert [r["id"] for r in state["history"]] == [
        older_sms_withdrawal["id"], own_grant["id"], sms_grant["id"], newer_withdrawal["id"]]
    # Per purpose, the most recent record of either contact wins.
    assert state["current"]["email_marketing"]["record_id"] == newer_withdrawal["id"]
    assert state["current"]["email_marketing"]["status"] == "withdrawn"
    assert state["current"]["sms_marketing"]["record_id"] == sms_grant["id"]
    assert state["current"]["sms_marketing"]["status"] == "granted"
    check = identity.get(f"/v1/consents/check?contact_id={survivor}&purpose=sms_marketing",
                         headers=tenant.crm).json
    assert check == {"allowed": True, "record_id": sms_grant["id"], "reason": "granted"}

    # The duplicate is gone; its records are the survivor's now.
    assert_problem(identity.get(f"/v1/contacts/{duplicate}/consents", headers=tenant.crm), 404)
    assert_problem(identity.post(f"/v1/contacts/{duplicate}/consents", json=consent(),
                                 headers=tenant.crm), 404)
    receipt = identity.get(f"/v1/consents/{sms_grant['id']}/receipt", headers=tenant.crm).json
    assert receipt["piiPrincipalId"] == survivor

    regrant = record(identity, tenant, survivor)
    check = identity.get(f"/v1/consents/check?contact_id={survivor}&purpose=email_marketing",
                         headers=tenant.crm).json
    assert check == {"allowed": True, "record_id": regrant["id"], "reason": "granted"}


# -- append-only -------------------------------------------------------------------------------
def test_the_database_refuses_to_change_or_remove_a_ledger_record(identity, tenant, sql):
    contact_id = make_contact(identity, tenant)
    created = record(identity, tenant, contact_id)
    statements = [
        ("UPDATE identity.consent_records SET status = 'withdrawn' WHERE id = %s", (created["id"],)),
        ("DELETE FROM identity.consent_records WHERE id = %s", (created["id"],)),
        ("UPDATE identity.consent_records SET notice_version = 'x' WHERE false", None),
        ("TRUNCATE identity.consent_records CASCADE", None),
    ]
    for statement, params in statements:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            sql.execute(statement, params)
    history = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json["history"]
    assert history == [created]


# -- receipts ----------------------------------------------------------------------------------
def test_a_receipt_is_a_valid_kantara_consent_receipt_with_the_tenants_controller(identity, admin, tenant):
    Draft4Validator.check_schema(KANTARA_SCHEMA)
    settings = {
        "controller": {"name": "Acme SAS", "contact": "Data Protection Officer", "email": "dpo@acme.example",
                       "phone": "+33 1 23 45 67 89", "url": "https://acme.example",
                       "address": {"streetAddress": "1 rue de la Paix", "addressCountry": "FR"}},
        "jurisdiction": "FR", "policy_url": "https://acme.example/privacy", "language": "fr",
    }
    patched = identity.patch(f"/v1/tenants/{tenant.id}", json={"settings": settings}, headers=admin)
    assert patched.status_code == 200, patched.json
    contact_id = make_contact(identity, tenant)
    captured = ago(days=3).replace(microsecond=0)
    created = record(identity, tenant, contact_id, purpose="social_dm_marketing",
                     captured_at=iso(captured), expires_at=iso(captured + timedelta(days=365)))

    response = identity.get(f"/v1/consents/{created['id']}/receipt", headers=tenant.compliance)
    assert response.status_code == 200
    receipt = response.json
    Draft4Validator(KANTARA_SCHEMA).validate(receipt)
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["consentReceiptID"] == created["id"]
    assert receipt["consentTimestamp"] == int(captured.timestamp())
    assert receipt["piiPrincipalId"] == contact_id
    assert receipt["jurisdiction"] == "FR" and receipt["language"] == "fr"
    assert receipt["policyUrl"] == "https://acme.example/privacy"
    assert receipt["collectionMethod"] == "hubspot, form newsletter-footer"
    assert receipt["piiControllers"] == [{
        "piiController": "Acme SAS", "onBehalf": False, "contact": "Data Protection Officer",
        "address": {"streetAddress": "1 rue de la Paix", "addressCountry": "FR"},
        "email": "dpo@acme.example", "phone": "+33 1 23 45 67 89", "piiControllerUrl": "https://acme.example",
    }]
    [service] = receipt["services"]
    [purpose] = service["purposes"]
    assert purpose["consentType"] == "EXPLICIT"
    assert purpose["purposeCategory"] == ["6 - Marketing"]
    assert "4 - Communications/Social" in purpose["piiCategory"]
    assert purpose["thirdPartyDisclosure"] is False
    assert iso(captured + timedelta(days=365)) in purpose["termination"]
    assert "2024-05" in purpose["purpose"]
    assert receipt["sensitive"] is False and receipt["spiCat"] == []


def test_a_receipt_falls_back_when_the_tenant_has_no_settings(identity, tenant):
    contact_id = make_contact(identity, tenant)
    created = record(identity, tenant, contact_id, purpose="profile_enrichment", status="withdrawn",
                     legal_basis="legitimate_interest", source={"system": "pipedrive"}, proof=None)
    receipt = identity.get(f"/v1/consents/{created['id']}/receipt", headers=tenant.crm).json
    Draft4Validator(KANTARA_SCHEMA).validate(receipt)
    assert receipt["jurisdiction"] == "EU" and receipt["language"] == "en"
    assert receipt["piiControllers"][0]["piiController"] == "Acme"  # the tenant's name
    assert receipt["collectionMethod"] == "pipedrive"
    purpose = receipt["services"][0]["purposes"][0]
    assert purpose["consentType"] == "N/A"
    assert purpose["termination"].startswith("Withdrawn on ")


def test_receipts_need_crm_or_compliance_and_stay_within_the_tenant(identity, admin, tenant, other_tenant):
    contact_id = make_contact(identity, tenant)
    created = record(identity, tenant, contact_id)
    path = f"/v1/consents/{created['id']}/receipt"
    assert_problem(identity.get(path, headers=tenant.marketing), 403)
    assert_problem(identity.get(path, headers=admin), 403)
    assert_problem(identity.get(path), 401)
    assert_problem(identity.get(path, headers=other_tenant.compliance), 404)
    assert_problem(identity.get(f"/v1/consents/{uuid.uuid4()}/receipt", headers=tenant.crm), 404)


# -- the compliance listing and CSV export -----------------------------------------------------
def _seed_ledger(identity, tenant) -> list[dict]:
    first, second = make_contact(identity, tenant), make_contact(identity, tenant)
    return [
        record(identity, tenant, first, captured_at=iso(ago(days=10))),
        record(identity, tenant, first, purpose="sms_marketing", status="withdrawn",
               captured_at=iso(ago(days=8))),
        record(identity, tenant, second, purpose="sms_marketing", captured_at=iso(ago(days=6))),
        record(identity, tenant, second, status="withdrawn", captured_at=iso(ago(days=4))),
        record(identity, tenant, first, purpose="geolocation", captured_at=iso(ago(days=2))),
    ]


def test_listing_pages_through_the_ledger_by_captured_at(identity, tenant, other_tenant):
    seeded = _seed_ledger(identity, tenant)
    _seed_ledger(identity, other_tenant)
    seen, cursor, pages = [], None, 0
    while True:
        query = "/v1/consents?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = identity.get(query, headers=tenant.compliance)
        assert response.status_code == 200
        assert len(response.json["items"]) <= 2
        seen += response.json["items"]
        cursor, pages = response.json["next_cursor"], pages + 1
        if cursor is None:
            break
    assert pages == 3
    assert seen == seeded  # every record once, oldest captured first, none of the other tenant's

    assert_problem(identity.get("/v1/consents?cursor=garbage", headers=tenant.compliance), 422, "cursor")
    assert_problem(identity.get("/v1/consents?limit=0", headers=tenant.compliance), 422, "limit")


def test_listing_filters_by_purpose_status_and_captured_at(identity, tenant):
    seeded = _seed_ledger(identity, tenant)

    def ids(query: str) -> list[str]:
        response = identity.get("/v1/consents?" + query, headers=tenant.compliance)
        assert response.status_code == 200, response.json
        return [r["id"] for r in response.json["items"]]

    assert ids("purpose=sms_marketing") == [seeded[1]["id"], seeded[2]["id"]]
    assert ids("status=withdrawn") == [seeded[1]["id"], seeded[3]["id"]]
    assert ids("purpose=email_marketing&status=granted") == [seeded[0]["id"]]
    window = f"from={iso(ago(days=9))}&to={seeded[3]['captured_at']}"
    assert ids(window) == [seeded[1]["id"], seeded[2]["id"]]  # from inclusive, to exclusive
    assert_problem(identity.get("/v1/consents?purpose=fax", headers=tenant.compliance), 422, "purpose")
    assert_problem(identity.get("/v1/consents?status=expired", headers=tenant.compliance), 422, "status")
    assert_problem(identity.get("/v1/consents?from=yesterday", headers=tenant.compliance), 422, "from")
    assert_problem(identity.get("/v1/consents?to=9999-12-31T23:59:59-23:59", headers=tenant.compliance),
                   422, "to")


def test_the_ledger_listing_is_for_compliance_only(identity, admin, tenant):
    for headers in (tenant.crm, tenant.marketing, admin):
        assert_problem(identity.get("/v1/consents", headers=headers), 403)
        assert_problem(identity.get("/v1/consents", headers={**headers, "Accept": "text/csv"}), 403)


def test_csv_export_has_a_header_and_every_matching_record(identity, tenant, sql):
    seeded = _seed_ledger(identity, tenant)
    contact_id = make_contact(identity, tenant)
    tricky = record(identity, tenant, contact_id, purpose="geolocation", captured_at=iso(ago(days=1)),
                    source={"system": "web", "form": "=HYPERLINK(\"http://x\")", "ip": "2001:db8::1",
                            "user_agent": 'Agent "quoted", with comma\nand newline'},
                    proof="signed form #42")

    response = identity.get("/v1/consents", headers={**tenant.compliance, "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_id = {row[0]: dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert list(by_id) == [r["id"] for r in [*seeded, tricky]]

    first = by_id[seeded[0]["id"]]
    assert first["contact_id"] == seeded[0]["contact_id"]
    assert first["purpose"] == "email_marketing" and first["status"] == "granted"
    assert first["legal_basis"] == "consent" and first["notice_version"] == "2024-05"
    assert first["source_system"] == "hubspot" and first["source_ip"] == "203.0.113.7"
    assert json.loads(first["proof"]) == {"double_opt_in": "token-123", "confirmed": True}
    assert first["captured_at"] == seeded[0]["captured_at"]
    assert first["expires_at"] == ""
    assert first["evidence_hash"] == seeded[0]["evidence_hash"] and first["evidence_erased"] == "false"

    odd = by_id[tricky["id"]]
    assert odd["source_form"] == "'=HYPERLINK(\"http://x\")"  # a spreadsheet will not run it
    assert odd["source_user_agent"] == 'Agent "quoted", with comma\nand newline'
    assert odd["source_ip"] == "2001:db8::1" and odd["proof"] == "signed form #42"

    # Filters apply to the export; limit and cursor do not.
    filtered = identity.get("/v1/consents?status=withdrawn&limit=1",
                            headers={**tenant.compliance, "Accept": "text/csv"})
    ids = [row[0] for row in csv.reader(io.StringIO(filtered.get_data(as_text=True)))][1:]
    assert ids == [seeded[1]["id"], seeded[3]["id"]]

    # Every export is audited (what was asked, not the data).
    entries = sql.execute(
        "SELECT details FROM identity.audit_log WHERE tenant_id = %s AND action = 'consents.exported'"
        " ORDER BY id", (tenant.id,)).fetchall()
    assert [e["details"]["status"] for e in entries] == [None, "withdrawn"]


def test_csv_export_streams_from_a_server_side_cursor(identity, tenant, sql):
    contact_id = make_contact(identity, tenant)
    # 5,000 records straight into the ledger (INSERT is what append-only allows).
    sql.execute(
        "INSERT INTO identity.consent_records (tenant_id, id, contact_id, purpose, status, legal_basis,"
        " source_system, notice_version, captured_at)"
        " SELECT %s, gen_random_uuid(), %s, 'email_marketing', 'granted', 'consent', 'import', 'v1',"
        "        now() - make_interval(secs => n)"
        " FROM generate_series(1, 5000) AS n",
        (tenant.id, contact_id),
    )
    response = identity.get("/v1/consents?purpose=email_marketing",
                            headers={**tenant.compliance, "Accept": "text/csv, application/json;q=0.5"})
    assert response.status_code == 200 and response.is_streamed
    chunks = list(response.response)
    assert len(chunks) > 3  # the header, then batches as the cursor fetches them
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 5001
    captured = [row[CSV_COLUMNS.index("captured_at")] for row in rows[1:]]
    assert captured == sorted(captured, key=parse)

    # JSON stays the default answer.
    listed = identity.get("/v1/consents?purpose=email_marketing&limit=1000", headers=tenant.compliance)
    assert listed.mimetype == "application/json" and len(listed.json["items"]) == 1000


# -- scopes, validation, idempotency -----------------------------------------------------------
def test_only_crm_keys_record_consent(identity, admin, tenant):
    contact_id = make_contact(identity, tenant)
    path = f"/v1/contacts/{contact_id}/consents"
    assert_problem(identity.post(path, json=consent(), headers=tenant.marketing), 403)
    assert_problem(identity.post(path, json=consent(), headers=tenant.compliance), 403)
    assert_problem(identity.post(path, json=consent(), headers=admin), 403)
    assert_problem(identity.post(path, json=consent()), 401)
    assert_problem(identity.get(path, headers=admin), 403)
    assert_problem(identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=geolocation",
                                headers=admin), 403)
    assert identity.get(path, headers=tenant.marketing).json["history"] == []


@pytest.mark.parametrize(("overrides", "field"), [
    ({"purpose": "fax_marketing"}, "purpose"),
    ({"purpose": None}, "purpose"),
    ({"status": "maybe"}, "status"),
    ({"legal_basis": "vital_interest"}, "legal_basis"),
    ({"notice_version": ""}, "notice_version"),
    ({"source": None}, "source"),
    ({"source": {"form": "x"}}, "source"),
    ({"source": {"system": "web", "ip": "999.1.1.1"}}, "source"),
    ({"captured_at": "yesterday"}, "captured_at"),
    ({"captured_at": iso(ago(hours=-1))}, "captured_at"),
    ({"expires_at": iso(ago(days=2)), "captured_at": iso(ago(days=1))}, "expires_at"),
    ({"status": "withdrawn", "expires_at": iso(ago(days=-30))}, "expires_at"),
    ({"proof": 42}, "proof"),
    ({"proof": {"form": "a\x00b"}}, "proof"),
    ({"notice_version": "v\x001"}, "notice_version"),
    ({"source": {"system": "web", "ip": "fe80::1%eth0"}}, "source"),
    ({"captured_at": "1969-12-31T23:59:59Z"}, "captured_at"),
    ({"expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_consents_are_422_naming_the_field_and_record_nothing(identity, tenant, overrides, field):
    contact_id = make_contact(identity, tenant)
    body = consent(**overrides)
    for name, value in overrides.items():
        if value is None and name in ("purpose", "source"):
            del body[name]
    response = identity.post(f"/v1/contacts/{contact_id}/consents", json=body, headers=tenant.crm)
    assert_problem(response, 422, field)
    assert identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json["history"] == []


def test_a_captured_at_within_the_clock_skew_is_accepted(identity, tenant):
    contact_id = make_contact(identity, tenant)
    created = record(identity, tenant, contact_id, captured_at=iso(ago(minutes=-2)))
    assert parse(created["captured_at"]) > datetime.now(UTC)


def test_malformed_json_is_400(identity, tenant):
    contact_id = make_contact(identity, tenant)
    response = identity.post(f"/v1/contacts/{contact_id}/consents", data="{not json",
                             headers={**tenant.crm, "Content-Type": "application/json"})
    assert_problem(response, 400)


def test_a_repeated_idempotency_key_replays_the_first_answer(identity, tenant, sql):
    contact_id = make_contact(identity, tenant)
    path = f"/v1/contacts/{contact_id}/consents"
    headers = {**tenant.crm, "Idempotency-Key": "consent-form-submission-1"}
    first = identity.post(path, json=consent(), headers=headers)
    again = identity.post(path, json=consent(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(identity.get(path, headers=tenant.crm).json["history"]) == 1
    events = sql.execute(
        "SELECT count(*) AS n FROM identity.outbox WHERE routing_key = %s AND envelope->>'subject' = %s",
        (consents.CONSENT_RECORDED, contact_id)).fetchone()
    assert events["n"] == 1
    other = identity.post(path, json=consent(status="withdrawn"), headers=headers)
    assert_problem(other, 422, "Idempotency-Key")


# -- event and audit ---------------------------------------------------------------------------
def test_recording_writes_the_event_and_the_audit_entry_without_personal_data(identity, tenant, sql):
    contact_id = make_contact(identity, tenant)
    created = record(identity, tenant, contact_id, purpose="sms_marketing")
    row = sql.execute(
        "SELECT tenant_id, routing_key, envelope FROM identity.outbox"
        " WHERE routing_key = %s AND envelope->'data'->>'id' = %s",
        (consents.CONSENT_RECORDED, created["id"])).fetchone()
    assert row is not None
    envelope = row["envelope"]
    assert str(row["tenant_id"]) == tenant.id and envelope["tenantid"] == tenant.id
    assert envelope["specversion"] == "1.0" and envelope["type"] == "liaison.identity.consent.recorded"
    assert envelope["subject"] == contact_id
    data = envelope["data"]
    assert data["contact_id"] == contact_id
    assert data["purpose"] == "sms_marketing" and data["status"] == "granted"
    assert data["captured_at"] == created["captured_at"]
    assert data["source"] == {"system": "hubspot", "form": "newsletter-footer"}
    assert data["evidence_hash"] == created["evidence_hash"]
    assert data["current"] == {"status": "granted", "record_id": created["id"],
                               "captured_at": created["captured_at"], "expires_at": None}
    text = json.dumps(envelope)
    assert "203.0.113.7" not in text and "Mozilla" not in text and "token-123" not in text

    entry = sql.execute(
        "SELECT actor, resource, contact_id, details FROM identity.audit_log"
        " WHERE tenant_id = %s AND action = 'consent.recorded'", (tenant.id,)).fetchone()
    assert entry["resource"] == f"consent/{created['id']}" and str(entry["contact_id"]) == contact_id
    assert entry["actor"] == f"key:{tenant.keys['crm']['id']}"
    assert entry["details"]["purpose"] == "sms_marketing" and entry["details"]["status"] == "granted"
    text = json.dumps(entry["details"])
    assert "203.0.113.7" not in text and "Mozilla" not in text and "token-123" not in text


class _Abort(Exception):
    pass


def test_the_record_and_its_event_commit_or_roll_back_together(identity, tenant, db, sql):
    contact_id = make_contact(identity, tenant)
    body = {**consent(), "captured_at": None}
    with pytest.raises(_Abort):
        with db.transaction() as uow:
            created = consents.record_consent(uow, tenant.id, "test", contact_id, body)
            # Inside the transaction, both the record and its event are there...
            inside = uow.execute(
                "SELECT count(*) AS n FROM identity.outbox WHERE envelope->'data'->>'id' = %s",
                (created["id"],)).fetchone()
            assert inside["n"] == 1
            # ...and another connection sees neither until it commits.
            assert sql.execute("SELECT 1 FROM identity.consent_records WHERE id = %s",
                               (created["id"],)).fetchone() is None
            raise _Abort
    assert sql.execute("SELECT 1 FROM identity.consent_records WHERE id = %s",
                       (created["id"],)).fetchone() is None
    assert sql.execute("SELECT 1 FROM identity.outbox WHERE envelope->'data'->>'id' = %s",
                       (created["id"],)).fetchone() is None
    assert sql.execute("SELECT 1 FROM identity.audit_log WHERE resource = %s",
                       (f"consent/{created['id']}",)).fetchone() is None


# -- for the erasure and access flows ----------------------------------------------------------
def test_erasing_evidence_keeps_the_ledger_and_its_proof(identity, tenant, db, sql):
    survivor, duplicate = make_contact(identity, tenant), make_contact(identity, tenant)
    kept = make_contact(identity, tenant)
    own = record(identity, tenant, survivor)
    merged_in = record(identity, tenant, duplicate, purpose="sms_marketing")
    bystander = record(identity, tenant, kept)
    identity.post(f"/v1/contacts/{survivor}/merge", json={"duplicate_id": duplicate}, headers=tenant.crm)

    with db.transaction() as uow:
        assert consents.erase_evidence(uow, tenant.id, [survivor]) == 2

    history = identity.get(f"/v1/contacts/{survivor}/consents", headers=tenant.compliance).json["history"]
    for before, after in zip([own, merged_in], history, strict=True):
        assert after["id"] == before["id"] and after["status"] == before["status"]
        assert after["source"] == {"system": "hubspot", "form": "newsletter-footer", "ip": None,
                                   "user_agent": None}
        assert after["proof"] is None
        assert after["evidence_hash"] == before["evidence_hash"] and after["evidence_erased"] is True
    # The hash still proves the evidence the controller kept.
    salt = bytes(sql.execute("SELECT erasure_salt FROM identity.tenants WHERE id = %s",
                             (tenant.id,)).fetchone()["erasure_salt"])
    assert history[0]["evidence_hash"] == evidence_hash(
        salt, own["id"], own["source"]["ip"], own["source"]["user_agent"], own["proof"])
    receipt = identity.get(f"/v1/consents/{own['id']}/receipt", headers=tenant.compliance).json
    Draft4Validator(KANTARA_SCHEMA).validate(receipt)
    # Another contact's evidence is untouched.
    assert identity.get(f"/v1/contacts/{kept}/consents", headers=tenant.crm).json["history"] == [bystander]
    with db.transaction() as uow:
        assert consents.erase_evidence(uow, tenant.id, [survivor]) == 0
        assert consents.erase_evidence(uow, tenant.id, []) == 0


def test_export_for_contact_has_current_state_and_history_with_evidence(identity, tenant, db):
    contact_id = make_contact(identity, tenant)
    grant = record(identity, tenant, contact_id, purpose="geolocation")
    with db.transaction() as uow:
        exported = consents.export_for_contact(uow, tenant.id, contact_id)
    assert exported["history"] == [grant]
    assert exported["history"][0]["source"]["ip"] == "203.0.113.7"
    assert exported["current"]["geolocation"]["status"] == "granted"
    assert exported["current"]["email_marketing"]["status"] == "none"
    json.dumps(exported)  # a JSON document as it stands


def test_the_openapi_document_covers_the_consent_paths(identity):
    spec = identity.get("/openapi.json").json
    for path in ("/v1/contacts/{contact_id}/consents", "/v1/consents/check",
                 "/v1/consents/{record_id}/receipt", "/v1/consents"):
        assert path in spec["paths"], path
    listing = spec["paths"]["/v1/consents"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(listing)
