"""The web console clicked through in headless Chromium, on the real PostgreSQL and broker: a
campaign manager builds a segment watching its live count, creates and launches a campaign,
reads its funnel once the email worker has sent it, and cancels a scheduled one; a compliance
officer finds a contact, reads their consent history with its proof, sees the audit chain
verified, erases the contact and watches every service confirm, and downloads the consents CSV.
Screenshots of each step go to var/test/artifacts/e2e/."""

from __future__ import annotations

import csv
import io
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from kombu import Connection
from playwright.sync_api import expect

from sandbox.channels import Outbox
from sandbox.smtp import sink
from services.campaigns import tracking
from services.campaigns.channel_worker import build, tracking_links
from services.campaigns.channels import adapters as channel_adapters
from services.campaigns.templates import render_content
from shared.bus import Publisher
from shared.events import CloudEvent, rfc3339, utcnow
from tests.conftest import make_tenant
from tests.services import three_services

PROOF = {"double_opt_in": "token-e2e-123", "form_url": "https://acme.example/newsletter"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def world(settings, identity_app, enrichment_app, campaigns_app, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A tenant with ten contacts (six gold, four silver), their email consent, the three services'
    consumers (`sync()`), and campaigns' email channel worker sending to an SMTP sink (`send()`)."""
    identity = identity_app.test_client()
    admin = {"Authorization": f"Bearer {settings.admin_key}"}
    tenant = make_tenant(identity, admin, "Console Co")
    outbox = Outbox(tmp_path_factory.mktemp("sandbox") / "outbox.sqlite3")
    port = free_port()
    smtp = sink(outbox, "127.0.0.1", port)
    smtp.start()
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "CAMPAIGNS_EMAIL_FROM": "Acme <offers@acme.example>"}
    db = campaigns_app.extensions["liaison"].db
    [email] = build(settings, db, ["email"], channel_adapters(env), render_content, tracking_links(settings),
                    backoff=0.0, sleep=lambda _: None)
    with Connection(settings.broker_url) as connection:
        email.topology.declare(connection)
    people = []
    for index in range(10):
        tier = "gold" if index < 6 else "silver"
        contact = identity.post("/v1/contacts", headers=tenant.crm, json={
            "crm_ref": {"system": "salesforce", "id": f"e2e-{index}"}, "email": f"person{index}@example.com",
            "first_name": f"Person{index}", "last_name": "Tester", "timezone": "UTC",
            "attributes": {"tier": tier}})
        assert contact.status_code == 201, contact.json
        consent = identity.post(f"/v1/contacts/{contact.json['id']}/consents", headers=tenant.crm, json={
            "purpose": "email_marketing", "status": "granted", "legal_basis": "consent", "notice_version": "2026-01",
            "source": {"system": "salesforce", "form": "newsletter", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0"},
            "proof": PROOF})
        assert consent.status_code == 201, consent.json
        people.append(contact.json)
    publisher = Publisher.from_settings(settings)
    with three_services(settings, identity_app, enrichment_app, campaigns_app) as services:
        services.sync()  # campaigns' audience now holds them and their consent

        def send() -> None:
            services.sync()  # the launch: deliveries written, dispatch events relayed
            email.drain(idle=0.5)
            services.sync()  # the delivery events

        def confirm_others(erasure_id: str) -> None:
            """Confirms for the participants this module does not run (webhooks), as their workers
            would: the console's subject is following the confirmations, not giving them."""
            state = identity.get(f"/v1/erasures/{erasure_id}", headers=tenant.compliance).json
            others = [s for s, status in state["services"].items() if status == "pending"
                      and s not in ("identity", "enrichment", "campaigns")]
            events = [CloudEvent(f"liaison.{s}.erasure.completed", f"/liaison/{s}", tenant.id,
                                 {"erasure_id": erasure_id, "service": s}) for s in others]
            if events:
                publisher.publish_batch([(e.type, e.envelope()) for e in events])
                services.sync()

        yield SimpleNamespace(tenant=tenant, people=people, sync=services.sync, send=send, outbox=outbox,
                              confirm_others=confirm_others)
    publisher.close()
    smtp.stop()


def sign_in(page, console_url: str, key: str) -> None:
    page.goto(console_url + "/sign-in")
    page.fill("#api_key", key)
    page.click("button[type=submit]")


def test_a_campaign_manager_builds_a_segment_launches_a_campaign_and_reads_its_results(
        browser, console_url, world, campaigns_app, settings, shot):
    tenant = world.tenant
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    live = page.locator("#live-count")

    # Sign-in: a wrong key is refused in words; a marketing key gets in and sees no compliance pages.
    page.goto(console_url + "/campaigns")
    assert "/sign-in" in page.url
    assert "REST APIs" in page.text_content("section.sign-in")
    sign_in(page, console_url, "not-a-key")
    assert "unknown or revoked" in page.text_content(".flash.error")
    shot(page, "sign-in-refused")
    sign_in(page, console_url, tenant.keys["marketing"]["key"])
    assert page.url.endswith("/campaigns")
    nav = page.text_content("header nav")
    assert "Campaigns" in nav and "Segments" in nav and "Contacts" not in nav and "Audit" not in nav
    page.goto(console_url + "/contacts")
    assert "needs a key with the compliance scope" in page.text_content(".problem")
    page.goto(console_url + f"/campaigns/{uuid.uuid4()}")
    assert "does not exist" in page.text_content(".problem .detail")  # the API's problem, in words

    # The segment builder: the live count follows the rules as they are typed.
    page.goto(console_url + "/segments/new")
    expect(live).to_have_text("10")  # no rule: everyone
    page.fill("input[name=field]", "attributes.tier")
    page.select_option("select[name=op]", "eq")
    page.fill("input[name=value]", "silver")
    expect(live).to_have_text("4")
    page.fill("input[name=value]", "gold")
    expect(live).to_have_text("6")
    page.click("#add-rule")
    page.locator("input[name=field]").nth(1).fill("consent.email_marketing")
    page.locator("input[name=value]").nth(1).fill("granted")
    expect(live).to_have_text("6")
    page.locator("input[name=value]").nth(1).fill("withdrawn")
    expect(live).to_have_text("0")
    page.locator("input[name=value]").nth(1).fill("granted")
    page.locator("select[name=op]").nth(1).select_option("near")  # a bad rule: campaigns says why
    expect(page.locator("#live-count-error")).not_to_be_empty()
    assert "rules" in page.text_content("#live-count-error")
    page.locator("select[name=op]").nth(1).select_option("eq")
    expect(live).to_have_text("6")
    assert live.text_content() == "6"
    page.fill("#name", "Gold members")
    shot(page, "segment-builder")
    page.click("#segment-builder button[type=submit]")
    assert page.url.endswith("/segments"), page.text_content("main")
    row = page.locator("tr", has_text="Gold members")
    assert row.locator("td.num").first.text_content() == "6"
    assert page.locator("table.segments tbody tr").count() == 1  # the live counts saved nothing
    shot(page, "segments")

    # A campaign from the segment, launched; the email worker sends it, people open, click, buy.
    row.locator("text=Create campaign").click()
    page.fill("#name", "Gold autumn offer")
    page.select_option("#channel_1", "email")
    page.fill("#email_subject", "Hello {{ contact.first_name }}")
    page.fill("#email_body", "Our offer: {{ link('https://shop.example/autumn') }}")
    page.fill("#cost_email", "0.5")
    shot(page, "campaign-new")
    page.click("#campaign-form button[type=submit]")
    assert "created as a draft" in page.text_content(".flash")
    assert page.text_content("#campaign-status") == "draft"
    campaign_id = page.url.rstrip("/").split("/")[-1]
    page.click("text=Launch")
    assert "Launched" in page.text_content(".flash")
    world.send()
    assert len(world.outbox.messages("email")) == 6
    client = campaigns_app.test_client()
    deliveries = client.get(f"/v1/campaigns/{campaign_id}/deliveries", headers=tenant.marketing).json["items"]
    public = tracking.public_url(settings)
    for delivery in deliveries[:3]:
        opened = tracking.open_url(public, settings.secret_key, tenant.id, delivery["id"])
        assert client.get(urlsplit(opened).path).status_code == 200
    clicked = tracking.click_url(public, settings.secret_key, tenant.id, deliveries[0]["id"], "https://shop.example/autumn")
    assert client.get(urlsplit(clicked).path).status_code == 302
    bought = client.post("/v1/conversions", headers=tenant.crm, json={
        "contact_id": deliveries[0]["contact_id"], "value": 12, "currency": "EUR", "occurred_at": rfc3339(utcnow())})
    assert bought.status_code == 201, bought.json

    page.reload()
    funnel = page.locator("svg.funnel g[data-channel=email]")
    figures = {stage: funnel.locator(f"g[data-stage={stage}]").get_attribute("data-value")
               for stage in ("queued", "sent", "opened", "clicked", "converted")}
    assert figures == {"queued": "0", "sent": "6", "opened": "3", "clicked": "1", "converted": "1"}
    assert funnel.locator("g[data-stage=sent] text.value").text_content() == "6"  # the number is written too
    kpis = {k: page.text_content(f".kpi[data-kpi={k}] .value") for k in ("audience", "reach", "sent", "roi")}
    assert kpis == {"audience": "6", "reach": "6", "sent": "6", "roi": "300%"}  # (12 - 3) / 3
    series = {s: page.locator(f"svg.lines g[data-series={s}]").get_attribute("data-total")
              for s in ("sent", "opened", "clicked", "converted")}
    assert series == {"sent": "6", "opened": "3", "clicked": "1", "converted": "1"}
    assert "sent 6" in page.text_content("svg.lines")
    shot(page, "campaign-results")

    with page.expect_download() as download:
        page.click("text=Report CSV")
    lines = list(csv.reader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert lines[0][:3] == ["channel", "queued", "sent"] and lines[1][:3] == ["email", "0", "6"]

    page.goto(console_url + "/campaigns")
    listed = page.locator("tr", has_text="Gold autumn offer")
    assert listed.locator("td.num").nth(2).text_content() == "6"  # sent
    assert listed.locator("td.num").nth(4).text_content() == "300%"
    assert page.locator("svg.bars g[data-label='Gold members']").get_attribute("data-value") == "3.0"
    shot(page, "campaigns")

    # A scheduled campaign, cancelled before its time.
    page.goto(console_url + "/segments")
    page.locator("tr", has_text="Gold members").locator("text=Create campaign").click()
    page.fill("#name", "Gold winter teaser")
    page.fill("#email_subject", "Soon")
    page.fill("#email_body", "Winter is coming")
    page.fill("#schedule_at", (utcnow() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"))
    page.click("#campaign-form button[type=submit]")
    page.click("text=Launch")
    assert "Scheduled for" in page.text_content(".flash")
    assert page.text_content("#campaign-status") == "scheduled"
    page.click("text=Cancel campaign")
    assert "Cancelled" in page.text_content(".flash")
    assert page.text_content("#campaign-status") == "cancelled"
    assert page.locator("text=Launch").count() == 0
    shot(page, "campaign-cancelled")

    page.click("text=Sign out")
    assert "/sign-in" in page.url
    page.goto(console_url + "/campaigns")
    assert "/sign-in" in page.url
    context.close()


def test_a_compliance_officer_reads_consent_and_audit_erases_a_contact_and_exports(
        browser, console_url, world, shot):
    tenant = world.tenant
    person = world.people[9]
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, console_url, tenant.keys["compliance"]["key"])
    assert page.url.endswith("/contacts")
    assert "Audit trail" in page.text_content("header nav")

    # Search by email and by CRM reference, then the contact's consent history with its proof.
    page.fill("#q", "nobody@example.com")
    page.click("form.search button")
    assert "No contact matches" in page.text_content("main")
    page.fill("#q", "salesforce:e2e-9")
    page.click("form.search button")
    assert page.locator("table.contacts tbody tr").count() == 1
    page.fill("#q", person["email"])
    page.click("form.search button")
    shot(page, "contact-search")
    page.click(f"text={person['first_name']}")
    assert page.locator("h1").text_content().strip().startswith("Person9 Tester")
    assert page.text_content("tr[data-purpose=email_marketing] .consent") == "granted"
    assert page.text_content("tr[data-purpose=sms_marketing] .consent") == "none"
    record = page.locator("section.history[data-purpose=email_marketing] li.record")
    assert record.count() == 1
    assert "token-e2e-123" in record.locator("pre.proof-data").text_content()
    assert "203.0.113.9" in record.text_content() and "notice 2026-01" in record.text_content()
    shot(page, "contact-consents")
    record.locator("text=Consent receipt").click()
    assert '"piiPrincipalId": "' + person["id"] in page.text_content("pre.receipt")
    page.go_back()

    # The audit trail, verified.
    page.goto(console_url + "/audit?limit=15")
    assert page.text_content("#audit-verification").startswith("Chain verified")
    first = page.locator("table.audit tbody tr")
    assert first.count() == 15 and page.locator("#audit-next").count() == 1
    assert first.first.get_attribute("data-seq") == "1"
    shot(page, "audit")
    page.click("#audit-next")
    assert page.locator("table.audit tbody tr").first.get_attribute("data-seq") == "16"

    # Erasure: requested from the contact's page, followed live until every service confirms.
    page.goto(console_url + f"/contacts/{person['id']}")
    page.click("text=Request erasure")
    assert re.search(r"/erasures/[0-9a-f-]{36}$", page.url)
    assert page.text_content("#erasure-status") == "pending"
    assert page.text_content("tr[data-service=identity] td.state") == "completed"
    shot(page, "erasure-pending")
    world.sync()  # enrichment and campaigns erase and confirm over the bus
    world.confirm_others(page.url.rsplit("/", 1)[1])
    expect(page.locator("#erasure-status")).to_have_text("completed", timeout=10_000)
    assert {page.text_content(f"tr[data-service={s}] td.state") for s in ("enrichment", "campaigns")} == {"completed"}
    shot(page, "erasure-completed")
    page.goto(console_url + f"/contacts/{person['id']}")
    assert "does not exist" in page.text_content(".problem")

    # The consents CSV, streamed through as a download.
    page.goto(console_url + "/exports")
    page.select_option("#purpose", "email_marketing")
    with page.expect_download() as download:
        page.click("#consents-export button")
    assert download.value.suggested_filename == "consents.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert len(rows) == 10 and {r["purpose"] for r in rows} == {"email_marketing"}
    assert {r["contact_id"] for r in rows} == {p["id"] for p in world.people}
    assert "person9@example.com" not in str(rows)
    shot(page, "exports")
    context.close()
