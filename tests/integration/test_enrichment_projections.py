"""enrichment's copy of identity's consents and handles, its part of consent withdrawal and of
erasure, end to end: the real identity API writes the events, identity's relay publishes them to
the real broker, enrichment's consumer handles them, and enrichment's answers reach identity."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import psycopg
import pytest
from kombu import Connection, Queue, binding
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.enrichment import SCHEMA as ENRICHMENT
from services.enrichment import projections
from services.enrichment.worker import MIGRATIONS, handlers
from services.identity import SCHEMA as IDENTITY
from services.identity.worker import handlers as identity_handlers
from shared.bus import Publisher, events_exchange
from shared.consumer import EventConsumer
from shared.db import Database
from shared.events import CloudEvent, rfc3339, utcnow
from shared.migrate import migrate
from shared.outbox import OutboxRelay
from tests.integration.test_http_platform import contact_body


def consent(purpose: str, status: str = "granted", *, days_ago: float = 0, expires_in: float | None = None):
    now = utcnow()
    body = {"purpose": purpose, "status": status, "legal_basis": "consent",
            "source": {"system": "hubspot", "form": "footer"}, "notice_version": "2024-05",
            "captured_at": rfc3339(now - timedelta(days=days_ago))}
    if expires_in is not None:
        body["expires_at"] = rfc3339(now + timedelta(days=expires_in))
    return body


@pytest.fixture(scope="module")
def enrichment_db(settings):
    migrate(settings.database_url, ENRICHMENT, MIGRATIONS)
    migrate(settings.database_url, ENRICHMENT, MIGRATIONS)  # a second start applies nothing
    db = Database(settings.database_url, min_size=1, max_size=2, name="enrichment-test").open()
    yield db
    db.close()


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def bus(settings, identity_app, enrichment_db):
    """Both services' relays and consumers on the real broker, and a tap on what enrichment
    publishes. `sync()` runs them until the events of the last change have been handled."""
    identity_db = identity_app.extensions["liaison"].db
    enrichment = EventConsumer.from_settings("enrichment", enrichment_db, ENRICHMENT, handlers(), settings)
    identity = EventConsumer.from_settings("identity", identity_db, IDENTITY, identity_handlers(), settings)
    identity_relay = OutboxRelay(identity_db, Publisher.from_settings(settings), [IDENTITY])
    enrichment_relay = OutboxRelay(enrichment_db, Publisher.from_settings(settings), [ENRICHMENT])
    publisher = Publisher.from_settings(settings)
    tap = Queue(f"{settings.bus_prefix}enrichment-tap-{uuid.uuid4().hex[:6]}",
                bindings=[binding(events_exchange(settings.bus_prefix), routing_key="liaison.enrichment.#")],
                durable=False)
    with Connection(settings.broker_url) as connection:
        enrichment.topology.declare(connection)  # before anything is published to them
        identity.topology.declare(connection)
        tap(connection.default_channel).declare()

        def sync() -> None:
            identity_relay.drain()
            enrichment.drain()
            enrichment_relay.drain()
            identity.drain()

        def publish(envelope: dict) -> None:
            """Stands in for identity, to deliver an event again or late."""
            publisher.publish_batch([(envelope["type"], envelope)])
            enrichment.drain()
            enrichment_relay.drain()
            identity.drain()

        def published() -> list[dict]:
            got = []
            while (message := tap(connection.default_channel).get(accept=["cloudevents", "json"])) is not None:
                got.append(message.payload)
                message.ack()
            return got

        yield SimpleNamespace(sync=sync, publish=publish, published=published)
        tap(connection.default_channel).delete()
    for closing in (publisher, identity_relay.publisher, enrichment_relay.publisher):
        closing.close()


def new_contact(identity, tenant, ref: str) -> str:
    response = identity.post("/v1/contacts", json=contact_body(ref, first_name="Ana"), headers=tenant.crm)
    assert response.status_code == 201, response.json
    return response.json["id"]


def record(identity, tenant, contact_id: str, body: dict) -> dict:
    response = identity.post(f"/v1/contacts/{contact_id}/consents", json=body, headers=tenant.crm)
    assert response.status_code == 201, response.json
    return response.json


def link(identity, tenant, contact_id: str, network: str, handle: str) -> dict:
    response = identity.post(f"/v1/contacts/{contact_id}/identities", json={"network": network, "handle": handle},
                             headers=tenant.crm)
    assert response.status_code == 201, response.json
    return response.json


def stored_consents(sql, tenant_id: str, contact_id: str) -> dict[str, dict]:
    rows = sql.execute("SELECT purpose, status, record_id FROM enrichment.contact_consents"
                       " WHERE tenant_id = %s AND contact_id = %s", (tenant_id, contact_id)).fetchall()
    return {r["purpose"]: {"status": r["status"], "record_id": str(r["record_id"])} for r in rows}


def is_allowed(db: Database, tenant_id: str, contact_id: str, purpose: str, now=None) -> bool:
    with db.transaction() as uow:
        return projections.allowed(uow, tenant_id, contact_id, purpose, now or utcnow())


def handles(sql, tenant_id: str) -> set[tuple[str, str, str]]:
    rows = sql.execute("SELECT network, handle, contact_id FROM enrichment.contact_handles WHERE tenant_id = %s",
                       (tenant_id,)).fetchall()
    return {(r["network"], r["handle"], str(r["contact_id"])) for r in rows}


def add_event(sql, tenant_id: str, kind: str, network: str, handle: str, contact_id: str | None,
              place: str | None = None) -> str:
    event_id = str(uuid.uuid4())
    sql.execute(
        "INSERT INTO enrichment.social_events (tenant_id, id, type, network, handle, contact_id,"
        " occurred_at, text, place_name, lat, lon) VALUES (%s, %s, %s, %s, %s, %s, now(), %s, %s, %s, %s)",
        (tenant_id, event_id, kind, network, handle, contact_id,
         "love it" if kind == "mention" else None, place, 45.76 if place else None, 4.83 if place else None),
    )
    return event_id


def add_profile(sql, tenant_id: str, contact_id: str) -> None:
    sql.execute(
        "INSERT INTO enrichment.profiles (tenant_id, contact_id, demographics, influence, last_checkin,"
        " sources, enriched_at) VALUES (%s, %s, %s, %s, %s, %s, now())",
        (tenant_id, contact_id, Jsonb({"city": "Lyon"}),
         Jsonb({"followers": 1200, "tier": "micro"}),
         Jsonb({"place": "Café Lyon", "lat": 45.76, "lon": 4.83}),
         Jsonb([{"network": "x"}])),
    )


def events_left(sql, tenant_id: str) -> set[str]:
    return {str(r["id"]) for r in sql.execute("SELECT id FROM enrichment.social_events WHERE tenant_id = %s",
                                               (tenant_id,)).fetchall()}


def test_consent_projection_follows_grants_and_withdrawals_and_ignores_an_older_record(
        identity, tenant, sql, bus, enrichment_db):
    contact_id = new_contact(identity, tenant, "c1")
    assert not is_allowed(enrichment_db, tenant.id, contact_id, "email_marketing")  # no record: no
    grant = record(identity, tenant, contact_id, consent("email_marketing", days_ago=2))
    sms = record(identity, tenant, contact_id, consent("sms_marketing", days_ago=1, expires_in=1 / 24))
    bus.sync()
    assert stored_consents(sql, tenant.id, contact_id) == {
        "email_marketing": {"status": "granted", "record_id": grant["id"]},
        "sms_marketing": {"status": "granted", "record_id": sms["id"]},
    }
    assert is_allowed(enrichment_db, tenant.id, contact_id, "email_marketing")
    assert is_allowed(enrichment_db, tenant.id, contact_id, "sms_marketing")
    # The grant expires in an hour: after that it no longer allows anything.
    assert not is_allowed(enrichment_db, tenant.id, contact_id, "sms_marketing", utcnow() + timedelta(hours=2))

    withdrawal = record(identity, tenant, contact_id, consent("email_marketing", "withdrawn", days_ago=1))
    # A record captured before the withdrawal, entered late, does not bring the grant back.
    record(identity, tenant, contact_id, consent("email_marketing", days_ago=3))
    bus.sync()
    assert stored_consents(sql, tenant.id, contact_id)["email_marketing"] == {
        "status": "withdrawn", "record_id": withdrawal["id"]}
    assert not is_allowed(enrichment_db, tenant.id, contact_id, "email_marketing")

    # The first grant's event delivered again late (a new id: not recognised as a repeat) is
    # older than what is stored, so it changes nothing.
    late = CloudEvent(projections.CONSENT_RECORDED, "/liaison/identity", tenant.id, {
        **grant, "current": {"status": "granted", "record_id": grant["id"],
                             "captured_at": grant["captured_at"], "expires_at": None}},
        subject=contact_id).envelope()
    bus.publish(late)
    bus.publish(late)  # and the same event twice
    assert stored_consents(sql, tenant.id, contact_id)["email_marketing"]["status"] == "withdrawn"
    assert not is_allowed(enrichment_db, tenant.id, contact_id, "email_marketing")


def test_handles_follow_links_unlinks_and_merges(identity, tenant, other_tenant, sql, bus, enrichment_db):
    ana = new_contact(identity, tenant, "h1")
    prospect_mention = add_event(sql, tenant.id, "mention", "x", "ana_lyon", None)  # seen before any link
    elsewhere = add_event(sql, other_tenant.id, "mention", "x", "ana_lyon", None)
    identity_x = link(identity, tenant, ana, "x", "@Ana_Lyon")
    link(identity, tenant, ana, "instagram", "ana.photos")
    bus.sync()
    assert handles(sql, tenant.id) == {("x", "ana_lyon", ana), ("instagram", "ana.photos", ana)}
    with enrichment_db.transaction() as uow:
        exported = projections.export_for_contact(uow, tenant.id, ana)
    # The link carried the prospect's history over to the contact; not the other tenant's.
    assert [e["id"] for e in exported["social_events"]] == [prospect_mention]
    assert {(h["network"], h["handle"]) for h in exported["handles"]} == {("x", "ana_lyon"),
                                                                          ("instagram", "ana.photos")}
    assert sql.execute("SELECT contact_id FROM enrichment.social_events WHERE tenant_id = %s AND id = %s",
                       (other_tenant.id, elsewhere)).fetchone()["contact_id"] is None

    unlinked = identity.delete(f"/v1/contacts/{ana}/identities/{identity_x['id']}", headers=tenant.crm)
    assert unlinked.status_code == 204
    bus.sync()
    assert handles(sql, tenant.id) == {("instagram", "ana.photos", ana)}

    # A merge: the duplicate's handles and consents become the survivor's; per purpose the
    # later record wins.
    duplicate = new_contact(identity, tenant, "h2")
    link(identity, tenant, duplicate, "x", "ana_old")
    record(identity, tenant, ana, consent("profile_enrichment", days_ago=1))
    record(identity, tenant, duplicate, consent("profile_enrichment", "withdrawn", days_ago=2))
    record(identity, tenant, duplicate, consent("sms_marketing", days_ago=2))
    newer_withdrawal = record(identity, tenant, duplicate, consent("geolocation", "withdrawn", days_ago=1))
    record(identity, tenant, ana, consent("geolocation", days_ago=3))
    bus.sync()
    merged = identity.post(f"/v1/contacts/{ana}/merge", json={"duplicate_id": duplicate}, headers=tenant.crm)
    assert merged.status_code == 200, merged.json
    bus.sync()
    assert handles(sql, tenant.id) == {("instagram", "ana.photos", ana), ("x", "ana_old", ana)}
    after = stored_consents(sql, tenant.id, ana)
    assert after["profile_enrichment"]["status"] == "granted"  # the survivor's, newer
    assert after["sms_marketing"]["status"] == "granted"  # only the duplicate had one
    assert after["geolocation"] == {"status": "withdrawn", "record_id": newer_withdrawal["id"]}
    assert stored_consents(sql, tenant.id, duplicate) == {}
    assert handles(sql, other_tenant.id) == set()


def test_withdrawing_consent_deletes_the_data_gathered_under_it(
        identity, tenant, other_tenant, sql, bus, enrichment_db):
    contact_id = new_contact(identity, tenant, "w1")
    record(identity, tenant, contact_id, consent("profile_enrichment", days_ago=2))
    record(identity, tenant, contact_id, consent("geolocation", days_ago=2))
    bus.sync()
    add_profile(sql, tenant.id, contact_id)
    checkins = [add_event(sql, tenant.id, "checkin", "instagram", "w1", contact_id, "Café Lyon"),
                add_event(sql, tenant.id, "checkin", "instagram", "w1", contact_id, "Parc")]
    mention = add_event(sql, tenant.id, "mention", "instagram", "w1", contact_id)
    # Another tenant's contact, with the same id for good measure, is not touched.
    add_profile(sql, other_tenant.id, contact_id)
    theirs = {add_event(sql, other_tenant.id, "checkin", "instagram", "w1", contact_id, "Gare")}
    assert events_left(sql, tenant.id) == {*checkins, mention}

    bus.published()
    record(identity, tenant, contact_id, consent("geolocation", "withdrawn"))
    bus.sync()
    assert events_left(sql, tenant.id) == {mention}  # the check-ins went, the mention stays
    [cleared] = [e["data"] for e in bus.published() if e["type"] == "liaison.enrichment.profile.updated"]
    assert cleared["contact_id"] == contact_id and cleared["reason"] == "consent_withdrawn"
    assert cleared["profile"] == {"geolocation": None} and cleared["changed"] == ["geolocation.last_checkin"]
    profile = sql.execute("SELECT demographics, last_checkin FROM enrichment.profiles"
                          " WHERE tenant_id = %s AND contact_id = %s", (tenant.id, contact_id)).fetchone()
    assert profile == {"demographics": {"city": "Lyon"}, "last_checkin": None}

    record(identity, tenant, contact_id, consent("profile_enrichment", "withdrawn"))
    bus.sync()
    assert sql.execute("SELECT count(*) AS n FROM enrichment.profiles WHERE tenant_id = %s",
                       (tenant.id,)).fetchone()["n"] == 0
    [cleared] = [e["data"] for e in bus.published() if e["type"] == "liaison.enrichment.profile.updated"]
    assert cleared["profile"] == {"demographics": None, "influence": None, "engagement": None}
    assert cleared["reason"] == "consent_withdrawn" and "influence.tier" in cleared["changed"]
    assert events_left(sql, tenant.id) == {mention}

    # A grant again lets new data in; the old is gone for good.
    record(identity, tenant, contact_id, consent("profile_enrichment"))
    bus.sync()
    assert is_allowed(enrichment_db, tenant.id, contact_id, "profile_enrichment")
    assert not is_allowed(enrichment_db, tenant.id, contact_id, "geolocation")

    assert events_left(sql, other_tenant.id) == theirs
    assert sql.execute("SELECT last_checkin FROM enrichment.profiles WHERE tenant_id = %s",
                       (other_tenant.id,)).fetchone()["last_checkin"] is not None


def test_erasure_deletes_everything_and_identity_sees_enrichment_complete(
        identity, tenant, other_tenant, sql, bus, enrichment_db):
    contact_id = new_contact(identity, tenant, "e1")
    duplicate = new_contact(identity, tenant, "e2")
    link(identity, tenant, contact_id, "x", "erin")
    record(identity, tenant, contact_id, consent("profile_enrichment", days_ago=1))
    record(identity, tenant, duplicate, consent("geolocation", days_ago=1))
    assert identity.post(f"/v1/contacts/{contact_id}/merge", json={"duplicate_id": duplicate},
                         headers=tenant.crm).status_code == 200
    bystander = new_contact(identity, tenant, "e3")
    link(identity, tenant, bystander, "x", "bystander")
    record(identity, tenant, bystander, consent("profile_enrichment", days_ago=1))
    bus.sync()
    bus.published()

    add_profile(sql, tenant.id, contact_id)
    add_event(sql, tenant.id, "checkin", "x", "erin", contact_id, "Café Lyon")
    add_event(sql, tenant.id, "mention", "x", "erin", None)  # seen under the handle, not yet resolved
    add_event(sql, tenant.id, "mention", "x", "erin_other_account", duplicate)
    kept = {add_event(sql, tenant.id, "mention", "x", "bystander", bystander),
            add_event(sql, tenant.id, "mention", "x", "stranger", None)}
    add_profile(sql, tenant.id, bystander)
    theirs = {add_event(sql, other_tenant.id, "mention", "x", "erin", None)}
    for tenant_id, handle in ((tenant.id, "erin"), (tenant.id, "stranger"), (other_tenant.id, "erin")):
        sql.execute("INSERT INTO enrichment.prospects (tenant_id, network, handle, mentions, first_seen, last_seen)"
                    " VALUES (%s, 'x', %s, 1, now(), now())", (tenant_id, handle))

    accepted = identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm)
    assert accepted.status_code == 202, accepted.json
    erasure_id = accepted.json["erasure_id"]
    bus.sync()

    ids = [contact_id, duplicate]
    for table in ("profiles", "contact_consents", "contact_handles", "social_events"):
        left = sql.execute(f"SELECT count(*) AS n FROM enrichment.{table}"  # noqa: S608 (fixed names)
                           " WHERE tenant_id = %s AND contact_id = ANY(%s::uuid[])",
                           (tenant.id, ids)).fetchone()["n"]
        assert left == 0, table
    assert events_left(sql, tenant.id) == kept  # the prospect event under the handle went too
    assert handles(sql, tenant.id) == {("x", "bystander", bystander)}
    assert is_allowed(enrichment_db, tenant.id, bystander, "profile_enrichment")
    assert events_left(sql, other_tenant.id) == theirs
    assert {(r["tenant_id"], r["handle"]) for r in sql.execute(
        "SELECT tenant_id::text, handle FROM enrichment.prospects").fetchall()} >= {
        (tenant.id, "stranger"), (other_tenant.id, "erin")}
    assert sql.execute("SELECT count(*) AS n FROM enrichment.prospects WHERE tenant_id = %s AND handle = 'erin'",
                       (tenant.id,)).fetchone()["n"] == 0

    [completed] = [e for e in bus.published() if e["type"] == projections.ERASURE_COMPLETED]
    assert completed["data"] == {"erasure_id": erasure_id, "service": "enrichment"}
    assert completed["tenantid"] == tenant.id and completed["subject"] == contact_id
    state = identity.get(f"/v1/erasures/{erasure_id}", headers=tenant.compliance).json
    assert state["services"] == {"identity": "completed", "enrichment": "completed", "campaigns": "pending",
                                 "webhooks": "pending"}

    trail = identity.get(f"/v1/audit?contact_id={contact_id}", headers=tenant.compliance).json["items"]
    [erased] = [e for e in trail if e["actor"] == "service:enrichment"]
    assert erased["action"] == "contact.erased" and erased["resource"] == f"contact/{contact_id}"
    assert erased["details"]["service"] == "enrichment" and erased["details"]["erasure_id"] == erasure_id
    assert erased["details"]["counts"] == {
        "profiles": 1, "social_events": 3, "prospects": 1, "consents": 2, "handles": 1}

    # The request delivered again changes nothing: nothing left to delete, and the erasure's
    # state at identity stays as it was.
    again = CloudEvent("liaison.identity.contact.erasure_requested", "/liaison/identity", tenant.id, {
        "erasure_id": erasure_id, "contact_id": contact_id, "contact_ids": ids,
        "handles": [{"network": "x", "handle": "erin"}]}, subject=contact_id).envelope()
    bus.publish(again)
    bus.publish(again)
    assert events_left(sql, tenant.id) == kept
    assert identity.get(f"/v1/erasures/{erasure_id}", headers=tenant.compliance).json == state
    answers = [e for e in bus.published() if e["type"] == projections.ERASURE_COMPLETED]
    assert len(answers) == 1  # one new request answered once; its repeat not at all


def test_a_consent_that_lapses_without_an_event_deletes_what_it_covered(identity, tenant, other_tenant, bus,
                                                                         enrichment_db, sql):
    lapsing, staying = new_contact(identity, tenant, "lapse1"), new_contact(identity, tenant, "lapse2")
    theirs = new_contact(identity, other_tenant, "lapse3")
    for who, owner, days in ((lapsing, tenant, 1), (staying, tenant, 30), (theirs, other_tenant, 1)):
        for purpose in ("profile_enrichment", "geolocation"):
            record(identity, owner, who, consent(purpose, days_ago=1, expires_in=days))
    bus.sync()
    kept = set()
    for who, owner in ((lapsing, tenant), (staying, tenant), (theirs, other_tenant)):
        add_profile(sql, owner.id, who)
        add_event(sql, owner.id, "checkin", "instagram", f"h{who[-6:]}", who, "Parc")
        kept.add(add_event(sql, owner.id, "mention", "instagram", f"h{who[-6:]}", who))
    assert is_allowed(enrichment_db, tenant.id, lapsing, "geolocation")

    # Two days on, no event came, but the grants of `lapsing` and `theirs` ran out.
    later = utcnow() + timedelta(days=2)
    totals = projections.sweep_lapsed_consents(enrichment_db, lambda: later, batch=1)  # several batches
    assert totals["consents"] >= 4 and totals["profiles"] >= 2 and totals["checkins"] >= 2

    def left(owner, who) -> tuple[int, int, set[str]]:
        profiles = sql.execute("SELECT count(*) AS n FROM enrichment.profiles WHERE tenant_id = %s"
                               " AND contact_id = %s", (owner.id, who)).fetchone()["n"]
        checkins = sql.execute("SELECT count(*) AS n FROM enrichment.social_events WHERE tenant_id = %s"
                               " AND contact_id = %s AND type = 'checkin'", (owner.id, who)).fetchone()["n"]
        return profiles, checkins, {s["status"] for s in stored_consents(sql, owner.id, who).values()}

    assert left(tenant, lapsing) == (0, 0, {"expired"})
    lapsed = [r["envelope"]["data"] for r in sql.execute(
        "SELECT envelope FROM enrichment.outbox WHERE tenant_id = %s AND routing_key = %s ORDER BY id",
        (tenant.id, "liaison.enrichment.profile.updated")).fetchall()]
    assert {e["contact_id"] for e in lapsed} == {lapsing}  # `staying` lost nothing
    assert {e["reason"] for e in lapsed} == {"consent_expired"}
    assert {k: v for e in lapsed for k, v in e["profile"].items()} == dict.fromkeys(
        ("demographics", "influence", "engagement", "geolocation"))
    assert left(other_tenant, theirs) == (0, 0, {"expired"})
    assert left(tenant, staying) == (1, 1, {"granted"})
    assert kept <= events_left(sql, tenant.id) | events_left(sql, other_tenant.id)  # mentions are the brand's
    assert projections.sweep_lapsed_consents(enrichment_db, lambda: later) == {
        "consents": 0, "profiles": 0, "checkins": 0}

    # A new grant after the lapse is a new consent: it is stored and allows again.
    record(identity, tenant, lapsing, consent("profile_enrichment"))
    bus.sync()
    assert is_allowed(enrichment_db, tenant.id, lapsing, "profile_enrichment")
