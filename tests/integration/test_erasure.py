"""The rights to erasure and of access, end to end: identity erases at once, the other services
confirm over the real broker, re-imports are flagged, exports gather every service's part."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import psycopg
import pytest
import requests
import responses
from kombu import Connection, Queue, binding
from psycopg.rows import dict_row

from services.identity import SCHEMA, export
from services.identity.worker import handlers
from shared.bus import Publisher, events_exchange
from shared.consumer import EventConsumer
from shared.events import CloudEvent
from shared.outbox import OutboxRelay
from tests.integration.test_http_platform import assert_problem, contact_body

CONSENT = {
    "purpose": "email_marketing", "status": "granted", "legal_basis": "consent",
    "source": {"system": "hubspot", "form": "footer", "ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
    "notice_version": "2024-05", "proof": {"double_opt_in": "token-123"},
}


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def bus(settings, identity_app):
    """identity's relay and consumer on the real broker, a publisher standing in for the other
    services, and a tap that sees what identity publishes."""
    db = identity_app.extensions["liaison"].db
    consumer = EventConsumer.from_settings("identity", db, SCHEMA, handlers(), settings)
    tap_name = f"{settings.bus_prefix}erasure-tap-{uuid.uuid4().hex[:6]}"
    tap = Queue(tap_name, bindings=[binding(events_exchange(settings.bus_prefix), routing_key="liaison.identity.#")],
                durable=False)
    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA])
    publisher = Publisher.from_settings(settings)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)  # before anything is published to it
        tap(connection.default_channel).declare()

        def published() -> list[dict]:
            relay.drain()
            got = []
            while (message := tap(connection.default_channel).get(accept=["cloudevents", "json"])) is not None:
                got.append(message.payload)
                message.ack()
            return got

        def complete(tenant_id: str, erasure_id: str, service: str, event_id: str | None = None) -> dict:
            event = CloudEvent(f"liaison.{service}.erasure.completed", f"/liaison/{service}", tenant_id,
                               {"erasure_id": erasure_id, "service": service},
                               **({"id": event_id} if event_id else {}))
            publisher.publish_batch([(event.type, event.envelope())])
            consumer.drain()
            return event.envelope()

        yield SimpleNamespace(published=published, complete=complete)
        tap(connection.default_channel).delete()
    publisher.close()
    relay.publisher.close()


def make_person(identity, tenant, ref, email, phone, handle):
    contact = identity.post("/v1/contacts", json=contact_body(ref, email=email, phone=phone,
                                                               first_name="Jeanne"), headers=tenant.crm)
    assert contact.status_code == 201, contact.json
    contact_id = contact.json["id"]
    linked = identity.post(f"/v1/contacts/{contact_id}/identities", json={"network": "x", "handle": handle},
                           headers=tenant.crm)
    assert linked.status_code == 201, linked.json
    consent = identity.post(f"/v1/contacts/{contact_id}/consents", json=CONSENT, headers=tenant.crm)
    assert consent.status_code == 201, consent.json
    return contact_id


def erasure_of(identity, tenant, erasure_id):
    response = identity.get(f"/v1/erasures/{erasure_id}", headers=tenant.compliance)
    assert response.status_code == 200, response.json
    return response.json


def test_erasure_end_to_end(identity, tenant, sql, bus):
    contact_id = make_person(identity, tenant, "e1", "jeanne@example.com", "+33612345678", "@JeanneD")
    duplicate = identity.post("/v1/contacts", json=contact_body("e1-dup", email="j.dup@example.com"),
                              headers=tenant.crm).json["id"]
    assert identity.post(f"/v1/contacts/{duplicate}/consents", json={**CONSENT, "purpose": "sms_marketing"},
                         headers=tenant.crm).status_code == 201
    assert identity.post(f"/v1/contacts/{contact_id}/merge", json={"duplicate_id": duplicate},
                         headers=tenant.crm).status_code == 200
    bus.published()  # what came before the erasure

    accepted = identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm)
    assert accepted.status_code == 202, accepted.json
    assert accepted.json["status"] == "pending"
    erasure_id = accepted.json["erasure_id"]
    assert accepted.headers["Location"] == f"/v1/erasures/{erasure_id}"

    state = erasure_of(identity, tenant, erasure_id)
    assert state["id"] == erasure_id and state["contact_id"] == contact_id
    assert state["status"] == "pending" and state["completed_at"] is None
    assert state["services"] == {"identity": "completed", "enrichment": "pending", "campaigns": "pending",
                                 "webhooks": "pending"}
    assert state["requested_at"].endswith("Z")

    # identity's part is done: the contact, its identities and its consent evidence are gone.
    assert_problem(identity.get(f"/v1/contacts/{contact_id}", headers=tenant.crm), 404)
    assert_problem(identity.get("/v1/identities/resolve?network=x&handle=jeanned", headers=tenant.crm), 404)
    ids = [contact_id, duplicate]
    assert sql.execute("SELECT count(*) AS n FROM identity.contacts WHERE tenant_id = %s AND id = ANY(%s::uuid[])",
                       (tenant.id, ids)).fetchone()["n"] == 0
    assert sql.execute("SELECT count(*) AS n FROM identity.identities WHERE tenant_id = %s",
                       (tenant.id,)).fetchone()["n"] == 0
    records = sql.execute(
        "SELECT r.id, r.evidence_hash, e.record_id AS evidence FROM identity.consent_records r"
        " LEFT JOIN identity.consent_evidence e ON e.tenant_id = r.tenant_id AND e.record_id = r.id"
        " WHERE r.tenant_id = %s AND r.contact_id = ANY(%s::uuid[])", (tenant.id, ids)).fetchall()
    assert len(records) == 2  # the ledger keeps the proof of past consent...
    assert all(r["evidence"] is None and r["evidence_hash"] for r in records)  # ...not the evidence
    ledger = identity.get("/v1/consents", headers=tenant.compliance).json["items"]
    assert {r["contact_id"] for r in ledger} == set(ids)
    assert all(r["evidence_erased"] and r["source"]["ip"] is None for r in ledger)
    assert "jeanne@example.com" not in str(ledger)

    # Erasing it again, like erasing an unknown contact, is 404.
    assert_problem(identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm), 404)
    assert_problem(identity.delete(f"/v1/contacts/{uuid.uuid4()}", headers=tenant.crm), 404)
    listed = identity.get(f"/v1/erasures?contact_id={contact_id}", headers=tenant.crm).json
    assert [e["id"] for e in listed["items"]] == [erasure_id] and listed["next_cursor"] is None

    # The other services are told, with every id and handle they may file the person under.
    events = [e for e in bus.published() if e["tenantid"] == tenant.id]
    by_type = {e["type"]: e for e in events}
    requested = by_type["liaison.identity.contact.erasure_requested"]
    assert requested["subject"] == contact_id
    assert requested["data"] == {"erasure_id": erasure_id, "contact_id": contact_id,
                                 "contact_ids": [contact_id, duplicate],
                                 "handles": [{"network": "x", "handle": "jeanned"}]}
    assert by_type["liaison.identity.erasure.completed"]["data"] == {"erasure_id": erasure_id,
                                                                     "service": "identity"}
    assert "jeanne@example.com" not in str(events) and "+33612345678" not in str(events)

    # They confirm over the bus; the erasure completes when the last one has.
    enrichment_done = bus.complete(tenant.id, erasure_id, "enrichment")
    state = erasure_of(identity, tenant, erasure_id)
    assert state["status"] == "pending"
    assert state["services"] == {"identity": "completed", "enrichment": "completed", "campaigns": "pending",
                                 "webhooks": "pending"}
    bus.complete(tenant.id, erasure_id, "campaigns")
    assert erasure_of(identity, tenant, erasure_id)["status"] == "pending"
    bus.complete(tenant.id, erasure_id, "webhooks")
    done = erasure_of(identity, tenant, erasure_id)
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert set(done["services"].values()) == {"completed"}

    # A repeated confirmation (the same event again, or a new one) changes nothing.
    bus.complete(tenant.id, erasure_id, "enrichment", event_id=enrichment_done["id"])
    bus.complete(tenant.id, erasure_id, "campaigns")
    assert erasure_of(identity, tenant, erasure_id) == done

    trail = identity.get(f"/v1/audit?contact_id={contact_id}", headers=tenant.compliance).json["items"]
    actions = [e["action"] for e in trail]
    assert actions.count("contact.erasure_requested") == 1 and actions.count("contact.erased") == 1
    requested_entry = next(e for e in trail if e["action"] == "contact.erasure_requested")
    assert requested_entry["actor"] == f"key:{tenant.keys['crm']['id']}"
    assert requested_entry["details"]["erasure_id"] == erasure_id
    assert "jeanne@example.com" not in str(trail)
    assert identity.get("/v1/audit/verify", headers=tenant.compliance).json["valid"] is True


def test_a_reimport_of_an_erased_persons_identifiers_is_flagged_suppressed(identity, tenant):
    contact_id = make_person(identity, tenant, "s1", "paul@example.com", "+33699887766", "paul_x")
    assert identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.compliance).status_code == 202

    by_email = identity.post("/v1/contacts", json=contact_body("s2", email="Paul@Example.com"),
                             headers=tenant.crm)
    assert by_email.status_code == 201 and by_email.json["suppressed"] is True
    by_phone = identity.post("/v1/contacts", json=contact_body("s3", phone="+33 6 99 88 77 66"),
                             headers=tenant.crm)
    assert by_phone.status_code == 201 and by_phone.json["suppressed"] is True
    bulk = identity.post("/v1/contacts/bulk", json={"contacts": [contact_body("s4", email="paul@example.com")]},
                         headers=tenant.crm)
    assert bulk.json["created"] == 1
    found = identity.get("/v1/contacts?crm_system=salesforce&crm_id=s4", headers=tenant.crm).json["items"]
    assert found[0]["suppressed"] is True
    unrelated = identity.post("/v1/contacts", json=contact_body("s5", email="someone@example.com"),
                              headers=tenant.crm)
    assert unrelated.json["suppressed"] is False

    # The same handle, however written, flags the contact it is linked to.
    linked = identity.post(f"/v1/contacts/{unrelated.json['id']}/identities",
                           json={"network": "x", "handle": "https://x.com/Paul_X"}, headers=tenant.crm)
    assert linked.status_code == 201, linked.json
    assert identity.get(f"/v1/contacts/{unrelated.json['id']}", headers=tenant.crm).json["suppressed"] is True


def test_the_address_of_a_merged_duplicate_is_suppressed_too(identity, tenant):
    keep = identity.post("/v1/contacts", json=contact_body("md1", email="main@example.com"), headers=tenant.crm).json
    dup = identity.post("/v1/contacts", json=contact_body("md2", email="old@example.com", phone="+33611223344"),
                        headers=tenant.crm).json
    merged = identity.post(f"/v1/contacts/{keep['id']}/merge", json={"duplicate_id": dup["id"]}, headers=tenant.crm)
    assert merged.json["email"] == "main@example.com"  # the duplicate's address was dropped...
    assert identity.delete(f"/v1/contacts/{keep['id']}", headers=tenant.compliance).status_code == 202
    # ... yet the person it belonged to is erased, so a re-import of it is flagged.
    again = identity.post("/v1/contacts", json=contact_body("md3", email="old@example.com"), headers=tenant.crm)
    assert again.json["suppressed"] is True


def test_suppression_is_per_tenant(identity, tenant, other_tenant):
    contact_id = make_person(identity, tenant, "t1", "anna@example.com", "+33611111111", "anna")
    assert identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm).status_code == 202
    elsewhere = identity.post("/v1/contacts", json=contact_body("t1", email="anna@example.com"),
                              headers=other_tenant.crm)
    assert elsewhere.json["suppressed"] is False


def test_erasure_scopes_and_tenant_isolation(identity, tenant, other_tenant, bus):
    contact_id = make_person(identity, tenant, "i1", "iso@example.com", "+33622222222", "iso")
    assert_problem(identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.marketing), 403)
    assert_problem(identity.delete(f"/v1/contacts/{contact_id}", headers=other_tenant.crm), 404)
    assert_problem(identity.delete(f"/v1/contacts/{contact_id}"), 401)
    assert identity.get(f"/v1/contacts/{contact_id}", headers=tenant.crm).status_code == 200

    erasure_id = identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.compliance).json["erasure_id"]
    assert identity.get(f"/v1/erasures/{erasure_id}", headers=tenant.crm).status_code == 200
    assert_problem(identity.get(f"/v1/erasures/{erasure_id}", headers=tenant.marketing), 403)
    body = assert_problem(identity.get(f"/v1/erasures/{erasure_id}", headers=other_tenant.compliance), 404)
    assert contact_id not in str(body)
    assert identity.get("/v1/erasures", headers=other_tenant.compliance).json["items"] == []
    assert_problem(identity.get(f"/v1/erasures/{uuid.uuid4()}", headers=tenant.compliance), 404)
    assert_problem(identity.get("/v1/erasures?cursor=forged", headers=tenant.compliance), 422)

    # Confirmations naming another tenant, or a service that takes no part, change nothing.
    bus.complete(other_tenant.id, erasure_id, "enrichment")
    bus.complete(other_tenant.id, erasure_id, "campaigns")
    bus.complete(other_tenant.id, erasure_id, "webhooks")
    bus.complete(tenant.id, erasure_id, "billing")
    state = erasure_of(identity, tenant, erasure_id)
    assert state["status"] == "pending"
    assert state["services"] == {"identity": "completed", "enrichment": "pending", "campaigns": "pending",
                                 "webhooks": "pending"}


def test_erasures_list_newest_first_in_pages(identity, tenant):
    ids = []
    for i in range(3):
        contact_id = make_person(identity, tenant, f"p{i}", f"p{i}@example.com", f"+3361000000{i}", f"p_{i}")
        ids.append(identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm).json["erasure_id"])
    first = identity.get("/v1/erasures?limit=2", headers=tenant.compliance).json
    second = identity.get(f"/v1/erasures?limit=2&cursor={first['next_cursor']}",
                          headers=tenant.compliance).json
    assert [e["id"] for e in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert identity.get("/v1/erasures?status=completed", headers=tenant.compliance).json["items"] == []


# -- the right of access -----------------------------------------------------------------------
def remote_urls(settings, contact_id):
    return {part.service: part.url for part in export.remote_parts(settings, contact_id)}


def holding_nothing(fake, urls) -> dict[str, str]:
    """webhooks, the export's third remote part, answers that it holds nothing about the contact."""
    assert set(urls) == {"enrichment", "campaigns", "webhooks"}, urls
    fake.add(responses.GET, urls["webhooks"], status=404,
             json={"type": "about:blank", "title": "Not Found", "status": 404})
    return {"webhooks": "empty"}


def test_export_gathers_every_services_part(settings, identity, tenant):
    contact_id = make_person(identity, tenant, "x1", "marie@example.com", "+33633333333", "marie")
    urls = remote_urls(settings, contact_id)
    profile = {"contact_id": contact_id, "demographics": {"city": "Lyon"}, "sources": [{"network": "x"}]}
    with responses.RequestsMock() as fake:
        fake.add(responses.GET, urls["enrichment"], json=profile)
        fake.add(responses.GET, urls["campaigns"], status=404,
                 json={"type": "about:blank", "title": "Not Found", "status": 404})
        empty = holding_nothing(fake, urls)
        response = identity.get(f"/v1/contacts/{contact_id}/export", headers=tenant.compliance)
        asked = {call.request.url: call.request.headers for call in fake.calls}
    assert response.status_code == 200, response.json
    document = response.json
    assert document["contact_id"] == contact_id and document["generated_at"].endswith("Z")
    assert set(document["services"]) == {"identity", "enrichment", "campaigns", *empty}
    own = document["services"]["identity"]
    assert own["contact"]["email"] == "marie@example.com" and own["contact"]["first_name"] == "Jeanne"
    assert [(i["network"], i["handle"]) for i in own["identities"]] == [("x", "marie")]
    [consent] = own["consents"]["history"]
    assert consent["source"]["ip"] == "203.0.113.7" and consent["proof"] == {"double_opt_in": "token-123"}
    assert {"contact.created", "handle.linked"} <= {e["action"] for e in own["audit"]}
    assert document["services"]["enrichment"] == profile
    assert document["services"]["campaigns"] == {}  # holds nothing about the contact
    # The other services were asked with the caller's own key.
    for url in urls.values():
        assert asked[url]["Authorization"] == tenant.compliance["Authorization"]

    trail = identity.get(f"/v1/audit?contact_id={contact_id}", headers=tenant.compliance).json["items"]
    exported = [e for e in trail if e["action"] == "contact.exported"]
    assert len(exported) == 1
    assert exported[0]["details"] == {"services": {"identity": "included", "enrichment": "included",
                                                   "campaigns": "empty", **empty}}


def test_export_names_a_service_that_does_not_answer(settings, identity, tenant):
    contact_id = make_person(identity, tenant, "x2", "luc@example.com", "+33644444444", "luc")
    urls = remote_urls(settings, contact_id)
    with responses.RequestsMock() as fake:
        fake.add(responses.GET, urls["enrichment"], json={"contact_id": contact_id})
        fake.add(responses.GET, urls["campaigns"], body=requests.ConnectionError("connection refused"))
        empty = holding_nothing(fake, urls)
        response = identity.get(f"/v1/contacts/{contact_id}/export", headers=tenant.compliance)
        campaign_calls = [c for c in fake.calls if c.request.url == urls["campaigns"]]
    body = assert_problem(response, 502)
    assert body["unavailable"] == ["campaigns"]
    assert "campaigns" in body["detail"] and "campaigns" in body["reasons"]
    assert len(campaign_calls) == 2  # asked again once before giving up
    partial = body["export"]
    assert partial["services"]["identity"]["contact"]["email"] == "luc@example.com"
    assert partial["services"]["enrichment"] == {"contact_id": contact_id}
    assert partial["services"]["campaigns"] is None

    with responses.RequestsMock() as fake:
        fake.add(responses.GET, urls["enrichment"], status=503)
        fake.add(responses.GET, urls["campaigns"], body=requests.Timeout("read timed out"))
        holding_nothing(fake, urls)
        body = assert_problem(identity.get(f"/v1/contacts/{contact_id}/export", headers=tenant.compliance), 502)
    assert body["unavailable"] == ["campaigns", "enrichment"]

    trail = identity.get(f"/v1/audit?contact_id={contact_id}", headers=tenant.compliance).json["items"]
    outcomes = [e["details"]["services"] for e in trail if e["action"] == "contact.exported"]
    assert outcomes == [
        {"identity": "included", "enrichment": "included", "campaigns": "unavailable", **empty},
        {"identity": "included", "enrichment": "unavailable", "campaigns": "unavailable", **empty},
    ]


def test_export_is_compliance_only_and_asks_nobody_about_an_unknown_contact(
        settings, identity, tenant, other_tenant):
    contact_id = make_person(identity, tenant, "x3", "zoe@example.com", "+33655555555", "zoe")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        assert_problem(identity.get(f"/v1/contacts/{contact_id}/export", headers=tenant.crm), 403)
        assert_problem(identity.get(f"/v1/contacts/{contact_id}/export", headers=tenant.marketing), 403)
        body = assert_problem(identity.get(f"/v1/contacts/{contact_id}/export",
                                           headers=other_tenant.compliance), 404)
        assert "zoe@example.com" not in str(body)
        assert_problem(identity.get(f"/v1/contacts/{uuid.uuid4()}/export", headers=tenant.compliance), 404)
        assert identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm).status_code == 202
        assert_problem(identity.get(f"/v1/contacts/{contact_id}/export", headers=tenant.compliance), 404)
        assert len(fake.calls) == 0


def test_openapi_documents_erasure_export_and_audit(identity):
    paths = identity.get("/openapi.json").json["paths"]
    assert {"get", "patch", "delete"} <= set(paths["/v1/contacts/{contact_id}"])
    assert "202" in paths["/v1/contacts/{contact_id}"]["delete"]["responses"]
    export_doc = paths["/v1/contacts/{contact_id}/export"]["get"]
    assert "/v1/profiles/{contact_id}/export" in export_doc["description"]
    assert "/v1/campaigns/contacts/{contact_id}/export" in export_doc["description"]
    for path in ("/v1/erasures", "/v1/erasures/{erasure_id}", "/v1/audit", "/v1/audit/verify"):
        assert "get" in paths[path], path


def test_a_stored_idempotent_reply_does_not_outlive_the_erasure(identity, tenant, sql):
    body = contact_body("k1", email="kim@example.com", first_name="Kim")
    headers = {**tenant.crm, "Idempotency-Key": str(uuid.uuid4())}
    first = identity.post("/v1/contacts", json=body, headers=headers)
    assert first.status_code == 201
    assert identity.delete(f"/v1/contacts/{first.json['id']}", headers=tenant.crm).status_code == 202
    stored = sql.execute("SELECT count(*) AS n FROM identity.idempotency_keys WHERE tenant_id = %s"
                         " AND position(convert_to(%s, 'UTF8') IN response_body) > 0",
                         (tenant.id, "kim@example.com")).fetchone()["n"]
    assert stored == 0
    again = identity.post("/v1/contacts", json=body, headers=headers)
    # Not a replay of the erased contact: a new one, flagged as matching an erased person.
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json["id"] != first.json["id"] and again.json["suppressed"] is True
