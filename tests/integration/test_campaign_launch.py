"""Campaigns from creation to report, on the real PostgreSQL and broker: eligibility per channel
and fallback, suppression, frequency caps, quiet hours across time zones, dispatch in batches,
deferred sends released, cancel, conversions with last-touch attribution, report totals.

The audience rows are written with SQL here: how they arrive by event is
tests/integration/test_campaigns_audience.py's subject, not this one's."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.campaigns import SCHEMA
from services.campaigns import campaigns as use_cases
from services.campaigns.worker import handlers
from shared.consumer import EventConsumer
from shared.events import rfc3339, utcnow


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def worker(settings, campaigns_app):
    """campaigns' consumer (launch requests) on the real broker; `run()` handles what is queued."""
    db = campaigns_app.extensions["liaison"].db
    consumer = EventConsumer.from_settings("campaigns", db, SCHEMA, handlers(), settings)
    from kombu import Connection

    from shared.bus import Publisher
    from shared.outbox import OutboxRelay

    relay = OutboxRelay(db, Publisher.from_settings(settings), [SCHEMA])
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)

    class Worker:
        def run(self) -> None:
            relay.drain()
            consumer.drain()

    yield Worker()
    relay.publisher.close()


def person(sql, tenant_id: str, *, email: str | None = None, phone: str | None = None, consents=(),
           handles=(), timezone: str | None = None, suppressed: bool = False, country: str = "FR",
           expired=()) -> str:
    contact_id = str(uuid.uuid4())
    sql.execute(
        "INSERT INTO campaigns.audience (tenant_id, contact_id, contact_version, email, phone, first_name, timezone,"
        " suppressed, country, attributes) VALUES (%s, %s, now(), %s, %s, 'Ana', %s, %s, %s, %s)",
        (tenant_id, contact_id, email, phone, timezone, suppressed, country, Jsonb({})),
    )
    for purpose in consents:
        sql.execute("INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, captured_at)"
                    " VALUES (%s, %s, %s, 'granted', now())", (tenant_id, contact_id, purpose))
    for purpose in expired:
        sql.execute("INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, captured_at,"
                    " expires_at) VALUES (%s, %s, %s, 'granted', now() - interval '30 days', now() - interval '1 day')",
                    (tenant_id, contact_id, purpose))
    for network, handle in handles:
        sql.execute("INSERT INTO campaigns.audience_handles (tenant_id, network, handle, contact_id, identity_id)"
                    " VALUES (%s, %s, %s, %s, %s)", (tenant_id, network, handle, contact_id, uuid.uuid4()))
    return contact_id


def segment(campaigns_client, tenant, rules: dict | None = None) -> str:
    response = campaigns_client.post("/v1/segments", json={
        "name": "France", "rules": rules or {"all": [{"field": "country", "op": "eq", "value": "FR"}]}},
        headers=tenant.marketing)
    assert response.status_code == 201, response.json
    return response.json["id"]


CONTENT = {
    "email": {"subject": "Hello {{ contact.first_name }}", "body": "Our offer: {{ link('https://shop.example/a') }}"},
    "sms": {"body": "Hi {{ contact.first_name }}, 20% off today"},
    "social_dm": {"body": "Hey {{ contact.first_name }}!"},
    "web": {"title": "For you, {{ contact.first_name }}", "body": "20% off"},
}


def new_campaign(client, tenant, segment_id: str, **fields) -> dict:
    body = {"name": "Autumn", "segment_id": segment_id, "channels": ["email", "sms"], "content": CONTENT, **fields}
    response = client.post("/v1/campaigns", json=body, headers=tenant.marketing)
    assert response.status_code == 201, response.json
    return response.json


def deliveries(sql, tenant_id: str, campaign_id: str) -> dict[str, dict]:
    rows = sql.execute("SELECT contact_id::text, channel, status, reason, send_after FROM campaigns.deliveries"
                       " WHERE tenant_id = %s AND campaign_id = %s", (tenant_id, campaign_id)).fetchall()
    return {r["contact_id"] + ":" + r["channel"]: r for r in rows}


def dispatched(sql, tenant_id: str) -> list[dict]:
    return [r["envelope"] for r in sql.execute(
        "SELECT envelope FROM campaigns.outbox WHERE tenant_id = %s"
        " AND routing_key LIKE 'liaison.campaigns.dispatch.%%' ORDER BY id", (tenant_id,)).fetchall()]


def test_a_launch_writes_each_recipients_delivery_with_its_eligibility(campaigns, tenant, other_tenant, sql, worker):
    t = tenant.id
    by_email = person(sql, t, email="a@example.com", phone="+33600000001", consents=["email_marketing"])
    fallback = person(sql, t, email="b@example.com", phone="+33600000002", consents=["sms_marketing"])
    refused = person(sql, t, email="c@example.com", phone="+33600000003")
    expired = person(sql, t, email="d@example.com", expired=["email_marketing"])
    flagged = person(sql, t, email="e@example.com", consents=["email_marketing"], suppressed=True)
    no_email = person(sql, t, phone="+33600000006", consents=["email_marketing", "sms_marketing"])
    nowhere = person(sql, t, consents=["email_marketing", "sms_marketing"])
    person(sql, t, email="z@example.com", consents=["email_marketing"], country="DE")  # not in the segment
    person(sql, other_tenant.id, email="o@example.com", consents=["email_marketing"])

    campaign = new_campaign(campaigns, tenant, segment(campaigns, tenant))
    assert campaign["status"] == "draft"
    launched = campaigns.post(f"/v1/campaigns/{campaign['id']}/launch", headers=tenant.marketing)
    assert launched.status_code == 202 and launched.json["status"] == "launching"
    worker.run()

    state = campaigns.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.marketing).json
    assert state["status"] == "running" and state["audience"] == 7
    got = {key: (r["status"], r["reason"]) for key, r in deliveries(sql, t, campaign["id"]).items()}
    assert got == {
        f"{by_email}:email": ("queued", None),
        f"{fallback}:sms": ("queued", None),            # no email consent: the next channel
        f"{refused}:email": ("suppressed", "no_consent"),
        f"{expired}:email": ("suppressed", "no_consent"),  # a grant past its expiry is no grant
        f"{flagged}:email": ("suppressed", "suppression_list"),
        f"{no_email}:sms": ("queued", None),            # consent but no address: the next channel
        f"{nowhere}:email": ("suppressed", "no_address"),
    }
    events = dispatched(sql, t)
    # One dispatch event per channel here (a batch holds up to 500), with the queued deliveries.
    assert {(e["type"], frozenset(e["data"]["delivery_ids"])) for e in events} == {
        ("liaison.campaigns.dispatch.email", frozenset({delivery_id(sql, t, campaign["id"], by_email)})),
        ("liaison.campaigns.dispatch.sms",
         frozenset(delivery_id(sql, t, campaign["id"], c) for c in (fallback, no_email))),
    }
    assert {e["data"]["campaign_id"] for e in events} == {campaign["id"]}

    # Once launched, not again; another tenant sees nothing.
    assert campaigns.post(f"/v1/campaigns/{campaign['id']}/launch", headers=tenant.marketing).status_code == 409
    assert campaigns.get(f"/v1/campaigns/{campaign['id']}", headers=other_tenant.marketing).status_code == 404
    listed = campaigns.get(f"/v1/campaigns/{campaign['id']}/deliveries?status=queued",
                           headers=tenant.marketing).json["items"]
    assert {d["contact_id"] for d in listed} == {by_email, fallback, no_email}
    assert all(d["unsubscribe_url"] for d in listed if d["channel"] == "email")


def delivery_id(sql, tenant_id: str, campaign_id: str, contact_id: str) -> str:
    return str(sql.execute("SELECT id FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
                           " AND contact_id = %s AND status = 'queued'",
                           (tenant_id, campaign_id, contact_id)).fetchone()["id"])


def test_all_eligible_frequency_caps_and_quiet_hours(campaigns, campaigns_app, tenant, sql):
    t = tenant.id
    every = person(sql, t, email="all@example.com", phone="+33600000010", handles=[("x", "all_x")],
                   consents=["email_marketing", "sms_marketing", "social_dm_marketing"], timezone="Europe/Paris")
    tokyo = person(sql, t, email="tokyo@example.com", consents=["email_marketing"], timezone="Asia/Tokyo")
    capped = person(sql, t, email="capped@example.com", consents=["email_marketing"], timezone="Europe/Paris")
    sql.execute("INSERT INTO campaigns.deliveries (tenant_id, id, contact_id, channel, status, sent_at)"
                " VALUES (%s, %s, %s, 'email', 'sent', %s)", (t, uuid.uuid4(), capped, utcnow() - timedelta(hours=2)))
    campaign = new_campaign(campaigns, tenant, segment(campaigns, tenant), channels=["email", "sms", "social_dm"],
                            strategy="all_eligible", frequency_cap={"max": 1, "per_hours": 24},
                            quiet_hours={"start": "21:00", "end": "08:00"})
    db = campaigns_app.extensions["liaison"].db
    # 13:30 UTC: 14:30 in Paris (fine), 22:30 in Tokyo (quiet until 08:00 there: 23:00 UTC).
    now = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
    with db.transaction() as uow:
        uow.execute("UPDATE campaigns.campaigns SET status = 'launching' WHERE tenant_id = %s AND id = %s",
                    (t, campaign["id"]))
        counts = use_cases.run_launch(uow, t, campaign["id"], _members_of_everyone, now=now)
    # all_eligible: a row per channel, so Tokyo's sms and DM (no consent) and all three of the
    # capped contact's are suppressed, each with its reason.
    assert counts == {"queued": 3, "deferred": 1, "suppressed": 5}
    got = deliveries(sql, t, campaign["id"])
    assert {k: v["status"] for k, v in got.items() if k.startswith(every)} == {
        f"{every}:email": "queued", f"{every}:sms": "queued", f"{every}:social_dm": "queued"}
    deferred = got[f"{tokyo}:email"]
    assert deferred["status"] == "deferred" and deferred["send_after"] == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert {(got[f"{capped}:{c}"]["status"], got[f"{capped}:{c}"]["reason"]) for c in ("email", "sms", "social_dm")} \
        == {("suppressed", "frequency_cap")}
    assert got[f"{tokyo}:sms"]["reason"] == "no_consent"

    # The quiet hours end: the deferred delivery is queued and dispatched.
    before = len(dispatched(sql, t))
    with db.transaction() as uow:
        assert use_cases.release_deferred(uow, now=datetime(2026, 11, 23, 23, 0, 1, tzinfo=UTC)) >= 1
    assert deliveries(sql, t, campaign["id"])[f"{tokyo}:email"]["status"] == "queued"
    [released] = dispatched(sql, t)[before:]
    assert released["data"]["channel"] == "email" and len(released["data"]["delivery_ids"]) == 1


def _members_of_everyone(uow, tenant_id: str, segment_id: str) -> None:
    """Test stand-in for the segment query: every contact of the tenant."""
    uow.execute("INSERT INTO pg_temp.launch_members SELECT contact_id FROM campaigns.audience WHERE tenant_id = %s",
                (tenant_id,))


def test_cancel_conversions_attribution_and_report(campaigns, tenant, sql, worker):
    t = tenant.id
    buyer = person(sql, t, email="buyer@example.com", consents=["email_marketing"])
    browser = person(sql, t, phone="+33600000020", consents=["sms_marketing"])
    person(sql, t, email="quiet@example.com")  # no consent: suppressed
    campaign = new_campaign(campaigns, tenant, segment(campaigns, tenant),
                            cost_per_message={"email": 0.01, "sms": 0.07})
    campaigns.post(f"/v1/campaigns/{campaign['id']}/launch", headers=tenant.marketing)
    worker.run()
    # The channel workers' part, as SQL: both sent, the email opened and clicked.
    sql.execute("UPDATE campaigns.deliveries SET status = 'sent', sent_at = now() - interval '2 days',"
                " cost = CASE channel WHEN 'email' THEN 0.01 ELSE 0.07 END WHERE tenant_id = %s AND campaign_id = %s"
                " AND status = 'queued'", (t, campaign["id"]))
    sql.execute("UPDATE campaigns.deliveries SET opened_at = now(), clicked_at = now(), opens = 1, clicks = 1"
                " WHERE tenant_id = %s AND contact_id = %s", (t, buyer))

    bought = campaigns.post("/v1/conversions", headers=tenant.crm, json={
        "contact_id": buyer, "value": 120.5, "currency": "EUR", "occurred_at": rfc3339(utcnow())})
    assert bought.status_code == 201, bought.json
    assert bought.json["campaign_id"] == campaign["id"] and bought.json["channel"] == "email"
    stale = campaigns.post("/v1/conversions", headers=tenant.crm, json={
        "contact_id": browser, "value": 10, "currency": "EUR",
        "occurred_at": rfc3339(utcnow() + timedelta(days=8))})  # beyond 7 days of the send
    assert stale.json["campaign_id"] is None and stale.json["delivery_id"] is None
    assert sql.execute("SELECT last_purchase_at FROM campaigns.audience WHERE tenant_id = %s AND contact_id = %s",
                       (t, buyer)).fetchone()["last_purchase_at"] is not None
    bad = campaigns.post("/v1/conversions", headers=tenant.crm, json={
        "contact_id": buyer, "value": -1, "currency": "euro", "occurred_at": "yesterday"})
    assert bad.status_code == 422 and {"value", "currency", "occurred_at"} <= set(bad.json["errors"])

    report = campaigns.get(f"/v1/campaigns/{campaign['id']}/report", headers=tenant.marketing).json
    assert (report["audience"], report["reach"]) == (3, 2)
    assert report["by_channel"]["email"] == {"queued": 0, "sent": 1, "delivered": 0, "failed": 0, "opened": 1,
                                             "clicked": 1, "converted": 1, "revenue": 120.5, "cost": 0.01}
    assert report["by_channel"]["sms"]["sent"] == 1 and report["by_channel"]["sms"]["converted"] == 0
    assert report["suppressed"] == {"no_consent": 1, "no_address": 0, "frequency_cap": 0, "suppression_list": 0}
    assert report["conversion_rate"] == 0.5
    assert report["roi"] == pytest.approx((120.5 - 0.08) / 0.08, rel=1e-3)
    as_csv = campaigns.get(f"/v1/campaigns/{campaign['id']}/report", headers={**tenant.marketing,
                                                                              "Accept": "text/csv"})
    lines = list(csv.reader(io.StringIO(as_csv.get_data(as_text=True))))
    assert lines[0][0] == "channel" and lines[-1][0] == "total" and float(lines[-1][8]) == 120.5

    # Cancel: what is still queued is never sent; a cancelled campaign cannot be cancelled again.
    other = new_campaign(campaigns, tenant, segment(campaigns, tenant))
    campaigns.post(f"/v1/campaigns/{other['id']}/launch", headers=tenant.marketing)
    worker.run()
    cancelled = campaigns.post(f"/v1/campaigns/{other['id']}/cancel", headers=tenant.marketing)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert {r["status"] for r in deliveries(sql, t, other["id"]).values()} == {"suppressed"}
    assert campaigns.post(f"/v1/campaigns/{other['id']}/cancel", headers=tenant.marketing).status_code == 409


def test_bad_campaigns_are_refused_and_change_nothing(campaigns, tenant, other_tenant, sql):
    segment_id = segment(campaigns, tenant)
    cases = [
        ({"segment_id": str(uuid.uuid4())}, "segment_id"),
        ({"channels": ["email", "fax"]}, "channels"),
        ({"channels": ["email", "email"]}, "channels"),
        ({"content": {"email": {"subject": "{{ contact.first_name ", "body": "x"}}}, "content"),
        ({"content": {"sms": {"body": "hi"}}}, "content"),  # email is a channel but has no content
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours"),
        ({"frequency_cap": {"max": 0, "per_hours": 24}}, "frequency_cap"),
        ({"strategy": "random"}, "strategy"),
    ]
    for change, field in cases:
        body = {"name": "Bad", "segment_id": segment_id, "channels": ["email"], "content": CONTENT, **change}
        response = campaigns.post("/v1/campaigns", json=body, headers=tenant.marketing)
        assert response.status_code == 422, (change, response.json)
        assert any(key.startswith(field) for key in response.json["errors"]), (field, response.json["errors"])
    theirs = campaigns.post("/v1/campaigns", json={"name": "x", "segment_id": segment_id, "channels": ["email"],
                                                   "content": CONTENT}, headers=other_tenant.marketing)
    assert theirs.status_code == 422  # another tenant's segment does not exist for them
    assert campaigns.post("/v1/campaigns", json={"name": "x"}, headers=tenant.crm).status_code == 403
    assert sql.execute("SELECT count(*) AS n FROM campaigns.campaigns WHERE tenant_id = %s AND name = 'Bad'",
                       (tenant.id,)).fetchone()["n"] == 0


def test_inbound_offers_show_the_contact_the_offer_of_the_campaigns_they_were_in(campaigns, tenant, other_tenant,
                                                                                 sql, worker):
    t = tenant.id
    ana = person(sql, t, email="ana@example.com", consents=["email_marketing"])
    refused = person(sql, t, email="no@example.com")  # no consent: still in the audience, still sees the offer
    flagged = person(sql, t, email="flag@example.com", consents=["email_marketing"], suppressed=True)
    content = {**CONTENT, "web": {"title": "For you, {{ contact.first_name }}",
                                  "body": "See {{ link('https://shop.example/offer') }}"}}
    campaign = new_campaign(campaigns, tenant, segment(campaigns, tenant), content=content)
    ended = new_campaign(campaigns, tenant, segment(campaigns, tenant), content=content,
                         offer_ends_at=rfc3339(utcnow() + timedelta(seconds=1)))
    for launched in (campaign, ended):
        campaigns.post(f"/v1/campaigns/{launched['id']}/launch", headers=tenant.marketing)
    worker.run()
    sql.execute("UPDATE campaigns.campaigns SET offer_ends_at = now() - interval '1 minute' WHERE id = %s",
                (ended["id"],))

    def offers(contact_id: str, headers=None) -> list[dict]:
        response = campaigns.get(f"/v1/offers?contact_id={contact_id}", headers=headers or tenant.crm)
        assert response.status_code == 200, response.json
        return response.json["items"]

    [offer] = offers(ana)
    assert offer["campaign_id"] == campaign["id"] and offer["title"] == "For you, Ana"
    assert "/t/c/" in offer["body"] and "shop.example" not in offer["body"].split("/t/c/")[0]
    assert offer["ends_at"] > rfc3339(utcnow() + timedelta(days=29))  # 30 days after launch by default
    assert [o["campaign_id"] for o in offers(refused)] == [campaign["id"]]
    assert offers(flagged) == []
    assert offers(str(uuid.uuid4())) == [] and offers(ana, other_tenant.crm) == []
    # The tracked link counts a click for the campaign and leads to the shop.
    token_path = "/t/c/" + offer["body"].split("/t/c/")[1].split()[0]
    clicked = campaigns.get(token_path)
    assert clicked.status_code == 302 and clicked.headers["Location"] == "https://shop.example/offer"
    campaigns.post(f"/v1/campaigns/{campaign['id']}/cancel", headers=tenant.marketing)
    assert offers(ana) == []
    assert campaigns.get("/v1/offers", headers=tenant.crm).status_code == 422


def test_a_campaign_scheduled_for_later_launches_when_its_time_comes(campaigns, campaigns_app, tenant, sql, worker):
    person(sql, tenant.id, email="later@example.com", consents=["email_marketing"])
    campaign = new_campaign(campaigns, tenant, segment(campaigns, tenant),
                            schedule_at=rfc3339(utcnow() + timedelta(hours=2)))
    scheduled = campaigns.post(f"/v1/campaigns/{campaign['id']}/launch", headers=tenant.marketing)
    assert scheduled.status_code == 202 and scheduled.json["status"] == "scheduled"
    db = campaigns_app.extensions["liaison"].db
    with db.transaction() as uow:
        use_cases.launch_due(uow, now=utcnow() + timedelta(hours=1))  # not yet
    assert campaigns.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.marketing).json["status"] == "scheduled"
    with db.transaction() as uow:
        assert use_cases.launch_due(uow, now=utcnow() + timedelta(hours=2, seconds=1)) >= 1
    worker.run()
    assert campaigns.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.marketing).json["status"] == "running"
    # Once every delivery has an outcome, the worker completes the campaign.
    sql.execute("UPDATE campaigns.deliveries SET status = 'sent', sent_at = now() WHERE campaign_id = %s",
                (campaign["id"],))
    with db.transaction() as uow:
        use_cases.finish_done(uow)
    done = campaigns.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.marketing).json
    assert done["status"] == "completed" and done["finished_at"]
