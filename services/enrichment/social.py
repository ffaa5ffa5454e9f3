"""The social listening feed (CONTRACT section 3): a listening platform posts what it saw about
the brand (mentions, check-ins, follows) in batches; each event is resolved to a contact by its
handle, stored, and published for campaign triggers.

Rules:
- Handles are handles, not profile URLs: a leading @ and surrounding space are dropped and the
  rest case-folded, which is how identity stores linked handles, so they compare equal.
- An unknown handle is a prospect: its events are stored with no contact, and a later link of the
  handle (projections.on_handle_linked) carries them over to the contact.
- mention: scored for sentiment (the platform's score, when it sends one, wins over ours) and
  always stored: it was addressed to the brand, so it is the brand's own interaction record. The
  profile's `engagement` block, which describes the person, is kept only while the contact allows
  `profile_enrichment`. A negative mention from a known contact also publishes
  `social.mention.negative` for the CRM's service team. A change to a contact's engagement or
  last check-in also publishes `profile.updated` with the new values.
- checkin: where a person was is stored only with the contact's `geolocation` consent; a prospect
  cannot have consented, so a prospect's check-in is never stored. A check-in not stored is
  counted as `skipped` and nothing about it is published. A stored one updates the profile's
  last check-in when it is the latest.
- follow: recorded and published.
- A batch is one transaction: events, profiles and the outbox commit together or not at all.
  Nothing here removes duplicates: a platform that resends a batch sends the same Idempotency-Key."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.enrichment import GEOLOCATION, PROFILE_ENRICHMENT, SCHEMA, SOURCE, profiles, projections, sentiment
from services.enrichment.influence import compute_influence
from services.enrichment.repository import social as repo
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow
from shared.ids import new_id

NETWORKS = ("x", "facebook", "instagram", "linkedin", "tiktok")
EVENT_TYPES = ("mention", "checkin", "follow")
BATCH_MAX = 1000

MENTION = "liaison.enrichment.social.mention"
MENTION_NEGATIVE = "liaison.enrichment.social.mention.negative"
CHECKIN = "liaison.enrichment.social.checkin"
FOLLOW = "liaison.enrichment.social.follow"


def normalize_handle(handle: str) -> str:
    """`" @Ana_Lyon "` → `"ana_lyon"`: as identity stores a linked handle."""
    handle = handle.strip()
    if handle.startswith("@"):
        handle = handle[1:].strip()
    return handle.casefold()


def ingest(uow: UnitOfWork, tenant_id: str, events: list[dict[str, Any]],
           now: datetime | None = None) -> dict[str, int]:
    """Stores a validated batch of feed events; answers how many were accepted (stored), how
    many distinct contacts and prospect handles they concern, and how many check-ins were
    skipped for want of consent."""
    now = now or utcnow()
    for event in events:
        event["handle"] = normalize_handle(event["handle"])
    known = repo.contacts_of_handles(uow, tenant_id, sorted({(e["network"], e["handle"]) for e in events}))
    contact_ids = sorted(set(known.values()))
    may_locate = repo.contacts_allowing(uow, tenant_id, contact_ids, GEOLOCATION, now) if contact_ids else set()

    rows: list[dict[str, Any]] = []
    published: list[CloudEvent] = []
    last_checkins: dict[str, dict[str, Any]] = {}
    mentioned: set[str] = set()
    skipped = 0
    for event in events:
        contact_id = known.get((event["network"], event["handle"]))
        row = _row(tenant_id, event, contact_id)
        if event["type"] == "checkin":
            if contact_id is None or contact_id not in may_locate:
                skipped += 1
                continue
            _keep_latest(last_checkins, contact_id, event)
        elif event["type"] == "mention":
            scored = sentiment.score_mention(event.get("text"), event.get("sentiment"))
            row.update(sentiment=scored.score, label=scored.label, language=scored.language)
            if contact_id is not None:
                mentioned.add(contact_id)
        rows.append(row)
        published.extend(_events_of(tenant_id, row))

    repo.insert_events(uow, rows)
    repo.add_to_prospects(uow, tenant_id, _prospect_tallies(events, rows))
    if mentioned:
        refresh_engagement(uow, tenant_id, sorted(mentioned), now)
    latest = {contact_id: {k: v for k, v in checkin.items() if k != "_at"}
              for contact_id, checkin in last_checkins.items()}
    for contact_id in repo.save_last_checkins(uow, tenant_id, latest):
        published.append(profiles.updated_event(
            tenant_id, contact_id, ["geolocation.last_checkin"],
            {"geolocation": {"last_checkin": {k: latest[contact_id][k] for k in ("place", "lat", "lon", "at")}}},
            now))
    uow.publish_many(SCHEMA, published)
    return {
        "accepted": len(rows),
        "contacts": len({r["contact_id"] for r in rows if r["contact_id"] is not None}),
        "prospects": len({(r["network"], r["handle"]) for r in rows if r["contact_id"] is None}),
        "skipped": skipped,
    }


def refresh_engagement(uow: UnitOfWork, tenant_id: str, contact_ids: Iterable[str],
                       now: datetime | None = None) -> None:
    """Recomputes the profiles' `engagement` block from the contacts' stored mentions, for those
    that allow `profile_enrichment` (the others keep none). Also fit for a projection to call
    after a link carried a prospect's mentions over."""
    contact_ids = list(contact_ids)
    allowed = repo.contacts_allowing(uow, tenant_id, contact_ids, PROFILE_ENRICHMENT, now or utcnow())
    if not allowed:
        return
    repo.lock_engagement(uow, tenant_id, sorted(allowed))
    engagement = {}
    for counts in repo.mention_counts(uow, tenant_id, sorted(allowed)):
        positive, neutral, negative = counts["positive"], counts["neutral"], counts["negative"]
        engagement[str(counts["contact_id"])] = {
            "mentions": counts["mentions"],
            "positive": positive,
            "neutral": neutral,
            "negative": negative,
            "sentiment": counts["sentiment"],
            "satisfaction": sentiment.satisfaction(positive, neutral, negative),
            "source": "social_listening",
            "updated_at": rfc3339(now or utcnow()),
        }
    repo.save_engagement(uow, tenant_id, engagement)
    uow.publish_many(SCHEMA, [
        profiles.updated_event(tenant_id, contact_id, [f"engagement.{k}" for k in profiles.ENGAGEMENT],
                               {"engagement": {k: block[k] for k in profiles.ENGAGEMENT}}, now or utcnow())
        for contact_id, block in engagement.items()])


def prospects(uow: UnitOfWork, tenant_id: str, limit: int,
              after: tuple[int, datetime, str, str] | None) -> list[dict[str, Any]]:
    """Up to limit + 1 prospects after the cursor, most engaged first. A prospect's influence
    comes from the audience the listening platform reported with their events (`followers`): no
    provider is asked about someone who is not a contact and so cannot have consented."""
    listed = []
    for row in repo.prospects(uow, tenant_id, limit + 1, after):
        followers = row.pop("followers")
        influence = None
        if followers is not None:
            figures = compute_influence(followers)
            influence = {"followers": followers, "score": figures.score, "tier": figures.tier}
        listed.append({**row, "influence": influence})
    return listed


def _prospect_tallies(events: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per prospect handle of the stored rows: what the batch adds to its counts.
    `events` are the validated events (for the reported audience), `rows` what was stored."""
    followers: dict[tuple[str, str], tuple[datetime, int]] = {}
    for event in events:
        if event.get("followers") is not None:
            key = (event["network"], event["handle"])
            if key not in followers or followers[key][0] < event["occurred_at"]:
                followers[key] = (event["occurred_at"], event["followers"])
    tallies: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row["contact_id"] is not None:
            continue
        key = (row["network"], row["handle"])
        tally = tallies.get(key)
        if tally is None:
            reported_at, audience = followers.get(key, (None, None))
            tally = tallies[key] = {
                "network": key[0], "handle": key[1], "mentions": 0, "positive": 0, "neutral": 0,
                "negative": 0, "sentiment_sum": 0.0, "follows": 0, "followers": audience,
                "followers_at": reported_at, "first_seen": row["occurred_at"], "last_seen": row["occurred_at"],
            }
        tally["first_seen"] = min(tally["first_seen"], row["occurred_at"])
        tally["last_seen"] = max(tally["last_seen"], row["occurred_at"])
        if row["type"] == "follow":
            tally["follows"] += 1
        elif row["type"] == "mention":
            tally["mentions"] += 1
            label = row["label"] if row["label"] in ("positive", "negative") else "neutral"
            tally[label] += 1
            tally["sentiment_sum"] += row["sentiment"] or 0.0
    return list(tallies.values())


# -- helpers -----------------------------------------------------------------------------------
def _row(tenant_id: str, event: dict[str, Any], contact_id: str | None) -> dict[str, Any]:
    place = event.get("place") or {}
    return {
        "tenant_id": tenant_id,
        "id": new_id(),
        "type": event["type"],
        "network": event["network"],
        "handle": event["handle"],
        "contact_id": contact_id,
        "occurred_at": event["occurred_at"],
        "text": event.get("text"),
        "sentiment": None,
        "label": None,
        "language": None,
        "place_name": place.get("name"),
        "lat": place.get("lat"),
        "lon": place.get("lon"),
        "brand_account": event.get("brand_account"),
    }


def _keep_latest(checkins: dict[str, dict[str, Any]], contact_id: str, event: dict[str, Any]) -> None:
    place = event["place"]
    current = checkins.get(contact_id)
    if current is None or current["_at"] < event["occurred_at"]:
        checkins[contact_id] = {"place": place["name"], "lat": place["lat"], "lon": place["lon"],
                                "at": rfc3339(event["occurred_at"]), "_at": event["occurred_at"]}


def _events_of(tenant_id: str, row: dict[str, Any]) -> list[CloudEvent]:
    contact_id = row["contact_id"]
    occurred_at = rfc3339(row["occurred_at"])
    if row["type"] == "checkin":
        return [CloudEvent(CHECKIN, SOURCE, tenant_id, {
            "contact_id": contact_id,
            "network": row["network"],
            "place": {"name": row["place_name"], "lat": row["lat"], "lon": row["lon"]},
            "occurred_at": occurred_at,
        }, subject=contact_id)]
    if row["type"] == "follow":
        return [CloudEvent(FOLLOW, SOURCE, tenant_id, {
            "contact_id": contact_id,
            "network": row["network"],
            "handle": row["handle"],
            "brand_account": row["brand_account"],
            "occurred_at": occurred_at,
        }, subject=contact_id)]
    data = {
        "contact_id": contact_id,
        "network": row["network"],
        "handle": row["handle"],
        "sentiment": row["sentiment"],
        "label": row["label"],
        "occurred_at": occurred_at,
        "brand_account": row["brand_account"],
    }
    events = [CloudEvent(MENTION, SOURCE, tenant_id, data, subject=contact_id)]
    if contact_id is not None and row["label"] == "negative":
        events.append(CloudEvent(MENTION_NEGATIVE, SOURCE, tenant_id, {**data, "text": row["text"]},
                                 subject=contact_id))
    return events


def on_handle_linked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """A link carries the handle's prospect history over to the contact: recount its engagement."""
    projections.on_handle_linked(uow, envelope)
    refresh_engagement(uow, envelope["tenantid"], [envelope["data"]["identity"]["contact_id"]])


def on_contact_merged(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """The duplicate's mentions are the survivor's now: recount the survivor's engagement; its
    profile may have come over too, so publish the rest of it as it now is."""
    projections.on_contact_merged(uow, envelope)
    tenant_id, survivor = envelope["tenantid"], envelope["data"]["contact_id"]
    refresh_engagement(uow, tenant_id, [survivor])
    profiles.publish_snapshot(uow, tenant_id, survivor, [
        *(f"demographics.{k}" for k in profiles.DEMOGRAPHICS), *(f"influence.{k}" for k in profiles.INFLUENCE),
        "geolocation.last_checkin"], utcnow())
