"""What campaigns achieved: conversions with last-touch attribution, and the campaign report.

- A conversion (`POST /v1/conversions`) is attributed to the contact's last delivery sent within
  ATTRIBUTION_WINDOW (7 days) before it, among the given campaign's deliveries when a campaign is
  named, else among all. A named campaign with no such delivery still gets the conversion (the
  CRM knows better), without a delivery or channel. Either way the contact's last purchase moves
  forward, so segments on `last_purchase_at` see it.
- The report: `audience` (the segment's members at launch), `reach` (contacts sent anything),
  per channel the deliveries by outcome with opens, clicks, conversions, revenue and cost (of what
  was sent, at the campaign's cost per message), why contacts were not sent to (`suppressed`),
  `conversion_rate` (contacts who converted / contacts reached) and `roi` ((revenue - cost) /
  cost; null without cost). Revenue adds conversion values as given: one currency per tenant is
  assumed.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta
from typing import Any

from services.campaigns import CHANNELS
from services.campaigns.repository import audience as audience_repo
from services.campaigns.repository import campaigns as campaigns_repo
from services.campaigns.repository import results as repo
from shared import errors
from shared.db import UnitOfWork
from shared.events import rfc3339
from shared.ids import new_id

ATTRIBUTION_WINDOW = timedelta(days=7)
SUPPRESSION_REASONS = ("no_consent", "no_address", "frequency_cap", "suppression_list")
CHANNEL_FIGURES = ("queued", "sent", "delivered", "failed", "opened", "clicked", "converted", "revenue", "cost")


def record_conversion(uow: UnitOfWork, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    contact_id = str(body["contact_id"])
    campaign_id = str(body["campaign_id"]) if body.get("campaign_id") else None
    if campaign_id and not repo.campaign_exists(uow, tenant_id, campaign_id):
        raise errors.ValidationFailed({"campaign_id": [f"No campaign {campaign_id} in this tenant."]})
    touch = repo.last_touch(uow, tenant_id, contact_id, body["occurred_at"], ATTRIBUTION_WINDOW, campaign_id)
    row = repo.insert_conversion(uow, tenant_id, {
        "id": new_id(),
        "contact_id": contact_id,
        "campaign_id": str(touch["campaign_id"]) if touch else campaign_id,
        "delivery_id": touch["id"] if touch else None,
        "channel": touch["channel"] if touch else None,
        "value": body["value"],
        "currency": body["currency"],
        "occurred_at": body["occurred_at"],
    })
    audience_repo.record_purchase(uow, tenant_id, contact_id, body["occurred_at"])
    return {
        "id": str(row["id"]), "contact_id": contact_id,
        "campaign_id": str(row["campaign_id"]) if row["campaign_id"] else None,
        "delivery_id": str(row["delivery_id"]) if row["delivery_id"] else None,
        "channel": row["channel"], "value": float(row["value"]), "currency": row["currency"],
        "occurred_at": rfc3339(row["occurred_at"]), "created_at": rfc3339(row["created_at"]),
    }


def report(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> dict[str, Any]:
    campaign = campaigns_repo.get(uow, tenant_id, campaign_id)
    if campaign is None:
        raise errors.NotFound.of("campaign", campaign_id)
    channels = {c: dict.fromkeys(CHANNEL_FIGURES, 0) for c in campaign["channels"] if c in CHANNELS}
    for row in repo.by_channel(uow, tenant_id, campaign_id):
        channels[row["channel"]] = {k: row[k] for k in CHANNEL_FIGURES}
    suppressed = {reason: 0 for reason in SUPPRESSION_REASONS} | repo.suppressed(uow, tenant_id, campaign_id)
    totals = repo.reach_and_conversions(uow, tenant_id, campaign_id)
    cost = sum(c["cost"] for c in channels.values())
    return {
        "campaign_id": campaign_id,
        "status": campaign["status"],
        "audience": campaign["audience"] or 0,
        "reach": totals["reach"],
        "by_channel": channels,
        "suppressed": suppressed,
        "converted": totals["converted"],
        "revenue": totals["revenue"],
        "cost": cost,
        "conversion_rate": round(totals["converted"] / totals["reach"], 4) if totals["reach"] else None,
        "roi": round((totals["revenue"] - cost) / cost, 4) if cost else None,
    }


def report_csv(report_: dict[str, Any]) -> str:
    """One line per channel, then a total line: what a spreadsheet wants."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["channel", *CHANNEL_FIGURES])
    for channel, figures in report_["by_channel"].items():
        writer.writerow([channel, *(figures[k] for k in CHANNEL_FIGURES)])
    total = {k: sum(f[k] for f in report_["by_channel"].values()) for k in CHANNEL_FIGURES}
    total["revenue"] = report_["revenue"]
    writer.writerow(["total", *(total[k] for k in CHANNEL_FIGURES)])
    return out.getvalue()


TIMELINE_BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# An hourly series longer than this (a campaign followed for months) is given per day instead:
# no chart draws thousands of points usefully.
TIMELINE_MAX_POINTS = 24 * 31
TIMELINE_FIGURES = ("sent", "opened", "clicked", "converted")


def timeline(uow: UnitOfWork, tenant_id: str, campaign_id: str, bucket: str = "hour") -> dict[str, Any]:
    """A campaign's results over time: per hour (or day), from the first to the last that saw
    anything, the messages sent, opened and clicked then and the conversions attributed to it.
    Periods with nothing in between are there with zeros, so a chart's x axis is time."""
    if campaigns_repo.get(uow, tenant_id, campaign_id) is None:
        raise errors.NotFound.of("campaign", campaign_id)
    rows = repo.timeline(uow, tenant_id, campaign_id, bucket)
    if bucket == "hour" and rows and (rows[-1]["at"] - rows[0]["at"]) / TIMELINE_BUCKETS["hour"] >= TIMELINE_MAX_POINTS:
        bucket = "day"
        rows = repo.timeline(uow, tenant_id, campaign_id, bucket)
    by_time = {row["at"]: row for row in rows}
    items = []
    if rows:
        # In UTC: adding an hour to a wall-clock time would skip or repeat one at a DST change.
        step, at, last = TIMELINE_BUCKETS[bucket], rows[0]["at"].astimezone(UTC), rows[-1]["at"].astimezone(UTC)
        while at <= last:
            row = by_time.get(at)
            items.append({"at": rfc3339(at), **{k: row[k] if row else 0 for k in TIMELINE_FIGURES}})
            at += step
    return {"campaign_id": campaign_id, "bucket": bucket, "items": items}
