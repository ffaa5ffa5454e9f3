"""The console's own HTTP behaviour, without a browser: health and readiness, sign-in refusals,
the session cookie's flags and sealed key, CSRF on every POST, no open redirect, and a service
that does not answer shown as a message, never a stack trace."""

from __future__ import annotations

import base64
import re
import socket
import zlib
from dataclasses import replace

import pytest

from tests.conftest import make_tenant


@pytest.fixture(scope="module")
def tenant(settings, identity_app):
    return make_tenant(identity_app.test_client(), {"Authorization": f"Bearer {settings.admin_key}"}, "Http Co")


def console(settings, identity_url: str, campaigns_url: str, **changes):
    from services.console.app import create_app

    return create_app(replace(settings, identity_url=identity_url, campaigns_url=campaigns_url, **changes))


@pytest.fixture(scope="module")
def app(settings, identity_url, campaigns_url):
    app = console(settings, identity_url, campaigns_url)
    yield app
    app.extensions["console"].backend.close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once it is closed


def csrf(client, path: str = "/sign-in") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, key: str, **extra) -> object:
    return client.post("/sign-in", data={"api_key": key, "csrf_token": csrf(client), **extra})


def test_health_readiness_and_metrics(app, settings, campaigns_url):
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready", "checks": {"identity": True}}
    client.get("/sign-in")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'liaison_http_requests_total{endpoint="/sign-in",method="GET",service="console",status="200"}' in metrics
    orphan = console(settings, closed_port_url(), campaigns_url)
    ready = orphan.test_client().get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"] == {"identity": False}


def test_sign_in_says_why_a_key_is_refused(app, settings, tenant):
    client = app.test_client()
    for key, reason in ((settings.admin_key, "admin key manages tenants and keys only"),
                        (tenant.keys["crm"]["key"], "neither the marketing nor the compliance scope"),
                        ("wrong", "unknown or revoked")):
        answer = sign_in(client, key)
        assert answer.status_code == 401 and reason in answer.get_data(as_text=True)
        assert client.get("/campaigns").status_code == 302  # still signed out


def test_the_session_cookie_is_httponly_lax_and_holds_the_key_sealed(app, settings, identity_url, campaigns_url,
                                                                     tenant):
    client = app.test_client()
    key = tenant.keys["marketing"]["key"]
    signed_in = sign_in(client, key)
    assert signed_in.status_code == 302
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith("liaison_console=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # served over http here
    assert re.search(r"Expires=.*GMT", cookie)  # 8 hours, not the browser's whole life
    value = cookie.split(";")[0].split("=", 1)[1]
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    data = zlib.decompress(raw) if value.startswith(".") else raw
    assert key.encode() not in data and key not in value  # sealed, not merely signed
    assert client.get("/campaigns").status_code == 200

    over_https = console(settings, identity_url, campaigns_url, console_url="https://console.example")
    https_client = over_https.test_client()
    answer = https_client.post("/sign-in", base_url="https://console.example", data={
        "api_key": key, "csrf_token": csrf_over(https_client)})
    assert "Secure" in answer.headers["Set-Cookie"]


def csrf_over(client) -> str:
    page = client.get("/sign-in", base_url="https://console.example").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_every_post_needs_the_forms_csrf_token(app, tenant, campaigns_app):
    client = app.test_client()
    sign_in(client, tenant.keys["marketing"]["key"])
    refused = client.post("/segments/new", data={"name": "Sneaky", "match": "all", "field": "", "op": "eq",
                                                 "value": ""})
    assert refused.status_code == 400 and "form has expired" in refused.get_data(as_text=True)
    forged = client.post("/sign-out", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    listed = campaigns_app.test_client().get("/v1/segments", headers=tenant.marketing).json["items"]
    assert "Sneaky" not in [s["name"] for s in listed]
    assert client.get("/campaigns").status_code == 200  # still signed in
    token = csrf(client, "/campaigns")
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 302
    assert client.get("/campaigns").status_code == 302


def test_sign_in_returns_to_the_page_asked_for_and_never_to_another_site(app, tenant):
    client = app.test_client()
    asked = client.get("/segments")
    assert asked.status_code == 302 and "next=/segments" in asked.headers["Location"]
    back = sign_in(client, tenant.keys["marketing"]["key"], next="/segments")
    assert back.headers["Location"] == "/segments"
    for elsewhere in ("//evil.example/x", "/\\evil.example/x", "https://evil.example/x"):
        away = sign_in(app.test_client(), tenant.keys["marketing"]["key"], next=elsewhere)
        assert away.headers["Location"] == "/"


def test_a_service_that_does_not_answer_is_a_message_not_a_stack_trace(settings, identity_url, tenant):
    app = console(settings, identity_url, closed_port_url())
    client = app.test_client()
    sign_in(client, tenant.keys["marketing"]["key"])
    page = client.get("/campaigns")
    text = page.get_data(as_text=True)
    assert page.status_code == 503 and "The campaigns service did not answer" in text
    assert "Traceback" not in text
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "There is no such page" in missing.get_data(as_text=True)


def test_the_apis_refusals_are_shown_in_their_words(app, tenant, campaigns_app):
    client = app.test_client()
    sign_in(client, tenant.keys["marketing"]["key"])
    segment = campaigns_app.test_client().post("/v1/segments", headers=tenant.marketing, json={
        "name": "Everyone", "rules": {"all": []}}).json
    token = csrf(client, "/campaigns/new")
    refused = client.post("/campaigns/new", data={
        "csrf_token": token, "name": "Broken", "segment_id": segment["id"], "channel_1": "email",
        "strategy": "first_eligible", "email_subject": "Hi {{ contact.first_name", "email_body": "Hello"})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "The campaign was not created" in text and "content.email.subject" in text
    assert 'value="Broken"' in text  # what was typed is kept

    created = client.post("/campaigns/new", data={
        "csrf_token": token, "name": "Fine", "segment_id": segment["id"], "channel_1": "sms",
        "strategy": "first_eligible", "sms_body": "Hi"})
    campaign_page = created.headers["Location"]
    campaign_id = campaign_page.rsplit("/", 1)[1]
    assert client.post(f"/campaigns/{campaign_id}/cancel", data={"csrf_token": token}).status_code == 302
    again = client.post(f"/campaigns/{campaign_id}/launch", data={"csrf_token": token}, follow_redirects=True)
    assert again.status_code == 200 and "Conflict" in again.get_data(as_text=True)  # a 409, as a message

    count = client.post("/segments/count.json", data={"csrf_token": token, "match": "all", "field": "shoe_size",
                                                      "op": "eq", "value": "42"})
    assert count.status_code == 422 and count.json["count"] is None and "rules" in " ".join(count.json["errors"])


def test_the_live_count_saves_no_segment(app, tenant, campaigns_app):
    client = app.test_client()
    sign_in(client, tenant.keys["marketing"]["key"])
    listed = campaigns_app.test_client().get("/v1/segments", headers=tenant.marketing).json["items"]
    token = csrf(client, "/segments/new")
    count = client.post("/segments/count.json", data={"csrf_token": token, "match": "any", "field": ["country", "city"],
                                                      "op": ["eq", "in"], "value": ["FR", "Lyon, Paris"]})
    assert count.status_code == 200 and count.json["count"] == 0  # this tenant has no contacts
    assert count.json["rules"] == {"any": [{"field": "country", "op": "eq", "value": "FR"},
                                           {"field": "city", "op": "in", "value": ["Lyon", "Paris"]}]}
    assert campaigns_app.test_client().get("/v1/segments", headers=tenant.marketing).json["items"] == listed
