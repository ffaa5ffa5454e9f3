"""Enrichment jobs and profiles end to end: consents and handles come from identity's API through
the real broker into enrichment's projections, a job request goes through enrichment's outbox and
the broker to the consumer that runs it, and the providers' HTTP APIs are served by `responses`
in their real payload shapes (no network)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import psycopg
import pytest
import responses
from kombu import Connection, Queue, binding
from psycopg.rows import dict_row

from services.enrichment import SCHEMA as ENRICHMENT
from services.enrichment import jobs
from services.enrichment.freshness import FreshnessPolicy, queue_stale_profiles
from services.enrichment.influence import compute_influence
from services.enrichment.providers import adapters
from services.enrichment.worker import handlers
from services.identity import SCHEMA as IDENTITY
from services.identity.worker import handlers as identity_handlers
from shared.bus import Publisher, events_exchange
from shared.consumer import EventConsumer
from shared.outbox import OutboxRelay
from tests.integration.test_enrichment_projections import consent, link, new_contact, record
from tests.unit.test_providers import (
    FULLCONTACT_PERSON,
    IG_BLUEBOTTLE,
    NOW,
    X_NOT_FOUND,
    X_UNAUTHORIZED,
    X_USER,
    FakeClock,
)

FETCHED_AT = "2025-11-23T08:00:00Z"  # the fake clock's now
X_URL = "https://api.x.com/2/users/by/username/"
IG_URL = "https://graph.facebook.com/v19.0/17841405309211844"
FC_URL = "https://api.fullcontact.com/v3/person.enrich"
IG_BAD_TOKEN = {"error": {"message": "Error validating access token: Session has expired.",
                          "type": "OAuthException", "code": 190, "error_subcode": 463,
                          "fbtrace_id": "AbCdEf123"}}
PROVIDER_ENV = {"X_API_BEARER_TOKEN": "x-token", "INSTAGRAM_ACCESS_TOKEN": "ig-token",
                "INSTAGRAM_BUSINESS_ACCOUNT_ID": "17841405309211844", "FULLCONTACT_API_KEY": "fc-key"}


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def api(identity_url):
    """The providers' APIs; identity (which enrichment asks about API keys) stays reachable.
    FullContact matches people on their X handle (enrichment knows no email or phone)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(identity_url)
        rsps.post(FC_URL, json=FULLCONTACT_PERSON)
        yield rsps


@pytest.fixture()
def bus(settings, identity_app, enrichment_app):
    """Both services' relays and consumers on the real broker. enrichment's consumer runs jobs
    with `bus.adapters` (the worker builds them once per process; here each test sets its own).
    `sync()` runs everything until the events of the last change, and the jobs they request,
    have been handled; `published()` answers what enrichment published about profiles."""
    identity_db = identity_app.extensions["liaison"].db
    enrichment_db = enrichment_app.extensions["liaison"].db
    current: dict = {}
    enrichment = EventConsumer.from_settings(
        "enrichment", enrichment_db, ENRICHMENT,
        {**handlers(), jobs.JOB_REQUESTED: jobs.job_handler(current, enrichment_db, settings.secret_key)}, settings)
    identity = EventConsumer.from_settings("identity", identity_db, IDENTITY, identity_handlers(), settings)
    identity_relay = OutboxRelay(identity_db, Publisher.from_settings(settings), [IDENTITY])
    enrichment_relay = OutboxRelay(enrichment_db, Publisher.from_settings(settings), [ENRICHMENT])
    tap = Queue(f"{settings.bus_prefix}profile-tap-{uuid.uuid4().hex[:6]}",
                bindings=[binding(events_exchange(settings.bus_prefix), routing_key=jobs.PROFILE_UPDATED)],
                durable=False)
    with Connection(settings.broker_url) as connection:
        enrichment.topology.declare(connection)
        identity.topology.declare(connection)
        tap(connection.default_channel).declare()

        def sync() -> None:
            identity_relay.drain()
            enrichment.drain()
            enrichment_relay.drain()  # the job requests
            enrichment.drain()  # the jobs run
            enrichment_relay.drain()
            identity.drain()

        def use(env: dict[str, str]) -> None:
            current.clear()
            current.update(adapters(env, clock=FakeClock(NOW)))

        def published() -> list[dict]:
            got = []
            while (message := tap(connection.default_channel).get(accept=["cloudevents", "json"])) is not None:
                got.append(message.payload)
                message.ack()
            return got

        use(PROVIDER_ENV)
        yield SimpleNamespace(sync=sync, use=use, published=published, db=enrichment_db)
        tap(connection.default_channel).delete()
    for closing in (identity_relay.publisher, enrichment_relay.publisher):
        closing.close()


def request_enrichment(enrichment, tenant, contact_id: str, **headers) -> dict:
    response = enrichment.post("/v1/enrichments", json={"contact_id": contact_id},
                               headers={**tenant.crm, **headers})
    assert response.status_code == 202, response.json
    return response.json


def job(enrichment, tenant, job_id: str) -> dict:
    response = enrichment.get(f"/v1/enrichments/{job_id}", headers=tenant.crm)
    assert response.status_code == 200, response.json
    return response.json


def consenting_contact(identity, tenant, bus, ref: str, handles: dict[str, str]) -> str:
    contact_id = new_contact(identity, tenant, ref)
    record(identity, tenant, contact_id, consent("profile_enrichment", days_ago=1))
    for network, handle in handles.items():
        link(identity, tenant, contact_id, network, handle)
    bus.sync()
    return contact_id


def test_without_consent_the_job_is_skipped_and_no_provider_is_called(identity, enrichment, tenant, bus, api):
    contact_id = new_contact(identity, tenant, "nc1")
    link(identity, tenant, contact_id, "x", "xdevelopers")
    record(identity, tenant, contact_id, consent("email_marketing"))
    bus.sync()

    accepted = request_enrichment(enrichment, tenant, contact_id)
    assert accepted["status"] == "skipped" and accepted["reason"] == "no_consent"
    bus.sync()
    assert len(api.calls) == 0
    state = job(enrichment, tenant, accepted["id"])
    assert state["status"] == "skipped" and state["reason"] == "no_consent"
    assert state["providers"] == [] and state["contact_id"] == contact_id
    assert state["finished_at"] is not None
    # Running it anyway (a stray event) does nothing: it is not queued.
    assert jobs.run_job(bus.db, tenant.id, accepted["id"], {}, "any key") is None

    # Consent withdrawn between the request and the run: skipped too, and still no call.
    api.get(X_URL + "xdevelopers", json=X_USER)
    granted = consenting_contact(identity, tenant, bus, "nc2", {"x": "nc2_handle"})
    queued = request_enrichment(enrichment, tenant, granted)
    assert queued == {"id": queued["id"], "status": "queued"}
    record(identity, tenant, granted, consent("profile_enrichment", "withdrawn"))
    bus.sync()
    assert len(api.calls) == 0
    assert job(enrichment, tenant, queued["id"])["status"] == "skipped"
    assert job(enrichment, tenant, queued["id"])["reason"] == "no_consent"


def test_a_job_with_consent_fills_the_profile_with_provenance(identity, enrichment, tenant, bus, api, sql):
    api.get(X_URL + "xdevelopers", json=X_USER)
    contact_id = consenting_contact(identity, tenant, bus, "ok1", {"x": "@XDevelopers"})
    # Known to enrichment (consent, handle) but not enriched yet: nulls, and zero mentions.
    before = enrichment.get(f"/v1/profiles/{contact_id}", headers=tenant.marketing)
    assert before.status_code == 200, before.json
    assert before.json["influence"]["followers"] is None and before.json["sources"] == []
    assert before.json["engagement"]["mentions"] == 0
    bus.published()

    accepted = request_enrichment(enrichment, tenant, contact_id)
    assert accepted["status"] == "queued"
    bus.sync()
    assert sorted((c.request.url, c.request.headers["Authorization"]) for c in api.calls) == [
        (FC_URL, "Bearer fc-key"),
        (X_URL + "xdevelopers?user.fields=public_metrics%2Cdescription%2Clocation%2Ccreated_at", "Bearer x-token")]
    [fullcontact] = [c for c in api.calls if c.request.url == FC_URL]
    assert json.loads(fullcontact.request.body) == {"profiles": [{"service": "twitter", "username": "xdevelopers"}]}

    state = job(enrichment, tenant, accepted["id"])
    assert state["status"] == "completed" and "reason" not in state
    assert state["providers"] == [{"network": "fullcontact", "status": "ok"}, {"network": "x", "status": "ok"}]
    assert state["finished_at"] is not None

    profile = enrichment.get(f"/v1/profiles/{contact_id}", headers=tenant.marketing)
    assert profile.status_code == 200, profile.json
    body = profile.json
    assert set(body) == {"contact_id", "demographics", "influence", "engagement", "geolocation", "sources",
                         "updated_at", "provenance"}
    metrics = X_USER["data"]["public_metrics"]
    expected = compute_influence(metrics["followers_count"], metrics["following_count"],
                                 body["influence"]["posts_per_month"])
    assert body["influence"] == {"followers": 513958, "following": 2039,
                                 "posts_per_month": body["influence"]["posts_per_month"],
                                 "engagement_rate": None, "score": expected.score, "tier": "macro"}
    assert 20 < body["influence"]["posts_per_month"] < 30  # 3,635 posts since December 2013
    x_source = {"network": "x", "fetched_at": FETCHED_AT}
    fc_source = {"network": "fullcontact", "fetched_at": FETCHED_AT}
    assert body["sources"] == [fc_source, x_source]
    for field in ("followers", "following", "posts_per_month", "score", "tier"):
        assert body["provenance"][f"influence.{field}"] == [x_source], field
    assert body["demographics"] == {"age": "30-39", "city": "Denver", "country": "US",
                                    "profession": "Co-Founder & Managing Director, V1.vc",
                                    "interests": ["Technology", "Venture Capital"]}
    for field in ("age", "city", "country", "profession", "interests"):
        assert body["provenance"][f"demographics.{field}"] == [fc_source], field
    assert body["engagement"] == {"mentions": 0, "positive": 0, "neutral": 0, "negative": 0,
                                  "sentiment": None, "satisfaction": None}
    assert body["geolocation"] == {"last_checkin": None}

    [updated] = bus.published()
    assert updated["type"] == jobs.PROFILE_UPDATED and updated["subject"] == contact_id
    assert updated["tenantid"] == tenant.id
    assert {"influence.followers", "influence.tier", "influence.score", "demographics.city"} <= set(
        updated["data"]["changed"])
    # The new values travel with the event, so campaigns need not ask for them.
    assert updated["data"]["profile"] == {"demographics": body["demographics"], "influence": body["influence"]}

    # The same figures again change nothing, so nothing is published.
    request_enrichment(enrichment, tenant, contact_id)
    bus.sync()
    assert bus.published() == []
    assert sql.execute("SELECT count(*) AS n FROM enrichment.enrichment_jobs WHERE tenant_id = %s"
                       " AND contact_id = %s AND status = 'completed'", (tenant.id, contact_id)).fetchone()["n"] == 2


def test_provider_answers_decide_the_job_status(identity, enrichment, tenant, bus, api):
    # X does not know the handle (a 200 with an errors array): not_found, the job still completes.
    api.get(X_URL + "nosuchuser_x1", json=X_NOT_FOUND)
    api.replace(responses.POST, FC_URL, status=404, json={"status": 404, "message": "Profile not found"})
    unknown = consenting_contact(identity, tenant, bus, "p1", {"x": "nosuchuser_x1"})
    accepted = request_enrichment(enrichment, tenant, unknown)
    bus.sync()
    state = job(enrichment, tenant, accepted["id"])
    assert state["status"] == "completed"  # nobody knows them: an answer, not a failure
    [fc, x] = state["providers"]
    assert fc["network"] == "fullcontact" and fc["status"] == "not_found"
    assert x["network"] == "x" and x["status"] == "not_found" and "nosuchuser_x1" in x["error"]
    api.replace(responses.POST, FC_URL, json=FULLCONTACT_PERSON)

    # One provider answers, one refuses the token: completed, both listed, the answer kept.
    api.get(X_URL + "xdevelopers", json=X_USER)
    api.get(IG_URL, json=IG_BAD_TOKEN, status=400)
    partly = consenting_contact(identity, tenant, bus, "p2", {"x": "xdevelopers", "instagram": "bluebottle"})
    accepted = request_enrichment(enrichment, tenant, partly)
    bus.sync()
    state = job(enrichment, tenant, accepted["id"])
    assert state["status"] == "completed"
    assert [(p["network"], p["status"]) for p in state["providers"]] == [
        ("fullcontact", "ok"), ("instagram", "bad_credentials"), ("x", "ok")]
    assert "Session has expired" in state["providers"][1]["error"]
    profile = enrichment.get(f"/v1/profiles/{partly}", headers=tenant.crm).json
    assert profile["influence"]["followers"] == 513958
    assert [s["network"] for s in profile["sources"]] == ["fullcontact", "x"]

    # Every provider that applies failing: failed. X refuses the token; Instagram has none configured.
    api.replace(responses.GET, X_URL + "xdevelopers", json=X_UNAUTHORIZED, status=401)
    bus.use({"X_API_BEARER_TOKEN": "revoked"})
    accepted = request_enrichment(enrichment, tenant, partly)
    bus.sync()
    state = job(enrichment, tenant, accepted["id"])
    assert state["status"] == "failed"
    assert [(p["network"], p["status"]) for p in state["providers"]] == [
        ("fullcontact", "not_configured"), ("instagram", "not_configured"), ("x", "bad_credentials")]
    assert all(p["error"] for p in state["providers"])
    # What an earlier job gathered stays.
    assert enrichment.get(f"/v1/profiles/{partly}", headers=tenant.crm).json["influence"]["followers"] == 513958

    # Instagram answering on its own, added to X's figures: the networks add up.
    api.replace(responses.GET, IG_URL, json=IG_BLUEBOTTLE)
    bus.use(PROVIDER_ENV)
    api.replace(responses.GET, X_URL + "xdevelopers", json=X_USER)
    request_enrichment(enrichment, tenant, partly)
    bus.sync()
    profile = enrichment.get(f"/v1/profiles/{partly}", headers=tenant.crm).json
    assert profile["influence"]["followers"] == 513958 + 267788
    assert profile["provenance"]["influence.followers"] == [{"network": "instagram", "fetched_at": FETCHED_AT},
                                                            {"network": "x", "fetched_at": FETCHED_AT}]

    # No handle at all: no provider applies; completed with nothing to look up by.
    bare = consenting_contact(identity, tenant, bus, "p3", {})
    accepted = request_enrichment(enrichment, tenant, bare)
    bus.sync()
    state = job(enrichment, tenant, accepted["id"])
    assert (state["status"], state.get("reason"), state["providers"]) == ("completed", "no_sources", [])


def test_scopes_tenants_and_idempotency(identity, enrichment, tenant, other_tenant, bus, api, sql):
    api.get(X_URL + "xdevelopers", json=X_USER)
    contact_id = consenting_contact(identity, tenant, bus, "s1", {"x": "xdevelopers"})

    refused = enrichment.post("/v1/enrichments", json={"contact_id": contact_id}, headers=tenant.marketing)
    assert refused.status_code == 403
    assert enrichment.post("/v1/enrichments", json={"contact_id": "nope"}, headers=tenant.crm).status_code == 422
    assert enrichment.post("/v1/enrichments", json={}, headers=tenant.crm).status_code == 422

    first = enrichment.post("/v1/enrichments", json={"contact_id": contact_id},
                            headers={**tenant.crm, "Idempotency-Key": "enrich-s1"})
    again = enrichment.post("/v1/enrichments", json={"contact_id": contact_id},
                            headers={**tenant.crm, "Idempotency-Key": "enrich-s1"})
    assert first.status_code == again.status_code == 202
    assert again.json == first.json and again.headers.get("Idempotent-Replayed") == "true"
    assert sql.execute("SELECT count(*) AS n FROM enrichment.enrichment_jobs WHERE tenant_id = %s",
                       (tenant.id,)).fetchone()["n"] == 1
    bus.sync()
    assert len(api.calls) == 2  # one job, run once: FullContact and X

    job_id = first.json["id"]
    for headers in (tenant.crm, tenant.marketing, tenant.compliance):
        assert enrichment.get(f"/v1/enrichments/{job_id}", headers=headers).status_code == 200
        assert enrichment.get(f"/v1/profiles/{contact_id}", headers=headers).status_code == 200
    # Another tenant sees neither the job nor the profile.
    assert enrichment.get(f"/v1/enrichments/{job_id}", headers=other_tenant.crm).status_code == 404
    assert enrichment.get(f"/v1/profiles/{contact_id}", headers=other_tenant.crm).status_code == 404
    assert enrichment.get(f"/v1/profiles/{contact_id}/export", headers=other_tenant.compliance).status_code == 404
    assert enrichment.get(f"/v1/enrichments/{uuid.uuid4()}", headers=tenant.crm).status_code == 404
    assert enrichment.get("/v1/enrichments/not-a-uuid", headers=tenant.crm).status_code == 404
    assert enrichment.get(f"/v1/profiles/{uuid.uuid4()}", headers=tenant.crm).status_code == 404
    # Another tenant asking to enrich the same contact id: no consent there, skipped.
    theirs = request_enrichment(enrichment, other_tenant, contact_id)
    assert theirs["status"] == "skipped"


def test_export_answers_404_when_enrichment_holds_nothing(identity, enrichment, tenant, bus, api):
    api.get(X_URL + "xdevelopers", json=X_USER)
    stranger = new_contact(identity, tenant, "x0")
    assert enrichment.get(f"/v1/profiles/{stranger}/export", headers=tenant.compliance).status_code == 404
    assert enrichment.get(f"/v1/profiles/{stranger}", headers=tenant.crm).status_code == 404

    contact_id = consenting_contact(identity, tenant, bus, "x1", {"x": "xdevelopers"})
    accepted = request_enrichment(enrichment, tenant, contact_id)
    bus.sync()
    assert enrichment.get(f"/v1/profiles/{contact_id}/export", headers=tenant.crm).status_code == 403
    exported = enrichment.get(f"/v1/profiles/{contact_id}/export", headers=tenant.compliance)
    assert exported.status_code == 200, exported.json
    body = exported.json
    assert body["contact_id"] == contact_id
    assert [e["id"] for e in body["enrichments"]] == [accepted["id"]]
    assert body["enrichments"][0]["status"] == "completed"
    assert [(h["network"], h["handle"]) for h in body["handles"]] == [("x", "xdevelopers")]
    assert body["profile"]["influence"]["networks"]["x"]["followers"] == 513958
    assert [c["purpose"] for c in body["consents"]] == ["profile_enrichment"]
    assert body["enrichments"][0]["created_at"].endswith("Z")


def test_the_freshness_scheduler_enriches_stale_profiles_again(identity, enrichment, tenant, bus, api, sql):
    for handle in ("fresh_one", "stale_one", "failing_one"):
        api.get(X_URL + handle, json=X_USER)
    fresh = consenting_contact(identity, tenant, bus, "fresh1", {"x": "fresh_one"})
    stale = consenting_contact(identity, tenant, bus, "stale1", {"x": "stale_one"})
    failing = consenting_contact(identity, tenant, bus, "stale2", {"x": "failing_one"})
    for contact_id in (fresh, stale, failing):
        request_enrichment(enrichment, tenant, contact_id)
    bus.sync()
    # Forty days pass for two of them; `failing` was tried again an hour ago (its providers failed).
    sql.execute("UPDATE enrichment.profiles SET enriched_at = enriched_at - interval '40 days'"
                " WHERE tenant_id = %s AND contact_id = ANY(%s::uuid[])", (tenant.id, [stale, failing]))
    sql.execute("UPDATE enrichment.enrichment_jobs SET created_at = created_at - interval '40 days'"
                " WHERE tenant_id = %s AND contact_id = %s", (tenant.id, stale))
    sql.execute("UPDATE enrichment.enrichment_jobs SET created_at = created_at - interval '1 hour'"
                " WHERE tenant_id = %s AND contact_id = %s", (tenant.id, failing))
    calls = len(api.calls)

    policy = FreshnessPolicy(max_age=timedelta(days=30), retry_after=timedelta(hours=24))
    assert queue_stale_profiles(bus.db, policy) >= 1
    bus.sync()

    def scheduled() -> list[dict]:
        return sql.execute("SELECT id, contact_id::text FROM enrichment.enrichment_jobs WHERE tenant_id = %s"
                           " AND requested_by = 'freshness'", (tenant.id,)).fetchall()

    [again] = scheduled()
    assert again["contact_id"] == stale
    state = job(enrichment, tenant, str(again["id"]))
    assert state["status"] == "completed" and state["requested_by"] == "freshness"
    assert [c.request.url.split("?")[0] for c in api.calls[calls:] if "api.x.com" in c.request.url] == [
        X_URL + "stale_one"]
    age = sql.execute("SELECT now() - enriched_at AS age FROM enrichment.profiles WHERE tenant_id = %s"
                      " AND contact_id = %s", (tenant.id, stale)).fetchone()["age"]
    assert age < timedelta(minutes=5)
    # Fresh again: the next run queues nothing more for this tenant.
    queue_stale_profiles(bus.db, policy)
    assert len(scheduled()) == 1


def test_a_job_abandoned_by_a_dead_worker_is_handed_out_again_then_given_up(identity, enrichment, tenant, bus,
                                                                             api, sql):
    api.get(X_URL + "orphan_one", json=X_USER)
    contact_id = consenting_contact(identity, tenant, bus, "orphan1", {"x": "orphan_one"})
    lost = request_enrichment(enrichment, tenant, contact_id)["id"]
    crashed = request_enrichment(enrichment, tenant, contact_id)["id"]
    hopeless = request_enrichment(enrichment, tenant, contact_id)["id"]
    # `lost`'s event never reached a worker; a worker died running `crashed` (the redelivered event
    # found it running and was dropped); `hopeless` has killed its worker three times already.
    sql.execute("DELETE FROM enrichment.outbox WHERE tenant_id = %s AND routing_key = %s",
                (tenant.id, jobs.JOB_REQUESTED))
    sql.execute("UPDATE enrichment.enrichment_jobs SET created_at = created_at - interval '1 hour'"
                " WHERE tenant_id = %s AND contact_id = %s", (tenant.id, contact_id))
    sql.execute("UPDATE enrichment.enrichment_jobs SET status = 'running', started_at = now() - interval '11 minutes'"
                " WHERE tenant_id = %s AND id = ANY(%s::uuid[])", (tenant.id, [crashed, hopeless]))
    sql.execute("UPDATE enrichment.enrichment_jobs SET attempts = 3 WHERE tenant_id = %s AND id = %s",
                (tenant.id, hopeless))
    outcome = jobs.hand_out_abandoned_jobs(bus.db)
    assert outcome["requeued"] >= 2 and outcome["failed"] >= 1
    bus.sync()
    assert job(enrichment, tenant, lost)["status"] == "completed"
    assert job(enrichment, tenant, crashed)["status"] == "completed"
    given_up = job(enrichment, tenant, hopeless)
    assert (given_up["status"], given_up["reason"]) == ("failed", "worker_lost")
    attempts = {str(r["id"]): r["attempts"] for r in sql.execute(
        "SELECT id, attempts FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND contact_id = %s",
        (tenant.id, contact_id)).fetchall()}
    assert attempts == {lost: 1, crashed: 1, hopeless: 3}
    # Finished jobs, and jobs within their lease, are never handed out.
    running = request_enrichment(enrichment, tenant, contact_id)["id"]
    sql.execute("UPDATE enrichment.enrichment_jobs SET status = 'running', started_at = now() - interval '1 minute'"
                " WHERE tenant_id = %s AND id = %s", (tenant.id, running))
    jobs.hand_out_abandoned_jobs(bus.db)
    assert sql.execute("SELECT attempts FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND id = %s",
                       (tenant.id, running)).fetchone()["attempts"] == 0
    assert job(enrichment, tenant, lost)["status"] == "completed"


def test_jobs_have_a_queue_of_their_own_so_consent_events_never_wait_behind_them(settings):
    from services.enrichment.worker import build
    from shared.db import Database

    relay, consumers = build(settings, Database(settings.database_url, name="enrichment-build-test"))
    by_name = {c.name: c for c in consumers}
    assert set(by_name) == {"enrichment", "enrichment-jobs"}
    assert by_name["enrichment-jobs"].topology.routing_keys == (jobs.JOB_REQUESTED,)
    assert by_name["enrichment-jobs"].prefetch == 1  # one job at a time: they wait on rate limits
    assert jobs.JOB_REQUESTED not in by_name["enrichment"].topology.routing_keys
    assert "liaison.identity.consent.recorded" in by_name["enrichment"].topology.routing_keys
    relay.publisher.close()
