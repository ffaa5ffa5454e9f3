"""Erasure with events still in flight.

enrichment's events written before an erasure (a check-in's `profile.updated`) reach campaigns
after identity's `contact.erasure_requested` whenever enrichment's relay is the slower one: the
two services' relays publish independently. campaigns' consumer must not then file the erased
contact's data again: each service remembers whom it erased (shared.privacy) and drops events
about them."""

from __future__ import annotations

import secrets

from shared.events import CloudEvent, rfc3339, utcnow
from tests.integration.test_campaigns_audience import bus, sql, upsert  # noqa: F401 (fixtures)
from tests.integration.test_enrichment_projections import consent, link, record


def test_a_checkin_in_flight_at_the_erasure_does_not_bring_the_contact_back(identity, enrichment, tenant,
                                                                              bus, sql):  # noqa: F811
    tag = secrets.token_hex(3)
    first_name, handle = f"Ottilie{tag}", f"ott.{tag}"
    contact_id = upsert(identity, tenant, f"inflight-{tag}", email=f"ott.{tag}@example.com",
                        first_name=first_name)["id"]
    record(identity, tenant, contact_id, consent("geolocation", days_ago=1))
    link(identity, tenant, contact_id, "instagram", handle)
    bus.sync()

    # The check-in is stored and its events written to enrichment's outbox, not yet relayed; the
    # erasure is requested at once.
    place = f"{first_name}'s favourite cafe"
    response = enrichment.post("/v1/social/events", json={"events": [
        {"type": "checkin", "network": "instagram", "handle": handle, "occurred_at": rfc3339(utcnow()),
         "place": {"name": place, "lat": 48.8611, "lon": 2.3364}}]}, headers=tenant.crm)
    assert response.status_code == 202, response.json
    accepted = identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm)
    assert accepted.status_code == 202, accepted.json
    bus.sync()  # identity's relay first: campaigns handles the erasure, then the check-in's events
    state = identity.get(f"/v1/erasures/{accepted.json['erasure_id']}", headers=tenant.compliance).json
    assert state["status"] == "completed", state

    row = sql.execute("SELECT last_checkin_place, last_checkin_lat, last_checkin_lon FROM campaigns.audience"
                      " WHERE tenant_id = %s AND contact_id = %s", (tenant.id, contact_id)).fetchone()
    assert row is None, f"campaigns filed the erased contact's check-in again: {row}"


def test_a_contact_event_delivered_after_the_erasure_does_not_bring_the_contact_back(identity, tenant,
                                                                                      bus, sql):  # noqa: F811
    tag = secrets.token_hex(3)
    contact = upsert(identity, tenant, f"late-{tag}", email=f"late.{tag}@example.com", first_name=f"Late{tag}")
    bus.sync()
    accepted = identity.delete(f"/v1/contacts/{contact['id']}", headers=tenant.crm)
    assert accepted.status_code == 202, accepted.json
    bus.sync()
    # An upsert written before the erasure reaching campaigns after it (from a slower relay
    # replica, say): another event id, so the consumer's repeat check does not catch it.
    bus.publish(CloudEvent("liaison.identity.contact.upserted", "/liaison/identity", tenant.id,
                           {"created": True, "contact": contact}, subject=contact["id"]).envelope())
    row = sql.execute("SELECT email, first_name FROM campaigns.audience WHERE tenant_id = %s AND contact_id = %s",
                      (tenant.id, contact["id"])).fetchone()
    assert row is None, f"campaigns filed the erased contact again: {row}"
