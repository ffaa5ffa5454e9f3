"""SQL of the social listening feed: resolving a batch's handles, storing its events, keeping the
profiles' engagement and last check-in, and the prospects (handles no contact has yet). Every
statement works on the whole batch at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

EVENT_COLUMNS = ("tenant_id", "id", "type", "network", "handle", "contact_id", "occurred_at", "text",
                 "sentiment", "label", "language", "place_name", "lat", "lon", "brand_account")


def contacts_of_handles(uow: UnitOfWork, tenant_id: str,
                        handles: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(network, handle) → contact id, for the linked ones among `handles` (one query)."""
    rows = uow.execute(
        "SELECT h.network, h.handle, h.contact_id FROM enrichment.contact_handles h"
        " JOIN unnest(%s::text[], %s::text[]) AS asked(network, handle)"
        " ON h.network = asked.network AND h.handle = asked.handle WHERE h.tenant_id = %s",
        ([n for n, _ in handles], [h for _, h in handles], tenant_id),
    ).fetchall()
    return {(r["network"], r["handle"]): str(r["contact_id"]) for r in rows}


def contacts_allowing(uow: UnitOfWork, tenant_id: str, contact_ids: list[str], purpose: str,
                      now: datetime) -> set[str]:
    """Those of `contact_ids` whose stored consent for `purpose` is granted and unexpired (the
    same rule as projections.allowed, for a whole batch)."""
    rows = uow.execute(
        "SELECT contact_id FROM enrichment.contact_consents WHERE tenant_id = %s"
        " AND contact_id = ANY(%s::uuid[]) AND purpose = %s AND status = 'granted'"
        " AND (expires_at IS NULL OR expires_at > %s)",
        (tenant_id, contact_ids, purpose, now),
    ).fetchall()
    return {str(r["contact_id"]) for r in rows}


def insert_events(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    """COPY: a batch holds up to a thousand events."""
    if not rows:
        return
    with uow.conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY enrichment.social_events ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
        )) as copy:
            for row in rows:
                copy.write_row(tuple(row[c] for c in EVENT_COLUMNS))


def lock_engagement(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> None:
    """Serialises the recount of these contacts' engagement until the transaction ends: a batch
    recounting after another one committed sees its mentions (READ COMMITTED takes a new snapshot
    per statement). Sorted, so two batches never wait on each other in a cycle."""
    uow.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('enrichment.engagement:' || %s || ':' || c, 0))"
        " FROM unnest(%s::text[]) AS c ORDER BY c",
        (tenant_id, sorted(contact_ids)),
    )


def mention_counts(uow: UnitOfWork, tenant_id: str, contact_ids: list[str]) -> list[dict[str, Any]]:
    """Per contact, its stored mentions counted by label, and their mean sentiment."""
    return uow.execute(
        "SELECT contact_id, count(*) AS mentions,"
        " count(*) FILTER (WHERE label = 'positive') AS positive,"
        " count(*) FILTER (WHERE label = 'negative') AS negative,"
        " count(*) FILTER (WHERE label IS DISTINCT FROM 'positive' AND label IS DISTINCT FROM 'negative')"
        " AS neutral,"
        " round(avg(coalesce(sentiment, 0)), 4)::float8 AS sentiment"
        " FROM enrichment.social_events WHERE tenant_id = %s AND contact_id = ANY(%s::uuid[])"
        " AND type = 'mention' GROUP BY contact_id",
        (tenant_id, contact_ids),
    ).fetchall()


def save_engagement(uow: UnitOfWork, tenant_id: str, engagement: dict[str, dict[str, Any]]) -> None:
    """contact id → engagement block, replacing the profiles' (created when missing)."""
    if not engagement:
        return
    uow.execute(
        "INSERT INTO enrichment.profiles AS p (tenant_id, contact_id, engagement, updated_at)"
        " SELECT %s, e.key::uuid, e.value, now() FROM jsonb_each(%s::jsonb) AS e"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET engagement = EXCLUDED.engagement,"
        " updated_at = now()",
        (tenant_id, Jsonb(engagement)),
    )


def save_last_checkins(uow: UnitOfWork, tenant_id: str, checkins: dict[str, dict[str, Any]]) -> list[str]:
    """contact id → {place, lat, lon, at}: kept unless the profile holds a later check-in.
    Returns the contacts whose last check-in changed."""
    if not checkins:
        return []
    rows = uow.execute(
        "INSERT INTO enrichment.profiles AS p (tenant_id, contact_id, last_checkin, updated_at)"
        " SELECT %s, e.key::uuid, e.value, now() FROM jsonb_each(%s::jsonb) AS e"
        " ON CONFLICT (tenant_id, contact_id) DO UPDATE SET last_checkin = EXCLUDED.last_checkin,"
        " updated_at = now()"
        " WHERE p.last_checkin IS NULL"
        " OR (p.last_checkin->>'at')::timestamptz < (EXCLUDED.last_checkin->>'at')::timestamptz"
        " RETURNING p.contact_id",
        (tenant_id, Jsonb(checkins)),
    ).fetchall()
    return [str(r["contact_id"]) for r in rows]


def add_to_prospects(uow: UnitOfWork, tenant_id: str, tallies: list[dict[str, Any]]) -> None:
    """Adds a batch's counts to the prospects' rows (created when new). `tallies` holds one entry
    per handle; sorted here, so two batches touching the same prospects never deadlock."""
    if not tallies:
        return
    tallies = sorted(tallies, key=lambda t: (t["network"], t["handle"]))
    columns = ("network", "handle", "mentions", "positive", "neutral", "negative", "sentiment_sum",
               "follows", "followers", "followers_at", "first_seen", "last_seen")
    uow.execute(
        "INSERT INTO enrichment.prospects AS p (tenant_id, network, handle, mentions, positive, neutral,"
        " negative, sentiment_sum, follows, followers, followers_at, first_seen, last_seen)"
        " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::int[], %s::int[],"
        " %s::numeric[], %s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[])"
        " ON CONFLICT (tenant_id, network, handle) DO UPDATE SET"
        " mentions = p.mentions + EXCLUDED.mentions, positive = p.positive + EXCLUDED.positive,"
        " neutral = p.neutral + EXCLUDED.neutral, negative = p.negative + EXCLUDED.negative,"
        " sentiment_sum = p.sentiment_sum + EXCLUDED.sentiment_sum, follows = p.follows + EXCLUDED.follows,"
        " followers = CASE WHEN p.followers_at IS NULL OR EXCLUDED.followers_at > p.followers_at"
        "  THEN coalesce(EXCLUDED.followers, p.followers) ELSE p.followers END,"
        " followers_at = greatest(p.followers_at, EXCLUDED.followers_at),"
        " first_seen = least(p.first_seen, EXCLUDED.first_seen),"
        " last_seen = greatest(p.last_seen, EXCLUDED.last_seen)",
        (tenant_id, *([t[c] for t in tallies] for c in columns)),
    )


def prospects(uow: UnitOfWork, tenant_id: str, limit: int,
              after: tuple[int, datetime, str, str] | None) -> list[dict[str, Any]]:
    """Handles seen in the feed that no contact has, most engaged first (mentions, then the
    latest seen); keyset pagination on (mentions, last_seen, network, handle), all descending, so
    each page is a range of the index. A handle linked while a batch naming it was in flight may
    keep a row: it is not listed."""
    mentions, last_seen, network, handle = after or (None, None, None, None)
    return uow.execute(
        "SELECT network, handle, mentions, positive, neutral, negative, follows, followers,"
        " CASE WHEN mentions > 0 THEN round(sentiment_sum / mentions, 4)::float8 END AS sentiment,"
        " first_seen, last_seen FROM enrichment.prospects p WHERE tenant_id = %(tenant)s"
        " AND (%(mentions)s::int IS NULL"
        "  OR (mentions, last_seen, network, handle) < (%(mentions)s, %(last_seen)s, %(network)s, %(handle)s))"
        " AND NOT EXISTS (SELECT 1 FROM enrichment.contact_handles h WHERE h.tenant_id = p.tenant_id"
        "  AND h.network = p.network AND h.handle = p.handle)"
        " ORDER BY mentions DESC, last_seen DESC, network DESC, handle DESC LIMIT %(limit)s",
        {"tenant": tenant_id, "mentions": mentions, "last_seen": last_seen, "network": network,
         "handle": handle, "limit": limit},
    ).fetchall()
