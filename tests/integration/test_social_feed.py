"""The social listening feed, end to end: consents and handles are set through identity's API and
reach enrichment through the real broker; the feed is posted to enrichment's API; what it
publishes is read from enrichment's outbox."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from kombu import Connection
from psycopg.rows import dict_row

from services.enrichment import SCHEMA as ENRICHMENT
from services.enrichment.worker import handlers
from services.identity import SCHEMA as IDENTITY
from shared.bus import Publisher
from shared.consumer import EventConsumer
from shared.events import rfc3339, utcnow
from shared.outbox import OutboxRelay
from shared.web import encode_cursor
from tests.integration.test_enrichment_projections import consent, link, new_contact, record


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def sync(settings, identity_app, enrichment_app):
    """Runs identity's relay and enrichment's consumer until identity's last change is handled.
    Enrichment's own relay is left still, so what the feed published stays in its outbox."""
    enrichment_db = enrichment_app.extensions["liaison"].db
    consumer = EventConsumer.from_settings("enrichment", enrichment_db, ENRICHMENT, handlers(), settings)
    relay = OutboxRelay(identity_app.extensions["liaison"].db, Publisher.from_settings(settings), [IDENTITY])
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)

    def run() -> None:
        relay.drain()
        consumer.drain()

    yield run
    relay.publisher.close()


def at(minutes_ago: float) -> str:
    return rfc3339(utcnow() - timedelta(minutes=minutes_ago))


def mention(handle: str, text: str | None = None, minutes_ago: float = 5, network: str = "x", **extra) -> dict:
    event = {"type": "mention", "network": network, "handle": handle, "occurred_at": at(minutes_ago),
             "brand_account": "@acme", **extra}
    if text is not None:
        event["text"] = text
    return event


def checkin(handle: str, place: str, minutes_ago: float = 5, network: str = "instagram") -> dict:
    return {"type": "checkin", "network": network, "handle": handle, "occurred_at": at(minutes_ago),
            "place": {"name": place, "lat": 45.764, "lon": 4.8357}}


def follow(handle: str, network: str = "tiktok") -> dict:
    return {"type": "follow", "network": network, "handle": handle, "occurred_at": at(1), "brand_account": "@acme"}


def post(enrichment, tenant, events: list[dict], headers: dict | None = None, **kwargs):
    headers = tenant.crm if headers is None else headers
    return enrichment.post("/v1/social/events", json={"events": events}, headers=headers, **kwargs)


def outbox(sql, tenant_id: str, kind: str) -> list[dict]:
    rows = sql.execute("SELECT envelope FROM enrichment.outbox WHERE tenant_id = %s AND routing_key = %s"
                       " ORDER BY id", (tenant_id, kind)).fetchall()
    return [r["envelope"]["data"] for r in rows]


def stored(sql, tenant_id: str, kind: str | None = None) -> list[dict]:
    return sql.execute(
        "SELECT type, network, handle, contact_id::text, text, sentiment::float8, label, language, place_name"
        " FROM enrichment.social_events WHERE tenant_id = %s AND (%s::text IS NULL OR type = %s)"
        " ORDER BY occurred_at, id", (tenant_id, kind, kind)).fetchall()


def profile(sql, tenant_id: str, contact_id: str) -> dict | None:
    return sql.execute("SELECT engagement, last_checkin FROM enrichment.profiles"
                       " WHERE tenant_id = %s AND contact_id = %s", (tenant_id, contact_id)).fetchone()


def test_checkins_are_kept_only_with_geolocation_consent(enrichment, identity, tenant, sql, sync):
    located = new_contact(identity, tenant, "geo-yes")
    unlocated = new_contact(identity, tenant, "geo-no")
    withdrawn = new_contact(identity, tenant, "geo-withdrawn")
    link(identity, tenant, located, "instagram", "@Ana.Lyon")
    link(identity, tenant, unlocated, "instagram", "bob")
    link(identity, tenant, withdrawn, "instagram", "carla")
    record(identity, tenant, located, consent("geolocation", days_ago=1))
    record(identity, tenant, withdrawn, consent("geolocation", days_ago=2))
    record(identity, tenant, withdrawn, consent("geolocation", "withdrawn", days_ago=1))
    sync()

    response = post(enrichment, tenant, [
        checkin(" @ANA.lyon ", "Café des Arts", minutes_ago=30),
        checkin("ana.lyon", "Parc de la Tête d'Or", minutes_ago=10),
        checkin("bob", "Gare Part-Dieu"),
        checkin("carla", "Opéra"),
        checkin("stranger", "Place Bellecour"),  # a prospect cannot have consented
    ])
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 2, "contacts": 1, "prospects": 0, "skipped": 3}
    assert [(r["handle"], r["contact_id"], r["place_name"]) for r in stored(sql, tenant.id)] == [
        ("ana.lyon", located, "Café des Arts"), ("ana.lyon", located, "Parc de la Tête d'Or")]
    last = profile(sql, tenant.id, located)["last_checkin"]
    assert last["place"] == "Parc de la Tête d'Or" and (last["lat"], last["lon"]) == (45.764, 4.8357)
    assert profile(sql, tenant.id, unlocated) is None
    published = outbox(sql, tenant.id, "liaison.enrichment.social.checkin")
    assert [(e["contact_id"], e["place"]["name"]) for e in published] == [
        (located, "Café des Arts"), (located, "Parc de la Tête d'Or")]
    # Campaigns learns the new last check-in from the profile event, values included.
    [moved] = outbox(sql, tenant.id, "liaison.enrichment.profile.updated")
    assert moved["contact_id"] == located and moved["changed"] == ["geolocation.last_checkin"]
    assert moved["profile"] == {"geolocation": {"last_checkin": {
        "place": "Parc de la Tête d'Or", "lat": 45.764, "lon": 4.8357, "at": last["at"]}}}

    # An older check-in sent later is stored but does not replace the latest one.
    assert post(enrichment, tenant, [checkin("ana.lyon", "Musée", minutes_ago=60)]).json["accepted"] == 1
    assert profile(sql, tenant.id, located)["last_checkin"]["place"] == "Parc de la Tête d'Or"
    assert len(outbox(sql, tenant.id, "liaison.enrichment.profile.updated")) == 1  # nothing changed

    # Withdrawing geolocation: the next check-ins are skipped (and the projection deleted the old).
    record(identity, tenant, located, consent("geolocation", "withdrawn"))
    sync()
    assert post(enrichment, tenant, [checkin("ana.lyon", "Cinéma")]).json == {
        "accepted": 0, "contacts": 0, "prospects": 0, "skipped": 1}
    assert stored(sql, tenant.id, "checkin") == []


def test_mentions_are_scored_and_kept_in_the_engagement_with_profile_consent(
        enrichment, identity, tenant, sql, sync):
    fan = new_contact(identity, tenant, "fan")
    private = new_contact(identity, tenant, "private")
    link(identity, tenant, fan, "x", "fan_fr")
    link(identity, tenant, private, "x", "private_one")
    record(identity, tenant, fan, consent("profile_enrichment", days_ago=1))
    sync()

    response = post(enrichment, tenant, [
        mention("fan_fr", "J'adore cette boutique, le service est vraiment excellent !", minutes_ago=9),
        mention("fan_fr", "Love the new collection, really great quality", minutes_ago=8),
        mention("fan_fr", "This is great!!", minutes_ago=7, sentiment=-0.8),  # the platform's score wins
        mention("private_one", "Terrible service, never again", minutes_ago=6),
    ])
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 4, "contacts": 2, "prospects": 0, "skipped": 0}
    rows = stored(sql, tenant.id, "mention")
    assert [(r["label"], r["language"]) for r in rows] == [
        ("positive", "fr"), ("positive", "en"), ("negative", "en"), ("negative", "en")]
    assert rows[2]["sentiment"] == -0.8
    assert rows[0]["text"].startswith("J'adore")

    engagement = profile(sql, tenant.id, fan)["engagement"]
    assert {k: engagement[k] for k in ("mentions", "positive", "neutral", "negative")} == {
        "mentions": 3, "positive": 2, "neutral": 0, "negative": 1}
    assert engagement["sentiment"] == pytest.approx((rows[0]["sentiment"] + rows[1]["sentiment"] - 0.8) / 3, abs=1e-4)
    assert engagement["satisfaction"] == pytest.approx(100 * (2 + 2) / (3 + 4), abs=0.1)
    # The brand keeps the mention addressed to it, but no engagement profile without consent.
    assert profile(sql, tenant.id, private) is None
    [updated] = outbox(sql, tenant.id, "liaison.enrichment.profile.updated")
    assert updated["contact_id"] == fan and "engagement.satisfaction" in updated["changed"]
    assert updated["profile"] == {"engagement": {k: engagement[k] for k in (
        "mentions", "positive", "neutral", "negative", "sentiment", "satisfaction")}}

    published = outbox(sql, tenant.id, "liaison.enrichment.social.mention")
    assert [(e["contact_id"], e["label"], e["brand_account"]) for e in published] == [
        (fan, "positive", "@acme"), (fan, "positive", "@acme"), (fan, "negative", "@acme"),
        (private, "negative", "@acme")]
    # Negative mentions from known contacts go to the service team too.
    negative = outbox(sql, tenant.id, "liaison.enrichment.social.mention.negative")
    assert [(e["contact_id"], e["sentiment"]) for e in negative] == [(fan, -0.8), (private, rows[3]["sentiment"])]


def test_unknown_handles_become_prospects_and_a_later_link_moves_them_to_the_contact(
        enrichment, identity, tenant, sql, sync):
    response = post(enrichment, tenant, [
        mention("@Lead_One", "Awful, the worst support ever", minutes_ago=3),
        mention("lead_one", "Still waiting", minutes_ago=2),
        follow("lead_two"),
        checkin("lead_one", "Gare"),
    ])
    assert response.json == {"accepted": 3, "contacts": 0, "prospects": 2, "skipped": 1}
    # A prospect's negative mention is published, but not for the service team (no contact).
    assert [e["contact_id"] for e in outbox(sql, tenant.id, "liaison.enrichment.social.mention")] == [None, None]
    assert outbox(sql, tenant.id, "liaison.enrichment.social.mention.negative") == []
    [followed] = outbox(sql, tenant.id, "liaison.enrichment.social.follow")
    assert {k: followed[k] for k in ("contact_id", "network", "handle", "brand_account")} == {
        "contact_id": None, "network": "tiktok", "handle": "lead_two", "brand_account": "@acme"}
    listed = enrichment.get("/v1/social/prospects", headers=tenant.marketing).json["items"]
    assert [(p["network"], p["handle"], p["mentions"], p["negative"]) for p in listed] == [
        ("x", "lead_one", 2, 1), ("tiktok", "lead_two", 0, 0)]
    assert listed[0]["influence"] is None and listed[1]["sentiment"] is None

    contact_id = new_contact(identity, tenant, "lead")
    link(identity, tenant, contact_id, "x", "LEAD_ONE")
    sync()
    assert {r["contact_id"] for r in stored(sql, tenant.id, "mention")} == {contact_id}
    listed = enrichment.get("/v1/social/prospects", headers=tenant.crm).json["items"]
    assert [p["handle"] for p in listed] == ["lead_two"]
    # From now on the handle's mentions are the contact's, and a negative one reaches the service team.
    post(enrichment, tenant, [mention("lead_one", "Terrible, never again")])
    assert [e["contact_id"] for e in outbox(sql, tenant.id, "liaison.enrichment.social.mention.negative")] == [
        contact_id]


def test_prospects_are_ordered_by_engagement_and_paginated(enrichment, tenant, other_tenant):
    events = []
    for i in range(7):
        # handle p{i}: i mentions, the last of them i minutes ago (p0 has none: it is never seen).
        events += [mention(f"p{i}", "ok", minutes_ago=i + k) for k in range(i)]
    events += [follow("p_f")]
    # As many mentions as p1: the one seen last comes first.
    events += [mention("p_tie_a", "ok", minutes_ago=30), mention("p_tie_b", "ok", minutes_ago=20)]
    assert post(enrichment, tenant, events).status_code == 202
    expected = ["p6", "p5", "p4", "p3", "p2", "p1", "p_tie_b", "p_tie_a", "p_f"]

    seen, cursor = [], None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = enrichment.get("/v1/social/prospects", query_string=query, headers=tenant.compliance)
        assert response.status_code == 200, response.json
        assert len(response.json["items"]) <= 2
        seen += [p["handle"] for p in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    first = enrichment.get("/v1/social/prospects", headers=tenant.crm).json["items"][0]
    assert first["mentions"] == 6 and first["first_seen"] < first["last_seen"]

    # Another tenant sees none of them.
    theirs = enrichment.get("/v1/social/prospects", headers=other_tenant.crm)
    assert theirs.json == {"items": [], "next_cursor": None}
    forged = encode_cursor("x", "yesterday", "x", "p1")
    for cursor in ("nonsense", forged):
        assert enrichment.get("/v1/social/prospects", query_string={"cursor": cursor},
                              headers=tenant.crm).status_code == 422


def test_a_prospects_influence_comes_from_the_audience_the_feed_reports(enrichment, tenant):
    post(enrichment, tenant, [
        mention("big_voice", "love it", minutes_ago=30, followers=40_000),
        mention("big_voice", "still love it", minutes_ago=10, followers=1_250_000),  # the latest report wins
        mention("big_voice", "yes", minutes_ago=20, followers=35_000),
        mention("quiet", "fine", minutes_ago=5),
    ])
    # A later batch without a report keeps the audience; counts add up across batches.
    post(enrichment, tenant, [mention("big_voice", "again", minutes_ago=1), follow("big_voice", network="x")])
    listed = {p["handle"]: p for p in enrichment.get("/v1/social/prospects", headers=tenant.crm).json["items"]}
    big = listed["big_voice"]
    assert (big["mentions"], big["follows"], big["positive"]) == (4, 1, big["positive"])
    assert big["influence"]["followers"] == 1_250_000 and big["influence"]["tier"] == "mega"
    assert 0 < big["influence"]["score"] <= 100
    assert listed["quiet"]["influence"] is None
    for bad in (-1, "many", 1.5):
        response = post(enrichment, tenant, [mention("quiet", "x", followers=bad)])
        assert response.status_code == 422 and "followers" in str(response.json["errors"])


def test_a_bad_event_refuses_the_whole_batch(enrichment, tenant, sql):
    good = mention("someone", "great")
    for bad, field in [
        ({**good, "network": "myspace"}, "network"),
        ({**good, "handle": "https://x.com/someone"}, "handle"),
        ({**good, "occurred_at": "2024-05-01T10:00:00"}, "occurred_at"),  # no offset
        ({**good, "sentiment": 3}, "sentiment"),
        ({**good, "type": "like"}, "type"),
        ({k: v for k, v in checkin("someone", "Gare").items() if k != "place"}, "place"),
        ({**checkin("someone", "Gare"), "place": {"name": "Gare", "lat": 95, "lon": 4}}, "place"),
    ]:
        response = post(enrichment, tenant, [good, good, bad])
        assert response.status_code == 422, (bad, response.json)
        assert response.mimetype == "application/problem+json"
        assert field in response.json["errors"]["events"]["2"], response.json
    for nonsense in ([], [good] * 1001, ["a string"], [None], [{**good, "handle": 7}], [{**good, "extra": 1}]):
        assert post(enrichment, tenant, nonsense).status_code == 422, nonsense
    assert enrichment.post("/v1/social/events", json={"events": "all"}, headers=tenant.crm).status_code == 422
    assert post(enrichment, tenant, [{**good, "text": "nul\x00byte"}]).status_code == 422
    assert enrichment.post("/v1/social/events", data="{", content_type="application/json",
                           headers=tenant.crm).status_code == 400
    assert stored(sql, tenant.id) == []
    assert sql.execute("SELECT count(*) AS n FROM enrichment.outbox WHERE tenant_id = %s",
                       (tenant.id,)).fetchone()["n"] == 0


def test_scopes_and_idempotency(enrichment, tenant, sql):
    batch = [mention("someone", "great"), follow("someone")]
    assert post(enrichment, tenant, batch, headers=tenant.marketing).status_code == 403
    assert post(enrichment, tenant, batch, headers=tenant.compliance).status_code == 403
    assert post(enrichment, tenant, batch, headers={}).status_code == 401
    assert stored(sql, tenant.id) == []

    key = {**tenant.crm, "Idempotency-Key": "feed-batch-1"}
    first = post(enrichment, tenant, batch, headers=key)
    again = post(enrichment, tenant, batch, headers=key)
    assert first.status_code == again.status_code == 202
    # "someone" on x and on tiktok: two handles, two prospects.
    assert again.json == first.json == {"accepted": 2, "contacts": 0, "prospects": 2, "skipped": 0}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(stored(sql, tenant.id)) == 2
    assert len(outbox(sql, tenant.id, "liaison.enrichment.social.mention")) == 1


def test_the_feed_is_documented(enrichment):
    spec = enrichment.get("/openapi.json").json
    assert {"/v1/social/events", "/v1/social/prospects"} <= set(spec["paths"])
