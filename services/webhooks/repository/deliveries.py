"""SQL of the deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from shared.db import UnitOfWork

VIEW_COLUMNS = sql.SQL("d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,"
                       " d.last_status_code, d.last_error, d.created_at, d.delivered_at")
RETRY_WINDOW = timedelta(hours=24)


def fan_out(uow: UnitOfWork, tenant_id: str, event: dict[str, Any], patterns: list[str], payload: str) -> int:
    """One delivery per enabled endpoint of the tenant subscribed to the event, in one statement;
    returns how many. An event nobody wants costs one lookup on the tenant's endpoints."""
    return uow.execute(
        "INSERT INTO webhooks.deliveries (tenant_id, id, endpoint_id, event_id, event_type, subject, payload,"
        " next_attempt_at, give_up_at, created_at)"
        " SELECT e.tenant_id, webhooks.time_ordered_id(now()), e.id, %(event_id)s, %(type)s, %(subject)s,"
        " %(payload)s, now(), now() + %(window)s, now()"
        " FROM webhooks.endpoints e WHERE e.tenant_id = %(tenant)s AND e.enabled"
        " AND e.event_types && %(patterns)s::text[]"
        " ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING",
        {"tenant": tenant_id, "event_id": event["id"], "type": event["type"], "subject": event.get("subject"),
         "payload": payload, "window": RETRY_WINDOW, "patterns": patterns},
    ).rowcount


def insert_one(uow: UnitOfWork, tenant_id: str, endpoint_id: str, event: dict[str, Any], payload: str
               ) -> dict[str, Any]:
    """A delivery to one endpoint (a ping)."""
    return uow.execute(sql.SQL(
        "INSERT INTO webhooks.deliveries AS d (tenant_id, id, endpoint_id, event_id, event_type, payload,"
        " next_attempt_at, give_up_at) VALUES (%s, webhooks.time_ordered_id(now()), %s, %s, %s, %s, now(),"
        " now() + %s) RETURNING {}").format(VIEW_COLUMNS),
        (tenant_id, endpoint_id, event["id"], event["type"], payload, RETRY_WINDOW),
    ).fetchone()


def get(uow: UnitOfWork, tenant_id: str, endpoint_id: str, delivery_id: str) -> dict[str, Any] | None:
    return uow.execute(sql.SQL(
        "SELECT {}, d.payload FROM webhooks.deliveries d"
        " WHERE d.tenant_id = %s AND d.endpoint_id = %s AND d.id = %s").format(VIEW_COLUMNS),
        (tenant_id, endpoint_id, delivery_id),
    ).fetchone()


def page(uow: UnitOfWork, tenant_id: str, endpoint_id: str, limit: int, after: str | None,
         status: str | None) -> list[dict[str, Any]]:
    return uow.execute(sql.SQL(
        "SELECT {} FROM webhooks.deliveries d WHERE d.tenant_id = %(tenant)s"
        " AND d.endpoint_id = %(endpoint)s AND (%(after)s::uuid IS NULL OR d.id < %(after)s::uuid)"
        " AND (%(status)s::text IS NULL OR d.status = %(status)s) ORDER BY d.id DESC LIMIT %(limit)s"
    ).format(VIEW_COLUMNS),
        {"tenant": tenant_id, "endpoint": endpoint_id, "after": after, "status": status, "limit": limit},
    ).fetchall()


def attempts_of(uow: UnitOfWork, tenant_id: str, delivery_id: str) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT number, at, status_code, error, duration_ms FROM webhooks.attempts"
        " WHERE tenant_id = %s AND delivery_id = %s ORDER BY number",
        (tenant_id, delivery_id),
    ).fetchall()


def replay(uow: UnitOfWork, tenant_id: str, endpoint_id: str, delivery_id: str) -> dict[str, Any] | None:
    """Due now, for one more attempt: a finished delivery gets that one attempt (give_up_at = now),
    a pending one keeps its retries."""
    return uow.execute(sql.SQL(
        "UPDATE webhooks.deliveries d SET next_attempt_at = now(),"
        " give_up_at = CASE WHEN d.status = 'pending' THEN d.give_up_at ELSE now() END, status = 'pending'"
        " WHERE d.tenant_id = %s AND d.endpoint_id = %s AND d.id = %s AND d.payload IS NOT NULL"
        " RETURNING {}").format(VIEW_COLUMNS),
        (tenant_id, endpoint_id, delivery_id),
    ).fetchone()


def fail_pending_of_endpoint(uow: UnitOfWork, tenant_id: str, endpoint_id: str, reason: str) -> int:
    return uow.execute(
        "UPDATE webhooks.deliveries SET status = 'failed', next_attempt_at = NULL, last_error = %s"
        " WHERE tenant_id = %s AND endpoint_id = %s AND status = 'pending'",
        (reason, tenant_id, endpoint_id),
    ).rowcount


# -- the dispatcher -----------------------------------------------------------------------------
def claim(uow: UnitOfWork, now: datetime, batch: int, lease: timedelta) -> list[dict[str, Any]]:
    """Takes up to `batch` due deliveries (SKIP LOCKED: dispatchers in other processes take
    others), counts the attempt and holds them for `lease` (past it, the deliveries of a
    dispatcher that died mid-send are taken up again), with what is needed to send them."""
    return uow.execute(
        "WITH due AS (SELECT tenant_id, id FROM webhooks.deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= %(now)s AND payload IS NOT NULL"
        " ORDER BY next_attempt_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"
        " UPDATE webhooks.deliveries d SET attempts = d.attempts + 1, next_attempt_at = %(now)s + %(lease)s"
        " FROM due, webhooks.endpoints e"
        " WHERE d.tenant_id = due.tenant_id AND d.id = due.id AND e.tenant_id = d.tenant_id AND e.id = d.endpoint_id"
        " RETURNING d.tenant_id, d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts,"
        " d.give_up_at, d.created_at, e.url, e.secret, e.previous_secret, e.previous_secret_until",
        {"now": now, "batch": batch, "lease": lease},
    ).fetchall()


def record_outcomes(uow: UnitOfWork, outcomes: list[dict[str, Any]]) -> None:
    """Each outcome: tenant_id, id, attempts (the claimed attempt's number), status, next_attempt_at,
    status_code, error, at, duration_ms. Two statements for the whole batch. A delivery replayed
    or erased meanwhile (its attempts or payload changed) keeps its new state."""
    if not outcomes:
        return
    columns = ("tenant_id", "id", "attempts", "status", "next_attempt_at", "status_code", "error", "at",
               "duration_ms")
    arrays = {name: [o[name] for o in outcomes] for name in columns}
    uow.execute(
        "UPDATE webhooks.deliveries d SET status = o.status, next_attempt_at = o.next_attempt_at,"
        " last_status_code = o.status_code, last_error = o.error,"
        " delivered_at = CASE WHEN o.status = 'succeeded' THEN o.at ELSE d.delivered_at END"
        " FROM unnest(%(tenant_id)s::uuid[], %(id)s::uuid[], %(attempts)s::int[], %(status)s::text[],"
        " %(next_attempt_at)s::timestamptz[], %(status_code)s::int[], %(error)s::text[], %(at)s::timestamptz[])"
        " AS o(tenant_id, id, attempts, status, next_attempt_at, status_code, error, at)"
        " WHERE d.tenant_id = o.tenant_id AND d.id = o.id AND d.attempts = o.attempts AND d.status = 'pending'",
        arrays,
    )
    uow.execute(
        "INSERT INTO webhooks.attempts (tenant_id, delivery_id, number, at, status_code, error, duration_ms)"
        " SELECT o.* FROM unnest(%(tenant_id)s::uuid[], %(id)s::uuid[], %(attempts)s::int[],"
        " %(at)s::timestamptz[], %(status_code)s::int[], %(error)s::text[], %(duration_ms)s::int[])"
        " AS o(tenant_id, delivery_id, number, at, status_code, error, duration_ms)"
        # The endpoint (and its deliveries) may have been deleted during the send.
        " WHERE EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.tenant_id = o.tenant_id AND d.id = o.delivery_id)"
        " ON CONFLICT DO NOTHING",
        arrays,
    )


def pending_lag(uow: UnitOfWork) -> dict[str, float]:
    """How many deliveries wait, and how long the most overdue one has been due, in seconds."""
    row = uow.execute(
        "SELECT count(*) AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)"
        " FILTER (WHERE next_attempt_at <= now())), 0) AS overdue FROM webhooks.deliveries WHERE status = 'pending'"
    ).fetchone()
    return {"pending": float(row["pending"]), "overdue": float(row["overdue"])}


# -- erasure and retention ---------------------------------------------------------------------
def erase(uow: UnitOfWork, tenant_id: str, contact_ids: list[str], handles: list[tuple[str, str]],
          keep_type: str) -> int:
    """Drops the payloads of the deliveries about the contacts (by subject) or about their
    handles before they were linked (a prospect's mention: no subject), except those of
    `keep_type` (the erasure request itself, which names no one); those not yet sent are failed.
    Returns how many."""
    return uow.execute(
        "UPDATE webhooks.deliveries SET payload = NULL,"
        " last_error = CASE WHEN status = 'pending' THEN 'not sent: the contact was erased' ELSE last_error END,"
        " next_attempt_at = CASE WHEN status = 'pending' THEN NULL ELSE next_attempt_at END,"
        " status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END"
        " WHERE tenant_id = %(tenant)s AND payload IS NOT NULL AND event_type <> %(keep)s"
        " AND (subject = ANY(%(ids)s::text[])"
        "      OR (subject IS NULL AND cardinality(%(networks)s::text[]) > 0"
        "          AND (payload::jsonb #>> '{data,network}', lower(payload::jsonb #>> '{data,handle}'))"
        "              IN (SELECT n, lower(h) FROM unnest(%(networks)s::text[], %(handles)s::text[]) AS x(n, h))))",
        {"tenant": tenant_id, "keep": keep_type, "ids": contact_ids,
         "networks": [n for n, _ in handles], "handles": [h for _, h in handles]},
    ).rowcount


def purge_older_than(uow: UnitOfWork, before: datetime, batch: int) -> int:
    """Deletes up to `batch` finished deliveries (their payloads and attempts with them) created
    before `before`."""
    return uow.execute(
        "DELETE FROM webhooks.deliveries WHERE ctid IN (SELECT ctid FROM webhooks.deliveries"
        " WHERE created_at < %s AND status <> 'pending' LIMIT %s)",
        (before, batch),
    ).rowcount


def of_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    """The deliveries about a contact whose payload is still kept (the access export)."""
    return uow.execute(sql.SQL(
        "SELECT {}, d.payload FROM webhooks.deliveries d WHERE d.tenant_id = %s AND d.subject = %s"
        " AND d.payload IS NOT NULL ORDER BY d.id").format(VIEW_COLUMNS),
        (tenant_id, contact_id),
    ).fetchall()
