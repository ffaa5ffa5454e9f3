"""Erasure completeness: after erasing a contact who has been through everything (identity's
contact, consents with their evidence, two handles; enrichment's feed before and after the link,
a check-in firing a trigger, a follow, a job whose providers `responses` plays; campaigns'
audience, a launched campaign's delivery rendered with their name, a conversion, a click, an
unsubscribe; a merged duplicate; Idempotency-Keys on every create; webhooks' deliveries of all of it
to the tenant's CRM), a scan of every column that can hold a string (text, varchar, json, arrays,
inet, bytea) of every table of the four services
finds none of their email, phone, names, handles, IP, CRM reference or the words of their
mentions. A bystander who went through the same is still found exactly where they were.

What may remain by contract (CONTRACT §2, erasure): the consent ledger with identifiers replaced
by salted hashes, and the suppression list, which holds salted hashes of the email, phone and
handles, never the strings: neither is a place where the scan may find anything, so no table is
exempt. Ids (the contact id, delivery ids) are not personal data the person can be found by
outside Liaison, and stay (the audit trail, the deliveries kept for the campaign's report)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import responses
from psycopg import sql as pgsql

from services.campaigns import SCHEMA as CAMPAIGNS
from services.campaigns import tracking
from services.enrichment import SCHEMA as ENRICHMENT
from services.enrichment import jobs
from services.enrichment.providers import adapters
from services.identity import SCHEMA as IDENTITY
from services.webhooks import SCHEMA as WEBHOOKS
from shared.consumer import Handler
from shared.events import rfc3339, utcnow
from tests.conftest import Tenant
from tests.integration.test_campaigns_audience import sql, upsert  # noqa: F401 (fixture)
from tests.integration.test_enrichment_jobs import FC_URL, PROVIDER_ENV, X_URL
from tests.integration.test_enrichment_projections import link
from tests.services import three_services
from tests.unit.test_providers import FULLCONTACT_PERSON, NOW, X_USER, FakeClock

SCHEMAS = (IDENTITY, ENRICHMENT, CAMPAIGNS, WEBHOOKS)
# Columns that cannot hold a string (ids, times, numbers); every other one is scanned: text,
# varchar, json, jsonb, arrays, inet (the consent's IP), bytea (stored Idempotency-Key replies).
UNSCANNED_TYPES = ("uuid", "timestamp with time zone", "timestamp without time zone", "date", "time without time zone",
                   "interval", "integer", "bigint", "smallint", "numeric", "real", "double precision", "boolean")
SHOP = "https://shop.example/autumn"


@dataclass
class Person:
    """Everything that identifies one person, each string unique to this run."""

    ref: str
    email: str
    phone: str
    first_name: str
    last_name: str
    x_handle: str
    instagram_handle: str
    mention_words: str
    prospect_words: str
    ip: str
    duplicate_email: str
    duplicate_phone: str
    tiktok_handle: str
    contact_id: str = ""

    @classmethod
    def new(cls, name: str, phones: tuple[str, str], ip: str) -> Person:
        tag = secrets.token_hex(3)
        return cls(ref=f"crm-{name}-{tag}", email=f"{name}.{tag}@example.com", phone=phones[0],
                   first_name=f"{name.title()}{tag}", last_name=f"Zabrowski{tag}", x_handle=f"{name[:4]}_{tag}",
                   instagram_handle=f"{name}.gram.{tag}", mention_words=f"cappuccino{tag} rocks",
                   prospect_words=f"gingerbread{tag} is lovely", ip=ip, duplicate_email=f"{name}.old.{tag}@example.org",
                   duplicate_phone=phones[1], tiktok_handle=f"{name}_tt_{tag}")

    def strings(self) -> dict[str, str]:
        return {"email": self.email, "phone": self.phone, "first_name": self.first_name,
                "last_name": self.last_name, "x_handle": self.x_handle, "instagram_handle": self.instagram_handle,
                "mention": self.mention_words, "prospect mention": self.prospect_words,
                "crm reference": self.ref, "ip": self.ip, "duplicate's email": self.duplicate_email,
                "duplicate's phone": self.duplicate_phone, "duplicate's tiktok handle": self.tiktok_handle}


@pytest.fixture()
def bus(settings, identity_app, enrichment_app, campaigns_app, webhooks_app):
    """The four services, enrichment's jobs consumer calling the providers' adapters (their HTTP
    APIs are `responses`, in `providers`)."""
    def job_runner(db) -> Handler:
        return jobs.job_handler(adapters(PROVIDER_ENV, clock=FakeClock(NOW)), db, settings.secret_key)

    with three_services(settings, identity_app, enrichment_app, campaigns_app, job_runner,
                        webhooks_app=webhooks_app) as services:
        yield services


@pytest.fixture()
def providers(identity_url, request):
    """X and FullContact, answering for whoever is asked about in their real payload shapes."""
    people: dict[str, Person] = {}

    def fullcontact(call):
        username = json.loads(call.body)["profiles"][0]["username"]
        person = people[username]
        return 200, {}, json.dumps({**FULLCONTACT_PERSON, "fullName": f"{person.first_name} {person.last_name}",
                                    "twitter": f"https://twitter.com/{person.x_handle}",
                                    "linkedin": None, "website": None, "avatar": None})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(identity_url)
        rsps.add_callback(responses.POST, FC_URL, callback=fullcontact)

        def enroll(person: Person) -> None:
            people[person.x_handle] = person
            rsps.get(X_URL + person.x_handle, json={"data": {
                **X_USER["data"], "name": f"{person.first_name} {person.last_name}", "username": person.x_handle,
                "description": f"I am {person.first_name}, write to {person.email}"}})

        yield enroll


def consent_body(purpose: str, person: Person) -> dict:
    return {"purpose": purpose, "status": "granted", "legal_basis": "consent", "notice_version": "2026-01",
            "source": {"system": "hubspot", "form": "newsletter", "ip": person.ip,
                       "user_agent": f"Mozilla/5.0 ({person.first_name}'s phone)"},
            "proof": {"form_html": f"<input value='{person.email}'>",
                      "name": f"{person.first_name} {person.last_name}"},
            "captured_at": rfc3339(utcnow() - timedelta(days=1))}


def once(headers: dict[str, str]) -> dict[str, str]:
    """Every creating call with an Idempotency-Key: the stored replies must go with the person too."""
    return {**headers, "Idempotency-Key": secrets.token_hex(8)}


def feed(enrichment, tenant: Tenant, events: list[dict]) -> None:
    response = enrichment.post("/v1/social/events", json={"events": events}, headers=once(tenant.crm))
    assert response.status_code == 202, response.json


def live_through_everything(identity, enrichment, tenant: Tenant, bus, enroll, person: Person) -> None:
    """identity, enrichment's feed and a job: everything but the campaign (shared by everyone)."""
    enroll(person)
    # Seen in the feed before anyone links the handle: a prospect, filed by handle.
    feed(enrichment, tenant, [{"type": "mention", "network": "instagram", "handle": person.instagram_handle,
                               "occurred_at": rfc3339(utcnow() - timedelta(hours=2)),
                               "text": f"{person.prospect_words}, says {person.first_name}"}])
    person.contact_id = upsert(identity, tenant, person.ref, email=person.email, phone=person.phone,
                               first_name=person.first_name, last_name=person.last_name, timezone="UTC",
                               attributes={"tier": "gold", "birth_date": "1990-05-17",
                                           "nickname": f"{person.first_name} the great"})["id"]
    for purpose in ("email_marketing", "sms_marketing", "profile_enrichment", "geolocation"):
        response = identity.post(f"/v1/contacts/{person.contact_id}/consents",
                                 json=consent_body(purpose, person), headers=once(tenant.crm))
        assert response.status_code == 201, response.json
    for network, handle in (("x", person.x_handle), ("instagram", person.instagram_handle)):
        linked = identity.post(f"/v1/contacts/{person.contact_id}/identities",
                               json={"network": network, "handle": handle}, headers=once(tenant.crm))
        assert linked.status_code == 201, linked.json
    # A duplicate from another import, with its own addresses and handle, merged into the person.
    duplicate = identity.post("/v1/contacts", json={
        "crm_ref": {"system": "shopify", "id": f"dup-{person.ref}"}, "email": person.duplicate_email,
        "phone": person.duplicate_phone, "first_name": person.first_name}, headers=once(tenant.crm))
    assert duplicate.status_code == 201, duplicate.json
    link(identity, tenant, duplicate.json["id"], "tiktok", person.tiktok_handle)
    merged = identity.post(f"/v1/contacts/{person.contact_id}/merge", json={"duplicate_id": duplicate.json["id"]},
                           headers=tenant.crm)
    assert merged.status_code == 200, merged.json
    bus.sync()
    now = utcnow()
    feed(enrichment, tenant, [
        {"type": "mention", "network": "x", "handle": person.x_handle, "occurred_at": rfc3339(now),
         "text": f"I am {person.first_name} {person.last_name} and {person.mention_words}, great service"},
        {"type": "checkin", "network": "instagram", "handle": person.instagram_handle, "occurred_at": rfc3339(now),
         "place": {"name": f"{person.first_name}'s favourite cafe", "lat": 48.8611, "lon": 2.3364}},
        {"type": "follow", "network": "x", "handle": person.x_handle, "occurred_at": rfc3339(now),
         "brand_account": "acme"},
        {"type": "mention", "network": "x", "handle": person.x_handle, "occurred_at": rfc3339(now),
         "text": f"{person.first_name} here: terrible, awful, the worst service ever"},
    ])
    job = enrichment.post("/v1/enrichments", json={"contact_id": person.contact_id}, headers=once(tenant.crm))
    assert job.status_code == 202, job.json
    bus.sync()
    state = enrichment.get(f"/v1/enrichments/{job.json['id']}", headers=tenant.crm).json
    assert state["status"] == "completed", state


def run_a_campaign(campaigns, settings, tenant: Tenant, bus, sql, people: list[Person]) -> None:  # noqa: F811
    """A launched campaign to everyone in the tenant, with the email rendered with their name; each
    person clicks, converts and unsubscribes from SMS."""
    segment = campaigns.post("/v1/segments", json={"name": "Gold", "rules": {"all": [
        {"field": "attributes.tier", "op": "eq", "value": "gold"}]}}, headers=tenant.marketing)
    assert segment.status_code == 201, segment.json
    campaign = campaigns.post("/v1/campaigns", json={
        "name": "Autumn", "segment_id": segment.json["id"], "channels": ["email", "sms"], "strategy": "all_eligible",
        "content": {"email": {"subject": "Hello {{ contact.first_name }} {{ contact.last_name }}",
                              "body": "Dear {{ contact.first_name }}, see {{ link('" + SHOP + "') }}"},
                    "sms": {"body": "{{ contact.first_name }}, 20% off"},
                    "web": {"title": "For you, {{ contact.first_name }}", "body": "20% off"}}},
        headers=tenant.marketing)
    assert campaign.status_code == 201, campaign.json
    campaign_id = campaign.json["id"]
    assert campaigns.post(f"/v1/campaigns/{campaign_id}/launch", headers=tenant.marketing).status_code == 202
    bus.sync()
    for person in people:
        rows = sql.execute("SELECT id::text, channel, content FROM campaigns.deliveries WHERE tenant_id = %s"
                           " AND campaign_id = %s AND contact_id = %s", (tenant.id, campaign_id,
                                                                        person.contact_id)).fetchall()
        assert {r["channel"] for r in rows} == {"email", "sms"}, rows
        by_channel = {r["channel"]: r for r in rows}
        email = by_channel["email"]
        if email["content"] is None:
            # Rendering happens when the channel worker sends, which is not this test's subject:
            # the delivery gets what the email worker would have stored as sent.
            sql.execute("UPDATE campaigns.deliveries SET content = %s::jsonb, status = 'sent', sent_at = now(),"
                        " address = %s WHERE tenant_id = %s AND id = %s",
                        (json.dumps({"subject": f"Hello {person.first_name} {person.last_name}",
                                     "text": f"Dear {person.first_name}"}), person.email, tenant.id, email["id"]))
        public = tracking.public_url(settings)
        click = tracking.click_url(public, settings.secret_key, tenant.id, email["id"], SHOP)
        assert campaigns.get(urlsplit(click).path).status_code == 302
        unsubscribe = tracking.unsubscribe_url(public, settings.secret_key, tenant.id, by_channel["sms"]["id"])
        assert campaigns.post(urlsplit(unsubscribe).path).status_code in (200, 204)
        conversion = campaigns.post("/v1/conversions", json={
            "contact_id": person.contact_id, "value": 42, "currency": "EUR", "occurred_at": rfc3339(utcnow()),
            "campaign_id": campaign_id}, headers=once(tenant.crm))
        assert conversion.status_code == 201, conversion.json
    bus.sync()


def scan(sql, needles: dict[str, str]) -> dict[str, list[str]]:  # noqa: F811
    """For each named string, every schema.table.column of the three services where it appears (any
    case; as bytes in bytea columns). One query per column asks about all the strings at once."""
    columns = sql.execute(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = ANY(%s) AND t.table_type = 'BASE TABLE' AND NOT c.data_type = ANY(%s)"
        " ORDER BY 1, 2, 3", (list(SCHEMAS), list(UNSCANNED_TYPES))).fetchall()
    found: dict[str, list[str]] = {name: [] for name in needles}
    names, values = list(needles), list(needles.values())
    for c in columns:
        if c["data_type"] == "bytea":  # stored replies (Idempotency-Key); encrypted secrets never match
            condition = pgsql.SQL("position(convert_to(n.value, 'UTF8') IN {0}) > 0"
                                  " OR position(convert_to(lower(n.value), 'UTF8') IN {0}) > 0")
        else:  # position, not LIKE: a handle's `_` is no wildcard
            condition = pgsql.SQL("position(lower(n.value) IN lower({0}::text)) > 0")
        query = pgsql.SQL("SELECT n.name FROM unnest(%s::text[], %s::text[]) AS n(name, value)"
                          " WHERE EXISTS (SELECT 1 FROM {}.{} WHERE ").format(
            pgsql.Identifier(c["table_schema"]), pgsql.Identifier(c["table_name"])) + condition.format(
            pgsql.Identifier(c["column_name"])) + pgsql.SQL(")")
        for row in sql.execute(query, (names, values)).fetchall():
            found[row["name"]].append(f"{c['table_schema']}.{c['table_name']}.{c['column_name']}")
    return found


def test_an_erased_contact_leaves_nothing_that_identifies_them_in_any_service(
        identity, enrichment, campaigns, webhooks, settings, tenant, bus, providers, sql):  # noqa: F811
    # The tenant's CRM takes every event: webhooks keeps each payload (nothing listens: all pending).
    hook = webhooks.post("/v1/webhooks", json={"url": "https://crm.example.com/liaison", "event_types": ["*"]},
                         headers=once(tenant.crm))
    assert hook.status_code == 201, hook.json
    erased = Person.new("ottilie", ("+33655443322", "+33655443300"), "198.51.100.23")
    bystander = Person.new("bertrand", ("+33677889900", "+33677889911"), "203.0.113.77")
    trigger = campaigns.post("/v1/triggers", json={
        "name": "Coffee", "event": "social.checkin", "channel": "sms", "cooldown_hours": 0,
        "content": {"body": "{{ contact.first_name }} {{ contact.last_name }}, a coffee on us"}},
        headers=tenant.marketing)
    assert trigger.status_code == 201, trigger.json
    for person in (erased, bystander):
        live_through_everything(identity, enrichment, tenant, bus, providers, person)
    run_a_campaign(campaigns, settings, tenant, bus, sql, [erased, bystander])
    # The right of access, used before the erasure (each export leaves an audit entry).
    assert enrichment.get(f"/v1/profiles/{erased.contact_id}/export", headers=tenant.compliance).status_code == 200
    assert campaigns.get(f"/v1/campaigns/contacts/{erased.contact_id}/export",
                         headers=tenant.compliance).status_code == 200
    bus.sync()

    # Before: each string is somewhere, or the scan would prove nothing.
    for person in (erased, bystander):
        never_stored = [name for name, places in scan(sql, person.strings()).items() if not places]
        assert never_stored == [], f"never stored, so the scan below would prove nothing: {never_stored}"
    bystander_before = scan(sql, bystander.strings())

    accepted = identity.delete(f"/v1/contacts/{erased.contact_id}", headers=tenant.compliance)
    assert accepted.status_code == 202, accepted.json
    bus.sync()
    state = identity.get(f"/v1/erasures/{accepted.json['erasure_id']}", headers=tenant.compliance).json
    assert state["status"] == "completed", state
    assert state["services"] == {"identity": "completed", "enrichment": "completed", "campaigns": "completed",
                                 "webhooks": "completed"}

    left = {f"{name} {erased.strings()[name]!r}": places for name, places in scan(sql, erased.strings()).items()
            if places}
    assert left == {}, f"the erased contact is still found in: {json.dumps(left, indent=1)}"
    # The bystander is found exactly where they were: nothing of theirs went with the erasure.
    assert scan(sql, bystander.strings()) == bystander_before
    # The bystander's views still answer; the erased contact's answer 404 everywhere.
    assert identity.get(f"/v1/contacts/{bystander.contact_id}", headers=tenant.crm).status_code == 200
    assert enrichment.get(f"/v1/profiles/{bystander.contact_id}", headers=tenant.crm).status_code == 200
    assert identity.get(f"/v1/contacts/{erased.contact_id}", headers=tenant.crm).status_code == 404
    assert enrichment.get(f"/v1/profiles/{erased.contact_id}", headers=tenant.crm).status_code == 404
