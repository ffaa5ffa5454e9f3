"""Webhooks to the CRM, end to end on the real PostgreSQL and broker: endpoints registered through
the API, events from identity's outbox through the relay and the webhooks consumer into
deliveries, sent by the dispatcher to a receiver played by `responses`, whose signature is checked
with the receiver code of docs/webhooks.md. The dispatcher's clock is passed in, never slept."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import psycopg
import pytest
import requests
import responses
from kombu import Connection
from psycopg.rows import dict_row

from services.identity import SCHEMA as IDENTITY
from services.identity.worker import handlers as identity_handlers
from services.webhooks import SCHEMA as WEBHOOKS
from services.webhooks.deliveries import Dispatcher, purge_expired
from services.webhooks.endpoints import secret_box
from services.webhooks.worker import handlers as webhooks_handlers
from shared.bus import Publisher
from shared.consumer import EventConsumer
from shared.events import utcnow
from shared.outbox import OutboxRelay
from tests.conftest import ROOT
from tests.integration.test_http_platform import assert_problem, contact_body

RECEIVER = "https://crm.example.com/liaison/events"
CONSENT = {"purpose": "email_marketing", "status": "granted", "legal_basis": "consent",
           "source": {"system": "hubspot", "form": "footer", "ip": "203.0.113.7"}, "notice_version": "2026-01"}


def receiver_code(document: str) -> dict:
    """The Python block of a document that verifies a signature, run as a reader would."""
    text = (ROOT / document).read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify_liaison_signature" in b)
    namespace: dict = {}
    exec(compile(block, document, "exec"), namespace)  # our own documentation, as a reader copies it
    return namespace


verify_liaison_signature = receiver_code("docs/webhooks.md")["verify_liaison_signature"]
verify_as_the_readme_says = receiver_code("README.md")["verify_liaison_signature"]


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="module")
def hooks(settings, identity_app, webhooks_app):
    """identity's and webhooks' relays and consumers on the real broker, and a dispatcher without
    jitter. `sync()` runs them until the events of the last change are handled (an erasure goes
    identity → webhooks → identity)."""
    dbs = {"identity": identity_app.extensions["liaison"].db, "webhooks": webhooks_app.extensions["liaison"].db}
    consumers = [EventConsumer.from_settings("identity", dbs["identity"], IDENTITY, identity_handlers(), settings),
                 EventConsumer.from_settings("webhooks", dbs["webhooks"], WEBHOOKS, webhooks_handlers(), settings)]
    relays = [OutboxRelay(dbs["identity"], Publisher.from_settings(settings), [IDENTITY]),
              OutboxRelay(dbs["webhooks"], Publisher.from_settings(settings), [WEBHOOKS])]
    with Connection(settings.broker_url) as connection:
        for consumer in consumers:
            consumer.topology.declare(connection)
    dispatcher = Dispatcher(dbs["webhooks"], secret_box(settings.secret_key), concurrency=4, jitter=lambda: 0.5)
    publisher = Publisher.from_settings(settings)

    def sync() -> None:
        for _ in range(4):
            if not sum(relay.drain() for relay in relays) + sum(c.drain(idle=0.2) for c in consumers):
                return

    def redeliver(envelope: dict) -> None:
        publisher.publish_batch([(envelope["type"], envelope)])
        consumers[1].drain(idle=0.2)

    def send(tenant_id: str, now: datetime) -> int:
        """The dispatcher at `now`, for this tenant's deliveries: other tenants' pending ones (other
        modules' events, left in identity's outbox and relayed by `sync`, reach endpoints they
        made; the fuzzing's pings) are not this test's to send, with a clock a day ahead."""
        with dbs["webhooks"].transaction() as uow:
            uow.execute("UPDATE webhooks.deliveries SET status = 'failed', next_attempt_at = NULL"
                        " WHERE status = 'pending' AND tenant_id <> %s", (tenant_id,))
        return dispatcher.drain(now)

    yield SimpleNamespace(sync=sync, send=send, redeliver=redeliver)
    dispatcher.close()
    for closing in (publisher, *(r.publisher for r in relays)):
        closing.close()


def register(webhooks, tenant, event_types, url=RECEIVER, **extra) -> dict:
    response = webhooks.post("/v1/webhooks", json={"url": url, "event_types": event_types, **extra},
                             headers=tenant.crm)
    assert response.status_code == 201, response.json
    return response.json


def deliveries(webhooks, tenant, webhook_id, **query) -> list[dict]:
    response = webhooks.get(f"/v1/webhooks/{webhook_id}/deliveries", query_string=query, headers=tenant.compliance)
    assert response.status_code == 200, response.json
    return response.json["items"]


def delivery(webhooks, tenant, webhook_id, delivery_id) -> dict:
    response = webhooks.get(f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", headers=tenant.crm)
    assert response.status_code == 200, response.json
    return response.json


def ping(webhooks, tenant, webhook_id) -> dict:
    response = webhooks.post(f"/v1/webhooks/{webhook_id}/ping", headers=tenant.crm)
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == f"/v1/webhooks/{webhook_id}/deliveries/{response.json['id']}"
    return response.json


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_an_endpoint_is_registered_with_its_secret_shown_once(webhooks, tenant, other_tenant):
    body = {"url": RECEIVER, "event_types": ["liaison.identity.consent.recorded", "liaison.campaigns.*"],
            "description": "Consents into HubSpot"}
    created = webhooks.post("/v1/webhooks", json=body, headers={**tenant.crm, "Idempotency-Key": "hook-1"})
    assert created.status_code == 201, created.json
    hook = created.json
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["enabled"] is True and hook["event_types"] == body["event_types"]
    again = webhooks.post("/v1/webhooks", json=body, headers={**tenant.crm, "Idempotency-Key": "hook-1"})
    assert again.json == hook  # a retried create, not a second endpoint

    shown = webhooks.get(f"/v1/webhooks/{hook['id']}", headers=tenant.compliance)
    assert shown.status_code == 200 and "secret" not in shown.json
    listed = webhooks.get("/v1/webhooks", headers=tenant.crm).json
    assert [h["id"] for h in listed["items"]] == [hook["id"]] and listed["next_cursor"] is None
    assert hook["secret"] not in json.dumps(listed)

    local = register(webhooks, tenant, ["*"], url="http://127.0.0.1:9000/hook")
    assert local["event_types"] == ["*"]
    changed = webhooks.patch(f"/v1/webhooks/{local['id']}", json={"enabled": False, "event_types": ["liaison.*"]},
                             headers=tenant.crm)
    assert changed.status_code == 200, changed.json
    assert changed.json["enabled"] is False and changed.json["disabled_reason"]
    assert webhooks.delete(f"/v1/webhooks/{local['id']}", headers=tenant.crm).status_code == 204
    assert_problem(webhooks.get(f"/v1/webhooks/{local['id']}", headers=tenant.crm), 404)

    # Bad input: 422 naming the field, nothing created.
    for bad, field in (({"url": "ftp://crm.example.com/x", "event_types": ["*"]}, "url"),
                       ({"url": "http://crm.example.com/hook", "event_types": ["*"]}, "url"),
                       ({"url": "not a url", "event_types": ["*"]}, "url"),
                       ({"url": RECEIVER, "event_types": ["liaison.identity.contact.deleted"]}, "event_types"),
                       ({"url": RECEIVER, "event_types": ["liaison.billing.*"]}, "event_types"),
                       ({"url": RECEIVER, "event_types": []}, "event_types"),
                       ({"url": RECEIVER}, "event_types")):
        answer = assert_problem(webhooks.post("/v1/webhooks", json=bad, headers=tenant.crm), 422)
        assert field in answer["errors"], answer
    assert_problem(webhooks.patch(f"/v1/webhooks/{hook['id']}", json={"event_types": ["nope"]}, headers=tenant.crm),
                   422)
    assert len(webhooks.get("/v1/webhooks", headers=tenant.crm).json["items"]) == 1

    # Scopes and tenancy.
    assert_problem(webhooks.post("/v1/webhooks", json=body, headers=tenant.marketing), 403)
    assert_problem(webhooks.post("/v1/webhooks", json=body, headers=tenant.compliance), 403)
    assert_problem(webhooks.get("/v1/webhooks"), 401)
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("post", "/rotate-secret"), ("post", "/ping"),
                         ("get", "/deliveries"), ("get", f"/deliveries/{uuid.uuid4()}")):
        kwargs = {"json": {"description": "mine"}} if method == "patch" else {}
        answer = assert_problem(getattr(webhooks, method)(f"/v1/webhooks/{hook['id']}{path}",
                                                          headers=other_tenant.crm, **kwargs), 404)
        assert hook["url"] not in json.dumps(answer)
    assert webhooks.get("/v1/webhooks", headers=other_tenant.crm).json["items"] == []
    assert webhooks.get(f"/v1/webhooks/{hook['id']}", headers=tenant.crm).json["description"] == body["description"]


def test_a_consent_reaches_the_crm_signed_once_and_only_the_tenants_own(identity, webhooks, tenant, other_tenant,
                                                                       hooks):
    wanted = register(webhooks, tenant, ["liaison.identity.consent.recorded"])
    elsewhere = register(webhooks, tenant, ["liaison.campaigns.*"], url="https://crm.example.com/campaigns")
    theirs = register(webhooks, other_tenant, ["*"], url="https://other.example.com/hook")

    contact_id = identity.post("/v1/contacts", json=contact_body("wh1", email="lea@example.com"),
                               headers=tenant.crm).json["id"]
    consent = identity.post(f"/v1/contacts/{contact_id}/consents", json=CONSENT, headers=tenant.crm)
    assert consent.status_code == 201, consent.json
    hooks.sync()

    [pending] = deliveries(webhooks, tenant, wanted["id"])
    assert pending["event_type"] == "liaison.identity.consent.recorded" and pending["status"] == "pending"
    assert deliveries(webhooks, tenant, elsewhere["id"]) == []
    assert deliveries(webhooks, other_tenant, theirs["id"]) == []  # never another tenant's events

    now = utcnow()
    with responses.RequestsMock() as receiver:
        receiver.post(RECEIVER, status=204)
        assert hooks.send(tenant.id, now) == 1
        [call] = receiver.calls
    request = call.request
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    event = json.loads(body)
    assert event["type"] == "liaison.identity.consent.recorded" and event["subject"] == contact_id
    assert event["tenantid"] == tenant.id and event["data"]["id"] == consent.json["id"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Liaison-Webhook-Id"] == wanted["id"]
    assert request.headers["Liaison-Event-Id"] == event["id"] == pending["event_id"]
    assert request.headers["Liaison-Event-Type"] == "liaison.identity.consent.recorded"
    header = request.headers["Liaison-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header), header
    assert verify_liaison_signature(wanted["secret"], header, body, now=now.timestamp())
    assert verify_as_the_readme_says(wanted["secret"], header, body, now=now.timestamp())
    assert not verify_liaison_signature(wanted["secret"], header, body + b" ", now=now.timestamp())
    assert not verify_as_the_readme_says(wanted["secret"], header, body + b" ", now=now.timestamp())
    assert not verify_liaison_signature(theirs["secret"], header, body, now=now.timestamp())
    assert not verify_liaison_signature(wanted["secret"], header, body, now=now.timestamp() + 301)  # too old

    done = delivery(webhooks, tenant, wanted["id"], pending["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["last_status_code"] == 204
    assert done["delivered_at"] and done["next_attempt_at"] is None
    assert done["request_body"].encode() == body
    assert [(a["number"], a["status_code"], a["error"]) for a in done["attempt_history"]] == [(1, 204, None)]
    assert [d["id"] for d in deliveries(webhooks, tenant, wanted["id"], status="succeeded")] == [pending["id"]]
    assert deliveries(webhooks, tenant, wanted["id"], status="pending") == []

    metrics = webhooks.get("/metrics").get_data(as_text=True)
    assert 'liaison_webhook_attempts_total{outcome="succeeded"}' in metrics
    assert "liaison_webhook_pending_deliveries" in metrics and "liaison_webhook_oldest_due_seconds" in metrics

    # The same event redelivered by the bus makes no second delivery.
    hooks.redeliver(event)
    assert len(deliveries(webhooks, tenant, wanted["id"])) == 1


def test_a_failing_receiver_is_retried_for_a_day_then_failed_and_replayed(webhooks, tenant, hooks):
    hook = register(webhooks, tenant, ["liaison.identity.*"])
    sent = ping(webhooks, tenant, hook["id"])
    assert sent["event_type"] == "liaison.webhooks.ping" and sent["status"] == "pending"
    created = moment(sent["created_at"])

    now, tries = moment(sent["next_attempt_at"]), []
    with responses.RequestsMock() as receiver:
        receiver.post(RECEIVER, status=500)
        receiver.post(RECEIVER, body=requests.ConnectTimeout("connect timed out"))
        receiver.post(RECEIVER, status=503)  # and from then on
        while True:
            assert hooks.send(tenant.id, now) == 1
            state = delivery(webhooks, tenant, hook["id"], sent["id"])
            tries.append(now)
            if state["status"] != "pending":
                break
            now = moment(state["next_attempt_at"])
        assert len(receiver.calls) == len(tries)
    waits = [(later - earlier).total_seconds() for earlier, later in zip(tries, tries[1:], strict=False)]
    assert waits[:7] == [30, 60, 300, 1800, 7200, 18000, 36000]  # growing, without jitter here
    assert tries[-1] - created == timedelta(hours=24)  # the last attempt closes the day
    assert state["status"] == "failed" and state["attempts"] == len(tries) == 9
    assert state["last_status_code"] == 503 and state["last_error"] == "HTTP 503"
    history = state["attempt_history"]
    assert [a["status_code"] for a in history[:3]] == [500, None, 503]
    assert "no answer" in history[1]["error"]
    assert [d["id"] for d in deliveries(webhooks, tenant, hook["id"], status="failed")] == [sent["id"]]

    replayed = webhooks.post(f"/v1/webhooks/{hook['id']}/deliveries/{sent['id']}/replay", headers=tenant.crm)
    assert replayed.status_code == 202, replayed.json
    assert replayed.json["status"] == "pending"
    with responses.RequestsMock() as receiver:
        receiver.post(RECEIVER, status=200)
        hooks.send(tenant.id, utcnow())
        assert len(receiver.calls) == 1
    state = delivery(webhooks, tenant, hook["id"], sent["id"])
    assert state["status"] == "succeeded" and state["attempts"] == 10 and state["last_status_code"] == 200
    # A succeeded delivery may be replayed too: one more attempt.
    assert webhooks.post(f"/v1/webhooks/{hook['id']}/deliveries/{sent['id']}/replay",
                         headers=tenant.crm).status_code == 202
    assert_problem(webhooks.post(f"/v1/webhooks/{hook['id']}/deliveries/{uuid.uuid4()}/replay",
                                 headers=tenant.crm), 404)


def test_a_receiver_answering_410_gone_disables_its_endpoint(webhooks, tenant, hooks):
    hook = register(webhooks, tenant, ["*"])
    sent = ping(webhooks, tenant, hook["id"])
    with responses.RequestsMock() as receiver:
        receiver.post(RECEIVER, status=410)
        hooks.send(tenant.id, utcnow())
    assert delivery(webhooks, tenant, hook["id"], sent["id"])["status"] == "failed"
    state = webhooks.get(f"/v1/webhooks/{hook['id']}", headers=tenant.crm).json
    assert state["enabled"] is False and "410" in state["disabled_reason"]


def test_during_a_rotation_both_secrets_sign(webhooks, tenant, hooks):
    hook = register(webhooks, tenant, ["*"])
    rotated = webhooks.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.crm)
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["secret"]
    assert new.startswith("whsec_") and new != hook["secret"]
    assert rotated.json["previous_secret_expires_at"]
    assert "secret" not in webhooks.get(f"/v1/webhooks/{hook['id']}", headers=tenant.crm).json

    def signed(secrets_expected: int) -> tuple[str, bytes, float]:
        ping(webhooks, tenant, hook["id"])
        now = utcnow()
        with responses.RequestsMock() as receiver:
            receiver.post(RECEIVER, status=200)
            hooks.send(tenant.id, now)
            [call] = receiver.calls
        header = call.request.headers["Liaison-Signature"]
        assert header.count("v1=") == secrets_expected, header
        return header, call.request.body, now.timestamp()

    header, body, at = signed(2)
    assert verify_liaison_signature(new, header, body, now=at)
    assert verify_liaison_signature(hook["secret"], header, body, now=at)

    # A leaked secret is stopped at once.
    urgent = webhooks.post(f"/v1/webhooks/{hook['id']}/rotate-secret", json={"expire_previous_in_hours": 0},
                           headers=tenant.crm)
    assert urgent.status_code == 200 and urgent.json["previous_secret_expires_at"] is None
    header, body, at = signed(1)
    assert verify_liaison_signature(urgent.json["secret"], header, body, now=at)
    assert not verify_liaison_signature(new, header, body, now=at)
    assert_problem(webhooks.post(f"/v1/webhooks/{hook['id']}/rotate-secret", json={"expire_previous_in_hours": 48},
                                 headers=tenant.crm), 422)


def test_an_erasure_completes_with_webhooks_and_leaves_no_personal_data(identity, webhooks, tenant, hooks, sql):
    hook = register(webhooks, tenant, ["*"])
    email, handle = f"erase.{uuid.uuid4().hex[:8]}@example.com", f"gone_{uuid.uuid4().hex[:6]}"
    contact_id = identity.post("/v1/contacts", json=contact_body("wh-erase", email=email, first_name="Ysaline"),
                               headers=tenant.crm).json["id"]
    assert identity.post(f"/v1/contacts/{contact_id}/identities", json={"network": "x", "handle": handle},
                         headers=tenant.crm).status_code == 201
    hooks.sync()
    with responses.RequestsMock() as receiver:  # the first two are delivered, the rest wait (receiver down)
        receiver.post(RECEIVER, status=200)
        hooks.send(tenant.id, utcnow())
    assert identity.post(f"/v1/contacts/{contact_id}/consents", json=CONSENT, headers=tenant.crm).status_code == 201
    hooks.sync()
    before = deliveries(webhooks, tenant, hook["id"])
    assert {d["status"] for d in before} == {"succeeded", "pending"}
    assert email in json.dumps([delivery(webhooks, tenant, hook["id"], d["id"])["request_body"] for d in before])
    # The right of access: webhooks' part of the export shows what the CRM was sent about them.
    export = webhooks.get(f"/v1/webhooks/contacts/{contact_id}/export", headers=tenant.compliance)
    assert export.status_code == 200, export.json
    assert {d["id"] for d in export.json["deliveries"]} == {d["id"] for d in before}
    assert email in json.dumps(export.json)
    assert_problem(webhooks.get(f"/v1/webhooks/contacts/{contact_id}/export", headers=tenant.crm), 403)

    accepted = identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.compliance)
    assert accepted.status_code == 202, accepted.json
    hooks.sync()
    state = identity.get(f"/v1/erasures/{accepted.json['erasure_id']}", headers=tenant.compliance).json
    assert state["services"]["webhooks"] == "completed", state

    for strings in (email, handle, "Ysaline"):
        rows = sql.execute("SELECT id FROM webhooks.deliveries WHERE tenant_id = %s AND position(lower(%s) IN"
                           " lower(coalesce(payload, '') || coalesce(last_error, ''))) > 0",
                           (tenant.id, strings)).fetchall()
        assert rows == [], strings
    after = {d["id"]: d for d in deliveries(webhooks, tenant, hook["id"])}
    for earlier in before:
        seen = delivery(webhooks, tenant, hook["id"], earlier["id"])
        assert seen["request_body"] is None
        if earlier["status"] == "pending":
            assert seen["status"] == "failed" and "erased" in seen["last_error"]
        assert_problem(webhooks.post(f"/v1/webhooks/{hook['id']}/deliveries/{earlier['id']}/replay",
                                     headers=tenant.crm), 409)
    # What is left about them is the erasure itself, which names no one.
    export = webhooks.get(f"/v1/webhooks/contacts/{contact_id}/export", headers=tenant.compliance).json
    assert {d["event_type"] for d in export["deliveries"]} == {
        "liaison.identity.contact.erasure_requested", "liaison.identity.erasure.completed",
        "liaison.webhooks.erasure.completed"}
    # The CRM is told of the erasure, with the contact's ids and without their handles.
    told = [d for d in after.values() if d["event_type"] == "liaison.identity.contact.erasure_requested"]
    [request] = told
    body = json.loads(delivery(webhooks, tenant, hook["id"], request["id"])["request_body"])
    assert body["data"]["contact_id"] == contact_id and "handles" not in body["data"]


def test_finished_deliveries_are_kept_30_days(webhooks, webhooks_app, tenant, hooks):
    hook = register(webhooks, tenant, ["*"])
    done = ping(webhooks, tenant, hook["id"])
    with responses.RequestsMock() as receiver:
        receiver.post(RECEIVER, status=200)
        hooks.send(tenant.id, utcnow())
    waiting = ping(webhooks, tenant, hook["id"])
    db = webhooks_app.extensions["liaison"].db

    purge_expired(db, now=utcnow() + timedelta(days=29))
    assert delivery(webhooks, tenant, hook["id"], done["id"])["status"] == "succeeded"
    purge_expired(db, now=utcnow() + timedelta(days=30, minutes=1))
    assert_problem(webhooks.get(f"/v1/webhooks/{hook['id']}/deliveries/{done['id']}", headers=tenant.crm), 404)
    assert [d["id"] for d in deliveries(webhooks, tenant, hook["id"])] == [waiting["id"]]  # pending: kept


class KeepAliveReceiver(ThreadingHTTPServer):
    """A CRM's endpoint speaking HTTP/1.1 with keep-alive, as web servers do (werkzeug's test server
    closes every connection): keeps the client port and the event of each POST."""

    def __init__(self) -> None:
        arrived: list[tuple[int, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived.append((self.client_address[1], json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "8")
                self.end_headers()
                self.wfile.write(b"received")

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.arrived = arrived
        self.url = f"http://127.0.0.1:{self.server_address[1]}/liaison/events"


def test_a_new_delivery_goes_out_at_once_over_a_kept_connection(webhooks, webhooks_app, settings, tenant):
    """The dispatcher sleeps until a transaction makes deliveries (NOTIFY), not until its next
    poll, and reads each answer so that one connection to the receiver carries them all."""
    receiver = KeepAliveReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    dispatcher = Dispatcher(webhooks_app.extensions["liaison"].db, secret_box(settings.secret_key), concurrency=1)
    stop = threading.Event()
    hook = register(webhooks, tenant, ["*"], url=receiver.url)
    # A poll every 30 s: only a NOTIFY brings each ping out within the wait below.
    loop = threading.Thread(target=dispatcher.run, args=(stop, 30.0), daemon=True)
    loop.start()
    try:
        for n in range(1, 6):
            sent = ping(webhooks, tenant, hook["id"])
            deadline = time.monotonic() + 10
            while len(receiver.arrived) < n and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [event["id"] for _, event in receiver.arrived][n - 1:] == [sent["event_id"]], receiver.arrived
    finally:
        stop.set()
        loop.join(timeout=10)
        dispatcher.close()
        receiver.shutdown()
        receiver.server_close()
    assert len({port for port, _ in receiver.arrived}) == 1, [port for port, _ in receiver.arrived]
