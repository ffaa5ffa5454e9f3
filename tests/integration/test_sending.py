"""The channel workers end to end on the real PostgreSQL and RabbitMQ: deliveries and audience
rows written with SQL, dispatch events published through campaigns' outbox and relay, the channel
consumers built by channel_worker.build draining them. The providers are the sandbox's: email
through a real SMTP sink (sandbox/smtp.py) on a free port, SMS and DMs through the sandbox app
reached via `responses`; every message is counted at the sandbox, once per idempotency key."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import psycopg
import pytest
import responses
from kombu import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sandbox.app import create_app as sandbox_app
from sandbox.channels import Outbox, twilio_signature
from sandbox.smtp import sink
from services.campaigns import SCHEMA, tracking
from services.campaigns.channel_worker import build
from services.campaigns.channels import adapters as channel_adapters
from services.campaigns.channels.base import OutgoingMessage
from services.campaigns.dispatch import dispatch_events
from services.campaigns.sending import DELIVERY_UPDATED, SMS_CALLBACK_PATH, Sender, TrackingLinks
from services.campaigns.templates import render_content
from shared.bus import Publisher
from shared.events import utcnow
from shared.outbox import OutboxRelay

SANDBOX = "http://sandbox.test"
PUBLIC = "https://campaigns.test"
CONTENT = {
    "email": {"subject": "A gift for {{ contact.first_name }}",
              "body": "Hello {{ contact.first_name }}, see {{ link(\"https://shop.example/offer\") }}"},
    "sms": {"body": "Hi {{ contact.first_name }}: {{ link(\"https://shop.example/sms\") }}"},
    "social_dm": {"body": "Hey {{ contact.first_name }}!"},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def world(settings, campaigns_app, tmp_path, monkeypatch) -> Iterator[SimpleNamespace]:
    """The sandbox (its HTTP app behind `responses`, its SMTP sink on a free port, one outbox),
    the channel consumers bound to it, and `dispatch(channel, ids)` to run a batch through."""
    store = tmp_path / "outbox.sqlite3"
    monkeypatch.setenv("SANDBOX_STORE", str(store))
    monkeypatch.setenv("SANDBOX_SMS_CALLBACK_DELAY", "off")
    outbox = Outbox(store)
    port = free_port()
    smtp = sink(outbox, "127.0.0.1", port)
    smtp.start()
    client = sandbox_app({}).test_client()
    failures: dict[str, int] = {}  # path prefix -> how many 503s to answer before the sandbox does

    def forward(request):
        path = "/" + request.url.split("://", 1)[1].split("/", 1)[1]
        for prefix, left in failures.items():
            if path.startswith(prefix) and left:
                failures[prefix] = left - 1
                return 503, {}, '{"code": 20503, "message": "Service unavailable", "status": 503}'
        answer = client.open(path, method="POST", data=request.body, headers=dict(request.headers))
        return answer.status_code, {"Content-Type": answer.content_type}, answer.get_data()

    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.start()
    mock.add_callback(responses.POST, re.compile(re.escape(SANDBOX) + "/.*"), callback=forward)
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "CAMPAIGNS_EMAIL_FROM": "Acme <offers@acme.example>",
           "SMS_API_BASE_URL": SANDBOX, "SMS_ACCOUNT_SID": "AC42", "SMS_AUTH_TOKEN": "sandbox-token",
           "SMS_FROM": "+15005550006", "X_DM_BASE_URL": SANDBOX, "X_DM_ACCESS_TOKEN": "sandbox-token",
           "MESSENGER_BASE_URL": SANDBOX + "/v19.0", "MESSENGER_ACCESS_TOKEN": "sandbox-token"}
    db = campaigns_app.extensions["liaison"].db
    links = TrackingLinks(PUBLIC, settings.secret_key, tracking.click_url, tracking.open_url,
                          tracking.unsubscribe_url)
    adapters = channel_adapters(env)
    consumers = {c.name.removeprefix("campaigns-"): c for c in
                 build(settings, db, ["email", "sms", "social_dm"], adapters, render_content, links,
                       backoff=0.0, sleep=lambda _: None)}
    with Connection(settings.broker_url) as connection:
        for consumer in consumers.values():
            consumer.topology.declare(connection)
    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA])

    def dispatch(tenant_id: str, channel: str, ids: list[str], campaign_id: str | None = None) -> None:
        with db.transaction() as uow:
            uow.publish_many(SCHEMA, dispatch_events(tenant_id, channel, ids, campaign_id=campaign_id))
        relay.drain()
        consumers[channel].drain(idle=0.5)

    def sent(channel: str) -> list[dict]:
        return outbox.messages(channel)

    yield SimpleNamespace(db=db, dispatch=dispatch, sent=sent, failures=failures, adapters=adapters,
                          links=links, consumers=consumers)
    mock.stop()
    mock.reset()
    smtp.stop()
    relay.publisher.close()


class Scenario:
    """A tenant's campaign, contacts and deliveries, written with SQL."""

    def __init__(self, sql, cost_per_message: dict | None = None):
        self.sql = sql
        self.tenant = str(uuid.uuid4())
        self.campaign = str(uuid.uuid4())
        sql.execute(
            "INSERT INTO campaigns.campaigns (tenant_id, id, name, segment_id, channels, strategy, content, status,"
            " cost_per_message) VALUES (%s, %s, 'Spring', %s, %s, 'all_eligible', %s, 'running', %s)",
            (self.tenant, self.campaign, str(uuid.uuid4()), ["email", "sms", "social_dm"], Jsonb(CONTENT),
             Jsonb(cost_per_message or {})),
        )

    def contact(self, first_name: str = "Ada", *, email: str | None = None, phone: str | None = None,
                consents: tuple[str, ...] = (), suppressed: bool = False,
                handles: tuple[tuple[str, str, str | None], ...] = ()) -> str:
        contact_id = str(uuid.uuid4())
        self.sql.execute(
            "INSERT INTO campaigns.audience (tenant_id, contact_id, contact_version, email, phone, first_name,"
            " suppressed, city) VALUES (%s, %s, now(), %s, %s, %s, %s, 'Lyon')",
            (self.tenant, contact_id, email, phone, first_name, suppressed),
        )
        for purpose in consents:
            self.consent(contact_id, purpose, "granted")
        for network, handle, user_id in handles:
            self.sql.execute(
                "INSERT INTO campaigns.audience_handles (tenant_id, network, handle, contact_id, identity_id,"
                " network_user_id) VALUES (%s, %s, %s, %s, %s, %s)",
                (self.tenant, network, handle, contact_id, str(uuid.uuid4()), user_id),
            )
        return contact_id

    def consent(self, contact_id: str, purpose: str, status: str, expires_in: timedelta | None = None) -> None:
        self.sql.execute(
            "INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, record_id, captured_at,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s)"
            " ON CONFLICT (tenant_id, contact_id, purpose) DO UPDATE SET status = EXCLUDED.status,"
            " expires_at = EXCLUDED.expires_at",
            (self.tenant, contact_id, purpose, status, str(uuid.uuid4()),
             utcnow() + expires_in if expires_in is not None else None),
        )

    def delivery(self, contact_id: str, channel: str, status: str = "queued", **columns) -> str:
        delivery_id = str(uuid.uuid4())
        self.sql.execute(
            "INSERT INTO campaigns.deliveries (tenant_id, id, campaign_id, contact_id, channel, status, address,"
            " send_after, attempts, content) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (self.tenant, delivery_id, self.campaign, contact_id, channel, status, columns.get("address"),
             columns.get("send_after"), columns.get("attempts", 0),
             Jsonb(columns["content"]) if columns.get("content") else None),
        )
        return delivery_id

    def get(self, delivery_id: str) -> dict:
        return self.sql.execute("SELECT * FROM campaigns.deliveries WHERE tenant_id = %s AND id = %s",
                                (self.tenant, delivery_id)).fetchone()

    def events(self, delivery_id: str) -> list[dict]:
        rows = self.sql.execute(
            "SELECT envelope FROM campaigns.outbox WHERE routing_key = %s AND envelope->'data'->>'delivery_id' = %s"
            " ORDER BY id", (DELIVERY_UPDATED, delivery_id)).fetchall()
        return [r["envelope"]["data"] for r in rows]


def test_a_batch_per_channel_is_sent_and_recorded(world, sql):
    s = Scenario(sql, cost_per_message={"email": 0.002})
    ada = s.contact("Ada", email="ada@example.com", consents=("email_marketing",))
    bob = s.contact("Bob", email="bob@example.com", consents=("email_marketing",), suppressed=True)
    cy = s.contact("Cy", email="cy@example.com")  # no consent at all now
    dee = s.contact("Dee", phone="+14155552671", consents=("sms_marketing",))
    eve = s.contact("Eve", consents=("social_dm_marketing",),
                    handles=(("facebook", "eve.fb", "6543210"), ("x", "eve", "2244994945")))
    fay = s.contact("Fay", consents=("social_dm_marketing",), handles=(("instagram", "fay.ig", "1784140"),))
    emails = [s.delivery(ada, "email", address="ada@example.com"), s.delivery(bob, "email"), s.delivery(cy, "email")]
    texts = [s.delivery(dee, "sms")]
    dms = [s.delivery(eve, "social_dm", address="x:eve"), s.delivery(fay, "social_dm")]

    world.dispatch(s.tenant, "sms", texts, s.campaign)
    world.dispatch(s.tenant, "social_dm", dms, s.campaign)
    world.dispatch(s.tenant, "email", emails, s.campaign)  # last: its events are still in the outbox

    sent_mail = s.get(emails[0])
    assert sent_mail["status"] == "sent" and sent_mail["attempts"] == 1 and sent_mail["sent_at"] is not None
    assert sent_mail["provider_message_id"] == f"<{emails[0]}@liaison>" and sent_mail["cost"] == Decimal("0.002")
    assert sent_mail["content"]["subject"] == "A gift for Ada"
    assert f"{PUBLIC}/t/c/" in sent_mail["content"]["text"] and f"{PUBLIC}/t/o/" in sent_mail["content"]["html"]
    assert (s.get(emails[1])["status"], s.get(emails[1])["reason"]) == ("suppressed", "suppression_list")
    assert (s.get(emails[2])["status"], s.get(emails[2])["reason"]) == ("suppressed", "withdrawn")
    [mail] = world.sent("email")
    assert mail["key"] == f"<{emails[0]}@liaison>" and mail["payload"]["rcpt_tos"] == ["ada@example.com"]
    assert mail["payload"]["headers"]["List-Unsubscribe"].startswith(f"<{PUBLIC}/t/u/")
    # The person reads exactly the text recorded as sent (the part is base64: nothing rewraps it).
    assert mail["payload"]["text"] == sent_mail["content"]["text"]

    text = s.get(texts[0])
    [sms] = world.sent("sms")
    assert text["status"] == "sent" and text["provider_message_id"] == sms["key"] and text["cost"] is None
    assert sms["payload"]["to"] == "+14155552671" and sms["payload"]["body"] == text["content"]["body"]
    assert sms["payload"]["idempotency_token"] == texts[0]
    assert sms["payload"]["status_callback"] == PUBLIC + SMS_CALLBACK_PATH

    assert [s.get(d)["status"] for d in dms] == ["sent", "sent"]
    assert s.get(dms[1])["address"] == "instagram:fay.ig"
    assert [(m["payload"]["network"], m["payload"]["text"]) for m in world.sent("social_dm")] == [
        ("x", "Hey Eve!"), ("messenger", "Hey Fay!")]

    assert s.events(emails[0]) == [{"delivery_id": emails[0], "campaign_id": s.campaign, "trigger_id": None,
                                    "contact_id": ada, "channel": "email", "status": "sent", "reason": None}]
    assert [e["status"] for e in s.events(emails[1])] == ["suppressed"]


def test_consent_withdrawn_or_expired_since_the_launch_sends_nothing(world, sql):
    s = Scenario(sql)
    ada = s.contact("Ada", phone="+14155552671", consents=("sms_marketing",))
    bob = s.contact("Bob", phone="+14155552672", consents=("sms_marketing",))
    ids = [s.delivery(ada, "sms"), s.delivery(bob, "sms")]
    s.consent(ada, "sms_marketing", "withdrawn")  # between the launch and the send
    s.consent(bob, "sms_marketing", "granted", expires_in=timedelta(seconds=-1))

    world.dispatch(s.tenant, "sms", ids, s.campaign)

    assert [(s.get(d)["status"], s.get(d)["reason"]) for d in ids] == [("suppressed", "withdrawn")] * 2
    assert world.sent("sms") == []


def test_a_batch_redelivered_after_a_crash_sends_each_message_once(world, sql):
    """The worker died mid-batch: one delivery sent and recorded, one handed to the provider but
    still `sending`, one not started. The batch comes again: the provider recognises the message
    sent again (same idempotency key), the sent one is skipped, the last goes out once."""
    s = Scenario(sql)
    people = [s.contact(name, email=f"{name.lower()}@example.com", phone=f"+1415555267{i}",
                        consents=("email_marketing", "sms_marketing")) for i, name in enumerate(("Ada", "Bob", "Cy"))]
    for channel in ("email", "sms"):
        done, handed, fresh = (s.delivery(p, channel) for p in people)
        world.dispatch(s.tenant, channel, [done], s.campaign)
        # `handed` reached the provider, then the worker died before recording it.
        content = render_content(channel, CONTENT, {"first_name": "Bob"}, {}, lambda url: url)
        sql.execute("UPDATE campaigns.deliveries SET status = 'sending', attempts = 1, content = %s WHERE id = %s",
                    (Jsonb(content), handed))
        address = "bob@example.com" if channel == "email" else "+14155552671"
        first = world.adapters[channel].send(OutgoingMessage(
            handed, s.tenant, channel, address, content,
            status_callback=world.links.sms_callback() if channel == "sms" else None))

        world.dispatch(s.tenant, channel, [done, handed, fresh], s.campaign)  # the batch, redelivered

        assert [s.get(d)["status"] for d in (done, handed, fresh)] == ["sent"] * 3
        assert s.get(handed)["provider_message_id"] == first.provider_message_id
        assert (s.get(handed)["attempts"], s.get(done)["attempts"]) == (2, 1)
        assert s.get(handed)["content"] == content  # the message sent again is the one handed over
        counted = world.sent(channel)
        assert len(counted) == 3  # one message per delivery at the provider
        assert [m["received"] for m in counted] == [1, 2, 1]  # the repeat was recognised, not counted


def test_a_transient_error_is_retried_and_sends_once(world, sql):
    s = Scenario(sql)
    ada = s.contact("Ada", phone="+14155552671", consents=("sms_marketing",))
    delivery = s.delivery(ada, "sms")
    world.failures["/2010-04-01/"] = 2  # two 503s, then the provider answers

    world.dispatch(s.tenant, "sms", [delivery], s.campaign)

    assert (s.get(delivery)["status"], s.get(delivery)["attempts"]) == ("sent", 1)
    assert [m["received"] for m in world.sent("sms")] == [1]


def test_a_provider_down_for_good_fails_the_delivery_after_its_attempts(world, sql):
    s = Scenario(sql)
    ada = s.contact("Ada", phone="+14155552671", consents=("sms_marketing",))
    delivery = s.delivery(ada, "sms")
    world.failures["/2010-04-01/"] = 100
    sender = Sender(world.db, world.adapters, world.links, tries=2, backoff=0.0, sleep=lambda _: None,
                    max_delivery_attempts=2)

    assert sender.send_one(s.tenant, delivery) == "later"  # the batch is retried by the consumer
    assert (s.get(delivery)["status"], s.get(delivery)["attempts"]) == ("sending", 1)
    assert sender.send_one(s.tenant, delivery) == "failed"
    failed = s.get(delivery)
    assert failed["status"] == "failed" and failed["reason"].startswith("unavailable: 20503")
    assert world.sent("sms") == []


def test_permanent_errors_fail_the_delivery_with_the_reason(world, sql):
    s = Scenario(sql)
    bad_phone = s.contact("Ada", phone="+1555", consents=("sms_marketing",))
    no_id = s.contact("Bob", consents=("social_dm_marketing",), handles=(("x", "bob", None),))
    no_handle = s.contact("Cy", consents=("social_dm_marketing",))
    refused = s.contact("Dee", email="unknown.dee@example.com", consents=("email_marketing",))
    sms, dm_without_id, dm_without_handle = (s.delivery(bad_phone, "sms"), s.delivery(no_id, "social_dm"),
                                             s.delivery(no_handle, "social_dm"))
    mail = s.delivery(refused, "email")

    world.dispatch(s.tenant, "sms", [sms], s.campaign)
    world.dispatch(s.tenant, "social_dm", [dm_without_id, dm_without_handle], s.campaign)
    world.dispatch(s.tenant, "email", [mail], s.campaign)

    assert s.get(sms)["status"] == "failed" and s.get(sms)["reason"].startswith("invalid_address")
    assert (s.get(dm_without_id)["status"], s.get(dm_without_id)["reason"]) == ("failed", "no_address: "
                                                                                 "no x user id for this handle")
    assert (s.get(dm_without_handle)["status"], s.get(dm_without_handle)["reason"]) == ("suppressed", "no_address")
    assert s.get(mail)["status"] == "failed" and s.get(mail)["reason"].startswith("rejected: 550")
    assert [e["status"] for e in s.events(mail)] == ["failed"]
    assert world.sent("sms") == [] and world.sent("social_dm") == [] and world.sent("email") == []


def test_deferred_deliveries_wait_for_their_time(world, sql):
    s = Scenario(sql)
    ada = s.contact("Ada", email="ada@example.com", consents=("email_marketing",))
    later = s.delivery(ada, "email", "deferred", send_after=utcnow() + timedelta(hours=1))
    due = s.delivery(ada, "email", "deferred", send_after=utcnow() - timedelta(minutes=1))

    world.dispatch(s.tenant, "email", [later, due], s.campaign)

    assert (s.get(later)["status"], s.get(due)["status"]) == ("deferred", "sent")


def test_the_sms_status_callback_marks_the_delivery(world, sql, campaigns, monkeypatch):
    monkeypatch.setenv("SMS_AUTH_TOKEN", "sandbox-token")
    s = Scenario(sql)
    people = [s.contact(n, phone=f"+1415555267{i}", consents=("sms_marketing",)) for i, n in enumerate("AB")]
    ids = [s.delivery(p, "sms") for p in people]
    world.dispatch(s.tenant, "sms", ids, s.campaign)
    url = tracking.public_url(campaigns.application.extensions["liaison"].settings) + SMS_CALLBACK_PATH

    def report(delivery_id: str | None, status: str, token: str = "sandbox-token", **more: str):
        sid = s.get(delivery_id)["provider_message_id"] if delivery_id else "SMunknown"
        form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC42", **more}
        return campaigns.post(SMS_CALLBACK_PATH, data=form,
                              headers={"X-Twilio-Signature": twilio_signature(token, url, form)})

    assert report(ids[0], "sent").status_code == 200 and s.get(ids[0])["status"] == "sent"
    assert report(ids[0], "delivered").status_code == 200
    assert s.get(ids[0])["status"] == "delivered" and s.get(ids[0])["delivered_at"] is not None
    assert report(ids[1], "undelivered", ErrorCode="30003").status_code == 200
    assert (s.get(ids[1])["status"], s.get(ids[1])["reason"]) == ("failed", "undelivered: 30003")
    assert [e["status"] for e in s.events(ids[1])] == ["sent", "failed"]
    assert report(None, "delivered").status_code == 200  # not ours: acknowledged, ignored
    assert report(ids[1], "delivered", token="forged").status_code == 403
    assert campaigns.post(SMS_CALLBACK_PATH, data={"MessageSid": "x", "MessageStatus": "delivered"}).status_code == 403
    assert s.get(ids[1])["status"] == "failed"


def test_the_callback_is_documented_as_public(campaigns):
    operation = campaigns.get("/openapi.json").json["paths"]["/v1/campaigns/callbacks/sms"]["post"]
    assert operation["security"] == [] and "403" in operation["responses"]
