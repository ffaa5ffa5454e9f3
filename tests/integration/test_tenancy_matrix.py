"""The tenancy matrix: for every endpoint of identity, enrichment, campaigns and webhooks, a second
tenant's key (holding every scope) sees 404 for the first tenant's resources and changes nothing of theirs.

The operations come from each service's OpenAPI document, so a new endpoint is covered without
editing this file; one whose path parameter is neither a known tenant resource nor listed in
SKIPPED (with the reason) fails `test_every_operation_is_covered_or_skipped_with_a_reason`.
"No change" is checked on the database itself: every row of every table of their schemas
that belongs to tenant A is the same before and after each of tenant B's calls. Lists, searches
and creates must show B none of A's ids or identifying strings (beyond what B itself sent), and
an Idempotency-Key A used must not replay A's answer to B."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from shared.events import rfc3339, utcnow
from tests.conftest import Tenant
from tests.integration.test_campaigns_audience import sql, upsert  # noqa: F401 (fixture)
from tests.integration.test_enrichment_projections import consent, link, record
from tests.services import three_services

SCHEMAS = ("identity", "enrichment", "campaigns", "webhooks")
METHODS = ("get", "post", "put", "patch", "delete")

# Path parameters that name one of a tenant's records: B must get 404 for A's.
RESOURCE_PARAMS = {"contact_id", "identity_id", "record_id", "erasure_id", "job_id", "segment_id",
                   "campaign_id", "delivery_id", "trigger_id", "webhook_id"}

# Path parameters that name no tenant's record: the key decides whose data the call reaches, so
# B's calls are checked like lists and creates (A's data unchanged and not shown).
KEY_SCOPED_PARAMS = {"network": "a provider's name; credentials are stored per key's tenant"}

# Operations outside the matrix, and why.
SKIPPED = {
    r"^/t/": "public tracking links: no API key; the signed token names the delivery (a forged one is 404,"
             " tests/integration/test_tracking.py)",
    r"^/v1/campaigns/callbacks/": "the SMS provider's delivery callbacks: no API key, signed by the provider",
    r"^/v1/tenants": "admin routes: the admin key manages every tenant, a tenant's key gets 403",
    r"^/v1/api-keys/\{key_id\}$": "admin route (revoking a key): a tenant's key gets 403",
}


@dataclass
class World:
    """Tenant A's resources (one of each), B's own few, and A's identifying strings."""

    ids: dict[str, str]
    b_ids: dict[str, str]
    strings: dict[str, str]
    b_headers: dict[str, str]
    a_headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)

    def leaks(self) -> dict[str, str]:
        return {**{f"id:{k}": v for k, v in self.ids.items()}, **self.strings}


def skip_reason(path: str) -> str | None:
    return next((why for pattern, why in SKIPPED.items() if re.search(pattern, path)), None)


def operations(client) -> list[tuple[str, str, dict]]:
    doc = client.get("/openapi.json").json
    found = []
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                found.append((method, path, item[method]))
    return found


def path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def query_params(operation: dict) -> list[str]:
    return [p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"]


def consent_body() -> dict:
    return {**consent("sms_marketing"), "source": {"system": "mallory", "ip": "203.0.113.9"}}


# A valid body for every operation that takes one, so that validation (422) cannot answer in the
# place of the tenant check. Values: a dict, or a function of the world.
BODIES: dict[tuple[str, str], Callable[[World], dict] | dict] = {
    ("post", "/v1/contacts"): lambda w: {"crm_ref": {"system": "hubspot", "id": w.strings["crm_id"]},
                                         "email": "mallory@globex.example"},
    ("post", "/v1/contacts/bulk"): lambda w: {"contacts": [
        {"crm_ref": {"system": "hubspot", "id": w.strings["crm_id"]}, "first_name": "Mallory"}]},
    ("patch", "/v1/contacts/{contact_id}"): {"first_name": "Mallory", "attributes": {"tier": None}},
    ("post", "/v1/contacts/{contact_id}/merge"): lambda w: {"duplicate_id": w.b_ids["contact_id"]},
    ("post", "/v1/contacts/{contact_id}/identities"): {"network": "tiktok", "handle": "mallory_tt"},
    ("post", "/v1/identities/resolve"): lambda w: {"items": [{"network": "x", "handle": w.strings["handle"]}]},
    ("post", "/v1/contacts/{contact_id}/consents"): lambda w: consent_body(),
    ("post", "/v1/enrichments"): lambda w: {"contact_id": w.ids["contact_id"]},
    ("put", "/v1/providers/{network}/credentials"): {"credentials": {"bearer_token": "mallory-token"}},
    ("post", "/v1/social/events"): lambda w: {"events": [
        {"type": "mention", "network": "x", "handle": w.strings["handle"], "occurred_at": rfc3339(utcnow()),
         "text": "terrible brand, awful service"}]},
    ("post", "/v1/segments"): {"name": "Mallory", "rules": {"all": [{"field": "country", "op": "eq",
                                                                      "value": "FR"}]}},
    ("patch", "/v1/segments/{segment_id}"): {"name": "Renamed by Mallory"},
    ("post", "/v1/segments/preview"): {"rules": {"all": [{"field": "country", "op": "eq", "value": "FR"}]}},
    ("post", "/v1/campaigns"): lambda w: {"name": "Mallory", "segment_id": w.ids["segment_id"], "channels": ["email"],
                                          "content": {"email": {"subject": "Hi", "body": "Hello"}}},
    ("post", "/v1/conversions"): lambda w: {"contact_id": w.ids["contact_id"], "value": 10, "currency": "EUR",
                                            "occurred_at": rfc3339(utcnow()), "campaign_id": w.ids["campaign_id"]},
    ("post", "/v1/triggers"): {"name": "Mallory", "event": "contact.created", "channel": "email",
                               "content": {"subject": "Hi", "body": "Hello"}},
    ("post", "/v1/webhooks"): {"url": "https://mallory.example/hook", "event_types": ["*"]},
    ("patch", "/v1/webhooks/{webhook_id}"): {"url": "https://mallory.example/hook", "enabled": False},
    ("post", "/v1/webhooks/{webhook_id}/rotate-secret"): {"expire_previous_in_hours": 0},
}

# Calls without a path parameter that name A's records in their body or query: like a path
# parameter, the record must be unknown to B. The contract says 404 for another tenant's record;
# 422 (the field names no record B has) is accepted too, never a success.
REFERS_TO_A = {
    ("post", "/v1/enrichments"), ("post", "/v1/campaigns"), ("post", "/v1/conversions"),
    ("get", "/v1/consents/check"), ("get", "/v1/offers"), ("get", "/v1/segments/compare"),
    ("get", "/v1/identities/resolve"),
}


def body_for(method: str, path: str, world: World) -> dict | None:
    body = BODIES.get((method, path))
    return body(world) if callable(body) else body


def fill_query(operation: dict, world: World) -> dict[str, str]:
    return {name: world.query[name] for name in query_params(operation) if name in world.query}


def snapshot(conn, tenant_id: str) -> dict[str, list[str]]:
    """Every row of tenant A in every table of the services."""
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = 'tenant_id'"
        " AND table_schema = ANY(%s) ORDER BY 1, 2", (list(SCHEMAS),)).fetchall()
    rows = {}
    for t in tables:
        query = pgsql.SQL("SELECT to_jsonb(r)::text AS row FROM {}.{} r WHERE tenant_id = %s").format(
            pgsql.Identifier(t["table_schema"]), pgsql.Identifier(t["table_name"]))
        rows[f"{t['table_schema']}.{t['table_name']}"] = sorted(
            r["row"] for r in conn.execute(query, (tenant_id,)).fetchall())
    return rows


def changed_tables(before: dict, after: dict) -> list[str]:
    return [name for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]


def all_scopes_key(identity, admin, tenant: Tenant) -> dict[str, str]:
    response = identity.post(f"/v1/tenants/{tenant.id}/api-keys",
                             json={"name": "everything", "scopes": ["crm", "marketing", "compliance"]}, headers=admin)
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['key']}"}


@pytest.fixture()
def bus(settings, identity_app, enrichment_app, campaigns_app):
    with three_services(settings, identity_app, enrichment_app, campaigns_app) as services:
        yield services


@pytest.fixture()
def world(identity, enrichment, campaigns, webhooks, admin, tenant, other_tenant, bus, sql) -> World:  # noqa: F811
    """One of each of tenant A's resources, made through the APIs (deliveries by SQL: a launch is
    not this test's subject), and B's own contact, segment and campaign for the mixed cases."""
    tag = secrets.token_hex(4)
    handle = f"ott_{tag}"  # X handles are at most 15 characters
    strings = {"email": f"ottilie.{tag}@acme.example", "phone": "+33611223344", "first_name": f"Ottilie{tag}",
               "last_name": f"Quennell{tag}", "handle": handle, "crm_id": f"acme-{tag}"}
    contact = upsert(identity, tenant, strings["crm_id"], email=strings["email"], phone=strings["phone"],
                     first_name=strings["first_name"], last_name=strings["last_name"],
                     attributes={"tier": "gold"})
    contact_id = contact["id"]
    # No profile_enrichment: the job below is then `skipped` at once, and no job request is left
    # on the bus for another test's consumer to run.
    for purpose in ("email_marketing", "geolocation"):
        consent_record = record(identity, tenant, contact_id, consent(purpose, days_ago=1))
    identity_id = link(identity, tenant, contact_id, "x", handle)["id"]
    erased = upsert(identity, tenant, f"acme-erased-{tag}", email=f"gone.{tag}@acme.example")["id"]
    erasure = identity.delete(f"/v1/contacts/{erased}", headers=tenant.crm)
    assert erasure.status_code == 202, erasure.json
    assert enrichment.put("/v1/providers/x/credentials", json={"credentials": {"bearer_token": "acme-token"}},
                          headers=tenant.crm).status_code == 200
    bus.sync()

    feed = enrichment.post("/v1/social/events", json={"events": [
        {"type": "mention", "network": "x", "handle": handle, "occurred_at": rfc3339(utcnow()),
         "text": "I love this brand"}]}, headers=tenant.crm)
    assert feed.status_code == 202, feed.json
    bus.sync()
    job = enrichment.post("/v1/enrichments", json={"contact_id": contact_id}, headers=tenant.crm)
    assert job.status_code == 202 and job.json["status"] == "skipped", job.json

    segment = campaigns.post("/v1/segments", json={"name": "France", "rules": {"all": [
        {"field": "country", "op": "eq", "value": "FR"}]}}, headers=tenant.marketing)
    assert segment.status_code == 201, segment.json
    campaign = campaigns.post("/v1/campaigns", json={
        "name": "Autumn", "segment_id": segment.json["id"], "channels": ["email"],
        "content": {"email": {"subject": "Hello {{ contact.first_name }}", "body": "Our offer"},
                    "web": {"title": "For you", "body": "20% off"}}}, headers=tenant.marketing)
    assert campaign.status_code == 201, campaign.json
    trigger = campaigns.post("/v1/triggers", json=BODIES[("post", "/v1/triggers")], headers=tenant.marketing)
    assert trigger.status_code == 201, trigger.json
    delivery_id, trigger_delivery_id = str(uuid.uuid4()), str(uuid.uuid4())
    for delivery, column, owner in ((delivery_id, "campaign_id", campaign.json["id"]),
                                    (trigger_delivery_id, "trigger_id", trigger.json["id"])):
        sql.execute(pgsql.SQL("INSERT INTO campaigns.deliveries (tenant_id, id, {}, contact_id, channel, status,"
                              " address, content, sent_at) VALUES (%s, %s, %s, %s, 'email', 'sent', %s, %s, now())"
                              ).format(pgsql.Identifier(column)),
                    (tenant.id, delivery, owner, contact_id, strings["email"],
                     Jsonb({"subject": f"Hello {strings['first_name']}", "text": "Our offer"})))
    conversion = campaigns.post("/v1/conversions", json={
        "contact_id": contact_id, "value": 25, "currency": "EUR", "occurred_at": rfc3339(utcnow()),
        "campaign_id": campaign.json["id"]}, headers=tenant.crm)
    assert conversion.status_code == 201, conversion.json

    # A's webhook endpoint, with a delivery of A's contact (sent: nothing left for a dispatcher).
    hook = webhooks.post("/v1/webhooks", json={"url": f"https://crm.acme.example/{tag}", "event_types": ["*"]},
                         headers=tenant.crm)
    assert hook.status_code == 201, hook.json
    webhook_delivery_id = str(uuid.uuid4())
    sql.execute("INSERT INTO webhooks.deliveries (tenant_id, id, endpoint_id, event_id, event_type, subject, payload,"
                " status, attempts, give_up_at, delivered_at) VALUES (%s, %s, %s, %s,"
                " 'liaison.identity.contact.upserted', %s, %s, 'succeeded', 1, now(), now())",
                (tenant.id, webhook_delivery_id, hook.json["id"], str(uuid.uuid4()), contact_id,
                 json.dumps({"data": {"contact": {"email": strings["email"]}}})))
    b_hook = webhooks.post("/v1/webhooks", json=BODIES[("post", "/v1/webhooks")], headers=other_tenant.crm)
    assert b_hook.status_code == 201, b_hook.json

    b_contact = upsert(identity, other_tenant, f"globex-{tag}", email=f"bob.{tag}@globex.example")["id"]
    b_segment = campaigns.post("/v1/segments", json=BODIES[("post", "/v1/segments")], headers=other_tenant.marketing)
    b_campaign = campaigns.post("/v1/campaigns", json={
        "name": "B", "segment_id": b_segment.json["id"], "channels": ["email"],
        "content": {"email": {"subject": "Hi", "body": "Hello"}}}, headers=other_tenant.marketing)
    assert b_campaign.status_code == 201, b_campaign.json

    ids = {"contact_id": contact_id, "record_id": consent_record["id"], "identity_id": identity_id,
           "erasure_id": erasure.json["erasure_id"], "job_id": job.json["id"], "segment_id": segment.json["id"],
           "campaign_id": campaign.json["id"], "delivery_id": delivery_id, "trigger_id": trigger.json["id"],
           "trigger_delivery_id": trigger_delivery_id, "conversion_id": conversion.json["id"],
           "erased_contact_id": erased, "webhook_id": hook.json["id"], "webhook_delivery_id": webhook_delivery_id}
    world = World(ids=ids, b_ids={"contact_id": b_contact, "campaign_id": b_campaign.json["id"],
                                  "webhook_id": b_hook.json["id"]},
                  strings=strings, b_headers=all_scopes_key(identity, admin, other_tenant),
                  a_headers=all_scopes_key(identity, admin, tenant))
    world.query = {"contact_id": contact_id, "email": strings["email"], "crm_system": "hubspot",
                   "crm_id": strings["crm_id"], "network": "x", "handle": handle, "ids": segment.json["id"],
                   "purpose": "email_marketing"}
    return world


def clients(identity, enrichment, campaigns, webhooks) -> dict[str, Any]:
    return {"identity": identity, "enrichment": enrichment, "campaigns": campaigns, "webhooks": webhooks}


def call(client, method: str, url: str, world: World, body: dict | None, query: dict | None = None):
    return client.open(url, method=method.upper(), json=body, query_string=query or {}, headers=world.b_headers)


def is_problem(response, status: int) -> bool:
    return (response.status_code == status and response.content_type.startswith("application/problem+json")
            and (response.json or {}).get("status") == status)


def leaked(response, world: World, sent: str) -> list[str]:
    """A's identifying strings in B's answer, other than those B itself sent."""
    text = response.get_data(as_text=True)
    return [name for name, value in world.leaks().items() if value in text and value not in sent]


def test_every_operation_is_covered_or_skipped_with_a_reason(identity, enrichment, campaigns, webhooks):
    uncovered, bodiless = [], []
    for service, client in clients(identity, enrichment, campaigns, webhooks).items():
        for method, path, operation in operations(client):
            if skip_reason(path):
                continue
            unknown = [p for p in path_params(path) if p not in RESOURCE_PARAMS and p not in KEY_SCOPED_PARAMS]
            if unknown:
                uncovered.append(f"{service} {method.upper()} {path}: {unknown}")
            if "requestBody" in operation and (method, path) not in BODIES:
                bodiless.append(f"{service} {method.upper()} {path}")
    assert not uncovered, ("path parameters neither in RESOURCE_PARAMS nor KEY_SCOPED_PARAMS nor SKIPPED: "
                           f"{uncovered}")
    assert not bodiless, f"operations with a request body missing from BODIES: {bodiless}"


def test_a_second_tenant_sees_404_for_every_resource_and_changes_nothing(identity, enrichment, campaigns, webhooks,
                                                                          world, tenant, sql):  # noqa: F811
    """One world for the four sections: resources by path, lists and creates, B's own parent with
    A's child, Idempotency-Keys (its setup goes through the bus, which takes seconds)."""
    by_service = clients(identity, enrichment, campaigns, webhooks)
    rows = snapshot(sql, tenant.id)
    assert {name.split(".")[0] for name, found in rows.items() if found} == set(SCHEMAS)  # A has data everywhere
    failures = [*resources_answer_404(by_service, world, tenant, sql),
                *lists_show_nothing(by_service, world, tenant, sql),
                *own_parents_do_not_reach(by_service, world, tenant, sql),
                *idempotency_keys_are_per_tenant(by_service, world)]  # last: A's own calls change A's data
    assert not failures, "\n".join(failures)


def resources_answer_404(by_service: dict, world: World, tenant: Tenant, conn) -> list[str]:
    failures, tested = [], 0
    # The calls that change the most (erasure, deletes) go last, so that a failure of one of them
    # does not hide what the others do.
    ordered = sorted(((service, *op) for service, client in by_service.items() for op in operations(client)),
                     key=lambda op: op[1] == "delete")
    for service, method, path, _operation in ordered:
        params = path_params(path)
        if skip_reason(path) or not params or any(p in KEY_SCOPED_PARAMS for p in params):
            continue
        url = path.format(**{p: world.ids[p] for p in params})
        before = snapshot(conn, tenant.id)
        response = call(by_service[service], method, url, world, body_for(method, path, world))
        tested += 1
        label = f"{service} {method.upper()} {url}"
        if not is_problem(response, 404):
            failures.append(f"{label}: {response.status_code} {response.get_data(as_text=True)[:200]}")
        if changes := changed_tables(before, snapshot(conn, tenant.id)):
            failures.append(f"{label}: changed tenant A's {changes}")
    assert tested >= 25, tested  # the documents lost their paths: nothing would be tested
    return failures


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def with_unknown_ids(value: Any, world: World) -> Any:
    """The same request with A's ids replaced by ids nobody has."""
    text = json.dumps(value)
    for known in world.ids.values():
        text = text.replace(known, str(uuid.uuid4()))
    return json.loads(text)


def masked(response) -> tuple[int, str]:
    return response.status_code, UUID.sub("<id>", response.get_data(as_text=True))


def lists_show_nothing(by_service: dict, world: World, tenant: Tenant, conn) -> list[str]:
    failures, sent = [], ""
    for service, client in by_service.items():
        for method, path, operation in operations(client):
            params = path_params(path)
            if skip_reason(path) or any(p not in KEY_SCOPED_PARAMS for p in params):
                continue
            url = path.format(**{p: "x" for p in params})  # the network: the provider A also set credentials for
            body, query = body_for(method, path, world), fill_query(operation, world)
            before = snapshot(conn, tenant.id)
            response = call(client, method, url, world, body, query)
            label = f"{service} {method.upper()} {url} {query or ''}"
            sent += f" {url} {query} {body}"  # what B sent is B's own, in this answer and the next
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code}")
            if (method, path) in REFERS_TO_A and response.status_code not in (404, 422):
                # Some services answer an unknown id without a 404 (offers: none; enrichment: a job
                # skipped for want of consent). A's id must then be exactly as unknown as any other.
                unknown = call(client, method, url, world, with_unknown_ids(body, world),
                               with_unknown_ids(query, world))
                if masked(unknown) != masked(response):
                    failures.append(f"{label} names A's record: {masked(response)}, "
                                    f"for an unknown id {masked(unknown)}")
            if names := leaked(response, world, sent):
                failures.append(f"{label}: shows A's {names}: {response.get_data(as_text=True)[:300]}")
            if changes := changed_tables(before, snapshot(conn, tenant.id)):
                failures.append(f"{label}: changed tenant A's {changes}")
    return failures


# B's own parent, A's child: the child must be looked up within B's tenant too.
MIXED = [
    ("identity", "delete", "/v1/contacts/{b_contact}/identities/{identity_id}", None),
    ("identity", "post", "/v1/contacts/{b_contact}/merge", "merge"),
    ("campaigns", "get", "/v1/campaigns/{b_campaign}/deliveries/{delivery_id}", None),
    ("campaigns", "get", "/v1/campaigns/{b_campaign}/deliveries/{trigger_delivery_id}", None),
    ("webhooks", "get", "/v1/webhooks/{b_webhook}/deliveries/{webhook_delivery_id}", None),
    ("webhooks", "post", "/v1/webhooks/{b_webhook}/deliveries/{webhook_delivery_id}/replay", None),
]


def own_parents_do_not_reach(by_service: dict, world: World, tenant: Tenant, conn) -> list[str]:
    failures = []
    for service, method, template, body in MIXED:
        url = template.format(b_contact=world.b_ids["contact_id"], b_campaign=world.b_ids["campaign_id"],
                              b_webhook=world.b_ids["webhook_id"], **world.ids)
        payload = {"duplicate_id": world.ids["contact_id"]} if body == "merge" else None
        before = snapshot(conn, tenant.id)
        response = call(by_service[service], method, url, world, payload)
        if not is_problem(response, 404):
            failures.append(f"{service} {method.upper()} {url} {payload or ''}: {response.status_code} "
                            f"{response.get_data(as_text=True)[:200]}")
        if changes := changed_tables(before, snapshot(conn, tenant.id)):
            failures.append(f"{service} {method.upper()} {url}: changed tenant A's {changes}")
    return failures


def idempotency_keys_are_per_tenant(by_service: dict, world: World) -> list[str]:
    """B reusing the Idempotency-Key A used, with the same body, gets an answer of its own, never a
    replay of A's (which would show A's new record). Both answers may still read alike: the bulk
    upsert's counts, say."""
    failures = []
    for service, client in by_service.items():
        for method, path, operation in operations(client):
            headers = {p["name"].lower() for p in operation.get("parameters", []) if p.get("in") == "header"}
            if skip_reason(path) or path_params(path) or "idempotency-key" not in headers:
                continue
            key, body = "shared-" + secrets.token_hex(6), body_for(method, path, world)
            theirs = client.open(path, method=method.upper(), json=body,
                                 headers={**world.a_headers, "Idempotency-Key": key})
            ours = client.open(path, method=method.upper(), json=body,
                               headers={**world.b_headers, "Idempotency-Key": key})
            label = f"{service} {method.upper()} {path}"
            created = (theirs.json or {}).get("id") if theirs.is_json and theirs.status_code < 300 else None
            if ours.headers.get("Idempotent-Replayed") or (created and created in ours.get_data(as_text=True)):
                failures.append(f"{label}: B's call with A's Idempotency-Key replayed A's answer "
                                f"{ours.status_code} {ours.get_data(as_text=True)[:200]}")
    return failures
