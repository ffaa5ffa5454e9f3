"""Sending: what a channel worker does with a dispatch batch (services.campaigns.dispatch).

The batch's deliveries go in chunks (CHUNK of them, or one at a time for a channel whose provider
has no idempotency key: see `ChannelAdapter.idempotent`), each in three steps:

1. claim, in one short transaction that locks the chunk's deliveries: only a `queued` delivery,
   a `sending` one (its worker died after handing it to the provider) or a `deferred` one whose
   time has come goes on; anything else (sent, failed, suppressed, a cancelled campaign's) is
   skipped, so a redelivered batch sends nothing twice. Consent for the channel's purpose is
   checked again (CHANNEL_PURPOSE; an expired grant is no grant): without it the delivery is
   `suppressed` with reason `withdrawn`, and a contact on the suppression list is `suppressed`
   with reason `suppression_list`; a contact with no address left, `suppressed` with
   `no_address`. The message is rendered (services.campaigns.templates, tracked links from the
   injected `Links`) and the delivery becomes `sending`, attempts + 1, with `content` = exactly
   what is sent. A delivery found `sending` keeps the content it already had: the message sent
   again is the same message.
2. send them, outside any transaction, CONCURRENCY at a time on a pool of threads (a send mostly
   waits for the provider), retrying transient errors with exponential backoff (3 tries).
   The idempotency key is the delivery id (Twilio's I-Twilio-Idempotency-Token, the
   email's Message-ID), so the provider recognises a message sent again after a crash.
3. record, in one short transaction: `sent` with sent_at, provider_message_id and cost (the
   campaign's cost_per_message for the channel when set, else the provider's price), or `failed`
   with the reason of a permanent error.

Why chunks: a claim and a record per delivery cost two commits and a dozen round trips each,
which bounded a channel worker to a few hundred sends a second. A chunk's claim reads its
deliveries, contacts and consents in three statements. The price is a wider window for a worker
killed mid-chunk: every delivery of the chunk handed to the provider but not yet recorded is sent
again, which the idempotency key makes harmless; hence one at a time where there is none.

A delivery whose provider stays unavailable through the retries stays `sending`; once the batch
is done, the handler raises, so the consumer retries the batch later with its own backoff (the
deliveries done meanwhile are skipped then). After MAX_DELIVERY_ATTEMPTS claims it is `failed`.

Each change of a delivery's status to one the contract lists (sent, delivered, failed,
suppressed) publishes `liaison.campaigns.delivery.updated` through the outbox, in the transaction
of the change: {delivery_id, campaign_id, trigger_id, contact_id, channel, status, reason}.
`sending` is the worker's own bookkeeping and publishes nothing.

The consumer's transaction (the handler's `uow`) only records the batch as handled; every step
above uses transactions of its own from `db`, so none stays open across a provider call.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from psycopg import sql
from psycopg.types.json import Jsonb
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from services.campaigns import CHANNEL_PURPOSE, SCHEMA, SOURCE
from services.campaigns.channels.base import (
    NO_ADDRESS,
    ChannelAdapter,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from services.campaigns.channels.social_dm import choose_handle
from services.campaigns.dispatch import batches
from services.campaigns.repository import audience as audience_repo
from services.campaigns.templates import RenderFailed, contact_of, profile_of, render_content
from shared.consumer import Handler
from shared.db import Database, UnitOfWork
from shared.events import CloudEvent, utcnow

log = logging.getLogger(__name__)

DELIVERY_UPDATED = "liaison.campaigns.delivery.updated"
SENDABLE = ("queued", "sending", "deferred")
WITHDRAWN = "withdrawn"
SUPPRESSION_LIST = "suppression_list"
RENDER_FAILED = "render_failed"
NO_CONTENT = "no_content"
MAX_DELIVERY_ATTEMPTS = 3
CHUNK = 50  # deliveries claimed, and then recorded, in one transaction (see the module docstring)
CONCURRENCY = 16  # sends in flight per channel consumer (CAMPAIGNS_SEND_CONCURRENCY)
SMS_CALLBACK_PATH = "/v1/campaigns/callbacks/sms"

Render = Callable[[str, dict[str, Any], dict[str, Any], dict[str, Any], Callable[[str], str]], dict[str, Any]]


class Links(Protocol):
    """The URLs a message carries, for one delivery (services.campaigns.tracking builds them)."""

    def click(self, tenant_id: str, delivery_id: str, target: str) -> str: ...

    def open(self, tenant_id: str, delivery_id: str) -> str | None: ...

    def unsubscribe(self, tenant_id: str, delivery_id: str) -> str | None: ...

    def sms_callback(self) -> str | None: ...


@dataclass(frozen=True)
class TrackingLinks:
    """`Links` from the tracking module's functions and campaigns' public URL and secret:

        TrackingLinks(public_url, secret, tracking.click_url, tracking.open_url, tracking.unsubscribe_url)
    """

    public_url: str
    secret: str = field(repr=False)
    click_url: Callable[[str, str, str, str, str], str]
    open_url: Callable[[str, str, str, str], str] | None
    unsubscribe_url: Callable[[str, str, str, str], str]

    def click(self, tenant_id: str, delivery_id: str, target: str) -> str:
        return self.click_url(self.public_url, self.secret, tenant_id, delivery_id, target)

    def open(self, tenant_id: str, delivery_id: str) -> str | None:
        return self.open_url(self.public_url, self.secret, tenant_id, delivery_id) if self.open_url else None

    def unsubscribe(self, tenant_id: str, delivery_id: str) -> str:
        return self.unsubscribe_url(self.public_url, self.secret, tenant_id, delivery_id)

    def sms_callback(self) -> str | None:
        return self.public_url.rstrip("/") + SMS_CALLBACK_PATH


class BatchIncomplete(RuntimeError):
    """Some deliveries of the batch could not be sent now: the consumer retries the batch."""


def delivery_event(delivery: Mapping[str, Any]) -> CloudEvent:
    """`liaison.campaigns.delivery.updated` for the delivery as it is now."""
    contact_id = str(delivery["contact_id"])
    return CloudEvent(DELIVERY_UPDATED, SOURCE, str(delivery["tenant_id"]), {
        "delivery_id": str(delivery["id"]),
        "campaign_id": _str(delivery.get("campaign_id")),
        "trigger_id": _str(delivery.get("trigger_id")),
        "contact_id": contact_id,
        "channel": delivery["channel"],
        "status": delivery["status"],
        "reason": delivery.get("reason"),
    }, subject=contact_id)


def set_status(uow: UnitOfWork, tenant_id: str, delivery_id: str, status: str, reason: str | None = None,
               *, only_from: tuple[str, ...] = SENDABLE, **columns: Any) -> dict[str, Any] | None:
    """Moves a delivery to `status` (from one of `only_from`), sets `columns`, publishes the
    change; None when the delivery was not in one of those statuses."""
    unknown = set(columns) - {"sent_at", "delivered_at", "provider_message_id", "cost"}
    if unknown:
        raise ValueError(f"not a delivery column set here: {sorted(unknown)}")
    query = sql.SQL(
        "UPDATE campaigns.deliveries SET status = %(status)s, reason = %(reason)s{}"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s AND status = ANY(%(from)s) RETURNING *"
    ).format(sql.SQL("").join(sql.SQL(", {} = {}").format(sql.Identifier(name), sql.Placeholder(name))
                              for name in columns))
    row = uow.execute(query, {"status": status, "reason": reason, "tenant": tenant_id, "id": delivery_id,
                              "from": list(only_from), **columns}).fetchone()
    if row is not None:
        uow.publish(SCHEMA, delivery_event(row))
    return row


@dataclass(frozen=True)
class _Claimed:
    message: OutgoingMessage
    attempts: int
    cost_per_message: Decimal | None


@dataclass(frozen=True)
class _Sent:
    claimed: _Claimed
    result: SendResult
    status = "sent"


@dataclass(frozen=True)
class _Failed:
    claimed: _Claimed
    reason: str
    status = "failed"


@dataclass
class Sender:
    db: Database
    adapters: Mapping[str, ChannelAdapter]
    links: Links
    render: Render = render_content
    tries: int = 3  # calls to the provider per claim, for transient errors
    backoff: float = 0.5  # seconds before the second call, doubling (with jitter) up to backoff_cap
    backoff_cap: float = 10.0
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    chunk: int = CHUNK  # deliveries claimed and recorded together (1 where the provider has no idempotency)
    concurrency: int = CONCURRENCY  # messages of a chunk handed to the provider at once
    now: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    _threads: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    # -- the batch -------------------------------------------------------------------------
    def handle(self, uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        tenant_id, data = envelope["tenantid"], envelope["data"]
        adapter = self.adapters.get(data.get("channel", ""))
        size = self.chunk if adapter is not None and getattr(adapter, "idempotent", False) else 1
        later = 0
        for chunk in batches(data["delivery_ids"], size):
            later += list(self.send_chunk(tenant_id, chunk).values()).count("later")
        if later:
            raise BatchIncomplete(f"{later} deliveries could not reach their provider; the batch is retried")

    def send_one(self, tenant_id: str, delivery_id: str) -> str:
        """Claims, sends and records one delivery; returns its status afterwards, `skipped` when
        it was not to send, or `later` when its provider stayed unavailable."""
        return self.send_chunk(tenant_id, [delivery_id])[delivery_id]

    def send_chunk(self, tenant_id: str, delivery_ids: Sequence[str]) -> dict[str, str]:
        """Claims, sends and records these deliveries (see the module docstring); returns each
        one's outcome as send_one does."""
        with self.db.transaction() as uow:
            claims = self._claim(uow, tenant_id, delivery_ids)
        outcomes = {delivery_id: claim for delivery_id, claim in claims.items() if isinstance(claim, str)}
        claimed = [claim for claim in claims.values() if isinstance(claim, _Claimed)]
        done: list[_Sent | _Failed] = []
        for claim, attempt in zip(claimed, self._executor().map(self._attempt, claimed), strict=True):
            if isinstance(attempt, _Sent | _Failed):
                done.append(attempt)
            outcomes[claim.message.delivery_id] = attempt.status if not isinstance(attempt, str) else attempt
        if done:
            self._record(tenant_id, done)
        return outcomes

    def _attempt(self, claim: _Claimed) -> _Sent | _Failed | str:
        """Sends one claimed delivery (on one of the executor's threads): its outcome, or `later`."""
        try:
            return _Sent(claim, self._send(claim.message))
        except PermanentSendError as exc:
            return _Failed(claim, exc.describe())
        except TransientSendError as exc:
            if claim.attempts >= self.max_delivery_attempts:
                return _Failed(claim, exc.describe())
            log.warning("provider unavailable; the delivery waits for the batch's retry",
                        extra={"delivery_id": claim.message.delivery_id, "channel": claim.message.channel,
                               "error": exc.describe()})
            return "later"

    def _executor(self) -> ThreadPoolExecutor:
        # Threads, because a send mostly waits for the provider (a real SMS API answers in 100 to
        # 300 ms): one at a time, a worker would send a few messages a second.
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="send")
        return self._threads

    # -- the steps -------------------------------------------------------------------------
    def _send(self, message: OutgoingMessage) -> SendResult:
        adapter = self.adapters.get(message.channel)
        if adapter is None:
            raise PermanentSendError("not_configured", f"this worker has no {message.channel} adapter")
        retrying = Retrying(
            retry=retry_if_exception_type(TransientSendError),
            stop=stop_after_attempt(self.tries),
            wait=wait_exponential(multiplier=self.backoff, max=self.backoff_cap) + wait_random(0, self.backoff),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(adapter.send, message)

    def _record(self, tenant_id: str, done: Sequence[_Sent | _Failed]) -> None:
        sent = [outcome for outcome in done if isinstance(outcome, _Sent)]
        with self.db.transaction() as uow:
            for outcome in done:
                if isinstance(outcome, _Failed):
                    set_status(uow, tenant_id, outcome.claimed.message.delivery_id, "failed", outcome.reason,
                               only_from=("sending",))
            if sent:
                # One statement for the chunk's sends, and their events in one write.
                rows = uow.execute(
                    "UPDATE campaigns.deliveries d SET status = 'sent', reason = NULL, sent_at = %s,"
                    " provider_message_id = s.provider_message_id, cost = s.cost"
                    " FROM unnest(%s::uuid[], %s::text[], %s::numeric[]) AS s(id, provider_message_id, cost)"
                    " WHERE d.tenant_id = %s AND d.id = s.id AND d.status = 'sending' RETURNING d.*",
                    (self.now(), [o.claimed.message.delivery_id for o in sent],
                     [o.result.provider_message_id for o in sent],
                     [o.claimed.cost_per_message if o.claimed.cost_per_message is not None else o.result.cost
                      for o in sent], tenant_id),
                ).fetchall()
                uow.publish_many(SCHEMA, [delivery_event(row) for row in rows])

    def _claim(self, uow: UnitOfWork, tenant_id: str, delivery_ids: Sequence[str]) -> dict[str, _Claimed | str]:
        now = self.now()
        outcomes: dict[str, _Claimed | str] = dict.fromkeys(delivery_ids, "skipped")
        deliveries = uow.execute(
            "SELECT d.*, c.content AS campaign_content, c.cost_per_message, c.status AS campaign_status"
            " FROM campaigns.deliveries d LEFT JOIN campaigns.campaigns c"
            " ON c.tenant_id = d.tenant_id AND c.id = d.campaign_id"
            " WHERE d.tenant_id = %s AND d.id = ANY(%s::uuid[]) ORDER BY d.id FOR UPDATE OF d",
            (tenant_id, list(delivery_ids)),
        ).fetchall()
        deliveries = [d for d in deliveries if d["status"] in SENDABLE and d["campaign_status"] != "cancelled"
                      and (d["status"] != "deferred" or (d["send_after"] is not None and d["send_after"] <= now))]
        if not deliveries:
            return outcomes
        contact_ids = list({str(d["contact_id"]) for d in deliveries})
        contacts = audience_repo.contacts(uow, tenant_id, contact_ids)
        allowed = audience_repo.allowed(uow, tenant_id, contact_ids, now)
        claims = []
        for delivery in deliveries:
            delivery_id = str(delivery["id"])
            outcome = self._claim_one(uow, delivery, contacts.get(str(delivery["contact_id"])), allowed, now)
            if isinstance(outcome, tuple):
                message, content, shown_address = outcome
                claims.append((delivery, message, content, shown_address))
            else:
                outcomes[delivery_id] = outcome
        if claims:
            attempts = {row["id"]: row["attempts"] for row in uow.execute(
                "UPDATE campaigns.deliveries d SET status = 'sending', attempts = d.attempts + 1, content = c.content,"
                " address = c.address FROM unnest(%s::uuid[], %s::jsonb[], %s::text[]) AS c(id, content, address)"
                " WHERE d.tenant_id = %s AND d.id = c.id RETURNING d.id::text AS id, d.attempts",
                ([str(d["id"]) for d, *_ in claims], [Jsonb(content) for _, _, content, _ in claims],
                 [address for *_, address in claims], tenant_id),
            )}
            for delivery, message, _, _ in claims:
                delivery_id = str(delivery["id"])
                outcomes[delivery_id] = _Claimed(message, attempts[delivery_id],
                                                 _cost(delivery["cost_per_message"], message.channel))
        return outcomes

    def _claim_one(self, uow: UnitOfWork, delivery: Mapping[str, Any], row: Mapping[str, Any] | None,
                   allowed: set[tuple[str, str]], now: datetime) -> tuple[OutgoingMessage, dict[str, Any], str] | str:
        """The message to send for one locked, sendable delivery, with its content and the
        address to record; or what became of it instead (suppressed, failed)."""
        tenant_id, delivery_id = str(delivery["tenant_id"]), str(delivery["id"])
        channel, contact_id = delivery["channel"], str(delivery["contact_id"])

        def suppress(reason: str) -> str:
            set_status(uow, tenant_id, delivery_id, "suppressed", reason)
            return "suppressed"

        def fail(reason: str) -> str:
            set_status(uow, tenant_id, delivery_id, "failed", reason)
            return "failed"

        if row is None or (contact_id, CHANNEL_PURPOSE[channel]) not in allowed:
            return suppress(WITHDRAWN)
        if row["suppressed"]:
            return suppress(SUPPRESSION_LIST)
        network = None
        if channel == "social_dm":
            handle = choose_handle(audience_repo.handles_of(uow, tenant_id, contact_id), delivery["address"])
            if handle is None:
                return suppress(NO_ADDRESS)
            network = str(handle["network"])
            address = str(handle["network_user_id"] or "")
            shown_address = f"{network}:{handle['handle']}"
        else:
            address = shown_address = row["email"] if channel == "email" else row["phone"]
            if not address:
                return suppress(NO_ADDRESS)

        content = delivery["content"] if delivery["status"] == "sending" and delivery["content"] else None
        if content is None:
            source = self._source_content(uow, delivery)
            if source is None:
                return fail(NO_CONTENT)
            try:
                content = self.render(channel, source, contact_of(row), profile_of(row, now.date()),
                                      lambda target: self.links.click(tenant_id, delivery_id, target))
            except RenderFailed as exc:
                return fail(f"{RENDER_FAILED}: {exc}"[:500])
            content = self._with_open_pixel(channel, content, tenant_id, delivery_id)
        message = OutgoingMessage(
            delivery_id=delivery_id, tenant_id=tenant_id, channel=channel, address=address, content=content,
            network=network,
            unsubscribe_url=self.links.unsubscribe(tenant_id, delivery_id) if channel == "email" else None,
            status_callback=self.links.sms_callback() if channel == "sms" else None,
        )
        return message, content, shown_address

    def _source_content(self, uow: UnitOfWork, delivery: Mapping[str, Any]) -> dict[str, Any] | None:
        """The templates to render: the campaign's content (every channel's), or a trigger's (its
        one channel's, in the same shape)."""
        channel = delivery["channel"]
        if delivery["campaign_id"] is not None:
            content = delivery["campaign_content"] or {}
            return content if channel in content else None
        trigger = uow.execute(
            "SELECT content FROM campaigns.triggers WHERE tenant_id = %s AND id = %s",
            (delivery["tenant_id"], delivery["trigger_id"]),
        ).fetchone()
        return {channel: trigger["content"]} if trigger and trigger["content"] else None

    def _with_open_pixel(self, channel: str, content: dict[str, Any], tenant_id: str,
                         delivery_id: str) -> dict[str, Any]:
        """An email's HTML part ends with the open-tracking pixel (the tracking module's URL)."""
        if channel != "email" or not content.get("html"):
            return content
        pixel = self.links.open(tenant_id, delivery_id)
        if not pixel:
            return content
        tag = f'<img src="{html.escape(pixel, quote=True)}" width="1" height="1" alt="" style="display:none">'
        return {**content, "html": f"{content['html']}\n{tag}"}


def dispatch_handler(db: Database, adapters: Mapping[str, ChannelAdapter], render: Render, links: Links,
                     **options: Any) -> Handler:
    """The handler for `liaison.campaigns.dispatch.<channel>` (see the module docstring), bound to
    the worker's adapters (built once per process), the template renderer
    (templates.render_content) and the tracked links; `options` tune Sender's retries."""
    sender = Sender(db, adapters, links, render, **options)
    return sender.handle


def _cost(per_message: Mapping[str, Any] | None, channel: str) -> Decimal | None:
    raw = (per_message or {}).get(channel)
    if raw is None:
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
