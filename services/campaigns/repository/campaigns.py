"""SQL of campaigns and their deliveries: the campaign's life, the set-based launch, dispatch
streams, deferred sends coming due, and the report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

COLUMNS = sql.SQL("id, name, segment_id, channels, strategy, content, schedule_at, frequency_cap, quiet_hours,"
                  " cost_per_message, offer_ends_at, status, audience, created_at, launched_at, finished_at")
JSON_FIELDS = ("content", "frequency_cap", "quiet_hours", "cost_per_message")


def insert(uow: UnitOfWork, tenant_id: str, campaign: dict[str, Any]) -> dict[str, Any]:
    values = {k: Jsonb(v) if k in JSON_FIELDS and v is not None else v for k, v in campaign.items()}
    return uow.execute(sql.SQL(
        "INSERT INTO campaigns.campaigns (tenant_id, id, name, segment_id, channels, strategy, content, schedule_at,"
        " frequency_cap, quiet_hours, cost_per_message, offer_ends_at, status) VALUES (%(tenant)s, %(id)s, %(name)s,"
        " %(segment_id)s, %(channels)s, %(strategy)s, %(content)s, %(schedule_at)s, %(frequency_cap)s,"
        " %(quiet_hours)s, %(cost_per_message)s, %(offer_ends_at)s, 'draft') RETURNING {}").format(COLUMNS),
        {"tenant": tenant_id, **values},
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, campaign_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    query = sql.SQL("SELECT {} FROM campaigns.campaigns WHERE tenant_id = %s AND id = %s{}").format(
        COLUMNS, sql.SQL(" FOR UPDATE" if lock else ""))
    return uow.execute(query, (tenant_id, campaign_id)).fetchone()


def page(uow: UnitOfWork, tenant_id: str, limit: int, after: str | None, status: str | None) -> list[dict[str, Any]]:
    return uow.execute(sql.SQL(
        "SELECT {} FROM campaigns.campaigns WHERE tenant_id = %(tenant)s"
        " AND (%(after)s::uuid IS NULL OR id < %(after)s::uuid) AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY id DESC LIMIT %(limit)s").format(COLUMNS),
        {"tenant": tenant_id, "after": after, "status": status, "limit": limit},
    ).fetchall()


def set_status(uow: UnitOfWork, tenant_id: str, campaign_id: str, status: str, **moments: Any) -> None:
    uow.execute(
        "UPDATE campaigns.campaigns SET status = %(status)s,"
        " audience = coalesce(%(audience)s, audience), launched_at = coalesce(%(launched_at)s, launched_at),"
        " finished_at = coalesce(%(finished_at)s, finished_at) WHERE tenant_id = %(tenant)s AND id = %(id)s",
        {"status": status, "tenant": tenant_id, "id": campaign_id, "audience": moments.get("audience"),
         "launched_at": moments.get("launched_at"), "finished_at": moments.get("finished_at")},
    )


# -- the launch --------------------------------------------------------------------------------
def launch_deliveries(uow: UnitOfWork, tenant_id: str, campaign: dict[str, Any], now: datetime,
                      time_zones: list[str]) -> int:
    """Writes, in one statement, one delivery per member of `launch_members` (the temporary
    table of the segment's members) and channel, with its eligibility:

    - suppressed `suppression_list`: identity flagged the contact (an erased person re-imported);
    - suppressed `frequency_cap`: the contact had `max` messages or more (sending, sent or
      delivered, any campaign or trigger) in the last `per_hours`;
    - suppressed `no_consent`: no unexpired grant of the channel's purpose;
    - suppressed `no_address`: no email, phone, or handle on a network that takes DMs;
    - deferred until the quiet hours end, in the contact's time zone (`time_zones` are the
      names checked valid; any other counts as UTC);
    - queued otherwise.

    `first_eligible` keeps one row per contact: the first channel in the campaign's order that
    can be sent, or, when none can, the first channel with its reason. `all_eligible` keeps every
    channel. Returns how many deliveries were written."""
    cap = campaign["frequency_cap"] or {}
    quiet = campaign["quiet_hours"] or {}
    return uow.execute(
        """
        WITH members AS (
            SELECT a.contact_id, a.email, a.phone, a.suppressed,
                   CASE WHEN a.timezone = ANY(%(zones)s::text[]) THEN a.timezone ELSE 'UTC' END AS zone,
                   CASE WHEN %(cap_max)s::int IS NULL THEN false ELSE (
                       SELECT count(*) >= %(cap_max)s FROM campaigns.deliveries d
                       WHERE d.tenant_id = %(tenant)s AND d.contact_id = a.contact_id
                         AND d.status IN ('sending', 'sent', 'delivered')
                         AND d.sent_at > %(now)s - make_interval(hours => %(cap_hours)s)) END AS capped
            FROM pg_temp.launch_members m
            JOIN campaigns.audience a ON a.tenant_id = %(tenant)s AND a.contact_id = m.contact_id
        ),
        options AS (
            SELECT m.contact_id, c.channel, c.ord, m.zone,
                   CASE c.channel WHEN 'email' THEN m.email WHEN 'sms' THEN m.phone ELSE (
                       SELECT h.network || ':' || h.handle FROM campaigns.audience_handles h
                       WHERE h.tenant_id = %(tenant)s AND h.contact_id = m.contact_id
                         AND h.network IN ('x', 'facebook', 'instagram')
                       ORDER BY array_position(ARRAY['x', 'facebook', 'instagram'], h.network) LIMIT 1)
                   END AS address,
                   CASE WHEN m.suppressed THEN 'suppression_list'
                        WHEN m.capped THEN 'frequency_cap'
                        WHEN NOT EXISTS (
                            SELECT 1 FROM campaigns.audience_consents k
                            WHERE k.tenant_id = %(tenant)s AND k.contact_id = m.contact_id
                              AND k.purpose = CASE c.channel WHEN 'email' THEN 'email_marketing'
                                                             WHEN 'sms' THEN 'sms_marketing'
                                                             ELSE 'social_dm_marketing' END
                              AND k.status = 'granted' AND (k.expires_at IS NULL OR k.expires_at > %(now)s))
                            THEN 'no_consent'
                   END AS reason
            FROM members m CROSS JOIN unnest(%(channels)s::text[]) WITH ORDINALITY AS c(channel, ord)
        ),
        decided AS (
            SELECT contact_id, channel, ord, address,
                   coalesce(reason, CASE WHEN address IS NULL THEN 'no_address' END) AS reason,
                   (%(now)s::timestamptz AT TIME ZONE zone)::time AS local_time,
                   (%(now)s::timestamptz AT TIME ZONE zone)::date AS local_date, zone
            FROM options
        ),
        chosen AS (
            SELECT DISTINCT ON (contact_id, CASE WHEN %(all)s THEN channel END) *
            FROM decided ORDER BY contact_id, CASE WHEN %(all)s THEN channel END, (reason IS NOT NULL), ord
        ),
        timed AS (
            SELECT *, %(quiet_start)s::time IS NOT NULL AND CASE
                       WHEN %(quiet_start)s::time < %(quiet_end)s::time
                           THEN local_time >= %(quiet_start)s::time AND local_time < %(quiet_end)s::time
                       ELSE local_time >= %(quiet_start)s::time OR local_time < %(quiet_end)s::time END AS quiet
            FROM chosen
        )
        INSERT INTO campaigns.deliveries (tenant_id, id, campaign_id, contact_id, channel, status, reason, address,
                                          send_after, created_at)
        SELECT %(tenant)s, campaigns.uuid7(), %(campaign)s, contact_id, channel,
               CASE WHEN reason IS NOT NULL THEN 'suppressed' WHEN quiet THEN 'deferred' ELSE 'queued' END,
               reason, address,
               CASE WHEN reason IS NULL AND quiet THEN
                   ((CASE WHEN local_time < %(quiet_end)s::time THEN local_date ELSE local_date + 1 END)
                    + %(quiet_end)s::time) AT TIME ZONE zone END,
               %(now)s
        FROM timed
        """,
        {"tenant": tenant_id, "campaign": campaign["id"], "channels": campaign["channels"],
         "all": campaign["strategy"] == "all_eligible", "now": now, "zones": time_zones,
         "cap_max": cap.get("max"), "cap_hours": cap.get("per_hours"),
         "quiet_start": quiet.get("start"), "quiet_end": quiet.get("end")},
    ).rowcount


def time_zones_of_members(uow: UnitOfWork, tenant_id: str) -> list[str]:
    return [r["timezone"] for r in uow.execute(
        "SELECT DISTINCT a.timezone FROM pg_temp.launch_members m JOIN campaigns.audience a"
        " ON a.tenant_id = %s AND a.contact_id = m.contact_id WHERE a.timezone IS NOT NULL",
        (tenant_id,),
    ).fetchall()]


def fill_members(uow: UnitOfWork, where: sql.Composable, params: list[Any]) -> None:
    """The launch's members: the audience rows `where` (over `campaigns.audience AS a`) selects.
    Never prepared: a generic plan would ignore the values that make the segment's indexes pay."""
    uow.conn.execute(sql.SQL("INSERT INTO pg_temp.launch_members SELECT a.contact_id FROM campaigns.audience a"
                             " WHERE {}").format(where), params, prepare=False)


def give_launch_memory(uow: UnitOfWork) -> None:
    uow.execute("SET LOCAL work_mem = '256MB'")


def create_members_table(uow: UnitOfWork) -> None:
    """The launch's members, dropped at commit (filled by the segment's member query)."""
    uow.execute("CREATE TEMP TABLE launch_members (contact_id uuid PRIMARY KEY) ON COMMIT DROP")


def stream_queued(uow: UnitOfWork, tenant_id: str, campaign_id: str, chunk: int = 10_000) -> Iterator[dict[str, Any]]:
    """The campaign's queued deliveries, by channel, through a server-side cursor: a million ids
    never sit in memory at once."""
    with uow.conn.cursor(name=f"queued_{campaign_id.replace('-', '')}") as cursor:
        cursor.itersize = chunk
        cursor.execute(
            "SELECT id, channel FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
            " AND status = 'queued' ORDER BY channel, id",
            (tenant_id, campaign_id),
        )
        yield from cursor


def count_by_status(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> dict[str, int]:
    rows = uow.execute(
        "SELECT status, count(*) AS n FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s"
        " GROUP BY status", (tenant_id, campaign_id),
    ).fetchall()
    return {r["status"]: r["n"] for r in rows}


def audience_size(uow: UnitOfWork) -> int:
    return uow.execute("SELECT count(*) AS n FROM pg_temp.launch_members").fetchone()["n"]


# -- after the launch --------------------------------------------------------------------------
def release_deferred(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Deferred deliveries whose quiet hours are over go back to queued (oldest first)."""
    return uow.execute(
        "UPDATE campaigns.deliveries d SET status = 'queued' FROM (SELECT tenant_id, id FROM campaigns.deliveries"
        "  WHERE status = 'deferred' AND send_after <= %s ORDER BY send_after LIMIT %s FOR UPDATE SKIP LOCKED) due"
        " WHERE d.tenant_id = due.tenant_id AND d.id = due.id"
        " RETURNING d.tenant_id, d.id, d.channel, d.campaign_id, d.trigger_id",
        (now, limit),
    ).fetchall()


def cancel_open_deliveries(uow: UnitOfWork, tenant_id: str, campaign_id: str) -> int:
    """Queued and deferred deliveries of a cancelled campaign are never sent."""
    return uow.execute(
        "UPDATE campaigns.deliveries SET status = 'suppressed', reason = 'cancelled'"
        " WHERE tenant_id = %s AND campaign_id = %s AND status IN ('queued', 'deferred')",
        (tenant_id, campaign_id),
    ).rowcount


def due_scheduled(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Scheduled campaigns whose time has come, now launching."""
    return uow.execute(
        "UPDATE campaigns.campaigns c SET status = 'launching' FROM (SELECT tenant_id, id FROM campaigns.campaigns"
        "  WHERE status = 'scheduled' AND schedule_at <= %s ORDER BY schedule_at LIMIT %s FOR UPDATE SKIP LOCKED) due"
        " WHERE c.tenant_id = due.tenant_id AND c.id = due.id RETURNING c.tenant_id, c.id",
        (now, limit),
    ).fetchall()


def finish_done(uow: UnitOfWork, now: datetime) -> list[dict[str, Any]]:
    """Running campaigns with nothing left to send are completed."""
    return uow.execute(
        "UPDATE campaigns.campaigns c SET status = 'completed', finished_at = %s WHERE c.status = 'running'"
        " AND NOT EXISTS (SELECT 1 FROM campaigns.deliveries d WHERE d.tenant_id = c.tenant_id"
        "  AND d.campaign_id = c.id AND d.status IN ('queued', 'sending', 'deferred'))"
        " RETURNING c.tenant_id, c.id",
        (now,),
    ).fetchall()


# -- deliveries --------------------------------------------------------------------------------
DELIVERY_COLUMNS = sql.SQL(
    "id, campaign_id, trigger_id, contact_id, channel, status, reason, address, send_after, attempts,"
    " provider_message_id, cost, created_at, sent_at, delivered_at, opened_at, clicked_at")


def deliveries(uow: UnitOfWork, tenant_id: str, campaign_id: str, limit: int, after: str | None,
               status: str | None, channel: str | None) -> list[dict[str, Any]]:
    return uow.execute(sql.SQL(
        "SELECT {} FROM campaigns.deliveries WHERE tenant_id = %(tenant)s"
        " AND campaign_id = %(campaign)s AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)"
        " AND (%(status)s::text IS NULL OR status = %(status)s OR (%(status)s = 'queued' AND status = 'sending'))"
        " AND (%(channel)s::text IS NULL OR channel = %(channel)s) ORDER BY id LIMIT %(limit)s"
    ).format(DELIVERY_COLUMNS),
        {"tenant": tenant_id, "campaign": campaign_id, "after": after, "status": status, "channel": channel,
         "limit": limit},
    ).fetchall()


def delivery(uow: UnitOfWork, tenant_id: str, campaign_id: str, delivery_id: str) -> dict[str, Any] | None:
    return uow.execute(sql.SQL(
        "SELECT {}, content FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s AND id = %s"
    ).format(DELIVERY_COLUMNS),
        (tenant_id, campaign_id, delivery_id),
    ).fetchone()


def segment_exists(uow: UnitOfWork, tenant_id: str, segment_id: str) -> bool:
    return uow.execute("SELECT 1 FROM campaigns.segments WHERE tenant_id = %s AND id = %s",
                       (tenant_id, segment_id)).fetchone() is not None
