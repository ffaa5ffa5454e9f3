"""A tenant's own provider credentials: set, listed and removed over HTTP, stored sealed, audited,
and used by the tenant's jobs instead of the platform's (the jobs run through the real broker, the
providers are served by `responses`)."""

from __future__ import annotations

import json

import pytest

from services.enrichment import credentials
from shared.db import UnitOfWork
from tests.integration import test_enrichment_jobs as jobs_tests
from tests.integration.test_enrichment_jobs import (
    FC_URL,
    PROVIDER_ENV,
    X_URL,
    X_USER,
    consenting_contact,
    job,
    request_enrichment,
)

# The job tests' fixtures: the providers' APIs, both services' relays and consumers, raw SQL.
api, bus, sql = jobs_tests.api, jobs_tests.bus, jobs_tests.sql

A_TOKEN = "AAAAAAAAAAAAAAAAAAAAA-tenant-a-own-bearer-token-9f3k"
IG_TOKEN = "EAAGm0PX4ZCpsBA-tenant-instagram-token-Zq7W"
X_QUERY = "?user.fields=public_metrics%2Cdescription%2Clocation%2Ccreated_at"


@pytest.fixture(autouse=True)
def platform_env(monkeypatch, settings):
    """The processes' environment, where the listing reads the platform's credentials."""
    for var in ("X_API_BEARER_TOKEN", "INSTAGRAM_ACCESS_TOKEN", "INSTAGRAM_BUSINESS_ACCOUNT_ID",
                "FULLCONTACT_API_KEY", "FACEBOOK_ACCESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("X_API_BEARER_TOKEN", "x-token")
    monkeypatch.setenv("INSTAGRAM_ACCESS_TOKEN", "ig-token")  # no business account id: not complete


def put(enrichment, tenant, network: str, body, headers=None):
    return enrichment.put(f"/v1/providers/{network}/credentials", json=body, headers=headers or tenant.crm)


def listing(enrichment, headers) -> dict[str, dict]:
    response = enrichment.get("/v1/providers", headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["next_cursor"] is None
    return {item["network"]: item for item in response.json["items"]}


def stored(sql, tenant_id: str) -> list[dict]:
    return sql.execute("SELECT network, secret, key_hint, updated_at FROM enrichment.provider_credentials"
                       " WHERE tenant_id = %s ORDER BY network", (tenant_id,)).fetchall()


def sql_uow(sql) -> UnitOfWork:
    """The test's autocommit connection as a unit of work, to read with the use case itself."""
    return UnitOfWork(sql)


def secret_key(enrichment) -> str:
    return enrichment.application.extensions["liaison"].settings.secret_key


def test_set_list_and_remove_credentials_never_showing_them(enrichment, identity, tenant, other_tenant, bus, sql):
    before = listing(enrichment, tenant.marketing)
    assert before == {
        "facebook": {"network": "facebook", "fields": ["access_token"], "source": "none"},
        "fullcontact": {"network": "fullcontact", "fields": ["api_key"], "source": "none"},
        "instagram": {"network": "instagram", "fields": ["access_token", "business_account_id"], "source": "none"},
        "x": {"network": "x", "fields": ["bearer_token"], "source": "platform"},
    }

    response = put(enrichment, tenant, "x", {"credentials": {"bearer_token": A_TOKEN}})
    assert response.status_code == 200, response.json
    entry = response.json
    assert entry == {"network": "x", "fields": ["bearer_token"], "source": "tenant", "key_hint": "9f3k",
                     "updated_at": entry["updated_at"]}
    response = put(enrichment, tenant, "instagram",
                   {"credentials": {"access_token": IG_TOKEN, "business_account_id": "17841400000000001"}})
    assert response.status_code == 200, response.json
    assert response.json["source"] == "tenant" and response.json["key_hint"] == "Zq7W"

    for scope in ("crm", "marketing", "compliance"):
        now = listing(enrichment, tenant.headers(scope))
        assert now["x"] == entry
        assert now["instagram"]["source"] == "tenant" and now["fullcontact"]["source"] == "none"
    # The other tenant sees only its own: the platform's token for X.
    assert listing(enrichment, other_tenant.crm) == before

    # At rest: sealed, neither token nor any of its JSON in clear.
    rows = stored(sql, tenant.id)
    assert [(r["network"], r["key_hint"]) for r in rows] == [("instagram", "Zq7W"), ("x", "9f3k")]
    for row in rows:
        secret = bytes(row["secret"])
        for clear in (A_TOKEN, IG_TOKEN, "17841400000000001", "bearer_token", "access_token"):
            assert clear.encode() not in secret
    assert credentials.for_tenant(sql_uow(sql), tenant.id, secret_key(enrichment)) == {
        "x": {"bearer_token": A_TOKEN},
        "instagram": {"access_token": IG_TOKEN, "business_account_id": "17841400000000001"},
    }

    # Replacing keeps one row, with the new hint.
    newer = "BBBBBBBBBBBBBBBBBBBB-rotated-token-77aa"
    response = put(enrichment, tenant, "x", {"credentials": {"bearer_token": newer}})
    assert response.status_code == 200 and response.json["key_hint"] == "77aa"
    assert len(stored(sql, tenant.id)) == 2

    # The other tenant can neither remove nor overwrite what is not its own.
    assert enrichment.delete("/v1/providers/x/credentials", headers=other_tenant.crm).status_code == 404
    assert listing(enrichment, tenant.crm)["x"]["key_hint"] == "77aa"
    # Only crm changes credentials.
    assert put(enrichment, tenant, "x", {"credentials": {"bearer_token": A_TOKEN}},
               tenant.marketing).status_code == 403
    assert enrichment.delete("/v1/providers/x/credentials", headers=tenant.compliance).status_code == 403

    response = enrichment.delete("/v1/providers/x/credentials", headers=tenant.crm)
    assert response.status_code == 204 and response.data == b""
    assert listing(enrichment, tenant.crm)["x"] == before["x"]  # the platform's again
    missing = enrichment.delete("/v1/providers/x/credentials", headers=tenant.crm)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert [r["network"] for r in stored(sql, tenant.id)] == ["instagram"]

    # Each change is in the audit trail, without the secret.
    bus.sync()
    trail = identity.get("/v1/audit", headers=tenant.compliance)
    assert trail.status_code == 200, trail.json
    ours = [e for e in trail.json["items"] if e["action"].startswith("provider_credentials.")]
    assert [(e["action"], e["resource"], e["details"].get("key_hint")) for e in ours] == [
        ("provider_credentials.set", "provider/x/credentials", "9f3k"),
        ("provider_credentials.set", "provider/instagram/credentials", "Zq7W"),
        ("provider_credentials.set", "provider/x/credentials", "77aa"),
        ("provider_credentials.removed", "provider/x/credentials", None),
    ]
    assert {e["actor"] for e in ours} == {f"key:{tenant.keys['crm']['id']}"}
    assert all(e["details"]["service"] == "enrichment" for e in ours)
    assert A_TOKEN not in trail.get_data(as_text=True) and IG_TOKEN not in trail.get_data(as_text=True)


@pytest.mark.parametrize("network, body, field", [
    ("x", {}, "credentials"),
    ("x", {"credentials": "a-token"}, "credentials"),
    ("x", {"credentials": {"bearer_token": A_TOKEN}, "tenant_id": "x"}, "tenant_id"),
    ("x", {"credentials": {"bearer_token": 12345}}, "credentials"),
    ("x", {"credentials": {"bearer_token": A_TOKEN, "api_key": "extra"}}, "credentials"),
    ("x", {"credentials": {"token": A_TOKEN}}, "credentials"),
    ("x", {"credentials": {"bearer_token": ""}}, "credentials"),
    ("x", {"credentials": {"bearer_token": "   "}}, "credentials"),
    ("x", {"credentials": {"bearer_token": A_TOKEN + "\n"}}, "credentials"),
    ("instagram", {"credentials": {"access_token": IG_TOKEN}}, "credentials"),
    ("fullcontact", {"credentials": {"api_key": "k" * 5000}}, "credentials"),
])
def test_bad_credentials_are_refused_and_nothing_is_stored(enrichment, tenant, sql, network, body, field):
    response = put(enrichment, tenant, network, body)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"]
    assert A_TOKEN not in response.get_data(as_text=True) and IG_TOKEN not in response.get_data(as_text=True)
    assert stored(sql, tenant.id) == []


def test_the_errors_name_each_field(enrichment, tenant):
    response = put(enrichment, tenant, "instagram", {"credentials": {"access_token": IG_TOKEN, "bearer_token": "x"}})
    assert response.status_code == 422
    assert set(response.json["errors"]["credentials"]) == {"business_account_id", "bearer_token"}
    not_json = enrichment.put("/v1/providers/x/credentials", data="{", content_type="application/json",
                              headers=tenant.crm)
    assert not_json.status_code in (400, 422) and not_json.mimetype == "application/problem+json"


def test_an_unknown_network_is_not_found(enrichment, tenant, sql):
    response = put(enrichment, tenant, "myspace", {"credentials": {"bearer_token": A_TOKEN}})
    assert response.status_code == 404, response.json
    assert response.mimetype == "application/problem+json" and "myspace" in response.json["detail"]
    assert enrichment.delete("/v1/providers/myspace/credentials", headers=tenant.crm).status_code == 404
    assert stored(sql, tenant.id) == []


def test_a_job_calls_a_provider_with_the_tenants_own_credentials(
        identity, enrichment, tenant, other_tenant, bus, api, sql):
    bus.use(PROVIDER_ENV)  # the platform's: x-token, fc-key, ig-token
    api.get(X_URL + "xdevelopers", json=X_USER)
    api.get(X_URL + "globex_dev", json=X_USER)
    assert put(enrichment, tenant, "x", {"credentials": {"bearer_token": A_TOKEN}}).status_code == 200
    ours = consenting_contact(identity, tenant, bus, "tc1", {"x": "xdevelopers"})
    theirs = consenting_contact(identity, other_tenant, bus, "tc2", {"x": "globex_dev"})

    first = request_enrichment(enrichment, tenant, ours)
    second = request_enrichment(enrichment, other_tenant, theirs)
    bus.sync()
    assert job(enrichment, tenant, first["id"])["status"] == "completed"
    assert job(enrichment, other_tenant, second["id"])["status"] == "completed"
    calls = sorted((c.request.url, c.request.headers["Authorization"]) for c in api.calls)
    assert calls == sorted([
        (X_URL + "xdevelopers" + X_QUERY, f"Bearer {A_TOKEN}"),  # tenant A: its own X token
        (X_URL + "globex_dev" + X_QUERY, "Bearer x-token"),  # tenant B: the platform's
        (FC_URL, "Bearer fc-key"), (FC_URL, "Bearer fc-key"),  # A set none for FullContact
    ])

    # Removed: A's next job uses the platform's token again.
    api.calls.reset()
    assert enrichment.delete("/v1/providers/x/credentials", headers=tenant.crm).status_code == 204
    again = request_enrichment(enrichment, tenant, ours)
    bus.sync()
    assert job(enrichment, tenant, again["id"])["status"] == "completed"
    assert [c.request.headers["Authorization"] for c in api.calls if c.request.url.startswith(X_URL)] == [
        "Bearer x-token"]


def test_credentials_that_do_not_open_leave_the_provider_not_configured(
        identity, enrichment, tenant, other_tenant, bus, api, sql):
    """A row copied to another tenant does not open there (the tenant is associated data), nor
    does any row under another secret key: the job says not_configured and calls no one with
    the platform's token in the tenant's stead."""
    bus.use({k: v for k, v in PROVIDER_ENV.items() if k != "FULLCONTACT_API_KEY"})
    assert put(enrichment, tenant, "x", {"credentials": {"bearer_token": A_TOKEN}}).status_code == 200
    sql.execute("INSERT INTO enrichment.provider_credentials (tenant_id, network, secret, key_hint)"
                " SELECT %s, network, secret, key_hint FROM enrichment.provider_credentials WHERE tenant_id = %s",
                (other_tenant.id, tenant.id))
    assert credentials.for_tenant(sql_uow(sql), other_tenant.id, secret_key(enrichment)) == {"x": {}}
    assert credentials.for_tenant(sql_uow(sql), tenant.id, "another-secret-key-of-32-chars!!") == {"x": {}}

    theirs = consenting_contact(identity, other_tenant, bus, "tc3", {"x": "globex_dev"})
    accepted = request_enrichment(enrichment, other_tenant, theirs)
    bus.sync()
    state = job(enrichment, other_tenant, accepted["id"])
    assert state["status"] == "failed"
    assert [(p["network"], p["status"]) for p in state["providers"]] == [
        ("fullcontact", "not_configured"), ("x", "not_configured")]
    assert not [c for c in api.calls if c.request.url.startswith(X_URL)]
    assert A_TOKEN not in json.dumps(state)
