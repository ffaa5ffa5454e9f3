"""SQL of segments (services.campaigns.segments): the saved rules, and the counts, samples and
statistics over the audience that their compiled rules select (`Compiled`: a fixed expression over
`campaigns.audience AS a` with bound parameters)."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

if TYPE_CHECKING:
    from services.campaigns.segments import Compiled

# Queries over the audience are never prepared: a prepared statement run often on a pooled
# connection falls back to a generic plan, blind to the values that decide the best one (a
# latitude band, a date range, a rare or a common country); planning each time costs ~1 ms.

UNFINISHED = ["draft", "scheduled", "launching", "running"]


# -- the saved segments ------------------------------------------------------------------------
def insert(uow: UnitOfWork, tenant_id: str, segment_id: str, name: str, rules: dict[str, Any]) -> dict[str, Any]:
    return uow.execute(
        "INSERT INTO campaigns.segments (tenant_id, id, name, rules) VALUES (%s, %s, %s, %s)"
        " RETURNING id, name, rules, created_at, updated_at",
        (tenant_id, segment_id, name, Jsonb(rules)),
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, segment_id: str, lock: bool = False) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT id, name, rules, created_at, updated_at FROM campaigns.segments WHERE tenant_id = %s AND id = %s"
        " FOR UPDATE" if lock else
        "SELECT id, name, rules, created_at, updated_at FROM campaigns.segments WHERE tenant_id = %s AND id = %s",
        (tenant_id, segment_id),
    ).fetchone()


def existing(uow: UnitOfWork, tenant_id: str, segment_ids: list[str]) -> set[str]:
    rows = uow.execute(
        "SELECT id FROM campaigns.segments WHERE tenant_id = %s AND id = ANY(%s::uuid[])",
        (tenant_id, segment_ids),
    ).fetchall()
    return {str(r["id"]) for r in rows}


def list_(uow: UnitOfWork, tenant_id: str, limit: int, after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    """Newest first, then by id; `after` is the (created_at, id) of the previous page's last row."""
    if after is None:
        return uow.execute(
            "SELECT id, name, rules, created_at, updated_at FROM campaigns.segments WHERE tenant_id = %s"
            " ORDER BY created_at DESC, id DESC LIMIT %s",
            (tenant_id, limit),
        ).fetchall()
    return uow.execute(
        "SELECT id, name, rules, created_at, updated_at FROM campaigns.segments WHERE tenant_id = %s"
        " AND (created_at, id) < (%s, %s)"
        " ORDER BY created_at DESC, id DESC LIMIT %s",
        (tenant_id, after[0], after[1], limit),
    ).fetchall()


def update(uow: UnitOfWork, tenant_id: str, segment_id: str, name: str | None,
           rules: dict[str, Any] | None) -> dict[str, Any] | None:
    """Changes what is given (None keeps it)."""
    return uow.execute(
        "UPDATE campaigns.segments SET name = coalesce(%s, name), rules = coalesce(%s, rules), updated_at = now()"
        " WHERE tenant_id = %s AND id = %s RETURNING id, name, rules, created_at, updated_at",
        (name, None if rules is None else Jsonb(rules), tenant_id, segment_id),
    ).fetchone()


def delete(uow: UnitOfWork, tenant_id: str, segment_id: str) -> None:
    uow.execute("DELETE FROM campaigns.segments WHERE tenant_id = %s AND id = %s", (tenant_id, segment_id))


def active_campaigns(uow: UnitOfWork, tenant_id: str, segment_id: str) -> list[str]:
    rows = uow.execute(
        "SELECT id FROM campaigns.campaigns WHERE tenant_id = %s AND segment_id = %s AND status = ANY(%s)"
        " ORDER BY created_at LIMIT 20",
        (tenant_id, segment_id, UNFINISHED),
    ).fetchall()
    return [str(r["id"]) for r in rows]


# -- over the audience -------------------------------------------------------------------------
def count_and_sample(uow: UnitOfWork, members: Compiled, size: int) -> tuple[int, list[Any]]:
    """The count and the first `size` contact ids in one statement (one snapshot): each subquery
    gets its own plan (the count through the indexes the rules can use, the sample along the
    primary key, which stops at the `size`-th match)."""
    row = uow.conn.execute(
        sql.SQL("SELECT (SELECT count(*) FROM campaigns.audience a WHERE {where}) AS count,"
                " ARRAY(SELECT a.contact_id FROM campaigns.audience a WHERE {where}"
                " ORDER BY a.contact_id LIMIT %s) AS sample").format(where=members.where),
        [*members.params, *members.params, size], prepare=False,
    ).fetchone()
    return row["count"], row["sample"]


def count(uow: UnitOfWork, members: Compiled) -> int:
    return uow.conn.execute(
        sql.SQL("SELECT count(*) AS n FROM campaigns.audience a WHERE {}").format(members.where), members.params,
        prepare=False,
    ).fetchone()["n"]


def member_ids(uow: UnitOfWork, members: Compiled) -> list[Any]:
    """Every member's contact id, by contact id (a launch's audience)."""
    rows = uow.conn.execute(
        sql.SQL("SELECT a.contact_id FROM campaigns.audience a WHERE {} ORDER BY a.contact_id").format(members.where),
        members.params, prepare=False,
    ).fetchall()
    return [r["contact_id"] for r in rows]


def is_member(uow: UnitOfWork, members: Compiled, contact_id: str) -> bool:
    return uow.conn.execute(
        sql.SQL("SELECT 1 FROM campaigns.audience a WHERE a.contact_id = %s AND {}").format(members.where),
        [contact_id, *members.params], prepare=False,
    ).fetchone() is not None


# One pass over the members for the statistics; the campaigns' figures are scalar subqueries over
# deliveries and conversions (their own indexes), so the whole answer is one statement.
_ANALYTICS = """
SELECT count(*) AS size,
       count(*) FILTER (WHERE m.influence_tier = 'none') AS tier_none,
       count(*) FILTER (WHERE m.influence_tier = 'nano') AS tier_nano,
       count(*) FILTER (WHERE m.influence_tier = 'micro') AS tier_micro,
       count(*) FILTER (WHERE m.influence_tier = 'macro') AS tier_macro,
       count(*) FILTER (WHERE m.influence_tier = 'mega') AS tier_mega,
       count(*) FILTER (WHERE m.influence_tier IS NULL
                        OR m.influence_tier NOT IN ('none', 'nano', 'micro', 'macro', 'mega')) AS tier_unknown,
       avg(m.age) AS age_mean, stddev_pop(m.age) AS age_std,
       avg(m.influence_score) AS influence_score_mean, stddev_pop(m.influence_score) AS influence_score_std,
       avg(m.satisfaction) AS satisfaction_mean, stddev_pop(m.satisfaction) AS satisfaction_std,
       (SELECT count(DISTINCT d.contact_id) FROM campaigns.deliveries d
         WHERE d.tenant_id = %s AND d.status IN ('sent', 'delivered')
           AND d.campaign_id IN (SELECT id FROM sent_to)) AS reached,
       (SELECT count(*) FROM attributed) AS conversions,
       (SELECT coalesce(sum(value), 0) FROM attributed) AS revenue
FROM (SELECT CASE WHEN a.birth_date IS NOT NULL
                  THEN extract(year FROM age(%s::date, a.birth_date))::float8
                  ELSE (a.age_min + a.age_max) / 2.0 END AS age,
             a.influence_tier, a.influence_score::float8 AS influence_score, a.satisfaction::float8 AS satisfaction
      FROM campaigns.audience a WHERE {where}) m
"""
_SENT_TO = """
WITH sent_to AS (SELECT c.id FROM campaigns.campaigns c WHERE c.tenant_id = %s AND c.segment_id = %s),
attributed AS (
    SELECT v.value FROM campaigns.conversions v
     WHERE v.tenant_id = %s
       AND (v.campaign_id IN (SELECT id FROM sent_to)
            OR v.delivery_id IN (SELECT d.id FROM campaigns.deliveries d WHERE d.tenant_id = %s
                                  AND d.campaign_id IN (SELECT id FROM sent_to))))
"""


def analytics(uow: UnitOfWork, tenant_id: str, segment_id: str, members: Compiled, today: date) -> dict[str, Any]:
    # Positional placeholders, as the members' expression has them: in the order they appear.
    return uow.conn.execute(
        sql.Composed([sql.SQL(_SENT_TO), sql.SQL(_ANALYTICS).format(where=members.where)]),
        [tenant_id, segment_id, tenant_id, tenant_id, tenant_id, today, *members.params], prepare=False,
    ).fetchone()
