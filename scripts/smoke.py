"""A smoke test of a running stack (`make run`), as a user would try it: waits until every
service answers /readyz, then, with the admin key, creates a tenant and a `crm` key, creates a
contact, links an X handle to it and resolves the handle back to the contact; with enrichment
running, records the contact's profile_enrichment consent, requests an enrichment and waits for
the job to complete through the bus and the worker, answered by the provider sandbox; with
campaigns running, records email consent, creates a segment and a campaign, launches it and waits
for the email at the sandbox's SMTP sink and the send in the campaign's report; with webhooks
running, registers a local receiver as the CRM's endpoint and waits for a signed ping and the
consent events; with the console running, signs in with the marketing key and finds the campaign
on its campaigns page.

    LIAISON_ADMIN_KEY=... .venv/bin/python -m scripts.smoke [--timeout 90]

Exits 0 and prints `SMOKE PASS` when every step answered as the contract says, else prints what
went wrong and exits 1. Used by .ci/run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from scripts.run import Service, present_services, sandbox_service
from shared.settings import Settings


class SmokeFailure(AssertionError):
    pass


def _services() -> list[Service]:
    env = {**os.environ, "DATABASE_URL": "postgresql://unused", "BROKER_URL": "memory://",
           "LIAISON_SECRET_KEY": "unused-by-the-smoke-test"}
    return present_services(Settings.from_env(env))


def wait_ready(services: list[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for service in services:
        while True:
            try:
                if requests.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                    print(f"  {service.name} ready at {service.url}", flush=True)
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SmokeFailure(f"{service.name} did not answer 200 on {service.url}/readyz "
                                   f"within {timeout:.0f} s")
            time.sleep(0.5)


def expect(response: requests.Response, status: int, what: str) -> dict:
    if response.status_code != status:
        raise SmokeFailure(f"{what}: expected {status}, got {response.status_code}: {response.text[:500]}")
    print(f"  {what}: {status}", flush=True)
    return response.json() if "json" in response.headers.get("Content-Type", "") else {}


def walkthrough(identity: str, enrichment: str | None, admin_key: str, campaigns: str | None = None,
                sandbox: str | None = None, webhooks: str | None = None, console: str | None = None) -> None:
    http = requests.Session()
    admin = {"Authorization": f"Bearer {admin_key}"}
    for path in ("/healthz", "/openapi.json", "/docs", "/metrics"):
        expect(http.get(identity + path, timeout=10), 200, f"GET {path}")

    tenant = expect(http.post(f"{identity}/v1/tenants", json={"name": "Smoke test"}, headers=admin,
                              timeout=10), 201, "create a tenant")
    key = expect(http.post(f"{identity}/v1/tenants/{tenant['id']}/api-keys",
                           json={"name": "smoke", "scopes": ["crm"]}, headers=admin, timeout=10),
                 201, "create a crm key")
    crm = {"Authorization": f"Bearer {key['key']}"}
    ref = uuid.uuid4().hex[:12]
    contact = expect(http.post(f"{identity}/v1/contacts", headers=crm, timeout=10, json={
        "crm_ref": {"system": "smoke", "id": ref}, "email": f"ada.{ref}@example.com", "first_name": "Ada",
    }), 201, "create a contact")
    handle = f"Ada_{ref[:8]}"
    expect(http.post(f"{identity}/v1/contacts/{contact['id']}/identities", headers=crm, timeout=10,
                     json={"network": "x", "handle": f"https://x.com/{handle}"}), 201, "link an X handle")
    resolved = expect(http.get(f"{identity}/v1/identities/resolve", headers=crm, timeout=10,
                               params={"network": "x", "handle": "@" + handle.lower()}),
                      200, "resolve the handle")
    if resolved.get("contact_id") != contact["id"]:
        raise SmokeFailure(f"resolve answered contact {resolved.get('contact_id')}, expected {contact['id']}")
    print(f"  the handle resolves to contact {contact['id']}", flush=True)
    with crm_receiver() as receiver:
        hook = register_webhook(http, webhooks, crm, receiver) if webhooks else None
        if enrichment:
            enrich(http, identity, enrichment, crm, contact["id"])
        if campaigns and sandbox:
            marketing_key = expect(http.post(f"{identity}/v1/tenants/{tenant['id']}/api-keys",
                                             json={"name": "smoke marketing", "scopes": ["marketing"]},
                                             headers=admin, timeout=10), 201, "create a marketing key")
            marketing = {"Authorization": f"Bearer {marketing_key['key']}"}
            send_campaign(http, identity, campaigns, sandbox, crm, marketing, contact["id"], f"ada.{ref}@example.com")
            if console:
                console_shows_campaign(console, marketing_key["key"], "Smoke offer")
        if hook:
            consents = _until("the consent events at the CRM's webhook endpoint", 60.0, lambda: [
                r for r in receiver.verified(hook["secret"]) if r["type"] == "liaison.identity.consent.recorded"])
            print(f"  the CRM's endpoint received {len(consents)} signed consent event(s) "
                  f"for contact {consents[0]['subject']}", flush=True)


class CrmEndpoint(ThreadingHTTPServer):
    """A CRM's webhook endpoint on a free local port: keeps every POST (headers and raw body)."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.received = received

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/liaison/events"

    def verified(self, secret: str, tolerance: float = 300.0) -> list[dict[str, Any]]:
        """The events whose Liaison-Signature checks out with `secret`, as a receiver checks it
        (docs/webhooks.md): HMAC-SHA256 over "<t>.<raw body>", t within the tolerance."""
        from services.webhooks.signatures import sign

        events = []
        for headers, body in list(self.received):
            fields = [part.partition("=") for part in headers.get("Liaison-Signature", "").split(",")]
            stamp = next((int(v) for k, _, v in fields if k == "t" and v.isdigit()), None)
            given = [v for k, _, v in fields if k == "v1"]
            if stamp is None or abs(time.time() - stamp) > tolerance or sign(secret, stamp, body) not in given:
                raise SmokeFailure(f"a webhook request with a bad signature: {headers.get('Liaison-Signature')}")
            events.append(json.loads(body))
        return events


@contextmanager
def crm_receiver() -> Iterator[CrmEndpoint]:
    server = CrmEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def register_webhook(http: requests.Session, webhooks: str, crm: dict[str, str],
                     receiver: CrmEndpoint) -> dict[str, Any]:
    """The CRM's endpoint for consent events, and a ping to it, received signed."""
    hook = expect(http.post(f"{webhooks}/v1/webhooks", headers=crm, timeout=10, json={
        "url": receiver.url, "event_types": ["liaison.identity.consent.recorded"], "description": "smoke"}),
        201, "register the CRM's webhook endpoint")
    expect(http.post(f"{webhooks}/v1/webhooks/{hook['id']}/ping", headers=crm, timeout=10), 202, "ping it")
    _until("the signed ping at the CRM's endpoint", 30.0, lambda: [
        e for e in receiver.verified(hook["secret"]) if e["type"] == "liaison.webhooks.ping"])
    print("  the ping arrived, its signature verified with the endpoint's secret", flush=True)
    return hook


def console_shows_campaign(console: str, key: str, campaign_name: str) -> None:
    """Signs in to the console as a person would (the form, its CSRF token) and finds the campaign."""
    browser = requests.Session()
    form = browser.get(f"{console}/sign-in", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if form.status_code != 200 or not token:
        raise SmokeFailure(f"the console's sign-in page: {form.status_code}")
    page = browser.post(f"{console}/sign-in", data={"csrf_token": token.group(1), "api_key": key}, timeout=10)
    if page.status_code != 200 or campaign_name not in browser.get(f"{console}/campaigns", timeout=10).text:
        raise SmokeFailure(f"the console did not show the campaign {campaign_name!r} after signing in "
                           f"({page.status_code})")
    print(f"  the console, signed in with the marketing key, lists {campaign_name!r}", flush=True)


def enrich(http: requests.Session, identity: str, enrichment: str, crm: dict[str, str], contact_id: str,
           timeout: float = 60.0) -> None:
    """Consent, then an enrichment job through the bus and the worker, answered by the sandbox."""
    captured = datetime.now(UTC).isoformat()
    expect(http.post(f"{identity}/v1/contacts/{contact_id}/consents", headers=crm, timeout=10, json={
        "purpose": "profile_enrichment", "status": "granted", "legal_basis": "consent",
        "source": {"system": "smoke", "form": "signup"}, "notice_version": "1", "captured_at": captured,
    }), 201, "record profile_enrichment consent")
    deadline = time.monotonic() + timeout
    while True:  # the consent travels to enrichment over the bus
        job = expect(http.post(f"{enrichment}/v1/enrichments", json={"contact_id": contact_id}, headers=crm,
                               timeout=10), 202, "request an enrichment")
        if job["status"] != "skipped":
            break
        if time.monotonic() > deadline:
            raise SmokeFailure("enrichment never saw the consent")
        time.sleep(0.5)
    while job["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise SmokeFailure(f"the enrichment job is still {job['status']} after {timeout:.0f} s")
        time.sleep(0.5)
        job = http.get(f"{enrichment}/v1/enrichments/{job['id']}", headers=crm, timeout=10).json()
    if job["status"] != "completed":
        raise SmokeFailure(f"the enrichment job ended {job['status']}: {job}")
    profile = expect(http.get(f"{enrichment}/v1/profiles/{contact_id}", headers=crm, timeout=10), 200,
                     "read the enriched profile")
    if profile["influence"]["followers"] is None or not profile["sources"]:
        raise SmokeFailure(f"the profile was not enriched: {profile}")
    print(f"  enriched from {[s['network'] for s in profile['sources']]}: "
          f"{profile['influence']['followers']} followers, tier {profile['influence']['tier']}", flush=True)


def _until(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SmokeFailure(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def send_campaign(http: requests.Session, identity: str, campaigns: str, sandbox: str, crm: dict[str, str],
                  marketing: dict[str, str], contact_id: str, email: str, timeout: float = 60.0) -> None:
    """Email consent, a segment, a campaign launched through the bus, the email received by the
    sandbox's SMTP sink."""
    expect(http.post(f"{identity}/v1/contacts/{contact_id}/consents", headers=crm, timeout=10, json={
        "purpose": "email_marketing", "status": "granted", "legal_basis": "consent",
        "source": {"system": "smoke", "form": "signup"}, "notice_version": "1",
        "captured_at": datetime.now(UTC).isoformat(),
    }), 201, "record email_marketing consent")
    segment = expect(http.post(f"{campaigns}/v1/segments", headers=marketing, timeout=10, json={
        "name": "Smoke", "rules": {"all": [{"field": "consent.email_marketing", "op": "eq", "value": "granted"}]},
    }), 201, "create a segment")
    _until("the contact in the segment (the audience comes by event)", timeout, lambda: contact_id in http.get(
        f"{campaigns}/v1/segments/{segment['id']}/preview", headers=marketing, timeout=10).json().get("sample", []))
    campaign = expect(http.post(f"{campaigns}/v1/campaigns", headers=marketing, timeout=10, json={
        "name": "Smoke offer", "segment_id": segment["id"], "channels": ["email"],
        "content": {"email": {"subject": "Hello {{ contact.first_name }}",
                              "body": "Your offer: {{ link('https://shop.example/smoke') }}"}},
    }), 201, "create a campaign")
    expect(http.post(f"{campaigns}/v1/campaigns/{campaign['id']}/launch", headers=marketing, timeout=10), 202,
           "launch it")
    _until("the email at the sandbox's SMTP sink", timeout, lambda: [
        m for m in http.get(f"{sandbox}/sandbox/outbox", params={"channel": "email"}, timeout=10).json()["items"]
        if email in json.dumps(m)])
    print(f"  the offer reached {email} through the channel worker and the SMTP sink", flush=True)
    report = _until("the report counting the send", timeout, lambda: (lambda r: r if r["reach"] == 1 else None)(
        http.get(f"{campaigns}/v1/campaigns/{campaign['id']}/report", headers=marketing, timeout=10).json()))
    print(f"  report: reach {report['reach']}, email sent {report['by_channel']['email']['sent']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for /readyz")
    args = parser.parse_args()
    admin_key = os.environ.get("LIAISON_ADMIN_KEY", "")
    if not admin_key:
        print("SMOKE FAIL: LIAISON_ADMIN_KEY is not set", flush=True)
        return 1
    services = _services()
    try:
        wait_ready(services, args.timeout)
        urls = {s.name: s.url for s in services}
        walkthrough(urls["identity"], urls.get("enrichment"), admin_key, urls.get("campaigns"),
                    sandbox_service(os.environ).url, urls.get("webhooks"), urls.get("console"))
    except (SmokeFailure, requests.RequestException, ValueError) as exc:
        print(f"SMOKE FAIL: {exc}", flush=True)
        return 1
    print("SMOKE PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
