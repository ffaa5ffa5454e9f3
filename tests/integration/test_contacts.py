"""Contacts as a CRM platform uses them: upsert, bulk, find, change, merge."""

import uuid

import psycopg
from psycopg.rows import dict_row

from tests.integration.test_http_platform import assert_problem, contact_body


def test_upsert_creates_then_updates_by_crm_reference(identity, tenant):
    created = identity.post("/v1/contacts", json=contact_body(
        "42", email=" Jeanne@Example.FR ", phone="+33 6 12 34 56 78", first_name="Jeanne",
        locale="fr-FR", timezone="Europe/Paris", attributes={"tier": "gold"}), headers=tenant.crm)
    assert created.status_code == 201
    contact = created.json
    assert contact["email"] == "jeanne@example.fr"
    assert contact["phone"] == "+33612345678"
    assert contact["crm_ref"] == {"system": "salesforce", "id": "42"}
    assert contact["suppressed"] is False
    uuid.UUID(contact["id"])

    updated = identity.post("/v1/contacts", json=contact_body("42", last_name="Martin",
                                                               attributes={"city": "Paris"}),
                            headers=tenant.crm)
    assert updated.status_code == 200
    assert updated.json["id"] == contact["id"]
    # Fields the update did not carry keep their values; attributes merge.
    assert updated.json["first_name"] == "Jeanne" and updated.json["last_name"] == "Martin"
    assert updated.json["email"] == "jeanne@example.fr"
    assert updated.json["attributes"] == {"tier": "gold", "city": "Paris"}
    got = identity.get(f"/v1/contacts/{contact['id']}", headers=tenant.marketing)
    assert got.json == updated.json


def test_an_explicit_null_clears_a_field(identity, tenant):
    identity.post("/v1/contacts", json=contact_body("n", phone="+33612345678"), headers=tenant.crm)
    cleared = identity.post("/v1/contacts", json=contact_body("n", phone=None), headers=tenant.crm)
    assert cleared.json["phone"] is None


def test_bulk_lands_good_rows_and_reports_bad_ones(identity, tenant):
    rows = [contact_body(f"b{i}", email=f"user{i}@example.com") for i in range(5)]
    rows.insert(2, {"crm_ref": {"system": "salesforce"}, "email": "nope"})
    rows.append("not an object")
    rows.append(contact_body("b0", first_name="Later"))  # same record twice: the later row wins
    result = identity.post("/v1/contacts/bulk", json={"contacts": rows}, headers=tenant.crm)
    assert result.status_code == 200
    assert result.json["created"] == 5 and result.json["updated"] == 0
    errors = {e["index"]: e["errors"] for e in result.json["errors"]}
    assert set(errors) == {0, 2, 6}
    assert set(errors[2]) == {"crm_ref", "email"}
    found = identity.get("/v1/contacts?crm_system=salesforce&crm_id=b0", headers=tenant.crm).json["items"]
    # The superseded row was not applied: only the later row's fields landed.
    assert found[0]["first_name"] == "Later" and found[0]["email"] is None

    again = identity.post("/v1/contacts/bulk", json={"contacts": rows[:2]}, headers=tenant.crm)
    assert again.json == {"created": 0, "updated": 2, "errors": []}


def test_bulk_refuses_more_than_ten_thousand_and_an_empty_batch(identity, tenant):
    too_many = [contact_body(str(i)) for i in range(10_001)]
    body = assert_problem(identity.post("/v1/contacts/bulk", json={"contacts": too_many}, headers=tenant.crm), 422)
    assert "contacts" in body["errors"]
    assert_problem(identity.post("/v1/contacts/bulk", json={"contacts": []}, headers=tenant.crm), 422)


def test_find_by_email_and_page_through_all(identity, tenant):
    identity.post("/v1/contacts/bulk", json={"contacts": [
        contact_body(f"p{i}", email="shared@example.com") for i in range(7)]}, headers=tenant.crm)
    seen, cursor = [], None
    while True:
        url = "/v1/contacts?email=SHARED@example.com&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = identity.get(url, headers=tenant.crm).json
        assert len(page["items"]) <= 3
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7


def test_patch_changes_only_what_it_names(identity, tenant):
    contact = identity.post("/v1/contacts", json=contact_body("pa", email="a@example.com",
                                                              attributes={"a": 1, "b": 2}),
                            headers=tenant.crm).json
    patched = identity.patch(f"/v1/contacts/{contact['id']}", json={
        "first_name": "Ada", "attributes": {"b": None, "c": 3}}, headers=tenant.crm)
    assert patched.status_code == 200
    assert patched.json["first_name"] == "Ada" and patched.json["email"] == "a@example.com"
    assert patched.json["attributes"] == {"a": 1, "c": 3}
    assert_problem(identity.patch(f"/v1/contacts/{contact['id']}", json={"phone": "12"},
                                  headers=tenant.crm), 422)


def test_patch_to_a_crm_reference_in_use_is_a_conflict(identity, tenant):
    first = identity.post("/v1/contacts", json=contact_body("c1"), headers=tenant.crm).json
    second = identity.post("/v1/contacts", json=contact_body("c2"), headers=tenant.crm).json
    body = assert_problem(identity.patch(f"/v1/contacts/{second['id']}",
                                         json={"crm_ref": {"system": "salesforce", "id": "c1"}},
                                         headers=tenant.crm), 409)
    assert body["contact_id"] == first["id"]


def test_merge_moves_identities_and_removes_the_duplicate(identity, tenant):
    keep = identity.post("/v1/contacts", json=contact_body("m1", email="keep@example.com"), headers=tenant.crm).json
    dup = identity.post("/v1/contacts", json=contact_body("m2", phone="+14155550100", first_name="Sam"),
                        headers=tenant.crm).json
    identity.post(f"/v1/contacts/{dup['id']}/identities", json={"network": "x", "handle": "@sam"}, headers=tenant.crm)
    merged = identity.post(f"/v1/contacts/{keep['id']}/merge", json={"duplicate_id": dup["id"]}, headers=tenant.crm)
    assert merged.status_code == 200
    assert merged.json["email"] == "keep@example.com"
    assert merged.json["phone"] == "+14155550100" and merged.json["first_name"] == "Sam"
    assert_problem(identity.get(f"/v1/contacts/{dup['id']}", headers=tenant.crm), 404)
    resolved = identity.get("/v1/identities/resolve?network=x&handle=sam", headers=tenant.crm)
    assert resolved.json["contact_id"] == keep["id"]
    assert_problem(identity.post(f"/v1/contacts/{keep['id']}/merge", json={"duplicate_id": keep["id"]},
                                 headers=tenant.crm), 422)
    assert_problem(identity.post(f"/v1/contacts/{keep['id']}/merge", json={"duplicate_id": dup["id"]},
                                 headers=tenant.crm), 404)


def test_each_change_writes_its_event_and_audit_entry_in_its_transaction(identity, tenant, settings):
    contact = identity.post("/v1/contacts", json=contact_body("ev", email="ev@example.com"), headers=tenant.crm).json
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        events = conn.execute(
            "SELECT routing_key, envelope FROM identity.outbox WHERE tenant_id = %s"
            " AND envelope->>'subject' = %s", (tenant.id, contact["id"])).fetchall()
        audit = conn.execute(
            "SELECT action, actor, details FROM identity.audit_log WHERE tenant_id = %s AND contact_id = %s",
            (tenant.id, contact["id"])).fetchall()
    assert [e["routing_key"] for e in events] == ["liaison.identity.contact.upserted"]
    envelope = events[0]["envelope"]
    assert envelope["specversion"] == "1.0" and envelope["tenantid"] == tenant.id
    assert envelope["type"] == "liaison.identity.contact.upserted"
    assert envelope["data"]["contact"]["email"] == "ev@example.com"
    assert audit[0]["action"] == "contact.created"
    assert audit[0]["actor"] == f"key:{tenant.keys['crm']['id']}"
    assert "ev@example.com" not in str(audit)  # the trail names fields, never personal data


def test_idempotent_contact_creation_creates_once(identity, tenant, settings):
    headers = {**tenant.crm, "Idempotency-Key": "import-7"}
    first = identity.post("/v1/contacts", json=contact_body("idem"), headers=headers)
    second = identity.post("/v1/contacts", json=contact_body("idem"), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json == second.json
    with psycopg.connect(settings.database_url) as conn:
        events = conn.execute("SELECT count(*) FROM identity.outbox WHERE envelope->>'subject' = %s",
                              (first.json["id"],)).fetchone()[0]
    assert events == 1


def test_a_retried_bulk_call_with_its_idempotency_key_changes_nothing_more(identity, tenant):
    headers = {**tenant.crm, "Idempotency-Key": "nightly-sync-2026-11-23-part-1"}
    rows = [contact_body(f"ik{i}", first_name="First") for i in range(3)]
    first = identity.post("/v1/contacts/bulk", json={"contacts": rows}, headers=headers)
    assert first.json == {"created": 3, "updated": 0, "errors": []}
    again = identity.post("/v1/contacts/bulk", json={"contacts": rows}, headers=headers)
    assert again.json == first.json  # not "updated": 3


def test_the_database_shows_a_contact_exactly_as_the_api_does(identity, tenant, settings):
    """Bulk upserts build contacts and their events in SQL (identity.contact_json); single reads
    build them in Python (contacts.view). Both must be the same document."""
    from services.identity.contacts import view
    from shared.events import CloudEvent

    contact = identity.post("/v1/contacts", json=contact_body("same", email="s@example.com", phone="+33612345678",
                                                              locale="fr-FR", attributes={"a": [1, {"b": None}]}),
                            headers=tenant.crm).json
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        # A whole-second timestamp too: written without a fraction, as Python writes it.
        conn.execute("UPDATE identity.contacts SET updated_at = date_trunc('second', updated_at) WHERE id = %s",
                     (contact["id"],))
        row = conn.execute("SELECT c.*, identity.contact_json(c) AS json FROM identity.contacts c WHERE id = %s",
                           (contact["id"],)).fetchone()
        envelope = conn.execute("SELECT envelope FROM identity.outbox WHERE envelope->>'subject' = %s",
                                (contact["id"],)).fetchone()["envelope"]
    assert row["json"] == view(row)
    assert not row["json"]["updated_at"].endswith(".000000Z")
    python_envelope = CloudEvent("t", "s", tenant.id, {}, subject="x").envelope()
    assert set(envelope) == set(python_envelope)
    assert envelope["data"] == {"created": True, "contact": contact}


def test_idempotency_keys_expire_after_a_day(identity, tenant, settings):
    from shared.db import Database
    from shared.maintenance import expire_idempotency_keys

    headers = {**tenant.crm, "Idempotency-Key": "old-key"}
    first = identity.post("/v1/contacts", json=contact_body("exp1"), headers=headers)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("UPDATE identity.idempotency_keys SET created_at = now() - interval '25 hours'"
                     " WHERE tenant_id = %s AND key = 'old-key'", (tenant.id,))
    db = Database(settings.database_url, max_size=1).open()
    try:
        assert expire_idempotency_keys(db, "identity") >= 1
    finally:
        db.close()
    # A day later the key is free: the same request is answered anew (an update now).
    again = identity.post("/v1/contacts", json=contact_body("exp1"), headers=headers)
    assert first.status_code == 201 and again.status_code == 200
