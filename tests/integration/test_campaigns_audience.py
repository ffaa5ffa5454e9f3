"""campaigns' audience, end to end: identity's API writes contacts, consents and handles,
enrichment's feed changes profiles, both relays publish to the real broker, and campaigns'
consumer keeps its audience; out-of-order and repeated events change nothing; erasure completes
in every service (webhooks' consumer runs too, holding nothing here)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from types import SimpleNamespace

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.campaigns import SCHEMA as CAMPAIGNS
from services.campaigns.worker import handlers as campaigns_handlers
from services.enrichment import SCHEMA as ENRICHMENT
from services.enrichment.worker import handlers as enrichment_handlers
from services.identity import SCHEMA as IDENTITY
from services.identity.worker import handlers as identity_handlers
from services.webhooks import SCHEMA as WEBHOOKS
from services.webhooks.worker import handlers as webhooks_handlers
from shared.bus import Publisher
from shared.consumer import EventConsumer
from shared.events import CloudEvent, rfc3339, utcnow
from shared.outbox import OutboxRelay
from tests.integration.test_enrichment_projections import consent, link, record
from tests.integration.test_social_feed import mention, post


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def bus(settings, identity_app, enrichment_app, campaigns_app, webhooks_app):
    """The three services' relays and consumers on the real broker. `sync()` runs them until
    the events of the last change have been handled; `publish()` stands in for a service to
    deliver an event late or again."""
    dbs = {name: app.extensions["liaison"].db for name, app in
           (("identity", identity_app), ("enrichment", enrichment_app), ("campaigns", campaigns_app),
            ("webhooks", webhooks_app))}
    consumers = {
        "identity": EventConsumer.from_settings("identity", dbs["identity"], IDENTITY, identity_handlers(), settings),
        "enrichment": EventConsumer.from_settings("enrichment", dbs["enrichment"], ENRICHMENT,
                                                  enrichment_handlers(), settings),
        "campaigns": EventConsumer.from_settings("campaigns", dbs["campaigns"], CAMPAIGNS,
                                                 campaigns_handlers(), settings),
        "webhooks": EventConsumer.from_settings("webhooks", dbs["webhooks"], WEBHOOKS, webhooks_handlers(), settings),
    }
    relays = {name: OutboxRelay(dbs[name], Publisher.from_settings(settings), [schema])
              for name, schema in (("identity", IDENTITY), ("enrichment", ENRICHMENT), ("campaigns", CAMPAIGNS),
                                   ("webhooks", WEBHOOKS))}
    publisher = Publisher.from_settings(settings)
    from kombu import Connection

    with Connection(settings.broker_url) as connection:
        for consumer in consumers.values():
            consumer.topology.declare(connection)

    def sync() -> None:
        for _ in range(3):  # identity → enrichment → campaigns → identity (erasure completions)
            for name in ("identity", "enrichment", "campaigns", "webhooks"):
                relays[name].drain()
                consumers[name].drain()

    def publish(envelope: dict) -> None:
        publisher.publish_batch([(envelope["type"], envelope)])
        consumers["campaigns"].drain()

    yield SimpleNamespace(sync=sync, publish=publish)
    for closing in (publisher, *(r.publisher for r in relays.values())):
        closing.close()


def audience(sql, tenant_id: str, contact_id: str) -> dict | None:
    return sql.execute("SELECT * FROM campaigns.audience WHERE tenant_id = %s AND contact_id = %s",
                       (tenant_id, contact_id)).fetchone()


def upsert(identity, tenant, ref: str, **fields) -> dict:
    body = {"crm_ref": {"system": "hubspot", "id": ref}, **fields}
    response = identity.post("/v1/contacts", json=body, headers=tenant.crm)
    assert response.status_code in (200, 201), response.json
    return response.json


def profile_event(tenant_id: str, contact_id: str, sections: dict, at) -> dict:
    return CloudEvent("liaison.enrichment.profile.updated", "/liaison/enrichment", tenant_id,
                      {"contact_id": contact_id, "changed": [], "profile": sections, "at": rfc3339(at)},
                      subject=contact_id).envelope()


def test_contacts_consents_and_handles_reach_the_audience_in_order(identity, tenant, other_tenant, bus, sql):
    contact = upsert(identity, tenant, "a1", email="ana@example.com", phone="+33612345678", first_name="Ana",
                     timezone="Europe/Paris", attributes={"birth_date": "1990-05-17", "tier": "gold",
                                                          "last_purchase_at": "2026-10-01T10:00:00+02:00"})
    contact_id = contact["id"]
    record(identity, tenant, contact_id, consent("email_marketing", days_ago=1))
    record(identity, tenant, contact_id, consent("sms_marketing", days_ago=1, expires_in=30))
    link(identity, tenant, contact_id, "x", "@Ana_Lyon")
    bus.sync()

    row = audience(sql, tenant.id, contact_id)
    assert (row["email"], row["phone"], row["first_name"], row["timezone"]) == (
        "ana@example.com", "+33612345678", "Ana", "Europe/Paris")
    assert row["birth_date"] == date(1990, 5, 17) and row["attributes"]["tier"] == "gold"
    assert rfc3339(row["last_purchase_at"]) == "2026-10-01T08:00:00Z"
    consents = {r["purpose"]: r for r in sql.execute(
        "SELECT purpose, status, expires_at FROM campaigns.audience_consents WHERE tenant_id = %s"
        " AND contact_id = %s", (tenant.id, contact_id)).fetchall()}
    assert {p: c["status"] for p, c in consents.items()} == {"email_marketing": "granted", "sms_marketing": "granted"}
    assert consents["sms_marketing"]["expires_at"] is not None
    handles = sql.execute("SELECT network, handle FROM campaigns.audience_handles WHERE tenant_id = %s",
                          (tenant.id,)).fetchall()
    assert handles == [{"network": "x", "handle": "ana_lyon"}]

    # A change, then the older state delivered late: the audience keeps the newer one.
    identity.patch(f"/v1/contacts/{contact_id}", json={"email": "ana.new@example.com"}, headers=tenant.crm)
    bus.sync()
    assert audience(sql, tenant.id, contact_id)["email"] == "ana.new@example.com"
    stale = CloudEvent("liaison.identity.contact.upserted", "/liaison/identity", tenant.id,
                       {"created": False, "contact": contact}, subject=contact_id).envelope()
    bus.publish(stale)
    bus.publish(stale)
    assert audience(sql, tenant.id, contact_id)["email"] == "ana.new@example.com"

    # A withdrawal replaces the grant; the other tenant has nothing.
    record(identity, tenant, contact_id, consent("email_marketing", "withdrawn"))
    bus.sync()
    status = sql.execute("SELECT status FROM campaigns.audience_consents WHERE tenant_id = %s AND contact_id = %s"
                         " AND purpose = 'email_marketing'", (tenant.id, contact_id)).fetchone()["status"]
    assert status == "withdrawn"
    assert sql.execute("SELECT count(*) AS n FROM campaigns.audience WHERE tenant_id = %s",
                       (other_tenant.id,)).fetchone()["n"] == 0


def test_profile_sections_arrive_from_enrichment_newest_wins(identity, enrichment, tenant, bus, sql):
    contact_id = upsert(identity, tenant, "p1", first_name="Paul")["id"]
    record(identity, tenant, contact_id, consent("profile_enrichment", days_ago=1))
    link(identity, tenant, contact_id, "x", "paul_fan")
    bus.sync()

    # enrichment's feed: a mention changes Paul's engagement, which campaigns learns by event.
    assert post(enrichment, tenant, [mention("paul_fan", "I love this brand, great service")]).status_code == 202
    bus.sync()
    row = audience(sql, tenant.id, contact_id)
    assert row["sentiment"] > 0 and row["satisfaction"] > 50  # one happy mention, smoothed

    now = utcnow()
    bus.publish(profile_event(tenant.id, contact_id, {
        "demographics": {"age": "30-39", "city": "Paris", "country": "FR", "profession": "Coach",
                         "interests": ["Tennis", "Running", "tennis"]},
        "influence": {"followers": 12000, "score": 41.5, "tier": "micro"},
    }, now))
    row = audience(sql, tenant.id, contact_id)
    assert (row["age_min"], row["age_max"], row["city"], row["country"]) == (30, 39, "Paris", "FR")
    assert row["interests"] == ["running", "tennis"]
    assert (row["influence_tier"], row["influence_score"]) == ("micro", 41.5)

    # An older change delivered late is ignored; a null section (consent withdrawn) clears.
    bus.publish(profile_event(tenant.id, contact_id, {"demographics": {"city": "Lyon"}}, now - timedelta(hours=1)))
    assert audience(sql, tenant.id, contact_id)["city"] == "Paris"
    bus.publish(profile_event(tenant.id, contact_id, {"demographics": None, "influence": None},
                              now + timedelta(seconds=1)))
    row = audience(sql, tenant.id, contact_id)
    assert (row["city"], row["age_min"], row["interests"], row["influence_tier"]) == (None, None, [], None)
    assert row["first_name"] == "Paul" and row["sentiment"] > 0  # other sections are untouched


def test_merge_moves_consents_and_handles_and_erasure_completes_everywhere(identity, tenant, campaigns, bus, sql):
    survivor = upsert(identity, tenant, "m1", email="m1@example.com")["id"]
    duplicate = upsert(identity, tenant, "m2", phone="+33700000000")["id"]
    record(identity, tenant, duplicate, consent("sms_marketing", days_ago=1))
    link(identity, tenant, duplicate, "instagram", "mo")
    bus.sync()
    assert identity.post(f"/v1/contacts/{survivor}/merge", json={"duplicate_id": duplicate},
                         headers=tenant.crm).status_code == 200
    bus.sync()
    assert audience(sql, tenant.id, duplicate) is None
    row = audience(sql, tenant.id, survivor)
    assert row["phone"] == "+33700000000"  # identity filled the survivor's blanks
    moved = campaigns.get(f"/v1/campaigns/contacts/{survivor}/export", headers=tenant.compliance).json
    assert [c["purpose"] for c in moved["consents"]] == ["sms_marketing"]
    assert [(h["network"], h["handle"]) for h in moved["handles"]] == [("instagram", "mo")]
    assert moved["audience"]["email"] == "m1@example.com"
    assert campaigns.get(f"/v1/campaigns/contacts/{survivor}/export", headers=tenant.crm).status_code == 403
    assert campaigns.get(f"/v1/campaigns/contacts/{uuid.uuid4()}/export",
                         headers=tenant.compliance).status_code == 404

    sql.execute("INSERT INTO campaigns.deliveries (tenant_id, id, contact_id, channel, status, address, content,"
                " sent_at) VALUES (%s, %s, %s, 'email', 'sent', 'm1@example.com', %s, now())",
                (tenant.id, uuid.uuid4(), survivor, Jsonb({"subject": "Hello Mo", "text": "Hi Mo"})))
    exported = campaigns.get(f"/v1/campaigns/contacts/{survivor}/export", headers=tenant.compliance).json
    assert [d["content"]["subject"] for d in exported["deliveries"]] == ["Hello Mo"]

    accepted = identity.delete(f"/v1/contacts/{survivor}", headers=tenant.crm)
    assert accepted.status_code == 202
    bus.sync()
    for table in ("audience", "audience_consents", "audience_handles"):
        left = sql.execute(f"SELECT count(*) AS n FROM campaigns.{table}"  # noqa: S608 (fixed names)
                           " WHERE tenant_id = %s AND contact_id = ANY(%s::uuid[])",
                           (tenant.id, [survivor, duplicate])).fetchone()["n"]
        assert left == 0, table
    # The delivery stays for the campaign's report, without what identified the person.
    assert sql.execute("SELECT address, content, status FROM campaigns.deliveries WHERE tenant_id = %s"
                       " AND contact_id = %s", (tenant.id, survivor)).fetchall() == [
        {"address": None, "content": None, "status": "sent"}]
    state = identity.get(f"/v1/erasures/{accepted.json['erasure_id']}", headers=tenant.compliance).json
    assert state["status"] == "completed"
    assert state["services"] == {"identity": "completed", "enrichment": "completed", "campaigns": "completed",
                                 "webhooks": "completed"}
    trail = identity.get(f"/v1/audit?contact_id={survivor}", headers=tenant.compliance).json["items"]
    assert any(e["actor"] == "service:campaigns" and e["action"] == "contact.erased" for e in trail)
