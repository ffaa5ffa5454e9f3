"""Signed tracking tokens: what the open pixel, tracked links and one-click unsubscribe URLs
carry (CONTRACT section 4, Tracking). A token names the tenant, the delivery, what it is for
(o: open, c: click, u: unsubscribe) and, for a click, the target URL; it is signed, so a click
redirects only to a target we signed (no open redirect) and a forged or altered token is
refused (the endpoints answer 404).

Format: urlsafe base64 (no padding) of
    version (1 byte) | kind (1 byte: o, c, u) | tenant id (16 bytes) | delivery id (16 bytes)
    | target (UTF-8, clicks only) | MAC (16 bytes)
where MAC is HMAC-SHA256 of everything before it, truncated to 128 bits, under a key derived
from LIAISON_SECRET_KEY (HMAC-SHA256 of the label below), so the tracking key is not the key
other features derive theirs from.

The use cases of the endpoints (counting opens and clicks, one-click unsubscribe) follow."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from services.campaigns import CHANNEL_PURPOSE, SCHEMA, SOURCE
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow
from shared.settings import Settings, SettingsError

VERSION = 1
KINDS = {"o": "open", "c": "click", "u": "unsubscribe"}
MAC_BYTES = 16
_LABEL = b"liaison campaigns tracking"
_HEAD = 2 + 16 + 16
PATHS = {"o": "/t/o/", "c": "/t/c/", "u": "/t/u/"}
MAX_TARGET = 2_000  # bytes: longer URLs break in mail clients anyway


@dataclass(frozen=True)
class Claims:
    tenant_id: str
    delivery_id: str
    kind: str          # "o", "c" or "u"
    target: str | None = None  # clicks only


def public_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The base URL recipients reach campaigns' tracking endpoints at: CAMPAIGNS_PUBLIC_URL, else
    CAMPAIGNS_URL. Read here rather than in Settings because only tracking needs it."""
    raw = (os.environ if env is None else env).get("CAMPAIGNS_PUBLIC_URL") or settings.campaigns_url
    if urlsplit(raw).scheme not in ("http", "https") or not urlsplit(raw).netloc:
        raise SettingsError("CAMPAIGNS_PUBLIC_URL must be an http:// or https:// URL")
    return raw.rstrip("/")


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), payload, hashlib.sha256).digest()[:MAC_BYTES]


def is_web_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def token(secret: str, tenant_id: str, delivery_id: str, kind: str, target: str | None = None) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    if (kind == "c") != (target is not None):
        raise ValueError("a click token, and only it, carries a target")
    if target is not None and not is_web_url(target):
        raise ValueError("a click's target must be an http or https URL")
    payload = bytes([VERSION]) + kind.encode() + uuid.UUID(str(tenant_id)).bytes + uuid.UUID(str(delivery_id)).bytes
    if target is not None:
        encoded = target.encode()
        if len(encoded) > MAX_TARGET:
            raise ValueError(f"a click's target is limited to {MAX_TARGET} bytes")
        payload += encoded
    return base64.urlsafe_b64encode(payload + _mac(secret, payload)).decode().rstrip("=")


def open_url(public_url: str, secret: str, tenant_id: str, delivery_id: str) -> str:
    return public_url.rstrip("/") + PATHS["o"] + token(secret, tenant_id, delivery_id, "o")


def click_url(public_url: str, secret: str, tenant_id: str, delivery_id: str, target: str) -> str:
    return public_url.rstrip("/") + PATHS["c"] + token(secret, tenant_id, delivery_id, "c", target)


def unsubscribe_url(public_url: str, secret: str, tenant_id: str, delivery_id: str) -> str:
    return public_url.rstrip("/") + PATHS["u"] + token(secret, tenant_id, delivery_id, "u")


def linker(public_url: str, secret: str, tenant_id: str, delivery_id: str) -> Callable[[str], str]:
    """The `link` a template renders with (templates.render_content) for one delivery."""
    return lambda target: click_url(public_url, secret, tenant_id, delivery_id, target)


def read(secret: str, value: str) -> Claims | None:
    """The claims of a token we signed; None for anything else (forged, altered, truncated,
    signed with another secret, garbled)."""
    if not isinstance(value, str) or not 0 < len(value) <= 4 * (_HEAD + MAX_TARGET + MAC_BYTES):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < _HEAD + MAC_BYTES:
        return None
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    kind = chr(payload[1])
    if payload[0] != VERSION or kind not in KINDS:
        return None
    tenant_id, delivery_id = str(uuid.UUID(bytes=payload[2:18])), str(uuid.UUID(bytes=payload[18:34]))
    target = None
    if kind == "c":
        try:
            target = payload[_HEAD:].decode()
        except UnicodeDecodeError:
            return None
        if not is_web_url(target):
            return None
    elif len(payload) != _HEAD:
        return None
    return Claims(tenant_id, delivery_id, kind, target)


# -- use cases of the tracking endpoints -------------------------------------------------------
UNSUBSCRIBE_REQUESTED = "liaison.campaigns.unsubscribe.requested"
# The record id of a withdrawal campaigns applies itself before identity records it: sorts before
# every real record id, so identity's record of the same moment (consent.recorded) replaces it.
PROVISIONAL_RECORD = "00000000-0000-0000-0000-000000000000"


def record_open(uow: UnitOfWork, claims: Claims) -> bool:
    """Counts an open of the delivery; False when there is no such delivery (erased)."""
    return uow.execute(
        "UPDATE campaigns.deliveries SET opens = opens + 1, opened_at = coalesce(opened_at, now())"
        " WHERE tenant_id = %s AND id = %s RETURNING 1",
        (claims.tenant_id, claims.delivery_id),
    ).fetchone() is not None


def record_click(uow: UnitOfWork, claims: Claims) -> bool:
    """Counts a click; a click is an open too when no open was seen (the pixel was blocked)."""
    return uow.execute(
        "UPDATE campaigns.deliveries SET clicks = clicks + 1, clicked_at = coalesce(clicked_at, now()),"
        " opens = greatest(opens, 1), opened_at = coalesce(opened_at, now())"
        " WHERE tenant_id = %s AND id = %s RETURNING 1",
        (claims.tenant_id, claims.delivery_id),
    ).fetchone() is not None


def _delivery(uow: UnitOfWork, claims: Claims) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT contact_id, channel, campaign_id, trigger_id FROM campaigns.deliveries"
        " WHERE tenant_id = %s AND id = %s", (claims.tenant_id, claims.delivery_id),
    ).fetchone()


def subscription(uow: UnitOfWork, claims: Claims) -> dict[str, Any] | None:
    """{"channel", "purpose", "unsubscribed"} of the delivery's contact, None without the delivery."""
    delivery = _delivery(uow, claims)
    if delivery is None:
        return None
    purpose = CHANNEL_PURPOSE[delivery["channel"]]
    row = uow.execute(
        "SELECT status FROM campaigns.audience_consents WHERE tenant_id = %s AND contact_id = %s AND purpose = %s",
        (claims.tenant_id, delivery["contact_id"], purpose),
    ).fetchone()
    return {"channel": delivery["channel"], "purpose": purpose,
            "unsubscribed": row is not None and row["status"] == "withdrawn"}


def unsubscribe(uow: UnitOfWork, claims: Claims, *, now: datetime | None = None) -> dict[str, Any] | None:
    """One-click unsubscribe from the delivery's channel: in this transaction, the contact's
    consent for the channel's purpose is withdrawn in the audience (so no send after this one
    slips through, launch or send checking it) and `unsubscribe.requested` goes to identity,
    which records the withdrawal in the ledger. A contact already withdrawn changes nothing and
    publishes nothing (a repeated POST, a mail client retrying). None without the delivery."""
    delivery = _delivery(uow, claims)
    if delivery is None:
        return None
    now = now or utcnow()
    channel, contact_id = delivery["channel"], str(delivery["contact_id"])
    purpose = CHANNEL_PURPOSE[channel]
    # The row lock of the upsert serialises two simultaneous requests: the second sees
    # `withdrawn` and changes nothing.
    changed = uow.execute(
        "INSERT INTO campaigns.audience_consents AS c (tenant_id, contact_id, purpose, status, record_id,"
        " captured_at, expires_at) VALUES (%s, %s, %s, 'withdrawn', %s, %s, NULL)"
        " ON CONFLICT (tenant_id, contact_id, purpose) DO UPDATE SET status = 'withdrawn',"
        " record_id = EXCLUDED.record_id, captured_at = EXCLUDED.captured_at, expires_at = NULL"
        " WHERE c.status <> 'withdrawn' RETURNING 1",
        (claims.tenant_id, contact_id, purpose, PROVISIONAL_RECORD, now),
    ).fetchone() is not None
    if changed:
        uow.publish(SCHEMA, CloudEvent(UNSUBSCRIBE_REQUESTED, SOURCE, claims.tenant_id, {
            "contact_id": contact_id,
            "purpose": purpose,
            "channel": channel,
            "delivery_id": claims.delivery_id,
            "campaign_id": str(delivery["campaign_id"]) if delivery["campaign_id"] else None,
            "trigger_id": str(delivery["trigger_id"]) if delivery["trigger_id"] else None,
            "at": rfc3339(now),
        }, subject=contact_id))
    return {"channel": channel, "purpose": purpose, "unsubscribed": True, "changed": changed}
