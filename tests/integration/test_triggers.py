"""Triggers: a check-in near the shop becomes an SMS through the whole chain (identity's events,
enrichment's feed, campaigns' consumer, the SMS channel worker, the sandbox's Twilio), once per
cooldown; follows and new contacts; consent, address and suppression; the API's validation."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.campaigns import templates, triggers
from services.enrichment import social
from shared.events import utcnow
from tests.integration.test_campaign_launch import person, sql  # noqa: F401 (fixture)
from tests.integration.test_campaigns_audience import bus, upsert  # noqa: F401 (fixture)
from tests.integration.test_enrichment_projections import consent, link, record
from tests.integration.test_sending import world  # noqa: F401 (fixture)

SHOP = {"lat": 48.8606, "lon": 2.3376}  # a shop by the Louvre
NEAR = {"name": "Louvre", "lat": 48.8611, "lon": 2.3364}  # ~100 m away
FAR = {"name": "Montmartre", "lat": 48.8867, "lon": 2.3431}  # ~3 km away


def new_trigger(db, tenant_id: str, **fields) -> dict:
    body = {"name": "Near the shop", "event": "social.checkin", "channel": "sms",
            "conditions": {"geofence": {**SHOP, "radius_m": 250}},
            "content": {"body": "{{ contact.first_name }}, 10% off at our Louvre shop today"}, **fields}
    with db.transaction() as uow:
        return triggers.create(uow, tenant_id, body, templates.validate_content)


def checkin(enrichment_db, tenant_id: str, handle: str, place: dict) -> None:
    """What POST /v1/social/events does with a check-in, through its use case."""
    with enrichment_db.transaction() as uow:
        social.ingest(uow, tenant_id, [{"type": "checkin", "network": "instagram", "handle": handle,
                                        "occurred_at": utcnow(), "place": dict(place)}])


def test_a_checkin_near_the_shop_sends_one_sms_through_the_whole_chain(identity, tenant, bus, world, sql,  # noqa: F811
                                                                       enrichment_app, campaigns_app):
    contact_id = upsert(identity, tenant, "t1", first_name="Léa", phone="+33612345678")["id"]
    for purpose in ("sms_marketing", "geolocation"):
        record(identity, tenant, contact_id, consent(purpose, days_ago=1))
    link(identity, tenant, contact_id, "instagram", "lea.paris")
    bus.sync()
    trigger = new_trigger(campaigns_app.extensions["liaison"].db, tenant.id)
    enrichment_db = enrichment_app.extensions["liaison"].db

    checkin(enrichment_db, tenant.id, "lea.paris", FAR)  # outside the geofence: nothing
    checkin(enrichment_db, tenant.id, "lea.paris", NEAR)
    bus.sync()  # enrichment publishes the check-ins, campaigns' consumer fires, its relay dispatches
    world.consumers["sms"].drain(idle=0.5)

    [sms] = world.sent("sms")
    assert sms["payload"]["to"] == "+33612345678"
    assert sms["payload"]["body"].startswith("Léa, 10% off at our Louvre shop today")
    [delivery] = sql.execute("SELECT status, channel, contact_id::text FROM campaigns.deliveries"
                             " WHERE tenant_id = %s AND trigger_id = %s", (tenant.id, trigger["id"])).fetchall()
    assert delivery == {"status": "sent", "channel": "sms", "contact_id": contact_id}

    # Another check-in at the shop within the cooldown: no second SMS.
    checkin(enrichment_db, tenant.id, "lea.paris", NEAR)
    bus.sync()
    world.consumers["sms"].drain(idle=0.5)
    assert len(world.sent("sms")) == 1
    assert sql.execute("SELECT count(*) AS n FROM campaigns.deliveries WHERE tenant_id = %s AND trigger_id = %s",
                       (tenant.id, trigger["id"])).fetchone()["n"] == 1


def test_eligibility_follows_new_contacts_and_cooldown(campaigns_app, tenant, sql):  # noqa: F811
    db = campaigns_app.extensions["liaison"].db
    t = tenant.id
    fan = person(sql, t, consents=["social_dm_marketing"], handles=[("x", "fan_x"), ("instagram", "fan_ig")])
    shy = person(sql, t, email="shy@example.com", handles=[("instagram", "shy_ig")])
    flagged = person(sql, t, consents=["social_dm_marketing"], handles=[("instagram", "gone_ig")], suppressed=True)
    welcome = new_trigger(db, t, name="Welcome follower", event="social.follow", channel="social_dm",
                          conditions={"network": "instagram"}, content={"body": "Thanks for following!"})
    hello = new_trigger(db, t, name="Hello", event="contact.created", channel="email", conditions={},
                        content={"subject": "Welcome", "body": "Hello {{ contact.first_name }}"}, cooldown_hours=0)

    def follow(contact_id: str, network: str, handle: str) -> list[dict]:
        with db.transaction() as uow:
            return triggers.fire(uow, t, "social.follow", contact_id,
                                 {"contact_id": contact_id, "network": network, "handle": handle})

    [sent] = follow(fan, "instagram", "fan_ig")
    assert (sent["status"], sent["address"]) == ("queued", "instagram:fan_ig")  # the network they followed on
    assert follow(fan, "instagram", "fan_ig") == []  # within the cooldown: nothing at all
    assert follow(fan, "x", "fan_x") == []  # the trigger is for instagram follows only
    [refused] = follow(shy, "instagram", "shy_ig")
    assert (refused["status"], refused["reason"]) == ("suppressed", "no_consent")
    [blocked] = follow(flagged, "instagram", "gone_ig")
    assert (blocked["status"], blocked["reason"]) == ("suppressed", "suppression_list")
    with db.transaction() as uow:
        # A contact campaigns has not heard of yet: no consent known, so nothing is sent.
        assert triggers.fire(uow, t, "social.follow", str(uuid.uuid4()), {"network": "instagram"})[0]["reason"] \
            == "no_consent"

    dispatched = sql.execute("SELECT envelope FROM campaigns.outbox WHERE tenant_id = %s"
                             " AND routing_key = 'liaison.campaigns.dispatch.social_dm'", (t,)).fetchall()
    assert [e["envelope"]["data"]["delivery_ids"] for e in dispatched] == [[sent["id"]]]
    assert dispatched[0]["envelope"]["data"]["trigger_id"] == welcome["id"]

    # A new contact: the welcome waits a minute for the CRM's consent call; the send checks it.
    with db.transaction() as uow:
        [deferred] = triggers.fire(uow, t, "contact.created", shy, {})
    assert deferred["status"] == "deferred" and deferred["trigger_id"] == hello["id"]
    assert timedelta(seconds=50) < deferred["send_after"] - utcnow() <= timedelta(minutes=1)


def test_triggers_api(campaigns, tenant, other_tenant, sql):  # noqa: F811
    body = {"name": "Near the shop", "event": "social.checkin", "channel": "sms",
            "conditions": {"geofence": {**SHOP, "radius_m": 250}}, "content": {"body": "Hi {{ contact.first_name }}"}}
    created = campaigns.post("/v1/triggers", json=body, headers=tenant.marketing)
    assert created.status_code == 201, created.json
    trigger_id = created.json["id"]
    assert created.json["cooldown_hours"] == 24 and created.json["active"] is True
    for change, field in [
        ({"event": "social.like"}, "event"),
        ({"event": "social.follow"}, "conditions"),  # a geofence is for check-ins
        ({"channel": "fax"}, "channel"),
        ({"content": {"body": "{% if %}"}}, "content.body"),
        ({"content": {"text": "x"}}, "content"),
        ({"conditions": {"geofence": {"lat": 91, "lon": 0, "radius_m": 10}}}, "conditions"),
        ({"cooldown_hours": -1}, "cooldown_hours"),
    ]:
        response = campaigns.post("/v1/triggers", json={**body, **change}, headers=tenant.marketing)
        assert response.status_code == 422, (change, response.json)
        assert any(key.startswith(field) for key in response.json["errors"]), (field, response.json["errors"])
    assert campaigns.post("/v1/triggers", json=body, headers=tenant.crm).status_code == 403

    assert campaigns.get(f"/v1/triggers/{trigger_id}", headers=tenant.compliance).json["name"] == "Near the shop"
    assert [t["id"] for t in campaigns.get("/v1/triggers", headers=tenant.marketing).json["items"]] == [trigger_id]
    assert campaigns.get(f"/v1/triggers/{trigger_id}", headers=other_tenant.marketing).status_code == 404
    assert campaigns.get(f"/v1/triggers/{trigger_id}/deliveries",
                         headers=tenant.marketing).json == {"items": [], "next_cursor": None}
    assert campaigns.delete(f"/v1/triggers/{trigger_id}", headers=other_tenant.marketing).status_code == 404
    assert campaigns.delete(f"/v1/triggers/{trigger_id}", headers=tenant.marketing).status_code == 204
    assert campaigns.get(f"/v1/triggers/{trigger_id}", headers=tenant.marketing).json["active"] is False


@pytest.mark.parametrize(("place", "inside"), [(NEAR, True), (FAR, False), ({"name": "?"}, False)])
def test_geofence(place: dict, inside: bool):
    assert triggers.matches({"geofence": {**SHOP, "radius_m": 250}}, {"place": place}) is inside
    assert 90 < triggers.distance_m(SHOP["lat"], SHOP["lon"], NEAR["lat"], NEAR["lon"]) < 120
