"""A launch of RECIPIENTS emails through the fault tests' stack, and the checks that end each
test: every eligible delivery sent exactly once as the sandbox counts them, the services ready."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
import requests

from tests.faults.stack import Stack, wait_for

EMAIL = {"subject": "{{ contact.first_name }}, the winter collection is in",
         "body": "Hello {{ contact.first_name }}, it is in the shops: {{ link('https://shop.example/winter') }}"}
OPEN = ("queued", "sending", "deferred")

# The audience, with the consent mix of the launch benchmark (bench/campaigns.py): everyone has an
# email address, 70 % granted email marketing, 5 % withdrew it, the rest never said; one in 100 is
# on the suppression list. About 69 % of the members are eligible: the others the launch must
# leave alone, and a test sends some 69,000 emails for 100,000 recipients.
# Contact ids are time-ordered as identity's are (UUIDv7), from 2024: contacts identity creates
# during a test sort after them.
SEED_AUDIENCE = """
INSERT INTO campaigns.audience (tenant_id, contact_id, contact_version, email, first_name, last_name, locale,
                                timezone, suppressed)
SELECT %(tenant)s, ('0190' || substr(replace(gen_random_uuid()::text, '-', ''), 5))::uuid, now() - interval '1 day',
       'c' || n || '@example.com',
       (ARRAY['Jeanne', 'Louis', 'Amina', 'Kenji', 'Sofia', 'Mateo'])[1 + n %% 6], 'Martin', 'fr-FR', 'Europe/Paris',
       n %% 100 = 7
FROM generate_series(1, %(count)s) AS n
"""
SEED_CONSENTS = """
INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, record_id, captured_at)
SELECT tenant_id, contact_id, 'email_marketing', CASE WHEN n %% 100 < 70 THEN 'granted' ELSE 'withdrawn' END,
       gen_random_uuid(), now() - interval '100 days'
FROM campaigns.audience CROSS JOIN LATERAL (SELECT substr(email, 2, strpos(email, '@') - 2)::int AS n) AS member
WHERE tenant_id = %(tenant)s AND email LIKE 'c%%' AND n %% 100 < 75
"""


@dataclass
class Launch:
    stack: Stack
    database_url: str
    tenant_id: str
    headers: dict[str, str]
    campaign_id: str
    eligible: int  # members with consent, not on the suppression list: each must get one email

    def api(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        response = requests.request(method, self.stack.url("campaigns") + path, headers=self.headers, timeout=30,
                                    **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def statuses(self) -> Counter[str]:
        with psycopg.connect(self.database_url) as conn:
            return Counter(dict(conn.execute(
                "SELECT status, count(*) FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
                " GROUP BY 1", (self.tenant_id, self.campaign_id)).fetchall()))

    def sent(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(
                "SELECT count(*) FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
                " AND status = 'sent'", (self.tenant_id, self.campaign_id)).fetchone()[0]

    def wait_sent(self, at_least: int, timeout: float = 300) -> None:
        # Every half second: counting a launch's deliveries is work for the PostgreSQL under test.
        wait_for(lambda: self.sent() >= at_least, timeout,
                 lambda: f"{self.statuses()}; exited: {self.stack.exited()}\n{self.stack.log_tail()}", every=0.5)

    def wait_finished(self, timeout: float = 600) -> Counter[str]:
        """Until no delivery is left to send and the campaign is completed."""
        def finished() -> bool:
            statuses = self.statuses()
            return sum(statuses.values()) > 0 and not any(statuses[s] for s in OPEN) and \
                self.api("GET", f"/v1/campaigns/{self.campaign_id}", 200)["status"] == "completed"
        wait_for(finished, timeout,
                 lambda: f"{self.statuses()}; exited: {self.stack.exited()}\n{self.stack.log_tail()}", every=2.0)
        return self.statuses()

    def sandbox_emails(self) -> list[dict[str, Any]]:
        response = requests.get(self.stack.url("sandbox") + "/sandbox/outbox",
                                params={"channel": "email", "payload": "false"}, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def sent_ids(self) -> set[str]:
        with psycopg.connect(self.database_url) as conn:
            return {row[0] for row in conn.execute(
                "SELECT id::text FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
                " AND status = 'sent'", (self.tenant_id, self.campaign_id))}

    def assert_each_eligible_sent_once(self) -> dict[str, int]:
        """Every eligible member's email is at the sandbox once (repeats of a message after a
        crash carry its Message-ID, which the sink recognises; they are reported, not hidden);
        nothing else is; every service answers /readyz with 200. Returns the counts."""
        statuses = self.wait_finished()
        emails = self.sandbox_emails()
        keys = Counter(item["key"] for item in emails)
        assert all(n == 1 for n in keys.values()), "the sandbox keeps each Message-ID once"
        sent = {f"<{delivery_id}@liaison>" for delivery_id in self.sent_ids()}
        assert statuses["sent"] == self.eligible, f"{statuses}, {self.eligible} eligible"
        assert statuses["failed"] == 0, statuses
        assert set(keys) == sent, (f"{len(sent - set(keys))} sent deliveries missing at the sandbox, "
                                   f"{len(set(keys) - sent)} emails there for no sent delivery")
        assert len(emails) == self.eligible
        wait_for(lambda: all(code == 200 for code in self.stack.ready().values()), 60,
                 lambda: f"/readyz: {self.stack.ready()}")
        assert not self.stack.exited(), f"processes exited: {self.stack.exited()}"
        with psycopg.connect(self.database_url) as conn:
            seconds = conn.execute(
                "SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM campaigns.deliveries"
                " WHERE tenant_id = %s AND campaign_id = %s", (self.tenant_id, self.campaign_id)).fetchone()[0]
        print(f"\nCPU seconds by process: {self.stack.cpu_seconds()}")
        return {"eligible": self.eligible, "emails": len(emails),
                "repeats_recognised": sum(item["received"] - 1 for item in emails),
                "sends_per_second": round(len(emails) / max(float(seconds or 0), 0.001))}


def seed(database_url: str, tenant_id: str, recipients: int) -> int:
    """The audience and its consents, written by SQL as campaigns' projection of identity would
    hold them; returns how many members are eligible for an email."""
    with psycopg.connect(database_url) as conn:
        conn.execute(SEED_AUDIENCE, {"tenant": tenant_id, "count": recipients})
        conn.execute(SEED_CONSENTS, {"tenant": tenant_id})
        eligible = conn.execute(
            "SELECT count(*) FROM campaigns.audience a JOIN campaigns.audience_consents c USING (tenant_id, contact_id)"
            " WHERE a.tenant_id = %s AND c.purpose = 'email_marketing' AND c.status = 'granted' AND NOT a.suppressed",
            (tenant_id,)).fetchone()[0]
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE campaigns.audience")
        conn.execute("VACUUM ANALYZE campaigns.audience_consents")
    return eligible


def email_campaign(stack: Stack, database_url: str, tenant: tuple[str, dict[str, str]], eligible: int) -> Launch:
    """A draft email campaign to the tenant's whole audience (of which `eligible` may be sent)."""
    tenant_id, headers = tenant
    launch = Launch(stack, database_url, tenant_id, headers, "", eligible)
    segment = launch.api("POST", "/v1/segments", 201, json={"name": "everyone", "rules": {"all": []}})
    launch.campaign_id = launch.api("POST", "/v1/campaigns", 201, json={
        "name": "Winter collection", "segment_id": segment["id"], "channels": ["email"],
        "strategy": "first_eligible", "content": {"email": EMAIL}})["id"]
    return launch


def start_launch(stack: Stack, database_url: str, tenant: tuple[str, dict[str, str]], recipients: int) -> Launch:
    """Seeds the audience, creates an email campaign to all of it and launches it (202)."""
    launch = email_campaign(stack, database_url, tenant, seed(database_url, tenant[0], recipients))
    launch.api("POST", f"/v1/campaigns/{launch.campaign_id}/launch", 202)
    return launch
