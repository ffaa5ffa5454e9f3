"""What every caller of every endpoint relies on: auth, scopes, tenancy, errors, ids, docs."""

import json
import time
import uuid

import pytest

from tests.conftest import make_tenant

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    body = response.json
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    return body


def contact_body(ref="1", **fields):
    return {"crm_ref": {"system": "salesforce", "id": ref}, **fields}


def test_health_readiness_metrics_and_docs_need_no_key(identity):
    assert identity.get("/healthz").status_code == 200
    ready = identity.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": True, "broker": True}
    metrics = identity.get("/metrics")
    assert metrics.status_code == 200
    assert b"liaison_http_requests_total" in metrics.data
    assert b"liaison_outbox_pending_events" in metrics.data
    docs = identity.get("/docs")
    assert docs.status_code == 200
    # The page's scripts come from the service itself, not from a CDN the machine may not reach.
    assert b"/docs/assets/swagger-ui-bundle.js" in docs.data
    script = identity.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.data) > 100_000
    assert identity.get("/docs/assets/../../etc/passwd").status_code == 404


def test_openapi_documents_every_identity_path_with_bearer_auth(identity):
    spec = identity.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/v1/tenants", "/v1/tenants/{tenant_id}/api-keys", "/v1/api-keys/{key_id}",
                 "/v1/contacts", "/v1/contacts/bulk", "/v1/contacts/{contact_id}",
                 "/v1/contacts/{contact_id}/merge", "/v1/contacts/{contact_id}/identities",
                 "/v1/identities/resolve"):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert paths["/v1/contacts"]["post"]["security"] == [{"bearerAuth": []}]


def test_openapi_problems_admit_extension_members_and_bounds_are_numbers(identity, campaigns):
    """What schemathesis (tests/contract) found in the documents: a 409's `status_now` broke the
    Problem schema, a Decimal's bounds were strings, and an empty Idempotency-Key was allowed."""
    problem = identity.get("/openapi.json").json["components"]["schemas"]["Problem"]
    assert problem["additionalProperties"] is True  # RFC 9457 extension members
    doc = campaigns.get("/openapi.json").json
    value = doc["components"]["schemas"]["ConversionIn"]["properties"]["value"]
    assert (value["minimum"], value["maximum"]) == (0, 10**9)
    [key] = [p for p in doc["paths"]["/v1/conversions"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)


def test_a_missing_or_unknown_key_is_401(identity):
    body = assert_problem(identity.get("/v1/contacts"), 401)
    assert "Bearer" in body["detail"]
    assert_problem(identity.get("/v1/contacts", headers={"Authorization": "Bearer lsn_nope"}), 401)
    assert_problem(identity.get("/v1/contacts", headers={"Authorization": "Basic abc"}), 401)


def test_a_key_without_the_scope_is_403_and_changes_nothing(identity, tenant):
    assert_problem(identity.post("/v1/contacts", json=contact_body(), headers=tenant.marketing), 403)
    found = identity.get("/v1/contacts?crm_system=salesforce&crm_id=1", headers=tenant.crm)
    assert found.json["items"] == []


def test_the_admin_key_manages_tenants_only(identity, admin, tenant):
    assert_problem(identity.get("/v1/contacts", headers=admin), 403)
    assert_problem(identity.post("/v1/tenants", json={"name": "x"}, headers=tenant.crm), 403)


def test_a_revoked_key_stops_working_within_five_seconds(identity, admin, tenant):
    key = tenant.keys["crm"]
    assert identity.get("/v1/contacts", headers=tenant.crm).status_code == 200
    assert identity.delete(f"/v1/api-keys/{key['id']}", headers=admin).status_code == 204
    deadline = time.monotonic() + 5
    while identity.get("/v1/contacts", headers=tenant.crm).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted after 5 s"
        time.sleep(0.25)


def test_another_tenants_contact_is_404_never_its_data(identity, admin, tenant, other_tenant):
    created = identity.post("/v1/contacts", json=contact_body(email="a@example.com"), headers=tenant.crm)
    contact_id = created.json["id"]
    body = assert_problem(identity.get(f"/v1/contacts/{contact_id}", headers=other_tenant.crm), 404)
    assert "a@example.com" not in str(body)
    assert_problem(identity.patch(f"/v1/contacts/{contact_id}", json={"first_name": "X"},
                                  headers=other_tenant.crm), 404)
    assert identity.get(f"/v1/contacts/{contact_id}", headers=tenant.crm).json["first_name"] is None
    listed = identity.get("/v1/contacts?email=a@example.com", headers=other_tenant.crm)
    assert listed.json["items"] == []


def test_malformed_requests_get_problems_never_a_500(identity, tenant):
    json_headers = {**tenant.crm, "Content-Type": "application/json"}
    bad_json = identity.post("/v1/contacts", data="{not json", headers=json_headers)
    assert_problem(bad_json, 400)
    invalid = assert_problem(identity.post("/v1/contacts", json={"crm_ref": {"system": ""}, "email": "x",
                                                                   "timezone": "Mars/Base", "bogus": 1},
                                           headers=tenant.crm), 422)
    assert set(invalid["errors"]) >= {"crm_ref", "email", "timezone", "bogus"}
    assert_problem(identity.post("/v1/contacts", json=[1, 2], headers=tenant.crm), 422)
    assert_problem(identity.get("/v1/contacts/not-a-uuid", headers=tenant.crm), 404)
    assert_problem(identity.get(f"/v1/contacts/{uuid.uuid4()}", headers=tenant.crm), 404)
    assert_problem(identity.put("/v1/contacts", json={}, headers=tenant.crm), 405)
    assert_problem(identity.get("/v1/no-such-thing", headers=tenant.crm), 404)
    assert_problem(identity.get("/v1/contacts?limit=0", headers=tenant.crm), 422)
    assert_problem(identity.get("/v1/contacts?limit=1001", headers=tenant.crm), 422)
    assert_problem(identity.get("/v1/contacts?cursor=forged", headers=tenant.crm), 422)


def test_request_ids_are_echoed_or_made(identity):
    assert identity.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    assert len(identity.get("/healthz").headers["X-Request-Id"]) == 32


def test_keys_are_shown_once_and_scoped(identity, admin):
    tenant = make_tenant(identity, admin, "Initech")
    key = tenant.keys["compliance"]
    assert key["key"].startswith("lsn_") and key["scopes"] == ["compliance"]
    me = identity.get("/v1/api-keys/current", headers=tenant.compliance)
    assert me.json == {"id": key["id"], "tenant_id": tenant.id, "scopes": ["compliance"]}
    bad = assert_problem(identity.post(f"/v1/tenants/{tenant.id}/api-keys",
                                       json={"name": "x", "scopes": ["root"]}, headers=admin), 422)
    assert "scopes" in bad["errors"]
    assert_problem(identity.post(f"/v1/tenants/{uuid.uuid4()}/api-keys",
                                 json={"name": "x", "scopes": ["crm"]}, headers=admin), 404)
    assert_problem(identity.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=admin), 404)


@pytest.mark.parametrize("path", ["/v1/tenants"])
def test_idempotency_key_replays_the_first_response(identity, admin, path):
    headers = {**admin, "Idempotency-Key": str(uuid.uuid4())}
    first = identity.post(path, json={"name": "Once"}, headers=headers)
    again = identity.post(path, json={"name": "Once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    other_body = identity.post(path, json={"name": "Twice"}, headers=headers)
    assert_problem(other_body, 422)


def test_an_unexpected_error_is_a_bare_500_problem_with_the_trace_only_in_the_log(settings, capfd):
    from services.identity.app import create_app

    app = create_app(settings)

    @app.get("/v1/boom")
    def boom():
        raise KeyError("secret-internal-detail")

    response = app.test_client().get("/v1/boom", headers={"X-Request-Id": "trace-me"})
    body = assert_problem(response, 500)
    assert "secret-internal-detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["title"] == "Internal Server Error"
    logged = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "unhandled error" in line]
    assert logged[0]["request_id"] == "trace-me"
    assert "secret-internal-detail" in logged[0]["trace"]
    app.extensions["liaison"].db.close()


def test_a_value_the_database_cannot_store_is_422_and_changes_nothing(identity, tenant):
    for body in (contact_body("nul", first_name="a\u0000b"), contact_body("nul", attributes={"k": "a\u0000"})):
        assert_problem(identity.post("/v1/contacts", json=body, headers=tenant.crm), 422)
    assert identity.get("/v1/contacts?crm_system=salesforce&crm_id=nul", headers=tenant.crm).json["items"] == []


def test_json_that_could_not_be_stored_or_published_is_refused_never_a_500(identity, tenant):
    """Found by schemathesis (tests/contract): jsonb parameters and bus messages are written with
    orjson, which cannot write a lone surrogate, NaN, an integer beyond 64 bits (jsonb gives a
    stored 1e20 back as one) or a structure nested ~255 deep."""
    json_headers = {**tenant.crm, "Content-Type": "application/json"}
    row = '{"crm_ref": {"system": "salesforce", "id": "odd"}, %s}'
    for fields, status in (('"first_name": "\\udc00x"', 400), ('"attributes": {"\\ud800": 1}', 400),
                           ('"attributes": {"k": NaN}', 400), ('"attributes": {"k": 1e400}', 400),
                           ('"attributes": {"k": 123456789012345678901234567890}', 422),
                           ('"attributes": {"k": 1e20}', 422), ('"attributes": {"k": -9223372036854775809}', 422),
                           ('"attributes": {"k": ' + "[" * 300 + "]" * 300 + "}", 422)):
        assert_problem(identity.post("/v1/contacts", data=row % fields, headers=json_headers), status)
        bulk = '{"contacts": [%s]}' % (row % fields)
        assert_problem(identity.post("/v1/contacts/bulk", data=bulk, headers=json_headers), status)
    assert identity.get("/v1/contacts?crm_system=salesforce&crm_id=odd", headers=tenant.crm).json["items"] == []
    big = assert_problem(identity.post("/v1/contacts/bulk", data='{"contacts": [%s]}' % (
        row % '"attributes": {"k": 1E+20}'), headers=json_headers), 422)
    assert list(big["errors"]) == ["contacts.0.attributes.k"]
    # The largest numbers that can be stored are stored, and the contact can still be changed.
    fine = identity.post("/v1/contacts", data=row % '"attributes": {"k": 18446744073709551615, "j": 1.5e18}',
                         headers=json_headers)
    assert fine.status_code == 201, fine.json
    assert fine.json["attributes"] == {"k": 18446744073709551615, "j": 1500000000000000000}
    patched = identity.patch(f"/v1/contacts/{fine.json['id']}", json={"first_name": "Odd"}, headers=tenant.crm)
    assert patched.status_code == 200, patched.json


def test_a_database_outage_is_a_503_problem_the_client_may_retry(settings, tenant):
    from services.identity.app import create_app

    app = create_app(settings)
    client = app.test_client()
    app.extensions["liaison"].db.close()  # as if PostgreSQL had gone away: no connection to be had
    response = client.get("/v1/identities/resolve?network=x&handle=someone", headers=tenant.crm)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    assert response.headers["Retry-After"] == "2"
