"""Tracking, end to end on the campaigns app: the open pixel and tracked links count on the
delivery, a forged token is 404, and one-click unsubscribe withdraws the consent in campaigns at
once and, through the real broker, in identity's ledger (consent.recorded and the audit trail
included), once however often it is posted."""

from __future__ import annotations

import logging
import uuid

import pytest
from psycopg.types.json import Jsonb

from services.campaigns import tracking
from tests.integration import test_campaigns_audience as audience_tests
from tests.integration.test_enrichment_projections import consent, record

bus = audience_tests.bus
sql = audience_tests.sql
TARGET = "https://shop.example/offer?utm_source=liaison&x=1"


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def delivery(sql, tenant_id: str, contact_id: str, channel: str = "email") -> str:
    """A sent delivery of a running campaign, as the launch and the channel workers leave it."""
    campaign_id, delivery_id = str(uuid.uuid4()), str(uuid.uuid4())
    sql.execute(
        "INSERT INTO campaigns.campaigns (tenant_id, id, name, segment_id, channels, strategy, content, status)"
        " VALUES (%s, %s, 'Spring', %s, %s, 'first_eligible', %s, 'running')",
        (tenant_id, campaign_id, str(uuid.uuid4()), [channel],
         Jsonb({channel: {"subject": "Hi", "body": "Hello"} if channel == "email" else {"body": "Hello"}})),
    )
    sql.execute(
        "INSERT INTO campaigns.deliveries (tenant_id, id, campaign_id, contact_id, channel, status, address, sent_at)"
        " VALUES (%s, %s, %s, %s, %s, 'sent', 'x', now())",
        (tenant_id, delivery_id, campaign_id, contact_id, channel),
    )
    return delivery_id


def counts(sql, tenant_id: str, delivery_id: str) -> dict:
    return sql.execute("SELECT opens, clicks, opened_at, clicked_at FROM campaigns.deliveries"
                       " WHERE tenant_id = %s AND id = %s", (tenant_id, delivery_id)).fetchone()


def consent_status(sql, tenant_id: str, contact_id: str, purpose: str) -> str | None:
    row = sql.execute("SELECT status FROM campaigns.audience_consents WHERE tenant_id = %s AND contact_id = %s"
                      " AND purpose = %s", (tenant_id, contact_id, purpose)).fetchone()
    return row["status"] if row else None


def published(sql, tenant_id: str) -> int:
    return sql.execute("SELECT count(*) AS n FROM campaigns.outbox WHERE tenant_id = %s AND routing_key = %s",
                       (tenant_id, tracking.UNSUBSCRIBE_REQUESTED)).fetchone()["n"]


@pytest.fixture()
def secret(settings) -> str:
    return settings.secret_key


def test_opens_and_clicks_are_counted_and_a_click_redirects_to_its_signed_target(campaigns, tenant, sql, secret):
    contact_id = str(uuid.uuid4())
    delivery_id = delivery(sql, tenant.id, contact_id)
    base = "https://go.example"

    # A click before any open counts as the open the blocked pixel missed.
    clicked = campaigns.get("/t/c/" + token_of(tracking.click_url(base, secret, tenant.id, delivery_id, TARGET)))
    assert clicked.status_code == 302 and clicked.headers["Location"] == TARGET
    assert clicked.headers["Cache-Control"].startswith("no-store")
    row = counts(sql, tenant.id, delivery_id)
    assert (row["opens"], row["clicks"]) == (1, 1) and row["opened_at"] and row["clicked_at"]
    first_click = row["clicked_at"]

    pixel = "/t/o/" + token_of(tracking.open_url(base, secret, tenant.id, delivery_id))
    for _ in range(2):
        opened = campaigns.get(pixel)  # no API key: the token is the authority
        assert opened.status_code == 200 and opened.mimetype == "image/gif"
        assert opened.data.startswith(b"GIF89a") and len(opened.data) == 43
    assert campaigns.head(pixel).status_code == 200  # a scanner's HEAD counts nothing
    campaigns.get("/t/c/" + token_of(tracking.click_url(base, secret, tenant.id, delivery_id, TARGET)))
    row = counts(sql, tenant.id, delivery_id)
    assert (row["opens"], row["clicks"]) == (3, 2) and row["clicked_at"] == first_click


def test_forged_altered_or_misused_tokens_are_404(campaigns, tenant, sql, secret):
    delivery_id = delivery(sql, tenant.id, str(uuid.uuid4()))
    good = token_of(tracking.click_url("https://go.example", secret, tenant.id, delivery_id, TARGET))
    forged = token_of(tracking.click_url("https://go.example", "another-secret-0123456789", tenant.id, delivery_id,
                                         "https://evil.example/"))
    opener = token_of(tracking.open_url("https://go.example", secret, tenant.id, delivery_id))
    for path in (f"/t/c/{forged}", f"/t/c/{good[:-3]}", f"/t/c/{good}x", "/t/o/AAAA", f"/t/o/{forged}",
                 f"/t/u/{forged}", f"/t/c/{opener}", f"/t/u/{opener}"):
        response = campaigns.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"
        assert "Location" not in response.headers
    assert campaigns.post(f"/t/u/{opener}").status_code == 404
    assert counts(sql, tenant.id, delivery_id)["clicks"] == 0
    # A valid token of a delivery that is gone (erased) is 404 too.
    gone = token_of(tracking.open_url("https://go.example", secret, tenant.id, str(uuid.uuid4())))
    assert campaigns.get(f"/t/o/{gone}").status_code == 404
    # The tracking endpoints are documented as public.
    spec = campaigns.get("/openapi.json").json
    assert spec["paths"]["/t/u/{token}"]["post"]["security"] == []


def test_one_click_unsubscribe_withdraws_at_once_and_in_the_ledger_once(identity, campaigns, tenant, bus, sql,
                                                                        secret):
    contact_id = audience_tests.upsert(identity, tenant, "u1", email="uma@example.com", first_name="Uma")["id"]
    record(identity, tenant, contact_id, consent("email_marketing", days_ago=1))
    record(identity, tenant, contact_id, consent("sms_marketing", days_ago=1))
    bus.sync()
    assert consent_status(sql, tenant.id, contact_id, "email_marketing") == "granted"
    delivery_id = delivery(sql, tenant.id, contact_id, "email")
    path = "/t/u/" + token_of(tracking.unsubscribe_url("https://go.example", secret, tenant.id, delivery_id))

    # GET (a person, or a scanner prefetching the link) only shows the button.
    page = campaigns.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'<form method="post">' in page.data and b"marketing emails" in page.data
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert consent_status(sql, tenant.id, contact_id, "email_marketing") == "granted"

    # The mail client's RFC 8058 POST: withdrawn in campaigns in the same request.
    done = campaigns.post(path, data="List-Unsubscribe=One-Click",
                          content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200 and done.mimetype == "text/html"
    assert b"You are unsubscribed" in done.data
    assert consent_status(sql, tenant.id, contact_id, "email_marketing") == "withdrawn"
    assert consent_status(sql, tenant.id, contact_id, "sms_marketing") == "granted"  # that channel only
    # Repeats (the page's button, a retry) answer the same and publish nothing more.
    assert campaigns.post(path).data == done.data
    assert b"You are unsubscribed" in campaigns.get(path).data
    assert published(sql, tenant.id) == 1
    event = sql.execute("SELECT envelope FROM campaigns.outbox WHERE tenant_id = %s AND routing_key = %s",
                        (tenant.id, tracking.UNSUBSCRIBE_REQUESTED)).fetchone()["envelope"]
    assert {k: event["data"][k] for k in ("contact_id", "purpose", "channel", "delivery_id")} == {
        "contact_id": contact_id, "purpose": "email_marketing", "channel": "email", "delivery_id": delivery_id}

    # identity records the withdrawal in the ledger, and its consent.recorded keeps campaigns withdrawn.
    bus.sync()
    state = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json
    assert state["current"]["email_marketing"]["status"] == "withdrawn"
    assert state["current"]["sms_marketing"]["status"] == "granted"
    withdrawals = [r for r in state["history"] if r["status"] == "withdrawn"]
    assert len(withdrawals) == 1
    assert withdrawals[0]["source"]["system"] == "liaison-campaigns"
    assert withdrawals[0]["source"]["form"] == "one-click-unsubscribe"
    assert withdrawals[0]["notice_version"] == "unsubscribe" and withdrawals[0]["legal_basis"] == "consent"
    assert withdrawals[0]["captured_at"] == event["data"]["at"]
    check = identity.get(f"/v1/consents/check?contact_id={contact_id}&purpose=email_marketing", headers=tenant.crm)
    assert check.status_code == 200 and check.json["allowed"] is False
    assert consent_status(sql, tenant.id, contact_id, "email_marketing") == "withdrawn"
    stored = sql.execute("SELECT record_id FROM campaigns.audience_consents WHERE tenant_id = %s"
                         " AND contact_id = %s AND purpose = 'email_marketing'", (tenant.id, contact_id)).fetchone()
    assert str(stored["record_id"]) == withdrawals[0]["id"]  # identity's record replaced the provisional one
    trail = identity.get(f"/v1/audit?contact_id={contact_id}", headers=tenant.compliance).json["items"]
    assert any(e["actor"] == "service:campaigns" and e["action"] == "consent.recorded" for e in trail)

    # Posting again after all that still records nothing new.
    assert campaigns.post(path).status_code == 200
    bus.sync()
    history = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.crm).json["history"]
    assert len([r for r in history if r["status"] == "withdrawn"]) == 1


def test_an_unsubscribe_of_a_contact_erased_meanwhile_is_skipped(identity, campaigns, tenant, bus, sql, secret,
                                                                 caplog):
    contact_id = audience_tests.upsert(identity, tenant, "u2", phone="+33611111111")["id"]
    record(identity, tenant, contact_id, consent("sms_marketing", days_ago=1))
    bus.sync()
    delivery_id = delivery(sql, tenant.id, contact_id, "sms")
    path = "/t/u/" + token_of(tracking.unsubscribe_url("https://go.example", secret, tenant.id, delivery_id))
    assert campaigns.post(path).status_code == 200
    assert consent_status(sql, tenant.id, contact_id, "sms_marketing") == "withdrawn"
    event_id = sql.execute("SELECT envelope->>'id' AS id FROM campaigns.outbox WHERE tenant_id = %s"
                           " AND routing_key = %s", (tenant.id, tracking.UNSUBSCRIBE_REQUESTED)).fetchone()["id"]
    # Erased in identity before its worker handles the unsubscribe: nothing to record, no dead letter.
    assert identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm).status_code == 202
    with caplog.at_level(logging.INFO, logger="services.identity.unsubscribe"):
        bus.sync()
    assert "unsubscribe of a contact that no longer exists" in caplog.messages
    assert sql.execute("SELECT count(*) AS n FROM identity.consent_records WHERE tenant_id = %s AND contact_id = %s"
                       " AND status = 'withdrawn'", (tenant.id, contact_id)).fetchone()["n"] == 0
    handled = sql.execute("SELECT count(*) AS n FROM identity.handled_events WHERE tenant_id = %s AND event_id = %s",
                          (tenant.id, event_id)).fetchone()["n"]
    assert handled == 1  # done, not retried toward the dead letters
