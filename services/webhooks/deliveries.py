"""Deliveries: from an event on the bus to a signed POST that the receiver acknowledged.

- `on_event` (the worker's consumer, for every contract event type): one delivery per enabled
  endpoint of the event's tenant that subscribed to the type, in one INSERT ... SELECT, in the
  transaction that records the event as handled: each event becomes each delivery exactly once.
- `Dispatcher` (a loop in the worker): claims due deliveries in batches (SKIP LOCKED, so several
  worker processes share them), POSTs them signed, and records the outcome. A 2xx succeeds; 410
  Gone fails the delivery and disables the endpoint; anything else, or no answer, is retried after
  30 s, 1 min, 5 min, 30 min, 2 h, 5 h, then every 10 h (each ±10 % jitter), the last attempt at
  24 h after creation, and then the delivery is `failed` (a replay tries once more).
- At least once: a worker that dies between the receiver's answer and the record of it sends the
  delivery again once its claim lapses (Dispatcher.lease); receivers dedupe on Liaison-Event-Id.
- `on_erasure_requested`: drops the payloads of the contact's deliveries and says so.
- `purge_expired`: deliveries are kept 30 days, then deleted with their payloads and attempts.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from services.webhooks import ERASURE_REQUESTED, SCHEMA, SOURCE, endpoints
from services.webhooks.events import covering_patterns, encode
from services.webhooks.metrics import ATTEMPTS, DELIVERIES_CREATED, DELIVERY_LAG
from services.webhooks.repository import deliveries as repo
from services.webhooks.signatures import HEADER, signature_header
from shared import errors
from shared.db import Database, UnitOfWork, run_when_notified
from shared.events import rfc3339, utcnow
from shared.privacy import erased_contact_ids, erasure_answer, remember_erased, was_erased
from shared.secrets import SecretBox, SecretUnreadable

log = logging.getLogger(__name__)

STATUSES = ("pending", "succeeded", "failed")
# Waits after the 1st, 2nd, ... failed attempt; the last one repeats. Sums past 24 h, where the
# last attempt is placed (RETRY_WINDOW).
BACKOFF = (timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
           timedelta(hours=2), timedelta(hours=5), timedelta(hours=10))
JITTER = 0.1
RETENTION = timedelta(days=30)
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 10.0
LEASE_MARGIN = 60.0  # seconds
USER_AGENT = "Liaison-Webhooks/1"
NOTIFY_CHANNEL = "liaison_webhooks"  # a transaction that made deliveries wakes the dispatchers
# The receiver's answer is read up to this size, so that its connection can be used again; a
# longer answer is cut off, and its connection closed.
MAX_ANSWER_BYTES = 64 * 1024
MAX_ERROR = 500


# -- from the bus to deliveries ----------------------------------------------------------------
def deliver(uow: UnitOfWork, envelope: dict[str, Any]) -> int:
    created = repo.fan_out(uow, envelope["tenantid"], envelope, covering_patterns(envelope["type"]),
                           encode(envelope))
    DELIVERIES_CREATED.inc(created)
    return created


def _about_erased_contact(uow: UnitOfWork, envelope: dict[str, Any]) -> bool:
    subject = envelope.get("subject")
    try:
        contact_id = str(uuid.UUID(str(subject))) if subject else None
    except ValueError:
        return False  # not a contact id: nothing of an erased contact's
    return was_erased(uow, SCHEMA, envelope["tenantid"], contact_id)


def on_event(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Any contract event. One about a contact erased here (in flight from before the erasure) is
    not delivered, except the erasure completions, which name no one and tell the CRM it is done."""
    if not envelope["type"].endswith(".erasure.completed") and _about_erased_contact(uow, envelope):
        return
    deliver(uow, envelope)


def on_erasure_requested(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """The CRM is told (the event without its `handles`, which are personal data this service must
    not keep once its part is done); then the payloads of every delivery about the contact go."""
    tenant_id, data = envelope["tenantid"], envelope["data"]
    deliver(uow, {**envelope, "data": {k: v for k, v in data.items() if k != "handles"}})
    contact_ids = erased_contact_ids(data)
    remember_erased(uow, SCHEMA, tenant_id, contact_ids)
    handles = [(h["network"], h["handle"]) for h in data.get("handles", [])]
    erased = repo.erase(uow, tenant_id, contact_ids, handles, ERASURE_REQUESTED)
    uow.publish_many(SCHEMA, erasure_answer("webhooks", SOURCE, tenant_id, data, {"deliveries": erased}))


# -- what the API shows --------------------------------------------------------------------------
def view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "webhook_id": str(row["endpoint_id"]),
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": rfc3339(row["next_attempt_at"]) if row["next_attempt_at"] and row["status"] == "pending"
        else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "created_at": rfc3339(row["created_at"]),
        "delivered_at": rfc3339(row["delivered_at"]) if row["delivered_at"] else None,
    }


def detail(uow: UnitOfWork, tenant_id: str, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    endpoints.get(uow, tenant_id, endpoint_id)
    row = repo.get(uow, tenant_id, endpoint_id, delivery_id)
    if row is None:
        raise errors.NotFound.of("delivery", delivery_id)
    return {**view(row), "request_body": row["payload"], "attempt_history": [
        {"number": a["number"], "at": rfc3339(a["at"]), "status_code": a["status_code"], "error": a["error"],
         "duration_ms": a["duration_ms"]} for a in repo.attempts_of(uow, tenant_id, delivery_id)]}


def replay(uow: UnitOfWork, tenant_id: str, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    endpoints.get(uow, tenant_id, endpoint_id)
    row = repo.replay(uow, tenant_id, endpoint_id, delivery_id)
    if row is not None:
        return view(row)
    if repo.get(uow, tenant_id, endpoint_id, delivery_id) is None:
        raise errors.NotFound.of("delivery", delivery_id)
    raise errors.Conflict("This delivery's payload was erased with the contact it was about: it cannot be sent again.")


def export_for_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    """What was (or is to be) sent to the CRM about the contact, with the bodies: the access export."""
    return [{**view(row), "request_body": row["payload"]} for row in repo.of_contact(uow, tenant_id, contact_id)]


# -- sending -------------------------------------------------------------------------------------
def next_attempt(attempts: int, now: datetime, give_up_at: datetime, jitter: float) -> datetime | None:
    """When to try again after failed attempt number `attempts` (`jitter` in [0, 1)), or None once
    the retry window is over. The last retry lands on `give_up_at` itself."""
    if now >= give_up_at:
        return None
    delay = BACKOFF[min(attempts, len(BACKOFF)) - 1] * (1 + JITTER * (2 * jitter - 1))
    return min(now + delay, give_up_at)


def pooled_session(connections: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=connections, pool_maxsize=connections, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


class Dispatcher:
    """Sends due deliveries. `run_once(now)` takes one batch; `now` is the clock (tests drive it)."""

    def __init__(self, db: Database, box: SecretBox, *, concurrency: int = 8, batch: int | None = None,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
                 jitter: Callable[[], float] = random.random):
        self.db = db
        self.box = box
        self.batch = batch or concurrency * 4
        self.timeout = timeout
        # The claim outlasts the batch's slowest course (every receiver timing out), with a margin:
        # a delivery is sent again only when its dispatcher died (or stalled past the margin).
        self.lease = timedelta(seconds=math.ceil(self.batch / concurrency) * sum(timeout) + LEASE_MARGIN)
        self.jitter = jitter
        self.session = pooled_session(concurrency)
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="webhook-send")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.session.close()

    def run_once(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        with self.db.transaction() as uow:
            claimed = repo.claim(uow, now, self.batch, self.lease)
        if not claimed:
            return 0
        outcomes = list(self.pool.map(lambda delivery: self._attempt(delivery, now), claimed))
        with self.db.transaction() as uow:
            repo.record_outcomes(uow, outcomes)
            for gone in {(o["tenant_id"], o["endpoint_id"]) for o in outcomes if o["status_code"] == 410}:
                endpoints.disable_gone(uow, *gone)
        for outcome in outcomes:
            ATTEMPTS.labels("retry" if outcome["status"] == "pending" else outcome["status"]).inc()
            if outcome["status"] == "succeeded":
                DELIVERY_LAG.observe(max(0.0, (outcome["at"] - outcome["created_at"]).total_seconds()))
        return len(claimed)

    def run(self, stop: threading.Event, idle_wait: float = 1.0) -> None:
        """Sends due deliveries until `stop` is set: at once when a transaction makes some (NOTIFY),
        else every `idle_wait` seconds, for retries falling due."""
        run_when_notified(self.db.url, NOTIFY_CHANNEL, stop, self.drain, what="webhook dispatcher",
                          idle_wait=idle_wait)

    def drain(self, now: datetime | None = None) -> int:
        """Sends every delivery due at `now` (tests drive the clock)."""
        total = 0
        while True:
            sent = self.run_once(now)
            total += sent
            if sent < self.batch:
                return total

    def _attempt(self, delivery: dict[str, Any], now: datetime) -> dict[str, Any]:
        tenant_id, endpoint_id = str(delivery["tenant_id"]), str(delivery["endpoint_id"])
        status_code, error = None, None
        started = time.perf_counter()
        try:
            signing = endpoints.live_secrets(self.box, tenant_id, endpoint_id, delivery, now)
            body = delivery["payload"].encode()
            headers = {
                "Content-Type": "application/json",
                "Liaison-Webhook-Id": endpoint_id,
                "Liaison-Delivery-Id": str(delivery["id"]),
                "Liaison-Event-Id": delivery["event_id"],
                "Liaison-Event-Type": delivery["event_type"],
                HEADER: signature_header(signing, int(now.timestamp()), body),
            }
            # Redirects are not followed: a receiver that moved says so by changing its URL here.
            with self.session.post(delivery["url"], data=body, headers=headers, timeout=self.timeout,
                                   allow_redirects=False, stream=True) as response:
                status_code = response.status_code
                _read_answer(response)
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except requests.Timeout:
            error = f"no answer within {self.timeout[0]:g} s to connect or {self.timeout[1]:g} s to respond"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        except SecretUnreadable:
            error = "the endpoint's secret cannot be read: LIAISON_SECRET_KEY changed since it was made"
        except Exception as exc:
            # Logged with its trace and recorded as this attempt's failure (retried like any
            # other): one odd delivery must not stop the dispatcher for every tenant.
            log.exception("webhook delivery attempt raised", extra={"delivery_id": str(delivery["id"])})
            error = f"internal error: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        duration_ms = int(elapsed * 1000)
        if status_code is not None and 200 <= status_code < 300:
            status, retry_at = "succeeded", None
        elif status_code == 410:
            status, retry_at = "failed", None
        else:
            retry_at = next_attempt(delivery["attempts"], now, delivery["give_up_at"], self.jitter())
            status = "pending" if retry_at is not None else "failed"
        if status != "succeeded":
            log.info("webhook delivery attempt failed", extra={
                "delivery_id": str(delivery["id"]), "attempt": delivery["attempts"], "error": error,
                "retry_at": rfc3339(retry_at) if retry_at else None})
        return {"tenant_id": tenant_id, "id": str(delivery["id"]), "endpoint_id": endpoint_id,
                "attempts": delivery["attempts"], "status": status, "next_attempt_at": retry_at,
                "status_code": status_code, "error": error, "at": now + timedelta(seconds=elapsed),
                "duration_ms": duration_ms,
                "created_at": delivery["created_at"]}


def _read_answer(response: requests.Response) -> None:
    """Reads the answer to its end (up to MAX_ANSWER_BYTES): requests hands a connection back to
    its pool only then, and a new TCP (and TLS) connection per delivery costs both sides."""
    read = 0
    for chunk in response.iter_content(16 * 1024):
        read += len(chunk)
        if read > MAX_ANSWER_BYTES:
            return


# -- retention -----------------------------------------------------------------------------------
def purge_expired(db: Database, now: datetime | None = None, batch: int = 10_000) -> int:
    """Deletes finished deliveries older than RETENTION, a batch per transaction."""
    before = (now or utcnow()) - RETENTION
    purged = 0
    while True:
        with db.transaction() as uow:
            count = repo.purge_older_than(uow, before, batch)
        purged += count
        if count < batch:
            return purged
