"""Triggers: a message sent because something just happened (CONTRACT section 4): an SMS offer
when a contact checks in near a shop, a welcome DM to a new follower, a welcome email to a new
contact.

The campaigns worker consumes enrichment's `social.checkin` and `social.follow` and identity's
`contact.upserted` (a created contact is `contact.created`). For each active trigger of the
tenant for that event whose conditions hold (`network`; `geofence`: the check-in within
`radius_m` of a point, by great-circle distance), one delivery is written for the contact, in the
transaction that marks the event handled, and dispatched at once through the outbox: the relay is
woken on commit, so the message leaves within about a second of the event.

Same consent rules as campaigns: the channel's purpose granted and unexpired, an address (for a
DM, the handle the contact followed from when it is linked, else their first handle on a network
that takes DMs), not on the suppression list; otherwise the delivery is recorded `suppressed`
with its reason, visible in the trigger's deliveries. A trigger sends a contact at most one
message per `cooldown_hours` (a check-in every few minutes in the same mall gets one SMS); an
event inside the cooldown makes no delivery at all. Events about prospects (no contact) trigger
nothing.

Choices where the contract is silent, noted:
- `contact.created`: a CRM creates the contact and records consent in separate calls, so the
  welcome is deferred by WELCOME_GRACE (a minute) and consent is checked when it is sent (the
  channel worker re-checks consent before every send): without consent by then it is suppressed.
- Quiet hours do not apply to triggers: they answer what the contact did a moment ago (a check-in
  at a shop is, by definition, during their day), and triggers carry no quiet hours in the
  contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.campaigns import CHANNEL_PURPOSE, SCHEMA, audience, dispatch
from services.campaigns.repository import audience as audience_repo
from services.campaigns.repository import triggers as repo
from shared import errors
from shared.db import UnitOfWork
from shared.events import rfc3339, utcnow
from shared.ids import new_id

CHECKIN = "liaison.enrichment.social.checkin"
FOLLOW = "liaison.enrichment.social.follow"
EVENTS = ("social.checkin", "social.follow", "contact.created")
DM_NETWORKS = ("x", "facebook", "instagram")
WELCOME_GRACE = timedelta(minutes=1)
EARTH_RADIUS_M = 6_371_008.8


def view(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": str(row["id"]), "created_at": rfc3339(row["created_at"])}


def create(uow: UnitOfWork, tenant_id: str, body: dict[str, Any],
           validate_content: Callable[[dict[str, Any], list[str]], None]) -> dict[str, Any]:
    """A trigger; its content is validated as a campaign's for its one channel."""
    try:
        validate_content({body["channel"]: body["content"]}, [body["channel"]])
    except errors.ValidationFailed as failed:
        # The campaign-shaped paths (content.sms.body) as this resource's (content.body).
        prefix = f"content.{body['channel']}"
        raise errors.ValidationFailed({key.replace(prefix, "content", 1): messages
                                       for key, messages in failed.extra["errors"].items()}) from None
    return view(repo.insert(uow, tenant_id, {
        "id": new_id(),
        "name": body["name"],
        "event": body["event"],
        "conditions": body.get("conditions") or {},
        "channel": body["channel"],
        "content": body["content"],
        "cooldown_hours": body.get("cooldown_hours", 24),
    }))


def get(uow: UnitOfWork, tenant_id: str, trigger_id: str) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, trigger_id)
    if row is None:
        raise errors.NotFound.of("trigger", trigger_id)
    return view(row)


def deactivate(uow: UnitOfWork, tenant_id: str, trigger_id: str) -> None:
    get(uow, tenant_id, trigger_id)
    repo.deactivate(uow, tenant_id, trigger_id)


# -- firing ------------------------------------------------------------------------------------
def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def matches(conditions: dict[str, Any], happened: dict[str, Any]) -> bool:
    network = conditions.get("network")
    if network and happened.get("network") != network:
        return False
    fence = conditions.get("geofence")
    if fence:
        place = happened.get("place") or {}
        if place.get("lat") is None or place.get("lon") is None:
            return False
        return distance_m(fence["lat"], fence["lon"], place["lat"], place["lon"]) <= fence["radius_m"]
    return True


def _address(uow: UnitOfWork, tenant_id: str, row: dict[str, Any] | None, channel: str,
             happened: dict[str, Any]) -> str | None:
    if row is None:
        return None
    if channel == "email":
        return row["email"]
    if channel == "sms":
        return row["phone"]
    handles = [h for h in audience_repo.handles_of(uow, tenant_id, str(row["contact_id"]))
               if h["network"] in DM_NETWORKS]
    followed = [h for h in handles if h["network"] == happened.get("network") and h["handle"] == happened.get("handle")]
    ordered = followed + sorted(handles, key=lambda h: DM_NETWORKS.index(h["network"]))
    return f"{ordered[0]['network']}:{ordered[0]['handle']}" if ordered else None


def fire(uow: UnitOfWork, tenant_id: str, event: str, contact_id: str, happened: dict[str, Any],
         now: datetime | None = None) -> list[dict[str, Any]]:
    """Writes and dispatches the deliveries the tenant's triggers for `event` make; returns them."""
    triggers = repo.active_for(uow, tenant_id, event)
    if not triggers:
        return []
    now = now or utcnow()
    row = audience_repo.contact(uow, tenant_id, contact_id)
    made = []
    for trigger in triggers:
        if not matches(trigger["conditions"] or {}, happened):
            continue
        if repo.recently_sent(uow, tenant_id, str(trigger["id"]), contact_id,
                              now - timedelta(hours=trigger["cooldown_hours"])):
            continue
        channel = trigger["channel"]
        address = _address(uow, tenant_id, row, channel, happened)
        status, reason, send_after = "queued", None, None
        if row is not None and row["suppressed"]:
            status, reason = "suppressed", "suppression_list"
        elif event == "contact.created":
            status, send_after = "deferred", now + WELCOME_GRACE  # consent is checked when it is sent
        elif not audience_repo.is_allowed(uow, tenant_id, contact_id, CHANNEL_PURPOSE[channel], now):
            status, reason = "suppressed", "no_consent"
        if status != "suppressed" and address is None:
            status, reason, send_after = "suppressed", "no_address", None
        delivery = {"id": str(new_id()), "trigger_id": str(trigger["id"]), "contact_id": contact_id,
                    "channel": channel, "status": status, "reason": reason, "address": address,
                    "send_after": send_after, "created_at": now}
        repo.insert_delivery(uow, tenant_id, delivery)
        if status == "queued":
            uow.publish_many(SCHEMA, dispatch.dispatch_events(tenant_id, channel, [delivery["id"]],
                                                              trigger_id=delivery["trigger_id"]))
        made.append(delivery)
    return made


# -- the consumer's handlers -------------------------------------------------------------------
def on_checkin(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    if data.get("contact_id"):
        fire(uow, envelope["tenantid"], "social.checkin", data["contact_id"], data)


def on_follow(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    if data.get("contact_id"):
        fire(uow, envelope["tenantid"], "social.follow", data["contact_id"], data)


def on_contact_upserted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """The audience learns the contact first (the welcome needs its address), then a created
    contact fires `contact.created`."""
    audience.on_contact_upserted(uow, envelope)
    if envelope["data"].get("created"):
        fire(uow, envelope["tenantid"], "contact.created", envelope["data"]["contact"]["id"], {})
