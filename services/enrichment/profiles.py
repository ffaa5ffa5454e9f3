"""A contact's profile: merging what the providers said into it, and the view the API shows.

Stored (enrichment.profiles), every value with where it came from:

- demographics: {"age"|"city"|"country"|"profession"|"interests": {"value", "network", "fetched_at"}}.
  A field a provider answered replaces the stored one; a field no provider answered this time
  keeps its older value (and its older provenance). When two providers answer the same field in
  one job, the person vendor (FullContact) wins for age, profession and interests, the social
  networks (in name order) for city and country: a profile location is what the person chose to
  show, the vendor's is inferred.
- influence: {"networks": {network: {"followers", "following", "posts_per_month", "fetched_at"}}}:
  each network's own figures; the combined block (services.enrichment.influence.combine_networks)
  is computed when read, so a network fetched again replaces only its own figures.
- sources: [{"network", "fetched_at"}], the latest fetch of each network.

Every change to a profile publishes `liaison.enrichment.profile.updated` (`updated_event`), so
campaigns keeps its audience current from events alone: `changed` names the fields, `profile`
carries the new value of each section that changed (`demographics`, `influence`, `engagement`,
`geolocation`), a section set to null was deleted (consent withdrawn or lapsed: `reason` says
which), and `at` orders changes to the same contact.

The view adds engagement, computed from the feed's mentions (zeros without mentions, or without
`profile_enrichment` consent: engagement describes the person), and the
last check-in the feed keeps. `provenance` maps each field ("demographics.city",
"influence.followers", "engagement.sentiment", "geolocation.last_checkin", ...) to the list of
sources it came from, [{"network", "fetched_at"}]: one for a demographic field, one per network
for the combined influence and engagement figures, none for a field nothing has said yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.enrichment import PROFILE_ENRICHMENT, SCHEMA, SOURCE
from services.enrichment.influence import NetworkFigures, combine_networks
from services.enrichment.providers.http import ProfileData
from services.enrichment.repository import profiles as repo
from services.enrichment.repository import projections as projections_repo
from services.enrichment.sentiment import summarize
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow

DEMOGRAPHICS = ("age", "city", "country", "profession", "interests")
INFLUENCE = ("followers", "following", "posts_per_month", "engagement_rate", "score", "tier")
ENGAGEMENT = ("mentions", "positive", "neutral", "negative", "sentiment", "satisfaction")
VENDOR_FIELDS = frozenset({"age", "profession", "interests"})
VENDORS = frozenset({"fullcontact"})
DAYS_PER_MONTH = 30.44
PROFILE_UPDATED = "liaison.enrichment.profile.updated"
SECTIONS = ("demographics", "influence", "engagement", "geolocation")
# Why a section went: the consent it was gathered under is no longer there.
CONSENT_WITHDRAWN, CONSENT_EXPIRED = "consent_withdrawn", "consent_expired"


def updated_event(tenant_id: str, contact_id: str, changed: list[str], sections: dict[str, Any],
                  at: datetime, reason: str | None = None) -> CloudEvent:
    """`profile.updated`: the fields that changed and the new value of their sections."""
    data: dict[str, Any] = {"contact_id": contact_id, "changed": changed, "profile": sections, "at": rfc3339(at)}
    if reason:
        data["reason"] = reason
    return CloudEvent(PROFILE_UPDATED, SOURCE, tenant_id, data, subject=contact_id)


def deleted_sections(sections: tuple[str, ...], reason: str) -> tuple[list[str], dict[str, Any]]:
    """`changed` and `profile` of the event for sections deleted (null) for `reason`."""
    fields = {"demographics": DEMOGRAPHICS, "influence": INFLUENCE, "engagement": ENGAGEMENT,
              "geolocation": ("last_checkin",)}
    return [f"{s}.{f}" for s in sections for f in fields[s]], dict.fromkeys(sections)


def publish_snapshot(uow: UnitOfWork, tenant_id: str, contact_id: str, changed: list[str], at: datetime) -> None:
    """Publishes the sections of the contact's profile that `changed` touches, as they are now."""
    current = view(uow, tenant_id, contact_id)
    if current is None or not changed:
        return
    touched = {name.split(".", 1)[0] for name in changed}
    uow.publish(SCHEMA, updated_event(tenant_id, contact_id, changed,
                                      {s: current[s] for s in SECTIONS if s in touched}, at))


def _demographic_values(data: ProfileData) -> dict[str, Any]:
    profession = data.title
    if profession and data.organization:
        profession = f"{profession}, {data.organization}"
    values = {
        "age": data.age_range,
        "city": data.city,
        "country": data.country,
        "profession": profession,
        "interests": list(data.interests) if data.interests else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def _posts_per_month(data: ProfileData) -> float | None:
    """Posts a month over the account's life, when the provider tells both."""
    if data.posts is None or data.account_created_at is None:
        return None
    days = (data.fetched_at - data.account_created_at).total_seconds() / 86400
    if days <= 0:
        return None
    return round(data.posts / max(days / DAYS_PER_MONTH, 1.0), 2)


def _rank(network: str, name: str) -> tuple[int, str]:
    """Lower wins: the vendor for what it infers well, the networks for where the person lives."""
    vendor = network in VENDORS
    return (0 if vendor == (name in VENDOR_FIELDS) else 1, network)


def merge(stored: dict[str, Any] | None, results: list[ProfileData]) -> tuple[dict[str, Any], list[str]]:
    """The stored profile's enrichment parts updated with a job's results, and the names of the
    fields that changed (e.g. "demographics.city", "influence.followers")."""
    stored = stored or {}
    demographics = {k: v for k, v in (stored.get("demographics") or {}).items()
                    if isinstance(v, dict) and "value" in v}
    networks = dict(((stored.get("influence") or {}).get("networks")) or {})
    sources = {s["network"]: s for s in (stored.get("sources") or []) if isinstance(s, dict) and "network" in s}
    before_view = _influence_view(networks)
    before_demo = {k: v["value"] for k, v in demographics.items()}

    for name in DEMOGRAPHICS:
        candidates = sorted(
            ((_rank(d.network, name), d) for d in results if name in _demographic_values(d)),
            key=lambda pair: pair[0],
        )
        if candidates:
            data = candidates[0][1]
            demographics[name] = {"value": _demographic_values(data)[name], "network": data.network,
                                  "fetched_at": rfc3339(data.fetched_at)}
    for data in results:
        fetched = rfc3339(data.fetched_at)
        sources[data.network] = {"network": data.network, "fetched_at": fetched}
        if data.followers is not None or data.following is not None or data.posts is not None:
            networks[data.network] = {"followers": data.followers, "following": data.following,
                                      "posts_per_month": _posts_per_month(data), "fetched_at": fetched}

    changed = [f"demographics.{k}" for k in DEMOGRAPHICS
               if before_demo.get(k) != (demographics.get(k) or {}).get("value")]
    after_view = _influence_view(networks)
    changed += [f"influence.{k}" for k in INFLUENCE if before_view[k] != after_view[k]]
    merged = {
        "demographics": demographics,
        "influence": {"networks": networks},
        "sources": sorted(sources.values(), key=lambda s: s["network"]),
    }
    return merged, changed


def save(uow: UnitOfWork, tenant_id: str, contact_id: str, results: list[ProfileData],
         now: datetime) -> list[str]:
    """Merges a job's results into the stored profile; returns the fields that changed."""
    stored = repo.for_update(uow, tenant_id, contact_id)
    merged, changed = merge(stored, results)
    if results:
        repo.save_enrichment(uow, tenant_id, contact_id, merged["demographics"], merged["influence"],
                             merged["sources"], now)
    return changed


# -- the view ----------------------------------------------------------------------------------
def _influence_view(networks: dict[str, Any]) -> dict[str, Any]:
    figures = [NetworkFigures(network=n, followers=f.get("followers"), following=f.get("following"),
                              posts_per_month=f.get("posts_per_month")) for n, f in sorted(networks.items())]
    if not figures:
        return dict.fromkeys(INFLUENCE)
    combined = combine_networks(figures)
    return {k: getattr(combined, k) for k in INFLUENCE}


def _source(network: str, fetched_at: Any) -> dict[str, Any]:
    return {"network": network, "fetched_at": rfc3339(fetched_at) if isinstance(fetched_at, datetime) else fetched_at}


def view(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any] | None:
    """The profile as GET /v1/profiles/{contact_id} shows it; None when enrichment has never heard
    of the contact (no consent, handle, feed event or profile)."""
    stored = projections_repo.profile(uow, tenant_id, contact_id)
    if stored is None and not repo.known(uow, tenant_id, contact_id):
        return None
    stored = stored or {}
    provenance: dict[str, list[dict[str, Any]]] = {}

    demographics: dict[str, Any] = dict.fromkeys(DEMOGRAPHICS)
    demographics["interests"] = []
    for name, entry in (stored.get("demographics") or {}).items():
        if name not in DEMOGRAPHICS:
            continue
        if isinstance(entry, dict) and "value" in entry:
            demographics[name] = entry["value"]
            provenance[f"demographics.{name}"] = [_source(entry["network"], entry["fetched_at"])]
        else:  # a value stored without its source
            demographics[name] = entry
            provenance[f"demographics.{name}"] = []

    networks = ((stored.get("influence") or {}).get("networks")) or {}
    influence = _influence_view(networks)
    for name in INFLUENCE:
        # following and posting add up over the networks that tell them; the rest rest on followers.
        basis = name if name in ("following", "posts_per_month") else "followers"
        used = [_source(n, f["fetched_at"]) for n, f in sorted(networks.items()) if f.get(basis) is not None]
        provenance[f"influence.{name}"] = used if influence[name] is not None else []

    # Engagement describes the person: shown only while they allow profile_enrichment.
    consented = projections_repo.is_allowed(uow, tenant_id, contact_id, PROFILE_ENRICHMENT, utcnow())
    mentions = repo.mention_scores(uow, tenant_id, contact_id) if consented else []
    summary = summarize(float(m["sentiment"]) if m["sentiment"] is not None else 0.0 for m in mentions)
    engagement = {k: getattr(summary, k) for k in ENGAGEMENT}
    latest: dict[str, datetime] = {}
    for m in mentions:
        latest[m["network"]] = max(latest.get(m["network"], m["occurred_at"]), m["occurred_at"])
    for name in ENGAGEMENT:
        provenance[f"engagement.{name}"] = [_source(n, at) for n, at in sorted(latest.items())]

    checkin = stored.get("last_checkin")
    last_checkin = None
    if checkin:
        last_checkin = {k: checkin.get(k) for k in ("place", "lat", "lon", "at")}
        provenance["geolocation.last_checkin"] = (
            [_source(checkin["network"], checkin.get("at"))] if checkin.get("network") else [])
    else:
        provenance["geolocation.last_checkin"] = []

    updated = stored.get("updated_at")
    return {
        "contact_id": contact_id,
        "demographics": demographics,
        "influence": influence,
        "engagement": engagement,
        "geolocation": {"last_checkin": last_checkin},
        "sources": [_source(s["network"], s.get("fetched_at")) for s in (stored.get("sources") or [])
                    if isinstance(s, dict) and "network" in s],
        "updated_at": rfc3339(updated) if updated else None,
        "provenance": provenance,
    }
