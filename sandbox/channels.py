"""The campaigns' channel providers, as the adapters in services/campaigns/channels/ call them,
and the outbox that counts what they received.

    POST /2010-04-01/Accounts/<sid>/Messages.json             Twilio Programmable Messaging (SMS)
    POST /2/dm_conversations/with/<participant_id>/messages   X API v2 direct message
    POST [/v19.0]/me/messages?access_token=...                Messenger Send API (Facebook, Instagram)
    GET  /sandbox/outbox[?channel=email|sms|social_dm]        what was received, each message once
                                [&payload=false]            (without the messages' contents)
    DELETE /sandbox/outbox[?channel=...]                      forget it (between demos or tests)

Email arrives through the SMTP sink (sandbox/smtp.py), which writes to the same outbox.

Each message is kept once, by its idempotency key: Twilio's `I-Twilio-Idempotency-Token` (the
same token gets the same sid back and is not counted again, as Twilio does), the email's
Message-ID, and for the DM APIs, which have none, the sandbox's own `X-Liaison-Delivery-Id`
header. An item's `received` says how many times it arrived: a test of exactly-once sending
counts items, and may check that repeats were recognised.

The outbox is a SQLite file (SANDBOX_STORE, var/sandbox/outbox.sqlite3 by default): gunicorn runs
the sandbox in several processes and the SMTP sink in another, which must all see one store; a
file next to the other local state needs no server, and survives a restart of PostgreSQL in a
fault test, which is when the count matters most.

SMS status callbacks: after accepting a message with a StatusCallback, the sandbox POSTs
`MessageStatus=delivered` to it, signed with X-Twilio-Signature (the account's auth token, as
Twilio does), SANDBOX_SMS_CALLBACK_DELAY seconds later (1 by default; `off` sends none).

Refusals in the providers' shapes: a missing token or one starting with `invalid` / `expired`; an
SMS number that is not a valid E.164 number (21211); a DM to a non-numeric X user id.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import phonenumbers
import requests
from flask import Blueprint, Response, request

from sandbox.providers import GRAPH_VERSION, _bearer, _graph_error, _json, _refused

log = logging.getLogger(__name__)

bp = Blueprint("channels", __name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STORE = ROOT / "var" / "sandbox" / "outbox.sqlite3"
DELIVERY_HEADER = "X-Liaison-Delivery-Id"
TWILIO_IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
CHANNELS = ("email", "sms", "social_dm")
X_SENDER_ID = "1500000000000000001"  # the sandbox's own X account, the other side of every DM conversation


# ---------------------------------------------------------------------------------------------
# The outbox


def store_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("SANDBOX_STORE") or DEFAULT_STORE)


class Outbox:
    """Messages received, once per (channel, key), in a SQLite file shared by processes."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()  # a connection per thread, opened on first use

    def _connection(self) -> sqlite3.Connection:
        # This thread's, kept open: opening SQLite and checking the table for every message cost more than the
        # message (the SMTP sink receives thousands a second in the fault tests).
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; a test tool
            conn.execute(
                "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,"
                " key TEXT NOT NULL, payload TEXT NOT NULL, received INTEGER NOT NULL, first_at TEXT NOT NULL,"
                " last_at TEXT NOT NULL, UNIQUE (channel, key))"
            )
            self._local.conn = conn
        return conn

    def record(self, channel: str, key: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Keeps the message unless (channel, key) is there already; returns the kept payload
        (the first one) and whether this was its first arrival."""
        now = datetime.now(UTC).isoformat()
        row = self._connection().execute(
            "INSERT INTO messages (channel, key, payload, received, first_at, last_at) VALUES (?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (channel, key) DO UPDATE SET received = received + 1, last_at = excluded.last_at"
            " RETURNING payload, received",
            (channel, key, json.dumps(payload), now, now),
        ).fetchone()
        return json.loads(row[0]), row[1] == 1

    def messages(self, channel: str | None = None, payload: bool = True) -> list[dict[str, Any]]:
        """What was received, in order; without the payloads when `payload` is false (a count
        of a hundred thousand emails needs their keys, not their bodies)."""
        rows = self._connection().execute(
            "SELECT channel, key, CASE WHEN ? THEN payload END, received, first_at, last_at FROM messages"
            " WHERE ? IS NULL OR channel = ? ORDER BY seq",
            (payload, channel, channel),
        ).fetchall()
        return [{"channel": r[0], "key": r[1], "received": r[3], "first_at": r[4], "last_at": r[5],
                 **({"payload": _readable(json.loads(r[2]))} if payload else {})} for r in rows]

    def clear(self, channel: str | None = None) -> int:
        return self._connection().execute(
            "DELETE FROM messages WHERE ? IS NULL OR channel = ?", (channel, channel)).rowcount


RAW = "raw_message"  # an email as the SMTP sink received it (bytes as latin-1 text), parsed when read
KEPT_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post")


def email_summary(raw: bytes) -> dict[str, Any]:
    """What the outbox shows of an email: its headers that matter, and its text and HTML parts."""
    mail: EmailMessage = message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    return {
        "headers": {name: str(mail[name]) for name in KEPT_HEADERS if mail[name] is not None},
        "content_type": mail.get_content_type(),
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    }


def _readable(payload: dict[str, Any]) -> dict[str, Any]:
    if RAW not in payload:
        return payload
    kept = {name: value for name, value in payload.items() if name != RAW}
    return {**kept, **email_summary(payload[RAW].encode("latin-1"))}


def outbox() -> Outbox:
    return _outbox(store_path())


@functools.lru_cache(maxsize=8)
def _outbox(path: Path) -> Outbox:
    """One Outbox per store, so that each thread of the process keeps its one connection."""
    return Outbox(path)


def _channel_arg() -> str | None:
    channel = request.args.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        raise ValueError(channel)
    return channel


@bp.get("/sandbox/outbox")
def list_outbox() -> Response:
    try:
        channel = _channel_arg()
    except ValueError:
        return _json({"status": 400, "message": f"channel is one of {', '.join(CHANNELS)}"}, 400)
    payload = request.args.get("payload", "true").lower() not in {"false", "0", "no"}
    items = outbox().messages(channel, payload=payload)
    return _json({"items": items, "count": len(items)})


@bp.delete("/sandbox/outbox")
def clear_outbox() -> Response:
    try:
        channel = _channel_arg()
    except ValueError:
        return _json({"status": 400, "message": f"channel is one of {', '.join(CHANNELS)}"}, 400)
    return _json({"deleted": outbox().clear(channel)})


def _stable_digits(*parts: str, length: int = 19) -> str:
    digest = int(hashlib.sha256(":".join(parts).encode()).hexdigest(), 16)
    return str(digest)[:length]


# ---------------------------------------------------------------------------------------------
# Twilio Programmable Messaging (https://www.twilio.com/docs/messaging/api/message-resource)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1, keyed by the auth token, of the URL followed by each
    POST parameter's name and value, sorted by name."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def _twilio_error(status: int, code: int, message: str) -> Response:
    return _json({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                  "status": status}, status)


def _valid_e164(number: str) -> bool:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) and number == phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.E164)


def _callback_delay() -> float | None:
    raw = (os.environ.get("SANDBOX_SMS_CALLBACK_DELAY") or "1").strip().lower()
    if raw == "off":
        return None
    try:
        return min(max(float(raw), 0.0), 60.0)
    except ValueError:
        return 1.0


def _send_status_callback(url: str, auth_token: str, form: dict[str, str], delay: float) -> None:
    """Runs on its own thread: the provider reports after it has answered the request."""
    time.sleep(delay)
    headers = {"X-Twilio-Signature": twilio_signature(auth_token, url, form)}
    for attempt in range(3):
        try:
            response = requests.post(url, data=form, headers=headers, timeout=(3.05, 10))
            if response.status_code < 500:
                return
        except requests.RequestException as exc:
            log.warning("sandbox: SMS status callback failed", extra={"url": url, "error": str(exc)})
        time.sleep(1.0 + attempt)


@bp.post("/2010-04-01/Accounts/<account_sid>/Messages.json")
def twilio_send_message(account_sid: str) -> Response:
    auth = request.authorization
    if auth is None or auth.username != account_sid or _refused(auth.password):
        return _twilio_error(401, 20003, "Authenticate")
    form = request.form
    to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
    if not to:
        return _twilio_error(400, 21604, "A 'To' phone number is required.")
    if not sender:
        return _twilio_error(400, 21603, "A 'From' phone number is required.")
    if not body:
        return _twilio_error(400, 21602, "Message body is required.")
    if not _valid_e164(to):
        return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    token = request.headers.get(TWILIO_IDEMPOTENCY_HEADER) or uuid.uuid4().hex
    sid = "SM" + hashlib.sha256(f"{account_sid}:{token}".encode()).hexdigest()[:32]
    now = format_datetime(datetime.now(UTC), usegmt=True)
    message = {
        "account_sid": account_sid, "api_version": "2010-04-01", "body": body, "date_created": now,
        "date_sent": None, "date_updated": now, "direction": "outbound-api", "error_code": None,
        "error_message": None, "from": sender, "messaging_service_sid": None, "num_media": "0",
        "num_segments": str(max(1, -(-len(body) // 160))), "price": None, "price_unit": "USD", "sid": sid,
        "status": "queued", "to": to, "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"},
    }
    kept, first = outbox().record("sms", sid, {**message, "status_callback": form.get("StatusCallback"),
                                               "idempotency_token": request.headers.get(TWILIO_IDEMPOTENCY_HEADER)})
    callback, delay = form.get("StatusCallback"), _callback_delay()
    if first and callback and delay is not None:
        report = {"AccountSid": account_sid, "ApiVersion": "2010-04-01", "From": sender, "MessageSid": sid,
                  "MessageStatus": "delivered", "SmsSid": sid, "SmsStatus": "delivered", "To": to}
        threading.Thread(target=_send_status_callback, args=(callback, auth.password, report, delay),
                         name="sms-status-callback", daemon=True).start()
    kept = {name: value for name, value in kept.items() if name not in ("status_callback", "idempotency_token")}
    return _json(kept, 201)


# ---------------------------------------------------------------------------------------------
# X API v2 direct messages (https://docs.x.com/x-api/direct-messages/create-dm-message-by-participant-id)


@bp.post("/2/dm_conversations/with/<participant_id>/messages")
def x_send_dm(participant_id: str) -> Response:
    if _refused(_bearer()):
        return _json({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}, 401)
    if not participant_id.isdigit():
        return _json({
            "errors": [{"parameters": {"participant_id": [participant_id]},
                        "message": f"The `participant_id` query parameter value [{participant_id}] is not valid"}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        }, 400)
    body = request.get_json(silent=True)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        return _json({
            "errors": [{"message": "Either text or attachments must be present"}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        }, 400)
    key = request.headers.get(DELIVERY_HEADER) or uuid.uuid4().hex
    data = {"dm_conversation_id": f"{X_SENDER_ID}-{participant_id}", "dm_event_id": _stable_digits("x", key)}
    outbox().record("social_dm", f"x:{key}", {"network": "x", "participant_id": participant_id, "text": text,
                                              "data": data})
    return _json({"data": data}, 201)


# ---------------------------------------------------------------------------------------------
# Messenger Send API (https://developers.facebook.com/docs/messenger-platform/send-messages)

MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})


@bp.post("/me/messages")
@bp.post("/<version>/me/messages")
def messenger_send(version: str | None = None) -> Response:
    if version is not None and not GRAPH_VERSION.match(version):
        return _graph_error(400, f"Unknown path components: /{version}/me/messages", 2500)
    if _refused(request.args.get("access_token")):
        return _graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _graph_error(400, "(#100) The parameter recipient is required", 100)
    recipient = body.get("recipient") if isinstance(body.get("recipient"), dict) else {}
    message = body.get("message") if isinstance(body.get("message"), dict) else {}
    if not recipient.get("id"):
        return _graph_error(400, "(#100) The parameter recipient is required", 100)
    if body.get("messaging_type") not in MESSAGING_TYPES:
        return _graph_error(400, "(#100) param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}", 100)
    if body.get("messaging_type") == "MESSAGE_TAG" and not body.get("tag"):
        return _graph_error(400, "(#100) Tag is required for MESSAGE_TAG messaging type", 100)
    if not isinstance(message.get("text"), str) or not message["text"]:
        return _graph_error(400, "(#100) param message must be non-empty.", 100)
    psid = str(recipient["id"])
    key = request.headers.get(DELIVERY_HEADER) or uuid.uuid4().hex
    answer = {"recipient_id": psid, "message_id": "m_" + hashlib.sha256(key.encode()).hexdigest()[:40]}
    outbox().record("social_dm", f"messenger:{key}", {
        "network": "messenger", "recipient_id": psid, "messaging_type": body["messaging_type"],
        "tag": body.get("tag"), "text": message["text"], "answer": answer,
    })
    return _json(answer)
