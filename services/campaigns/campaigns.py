"""Campaigns: create, schedule, launch, cancel; the launch itself; deferred sends coming due; the
campaign's end.

Life of a campaign: `draft` → (`scheduled` →) `launching` → `running` → `completed`, or
`cancelled` from any state before `completed`.

- create: the segment must exist; every channel needs its content, and every template must
  render (services.campaigns.templates): a template error is a 422 now, not a failed send later.
- launch (`POST /v1/campaigns/{id}/launch`, 202): a draft with `schedule_at` in the future becomes
  `scheduled` (the worker launches it when the time comes); otherwise, or for a scheduled one
  launched by hand, `launching`, and `liaison.campaigns.launch.requested` goes to the outbox in
  the same transaction. The worker's consumer runs the launch (`run_launch`) in one transaction
  with the event's handled mark: the segment's members as they are now (segments are dynamic),
  one delivery per member and channel with its eligibility (repository.launch_deliveries), the
  dispatch events (services.campaigns.dispatch) for the queued ones, and the campaign `running`.
  A crash rolls all of it back and the redelivered event runs it again: a launch happens once.
- deferred deliveries (quiet hours) are released by the worker when their time comes, and
  dispatched then; a campaign with nothing left queued, sending or deferred is `completed`.
- cancel: queued and deferred deliveries are suppressed (reason `cancelled`) and never sent;
  what a channel worker already handed to a provider is not called back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.campaigns import SCHEMA, SOURCE, dispatch, segments
from services.campaigns.repository import campaigns as repo
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow
from shared.ids import new_id

LAUNCH_REQUESTED = "liaison.campaigns.launch.requested"
OPEN_STATUSES = ("draft", "scheduled", "launching", "running")
EVENTS_PER_WRITE = 200  # dispatch events written to the outbox at a time during a launch

# segment id → fills the temporary table `launch_members` with the segment's members now.
MemberQuery = Callable[[UnitOfWork, str, str], None]


def view(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if v is not None or k in ("schedule_at", "audience")}
    for key in ("id", "segment_id"):
        out[key] = str(row[key])
    for key in ("schedule_at", "offer_ends_at", "created_at", "launched_at", "finished_at"):
        if row.get(key) is not None:
            out[key] = rfc3339(row[key])
    return out


def create(uow: UnitOfWork, tenant_id: str, body: dict[str, Any],
           validate_content: Callable[[dict[str, Any], list[str]], None]) -> dict[str, Any]:
    if not repo.segment_exists(uow, tenant_id, str(body["segment_id"])):
        raise errors.ValidationFailed({"segment_id": [f"No segment {body['segment_id']} in this tenant."]})
    validate_content(body["content"], body["channels"])
    row = repo.insert(uow, tenant_id, {
        "id": new_id(),
        "name": body["name"],
        "segment_id": body["segment_id"],
        "channels": body["channels"],
        "strategy": body.get("strategy", "first_eligible"),
        "content": body["content"],
        "schedule_at": body.get("schedule_at"),
        "frequency_cap": body.get("frequency_cap"),
        "quiet_hours": body.get("quiet_hours"),
        "cost_per_message": body.get("cost_per_message") or {},
        "offer_ends_at": body.get("offer_ends_at"),
    })
    return view(row)


def get(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, campaign_id)
    if row is None:
        raise errors.NotFound.of("campaign", campaign_id)
    return view(row)


def launch(uow: UnitOfWork, tenant_id: str, campaign_id: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    row = repo.get(uow, tenant_id, campaign_id, lock=True)
    if row is None:
        raise errors.NotFound.of("campaign", campaign_id)
    if row["status"] not in ("draft", "scheduled"):
        raise errors.Conflict(f"A {row['status']} campaign cannot be launched.", status_now=row["status"])
    if row["status"] == "draft" and row["schedule_at"] is not None and row["schedule_at"] > now:
        repo.set_status(uow, tenant_id, campaign_id, "scheduled")
    else:
        repo.set_status(uow, tenant_id, campaign_id, "launching")
        uow.publish(SCHEMA, launch_requested(tenant_id, campaign_id))
    return get(uow, tenant_id, campaign_id)


def launch_requested(tenant_id: str, campaign_id: str) -> CloudEvent:
    return CloudEvent(LAUNCH_REQUESTED, SOURCE, tenant_id, {"campaign_id": campaign_id})


def cancel(uow: UnitOfWork, tenant_id: str, campaign_id: str, now: datetime | None = None) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, campaign_id, lock=True)
    if row is None:
        raise errors.NotFound.of("campaign", campaign_id)
    if row["status"] not in OPEN_STATUSES:
        raise errors.Conflict(f"A {row['status']} campaign cannot be cancelled.", status_now=row["status"])
    repo.cancel_open_deliveries(uow, tenant_id, campaign_id)
    repo.set_status(uow, tenant_id, campaign_id, "cancelled", finished_at=now or utcnow())
    return get(uow, tenant_id, campaign_id)


# -- the launch, in the worker -----------------------------------------------------------------
def valid_time_zones(names: Iterable[str]) -> list[str]:
    """The IANA names among `names` (PostgreSQL knows the same database); others count as UTC."""
    valid = []
    for name in names:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        valid.append(name)
    return valid


def segment_members(uow: UnitOfWork, tenant_id: str, segment_id: str) -> None:
    """Fills `launch_members` with the segment's members as they are now."""
    compiled = segments.members(uow, tenant_id, segment_id)
    repo.fill_members(uow, compiled.where, compiled.params)


def run_launch(uow: UnitOfWork, tenant_id: str, campaign_id: str, members: MemberQuery = segment_members,
               now: datetime | None = None) -> dict[str, int] | None:
    """The launch (see the module docstring), in the caller's transaction. Returns the
    deliveries written by status, or None when the campaign is not launching (a repeat)."""
    now = now or utcnow()
    campaign = repo.get(uow, tenant_id, campaign_id, lock=True)
    if campaign is None or campaign["status"] != "launching":
        return None
    # A million recipients: the deliveries' statement sorts and hashes millions of rows; with the
    # default work_mem it spills to disk and probes consents row by row (measured 44 s against
    # 21 s at 256 MB for 1M). For this transaction only; the server's memory, not the worker's.
    repo.give_launch_memory(uow)
    repo.create_members_table(uow)
    members(uow, tenant_id, str(campaign["segment_id"]))
    audience = repo.audience_size(uow)
    repo.launch_deliveries(uow, tenant_id, campaign, now, valid_time_zones(repo.time_zones_of_members(uow, tenant_id)))
    publish_queued(uow, tenant_id, campaign_id)
    counts = repo.count_by_status(uow, tenant_id, campaign_id)
    still_open = any(counts.get(s) for s in ("queued", "deferred"))
    repo.set_status(uow, tenant_id, campaign_id, "running" if still_open else "completed", audience=audience,
                    launched_at=now, finished_at=None if still_open else now)
    return counts


def publish_queued(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> int:
    """Dispatch events for the campaign's queued deliveries, BATCH ids each, written to the outbox
    a few hundred events at a time while the ids stream from the database."""
    events: list[CloudEvent] = []
    written = 0
    channel, batch = None, []
    for row in repo.stream_queued(uow, tenant_id, campaign_id):
        if row["channel"] != channel or len(batch) == dispatch.BATCH:
            if batch:
                events += dispatch.dispatch_events(tenant_id, channel, batch, campaign_id=campaign_id)
            channel, batch = row["channel"], []
        batch.append(str(row["id"]))
        if len(events) >= EVENTS_PER_WRITE:
            uow.publish_many(SCHEMA, events)
            written += len(events)
            events = []
    if batch:
        events += dispatch.dispatch_events(tenant_id, channel, batch, campaign_id=campaign_id)
    uow.publish_many(SCHEMA, events)
    return written + len(events)


def on_launch_requested(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """The consumer's handler for launch.requested: the launch, in the consumer's transaction."""
    run_launch(uow, envelope["tenantid"], envelope["data"]["campaign_id"])


# -- periodic work in the worker ---------------------------------------------------------------
def launch_due(uow: UnitOfWork, now: datetime | None = None, limit: int = 100) -> int:
    """Scheduled campaigns whose time has come: launching, and their launch requested."""
    due = repo.due_scheduled(uow, now or utcnow(), limit)
    uow.publish_many(SCHEMA, [launch_requested(str(r["tenant_id"]), str(r["id"])) for r in due])
    return len(due)


def release_deferred(uow: UnitOfWork, now: datetime | None = None, limit: int = 10_000) -> int:
    """Deferred deliveries whose quiet hours are over: queued again and dispatched."""
    released = repo.release_deferred(uow, now or utcnow(), limit)
    groups: dict[tuple[str, str, str | None, str | None], list[str]] = {}
    for row in released:
        key = (str(row["tenant_id"]), row["channel"], _str(row["campaign_id"]), _str(row["trigger_id"]))
        groups.setdefault(key, []).append(str(row["id"]))
    events = []
    for (tenant_id, channel, campaign_id, trigger_id), ids in groups.items():
        events += dispatch.dispatch_events(tenant_id, channel, ids, campaign_id=campaign_id, trigger_id=trigger_id)
    uow.publish_many(SCHEMA, events)
    return len(released)


def finish_done(uow: UnitOfWork, now: datetime | None = None) -> int:
    return len(repo.finish_done(uow, now or utcnow()))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
