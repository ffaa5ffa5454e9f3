"""Sending: what a channel worker does with a dispatch batch (services.campaigns.dispatch).

For each delivery id of the batch, in order:

1. claim, in a short transaction that locks the delivery: only a `queued` delivery, a `sending`
   one (its worker died after handing it to the provider) or a `deferred` one whose time has
   come goes on; anything else (sent, failed, suppressed, a cancelled campaign's) is skipped, so a
   redelivered batch sends nothing twice. Consent for the channel's purpose is checked again
   (CHANNEL_PURPOSE; an expired grant is no grant): without it the delivery is `suppressed` with
   reason `withdrawn`, and a contact on the suppression list is `suppressed` with reason
   `suppression_list`; a contact with no address left, `suppressed` with `no_address`. The
   message is rendered (services.campaigns.templates, tracked links from the injected `Links`)
   and the delivery becomes `sending`, attempts + 1, with `content` = exactly what is sent. A
   delivery found `sending` keeps the content it already had: the message sent again is the
   same message.
2. send, outside any transaction, retrying transient errors with exponential backoff (3 tries).
   The idempotency key is the delivery id (Twilio's I-Twilio-Idempotency-Token, the email's
   Message-ID), so the provider recognises a message sent again after a crash.
3. record, in a short transaction: `sent` with sent_at, provider_message_id and cost (the
   campaign's cost_per_message for the channel when set, else the provider's price), or
   `failed` with the reason of a permanent error.

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
from collections.abc import Callable, Mapping
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
    now: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep

    # -- the batch -------------------------------------------------------------------------
    def handle(self, uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        tenant_id = envelope["tenantid"]
        later = [delivery_id for delivery_id in envelope["data"]["delivery_ids"]
                 if self.send_one(tenant_id, delivery_id) == "later"]
        if later:
            raise BatchIncomplete(f"{len(later)} deliveries could not reach their provider; the batch is retried")

    def send_one(self, tenant_id: str, delivery_id: str) -> str:
        """Claims, sends and records one delivery; returns its status afterwards, `skipped` when
        it was not to send, or `later` when its provider stayed unavailable."""
        with self.db.transaction() as uow:
            claimed = self._claim(uow, tenant_id, delivery_id)
        if not isinstance(claimed, _Claimed):
            return claimed
        message = claimed.message
        try:
            result = self._send(message)
        except PermanentSendError as exc:
            return self._fail(message, exc.describe())
        except TransientSendError as exc:
            if claimed.attempts >= self.max_delivery_attempts:
                return self._fail(message, exc.describe())
            log.warning("provider unavailable; the delivery waits for the batch's retry",
                        extra={"delivery_id": delivery_id, "channel": message.channel, "error": exc.describe()})
            return "later"
        cost = claimed.cost_per_message if claimed.cost_per_message is not None else result.cost
        with self.db.transaction() as uow:
            set_status(uow, tenant_id, delivery_id, "sent", only_from=("sending",), sent_at=self.now(),
                       provider_message_id=result.provider_message_id, cost=cost)
        return "sent"

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

    def _fail(self, message: OutgoingMessage, reason: str) -> str:
        with self.db.transaction() as uow:
            set_status(uow, message.tenant_id, message.delivery_id, "failed", reason, only_from=("sending",))
        return "failed"

    def _claim(self, uow: UnitOfWork, tenant_id: str, delivery_id: str) -> _Claimed | str:
        now = self.now()
        delivery = uow.execute(
            "SELECT d.*, c.content AS campaign_content, c.cost_per_message, c.status AS campaign_status"
            " FROM campaigns.deliveries d LEFT JOIN campaigns.campaigns c"
            " ON c.tenant_id = d.tenant_id AND c.id = d.campaign_id"
            " WHERE d.tenant_id = %s AND d.id = %s FOR UPDATE OF d",
            (tenant_id, delivery_id),
        ).fetchone()
        if delivery is None or delivery["status"] not in SENDABLE or delivery["campaign_status"] == "cancelled":
            return "skipped"
        if delivery["status"] == "deferred" and (delivery["send_after"] is None or delivery["send_after"] > now):
            return "skipped"
        channel, contact_id = delivery["channel"], str(delivery["contact_id"])

        def suppress(reason: str) -> str:
            set_status(uow, tenant_id, delivery_id, "suppressed", reason)
            return "suppressed"

        def fail(reason: str) -> str:
            set_status(uow, tenant_id, delivery_id, "failed", reason)
            return "failed"

        row = audience_repo.contact(uow, tenant_id, contact_id)
        if row is None or not audience_repo.is_allowed(uow, tenant_id, contact_id, CHANNEL_PURPOSE[channel], now):
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
        attempts = uow.execute(
            "UPDATE campaigns.deliveries SET status = 'sending', attempts = attempts + 1, content = %s, address = %s"
            " WHERE tenant_id = %s AND id = %s RETURNING attempts",
            (Jsonb(content), shown_address, tenant_id, delivery_id),
        ).fetchone()["attempts"]
        message = OutgoingMessage(
            delivery_id=delivery_id, tenant_id=tenant_id, channel=channel, address=address, content=content,
            network=network,
            unsubscribe_url=self.links.unsubscribe(tenant_id, delivery_id) if channel == "email" else None,
            status_callback=self.links.sms_callback() if channel == "sms" else None,
        )
        return _Claimed(message, attempts, _cost(delivery["cost_per_message"], channel))

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
