"""The audit trail as a compliance officer relies on it: every change is there, in one hash chain
per tenant that anyone can recompute, and any edit, deletion or reordering is found."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kombu import Connection

from services.identity import SCHEMA, audit_chain
from services.identity.audit import AuditEntry, record, record_many
from services.identity.worker import handlers
from shared.bus import Publisher
from shared.consumer import EventConsumer
from shared.events import CloudEvent, rfc3339
from tests.integration.test_http_platform import assert_problem, contact_body


def make_contacts(identity, tenant, count, prefix="c"):
    ids = []
    for i in range(count):
        created = identity.post("/v1/contacts", json=contact_body(f"{prefix}{i}", email=f"{prefix}{i}@example.com"),
                                headers=tenant.crm)
        assert created.status_code == 201, created.json
        ids.append(created.json["id"])
    return ids


def all_entries(identity, tenant, query=""):
    items, cursor = [], None
    while True:
        url = "/v1/audit?limit=1000" + query + (f"&cursor={cursor}" if cursor else "")
        response = identity.get(url, headers=tenant.compliance)
        assert response.status_code == 200, response.json
        items += response.json["items"]
        cursor = response.json["next_cursor"]
        if cursor is None:
            return items


def verify(identity, tenant):
    response = identity.get("/v1/audit/verify", headers=tenant.compliance)
    assert response.status_code == 200, response.json
    return response.json


@contextmanager
def tampering(settings):
    """What only a superuser can do: switch the append-only trigger off, change the log."""
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("ALTER TABLE identity.audit_log DISABLE TRIGGER USER")
        yield conn
        conn.execute("ALTER TABLE identity.audit_log ENABLE TRIGGER USER")


def test_every_change_is_sealed_into_a_chain_anyone_can_recompute(identity, tenant):
    first, second = make_contacts(identity, tenant, 2)
    assert identity.patch(f"/v1/contacts/{first}", json={"first_name": "Jeanne"},
                          headers=tenant.crm).status_code == 200

    entries = all_entries(identity, tenant)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [(e["action"], e["contact_id"]) for e in entries] == [
        ("contact.created", first), ("contact.created", second), ("contact.updated", first)]
    key_id = tenant.keys["crm"]["id"]
    assert all(e["actor"] == f"key:{key_id}" for e in entries)
    assert entries[2]["details"] == {"fields": ["first_name"]}
    assert "Jeanne" not in str(entries)  # details name what changed, never the data
    assert entries[0]["prev_hash"] == audit_chain.GENESIS
    for before, entry in zip([None, *entries], entries, strict=False):
        if before is not None:
            assert entry["prev_hash"] == before["hash"]
        # The documented recipe, from the API's own output.
        assert entry["hash"] == audit_chain.entry_hash(entry["prev_hash"], entry["seq"], entry)
        assert datetime.fromisoformat(entry["at"]).tzinfo is not None

    assert verify(identity, tenant) == {"valid": True, "entries": 3, "first_invalid_seq": None}


def test_compliance_sees_its_own_writes_at_once(identity, tenant):
    [contact] = make_contacts(identity, tenant, 1)
    # Nothing sealed them yet (no worker runs here): reading seals first.
    entries = all_entries(identity, tenant, f"&contact_id={contact}")
    assert [e["action"] for e in entries] == ["contact.created"]


def test_sealed_entries_cannot_be_changed_or_deleted(settings, identity, tenant):
    make_contacts(identity, tenant, 2)
    assert verify(identity, tenant)["entries"] == 2
    with psycopg.connect(settings.database_url) as conn:
        for statement in (
            "UPDATE identity.audit_log SET details = '{}' WHERE tenant_id = %s AND seq = 1",
            "UPDATE identity.audit_log SET hash = 'x' WHERE tenant_id = %s AND seq = 2",
            "DELETE FROM identity.audit_log WHERE tenant_id = %s AND seq = 1",
        ):
            with pytest.raises(psycopg.errors.RestrictViolation), conn.transaction():
                conn.execute(statement, (tenant.id,))
        with pytest.raises(psycopg.errors.RestrictViolation), conn.transaction():
            conn.execute("TRUNCATE identity.audit_log")
        # An unsealed entry may only be sealed, not rewritten.
        with conn.transaction():
            conn.execute("INSERT INTO identity.audit_log (tenant_id, actor, action, resource)"
                         " VALUES (%s, 'key:x', 'contact.updated', 'contact/x')", (tenant.id,))
        with pytest.raises(psycopg.errors.RestrictViolation), conn.transaction():
            conn.execute("UPDATE identity.audit_log SET action = 'nothing' WHERE tenant_id = %s"
                         " AND seq IS NULL", (tenant.id,))
    assert verify(identity, tenant) == {"valid": True, "entries": 3, "first_invalid_seq": None}


def test_verify_finds_an_edited_entry(settings, identity, tenant):
    make_contacts(identity, tenant, 5)
    assert verify(identity, tenant)["valid"] is True
    with tampering(settings) as conn:
        conn.execute("UPDATE identity.audit_log SET actor = 'key:someone-else'"
                     " WHERE tenant_id = %s AND seq = 3", (tenant.id,))
    assert verify(identity, tenant) == {"valid": False, "entries": 5, "first_invalid_seq": 3}


def test_verify_finds_an_edit_whose_hash_was_recomputed(settings, identity, tenant):
    make_contacts(identity, tenant, 4)
    entry = all_entries(identity, tenant)[1]
    forged = {**entry, "details": {"fields": []}}
    with tampering(settings) as conn:
        conn.execute("UPDATE identity.audit_log SET details = '{\"fields\": []}', hash = %s"
                     " WHERE tenant_id = %s AND seq = 2",
                     (audit_chain.entry_hash(entry["prev_hash"], 2, forged), tenant.id))
    # Entry 2 is consistent in itself now, but entry 3 was chained to the original.
    assert verify(identity, tenant) == {"valid": False, "entries": 4, "first_invalid_seq": 3}


def test_verify_finds_a_deleted_entry(settings, identity, tenant):
    make_contacts(identity, tenant, 5)
    assert verify(identity, tenant)["entries"] == 5
    with tampering(settings) as conn:
        conn.execute("DELETE FROM identity.audit_log WHERE tenant_id = %s AND seq = 2", (tenant.id,))
    assert verify(identity, tenant) == {"valid": False, "entries": 4, "first_invalid_seq": 2}


def test_verify_finds_deleted_first_and_newest_entries(settings, identity, admin):
    from tests.conftest import make_tenant

    first, newest = make_tenant(identity, admin, "First"), make_tenant(identity, admin, "Newest")
    for tenant in (first, newest):
        make_contacts(identity, tenant, 4)
        assert verify(identity, tenant)["entries"] == 4
    with tampering(settings) as conn:
        conn.execute("DELETE FROM identity.audit_log WHERE tenant_id = %s AND seq = 1", (first.id,))
        conn.execute("DELETE FROM identity.audit_log WHERE tenant_id = %s AND seq >= 3", (newest.id,))
    assert verify(identity, first) == {"valid": False, "entries": 3, "first_invalid_seq": 1}
    # No gap is left behind, but the chain head recorded at sealing says 4.
    assert verify(identity, newest) == {"valid": False, "entries": 2, "first_invalid_seq": 3}


def test_verify_finds_reordered_entries(settings, identity, tenant):
    make_contacts(identity, tenant, 5)
    assert verify(identity, tenant)["entries"] == 5
    with tampering(settings) as conn:
        for old, new in ((2, -1), (3, 2), (-1, 3)):
            conn.execute("UPDATE identity.audit_log SET seq = %s WHERE tenant_id = %s AND seq = %s",
                         (new, tenant.id, old))
    assert verify(identity, tenant) == {"valid": False, "entries": 5, "first_invalid_seq": 2}


def test_filters_by_contact_merged_duplicates_and_time(identity, tenant):
    survivor, duplicate, other = make_contacts(identity, tenant, 3)
    assert identity.patch(f"/v1/contacts/{duplicate}", json={"last_name": "Doe"},
                          headers=tenant.crm).status_code == 200
    merged = identity.post(f"/v1/contacts/{survivor}/merge", json={"duplicate_id": duplicate},
                           headers=tenant.crm)
    assert merged.status_code == 200, merged.json
    everything = all_entries(identity, tenant)

    about = all_entries(identity, tenant, f"&contact_id={survivor}")
    # The duplicate's own history is read as the survivor's.
    assert [(e["action"], e["contact_id"]) for e in about] == [
        ("contact.created", survivor), ("contact.created", duplicate),
        ("contact.updated", duplicate), ("contact.merged", survivor)]
    assert all(e["contact_id"] != other for e in about)
    assert all_entries(identity, tenant, f"&contact_id={uuid.uuid4()}") == []

    pivot = everything[2]
    since = all_entries(identity, tenant, "&from=" + pivot["at"])
    assert pivot in since and since == [e for e in everything if e["at"] >= pivot["at"]]
    until = all_entries(identity, tenant, "&to=" + pivot["at"])
    assert until == [e for e in everything if e["at"] < pivot["at"]]
    later = rfc3339(datetime.now(UTC) + timedelta(hours=1))
    assert all_entries(identity, tenant, "&from=" + later) == []
    assert_problem(identity.get("/v1/audit?from=yesterday", headers=tenant.compliance), 422)


def test_pages_follow_the_chain(identity, tenant):
    make_contacts(identity, tenant, 7)
    seen, cursor = [], None
    while True:
        url = "/v1/audit?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = identity.get(url, headers=tenant.compliance).json
        assert len(body["items"]) <= 3
        seen += [e["seq"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, 8))
    assert_problem(identity.get("/v1/audit?cursor=forged", headers=tenant.compliance), 422)
    assert_problem(identity.get("/v1/audit?limit=1001", headers=tenant.compliance), 422)


def test_the_trail_is_compliance_only_and_per_tenant(identity, tenant, other_tenant):
    [contact] = make_contacts(identity, tenant, 1)
    for headers in (tenant.crm, tenant.marketing):
        assert_problem(identity.get("/v1/audit", headers=headers), 403)
        assert_problem(identity.get("/v1/audit/verify", headers=headers), 403)
    assert_problem(identity.get("/v1/audit"), 401)
    assert all_entries(identity, other_tenant, f"&contact_id={contact}") == []
    assert verify(identity, other_tenant) == {"valid": True, "entries": 0, "first_invalid_seq": None}
    make_contacts(identity, other_tenant, 2, prefix="o")
    # Each tenant has its own chain, from 1.
    assert [e["seq"] for e in all_entries(identity, other_tenant)] == [1, 2]
    assert verify(identity, tenant)["entries"] == 1


def test_other_services_entries_arrive_as_events_and_join_the_chain(settings, identity_app, identity, tenant):
    db = identity_app.extensions["liaison"].db
    consumer = EventConsumer.from_settings("identity", db, SCHEMA, handlers(), settings)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    [contact] = make_contacts(identity, tenant, 1)
    at = "2024-05-01T10:00:00.123456Z"
    event = CloudEvent("liaison.enrichment.audit.recorded", "/liaison/enrichment", tenant.id, {
        "actor": "service:enrichment", "action": "profile.updated", "resource": f"profile/{contact}",
        "contact_id": contact, "details": {"fields": ["demographics.city"]}, "at": at,
    }, subject=contact)
    publisher = Publisher.from_settings(settings)
    try:
        publisher.publish_batch([(event.type, event.envelope())] * 2)  # delivered twice
    finally:
        publisher.close()
    consumer.drain()

    entries = all_entries(identity, tenant, f"&contact_id={contact}")
    assert [e["action"] for e in entries] == ["contact.created", "profile.updated"]
    remote = entries[1]
    assert remote["actor"] == "service:enrichment" and remote["at"] == at
    assert remote["details"] == {"service": "enrichment", "fields": ["demographics.city"]}
    assert verify(identity, tenant) == {"valid": True, "entries": 2, "first_invalid_seq": None}


def test_concurrent_writers_and_sealers_keep_one_valid_chain(identity_app, identity, tenant):
    db = identity_app.extensions["liaison"].db
    errors = []

    def write(n):
        try:
            for i in range(n):
                with db.transaction() as uow:
                    record(uow, tenant.id, "key:test", AuditEntry("contact.updated", f"contact/{i}"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def seal(rounds):
        try:
            for _ in range(rounds):
                audit_chain.seal_pending(db, batch=7)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(40,)) for _ in range(3)]
    threads += [threading.Thread(target=seal, args=(30,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    audit_chain.seal_pending(db)
    assert verify(identity, tenant) == {"valid": True, "entries": 120, "first_invalid_seq": None}
    assert [e["seq"] for e in all_entries(identity, tenant)] == list(range(1, 121))


def test_verify_streams_a_long_chain_and_finds_one_edit_in_it(settings, identity_app, identity, tenant):
    db = identity_app.extensions["liaison"].db
    count = 30_000  # several fetches of the server-side cursor
    with db.transaction() as uow:
        record_many(uow, tenant.id, "key:bulk", (
            AuditEntry("contact.created", f"contact/{i}", None, {"n": i}) for i in range(count)))
    assert audit_chain.seal_pending(db) >= count
    assert verify(identity, tenant) == {"valid": True, "entries": count, "first_invalid_seq": None}
    with tampering(settings) as conn:
        conn.execute("UPDATE identity.audit_log SET details = '{\"n\": -1}'"
                     " WHERE tenant_id = %s AND seq = 23456", (tenant.id,))
    assert verify(identity, tenant) == {"valid": False, "entries": count, "first_invalid_seq": 23456}
