"""A campaign's results over time (GET /v1/campaigns/{id}/timeline): sends, opens, clicks and
conversions per hour, gaps as zeros, per day for a long campaign, tenancy and scopes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.events import rfc3339
from tests.integration.test_campaign_launch import new_campaign, person, segment, sql, worker  # noqa: F401
from tests.integration.test_http_platform import assert_problem

BASE = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # the night Europe's clocks go forward: hours stay hours


def sent_at(db, tenant_id: str, campaign_id: str, contact_id: str, at: datetime, opened: datetime | None = None,
            clicked: datetime | None = None) -> None:
    db.execute("UPDATE campaigns.deliveries SET status = 'sent', sent_at = %s, opened_at = %s, clicked_at = %s"
               " WHERE tenant_id = %s AND campaign_id = %s AND contact_id = %s",
               (at, opened, clicked, tenant_id, campaign_id, contact_id))


def test_the_timeline_counts_each_hour_from_the_first_to_the_last(campaigns, tenant, other_tenant, sql, worker):  # noqa: F811
    t = tenant.id
    people = [person(sql, t, email=f"t{i}@example.com", consents=["email_marketing"]) for i in range(3)]
    campaign = new_campaign(campaigns, tenant, segment(campaigns, tenant), channels=["email"])
    url = f"/v1/campaigns/{campaign['id']}/timeline"

    before = campaigns.get(url, headers=tenant.marketing)
    assert before.status_code == 200
    assert before.json == {"campaign_id": campaign["id"], "bucket": "hour", "items": []}

    campaigns.post(f"/v1/campaigns/{campaign['id']}/launch", headers=tenant.marketing)
    worker.run()
    sent_at(sql, t, campaign["id"], people[0], BASE + timedelta(minutes=5),
            opened=BASE + timedelta(minutes=50), clicked=BASE + timedelta(hours=3, minutes=1))
    sent_at(sql, t, campaign["id"], people[1], BASE + timedelta(minutes=6))
    sent_at(sql, t, campaign["id"], people[2], BASE + timedelta(hours=1, minutes=59))
    bought = campaigns.post("/v1/conversions", headers=tenant.crm, json={
        "contact_id": people[0], "value": 30, "currency": "EUR", "campaign_id": campaign["id"],
        "occurred_at": rfc3339(BASE + timedelta(hours=3, minutes=30))})
    assert bought.status_code == 201, bought.json

    timeline = campaigns.get(url, headers=tenant.marketing).json
    assert timeline["bucket"] == "hour"
    assert [(p["at"], p["sent"], p["opened"], p["clicked"], p["converted"]) for p in timeline["items"]] == [
        ("2026-03-29T00:00:00Z", 2, 1, 0, 0),
        ("2026-03-29T01:00:00Z", 1, 0, 0, 0),
        ("2026-03-29T02:00:00Z", 0, 0, 0, 0),  # nothing that hour: there, with zeros
        ("2026-03-29T03:00:00Z", 0, 0, 1, 1),
    ]
    daily = campaigns.get(url + "?bucket=day", headers=tenant.compliance).json
    assert daily["bucket"] == "day"
    assert [(p["at"], p["sent"], p["converted"]) for p in daily["items"]] == [("2026-03-29T00:00:00Z", 3, 1)]

    # A campaign followed for months is given per day: no chart wants thousands of hours.
    sent_at(sql, t, campaign["id"], people[2], BASE + timedelta(days=40))
    long = campaigns.get(url, headers=tenant.marketing).json
    assert long["bucket"] == "day" and len(long["items"]) == 41
    assert long["items"][0]["sent"] == 2 and long["items"][-1]["sent"] == 1

    assert_problem(campaigns.get(url + "?bucket=minute", headers=tenant.marketing), 422)
    assert_problem(campaigns.get(url, headers=tenant.crm), 403)
    assert_problem(campaigns.get(url, headers=other_tenant.marketing), 404)
    assert_problem(campaigns.get(f"/v1/campaigns/{uuid.uuid4()}/timeline", headers=tenant.marketing), 404)
