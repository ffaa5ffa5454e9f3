"""Two more ways a launch meets the real world: people withdrawing their consent while it sends,
and a message no handler can ever process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
import requests
from kombu import Connection

from shared.bus import EVENTS_EXCHANGE
from tests.faults.conftest import RECIPIENTS
from tests.faults.launch import email_campaign, seed
from tests.faults.stack import ROOT, wait_for

WITHDRAWN = 1_000
KNOWN = 1_500  # contacts identity knows (a CRM import); the launch's other members are seeded
# The launch of the withdrawal test: what matters is the 1,000 people, not the size of the crowd.
LAUNCH = min(RECIPIENTS, 10_000)


def test_consent_withdrawn_during_a_launch_stops_every_message_not_yet_sent(stack, database_url, tenant):
    """1,000 members withdraw their email consent at the CRM while the launch sends; from the
    moment each withdrawal was asked for, that person gets nothing. A message already handed to
    the provider cannot be called back, so they are people whose messages were still waiting
    their turn, as most are for someone who unsubscribes during a long launch: the deliveries
    later in the dispatch order (by delivery id) than what is being sent."""
    tenant_id, headers = tenant
    identity = stack.url("identity")
    # The seeded members first, then identity's: deliveries are ordered (time-ordered ids) as the
    # audience is, so identity's contacts come last in the launch.
    eligible = seed(database_url, tenant_id, LAUNCH - KNOWN)
    contacts = [{"crm_ref": {"system": "salesforce", "id": f"003{n:012d}"}, "email": f"w{n}@example.com",
                 "first_name": "Chloé", "last_name": "Martin", "locale": "fr-FR", "timezone": "Europe/Paris"}
                for n in range(1, KNOWN + 1)]
    imported = requests.post(identity + "/v1/contacts/bulk", json={"contacts": contacts}, headers=headers, timeout=60)
    assert imported.status_code == 200 and imported.json()["created"] == KNOWN, imported.text
    with psycopg.connect(database_url, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM campaigns.audience WHERE tenant_id = %s",
                                      (tenant_id,)).fetchone()[0] == LAUNCH, 60,
                 lambda: "campaigns did not hear of identity's contacts")
        # Their earlier grant, as campaigns' projection holds it.
        conn.execute(
            "INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, record_id, captured_at)"
            " SELECT tenant_id, contact_id, 'email_marketing', 'granted', gen_random_uuid(),"
            " now() - interval '100 days'"
            " FROM campaigns.audience WHERE tenant_id = %s AND email LIKE 'w%%'", (tenant_id,))
    launch = email_campaign(stack, database_url, tenant, eligible + KNOWN)
    launch.api("POST", f"/v1/campaigns/{launch.campaign_id}/launch", 202)
    launch.wait_sent(LAUNCH // 20)

    with psycopg.connect(database_url) as conn:
        waiting = conn.execute(
            "SELECT d.contact_id::text, d.id::text FROM campaigns.deliveries d JOIN identity.contacts c"
            " ON c.tenant_id = d.tenant_id AND c.id = d.contact_id WHERE d.tenant_id = %s AND d.campaign_id = %s"
            " AND d.status = 'queued' ORDER BY d.id DESC LIMIT %s", (tenant_id, launch.campaign_id, WITHDRAWN),
        ).fetchall()
    assert len(waiting) == WITHDRAWN

    def withdraw(contact_id: str) -> datetime:
        asked = datetime.now(UTC)
        answer = requests.post(f"{identity}/v1/contacts/{contact_id}/consents", headers=headers, timeout=30, json={
            "purpose": "email_marketing", "status": "withdrawn", "legal_basis": "consent",
            "source": {"system": "salesforce", "form": "preference-centre"}, "notice_version": "2026-01"})
        assert answer.status_code == 201, answer.text
        return asked

    with ThreadPoolExecutor(4) as pool:
        asked = dict(zip((d for _, d in waiting), pool.map(withdraw, [c for c, _ in waiting]), strict=True))
    launch.eligible -= WITHDRAWN
    counts = launch.assert_each_eligible_sent_once()

    emails = {item["key"]: item for item in launch.sandbox_emails()}
    late = [d for d, at in asked.items() if f"<{d}@liaison>" in emails
            and datetime.fromisoformat(emails[f"<{d}@liaison>"]["first_at"]) > at]
    assert late == [], f"{len(late)} emails reached people after they withdrew"
    with psycopg.connect(database_url) as conn:
        outcome = conn.execute(
            "SELECT status, reason, count(*) FROM campaigns.deliveries WHERE tenant_id = %s AND id = ANY(%s::uuid[])"
            " GROUP BY 1, 2", (tenant_id, list(asked))).fetchall()
    assert outcome == [("suppressed", "withdrawn", WITHDRAWN)]
    print(f"\nconsent withdrawn during the launch: {counts}; {WITHDRAWN} withdrawn, 0 sent to them")


def test_a_poison_message_is_dead_lettered_listed_and_replayed_while_the_launch_goes_on(stack, database_url,
                                                                                         tenant):
    """A dispatch event whose delivery ids are not ids fails at every try: after its retries it
    waits in the dead letters, the launch's good batches go by, and an operator lists it and
    replays it with `python -m shared.deadletters`."""
    tenant_id = tenant[0]
    launch = email_campaign(stack, database_url, tenant, seed(database_url, tenant_id, 2_000))
    poison_id = str(uuid.uuid4())
    poison = {"specversion": "1.0", "id": poison_id, "source": "/liaison/campaigns",
              "type": "liaison.campaigns.dispatch.email", "time": datetime.now(UTC).isoformat(),
              "tenantid": tenant_id, "datacontenttype": "application/json",
              "data": {"campaign_id": launch.campaign_id, "trigger_id": None, "channel": "email",
                       "delivery_ids": ["not-a-delivery-id"]}}
    prefix = stack.env["BUS_PREFIX"]
    with Connection(stack.env["BROKER_URL"]) as connection:
        connection.Producer().publish(json.dumps(poison), exchange=f"{prefix}{EVENTS_EXCHANGE}",
                                      routing_key=poison["type"], content_type="application/cloudevents+json",
                                      content_encoding="utf-8", delivery_mode=2)
    launch.api("POST", f"/v1/campaigns/{launch.campaign_id}/launch", 202)

    def dead_letters() -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "shared.deadletters", "list", "campaigns-email"], cwd=ROOT,
                              env=stack.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    [dead] = wait_for(dead_letters, 60, lambda: "the poison message never reached the dead letters")
    assert dead["id"] == poison_id and dead["attempts"] == 3 and "not-a-delivery-id" in dead["error"]
    counts = launch.assert_each_eligible_sent_once()

    replayed = subprocess.run([sys.executable, "-m", "shared.deadletters", "replay", "campaigns-email", "--id",
                               poison_id], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0 and "replayed 1 event" in replayed.stdout, replayed.stderr
    time.sleep(1)
    # Replayed, it went through its retries again (its attempts counted from zero) and is back.
    [again] = wait_for(lambda: [d for d in dead_letters() if d["attempts"] == 3], 60,
                       lambda: "the replayed message did not come back to the dead letters")
    assert again["id"] == poison_id
    assert len(launch.sandbox_emails()) == counts["emails"], "the poison sent nothing"
    print(f"\npoison message: dead-lettered after 3 attempts, listed, replayed; the launch: {counts}")
