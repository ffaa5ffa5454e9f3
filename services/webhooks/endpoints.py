"""Endpoints: the URLs of a tenant's CRM that receive its events, with the event types they want
and the secret that signs what they receive (shown once, at creation and at each rotation)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from services.webhooks import PING, SOURCE
from services.webhooks.events import encode, unknown_event_types
from services.webhooks.repository import deliveries as delivery_repo
from services.webhooks.repository import endpoints as repo
from services.webhooks.signatures import new_secret
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339
from shared.ids import new_id
from shared.secrets import SecretBox

SECRET_PURPOSE = b"liaison.webhooks.endpoint-secret"
# As Stripe: after a rotation the old secret keeps signing (a second v1=) for a day by default.
ROTATION_OVERLAP = timedelta(hours=24)
LOCAL_HOSTS = {"localhost"}
DISABLED_BY_USER = "disabled with PATCH enabled=false"


def secret_box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key, SECRET_PURPOSE)


def secret_context(tenant_id: str, endpoint_id: str) -> bytes:
    return f"{tenant_id}/{endpoint_id}".encode()


def url_problems(url: str) -> list[str]:
    """Why `url` cannot receive webhooks: https only, plain http only to this machine (for local
    development and the sandbox)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return ["Not a valid URL."]
    if parts.scheme not in ("http", "https") or not host:
        return ["Must be an absolute https:// URL."]
    if parts.scheme == "http" and not _is_loopback(host):
        return ["Must use https:// (plain http:// is accepted only for localhost and 127.0.0.1)."]
    return []


def _is_loopback(host: str) -> bool:
    if host.lower() in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(body: dict[str, Any]) -> None:
    """The checks a marshmallow schema cannot make alone: a usable URL, known event types."""
    problems: dict[str, list[str]] = {}
    if "url" in body and (bad_url := url_problems(body["url"])):
        problems["url"] = bad_url
    if "event_types" in body and (unknown := unknown_event_types(body["event_types"])):
        problems["event_types"] = [f"Unknown event type or pattern: {', '.join(unknown)}. Use the contract's "
                                   "types (GET the OpenAPI description), `<prefix>.*` or `*`."]
    if problems:
        raise errors.ValidationFailed(problems)


def view(row: dict[str, Any], *, secret: str | None = None) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "url": row["url"],
        "description": row["description"],
        "event_types": list(row["event_types"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "previous_secret_expires_at": rfc3339(row["previous_secret_until"]) if row["previous_secret_until"] else None,
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }
    if secret is not None:
        out["secret"] = secret
    return out


def create(uow: UnitOfWork, box: SecretBox, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    check(body)
    endpoint_id = str(new_id())
    secret = new_secret()
    row = repo.insert(uow, tenant_id, {
        "id": endpoint_id, "url": body["url"], "description": body.get("description") or "",
        "event_types": list(dict.fromkeys(body["event_types"])), "enabled": body.get("enabled", True),
        "secret": box.seal(secret.encode(), secret_context(tenant_id, endpoint_id)),
    })
    return view(row, secret=secret)


def get(uow: UnitOfWork, tenant_id: str, endpoint_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, endpoint_id, lock=lock)
    if row is None:
        raise errors.NotFound.of("webhook", endpoint_id)
    return row


def update(uow: UnitOfWork, tenant_id: str, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
    check(body)
    row = get(uow, tenant_id, endpoint_id, lock=True)
    changes: dict[str, Any] = {name: body[name] for name in ("url", "description") if name in body}
    if "event_types" in body:
        changes["event_types"] = list(dict.fromkeys(body["event_types"]))
    if "enabled" in body and body["enabled"] != row["enabled"]:
        changes["enabled"] = body["enabled"]
        changes["disabled_reason"] = None if body["enabled"] else DISABLED_BY_USER
        if not body["enabled"]:
            delivery_repo.fail_pending_of_endpoint(uow, tenant_id, endpoint_id, "not sent: the endpoint was disabled")
    if not changes:
        return view(row)
    return view(repo.update(uow, tenant_id, endpoint_id, changes))


def disable_gone(uow: UnitOfWork, tenant_id: str, endpoint_id: str) -> None:
    """The receiver answered 410 Gone: it says it will never take these again."""
    row = repo.get(uow, tenant_id, endpoint_id, lock=True)
    if row is None or not row["enabled"]:
        return
    repo.update(uow, tenant_id, endpoint_id, {"enabled": False, "disabled_reason": "the receiver answered 410 Gone"})
    delivery_repo.fail_pending_of_endpoint(uow, tenant_id, endpoint_id, "not sent: the receiver answered 410 Gone")


def delete(uow: UnitOfWork, tenant_id: str, endpoint_id: str) -> None:
    if not repo.delete(uow, tenant_id, endpoint_id):
        raise errors.NotFound.of("webhook", endpoint_id)


def rotate_secret(uow: UnitOfWork, box: SecretBox, tenant_id: str, endpoint_id: str, overlap: timedelta,
                  now: datetime) -> dict[str, Any]:
    """A new secret; the current one keeps signing alongside it for `overlap` (none: at once)."""
    row = get(uow, tenant_id, endpoint_id, lock=True)
    secret = new_secret()
    context = secret_context(tenant_id, endpoint_id)
    previous, until = (row["secret"], now + overlap) if overlap > timedelta(0) else (None, None)
    row = repo.rotate(uow, tenant_id, endpoint_id, box.seal(secret.encode(), context), previous, until)
    return view(row, secret=secret)


def live_secrets(box: SecretBox, tenant_id: str, endpoint_id: str, row: dict[str, Any], now: datetime) -> list[str]:
    """The secrets that sign a request sent at `now`: the current one, then the previous one while
    its rotation overlap lasts."""
    context = secret_context(tenant_id, endpoint_id)
    found = [box.open(row["secret"], context).decode()]
    if row["previous_secret"] is not None and row["previous_secret_until"] and row["previous_secret_until"] > now:
        found.append(box.open(row["previous_secret"], context).decode())
    return found


def ping_event(tenant_id: str, endpoint_id: str) -> CloudEvent:
    return CloudEvent(PING, SOURCE, tenant_id, {"webhook_id": endpoint_id})


def ping(uow: UnitOfWork, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
    """A `liaison.webhooks.ping` delivery to this endpoint alone, sent by the worker like any other."""
    get(uow, tenant_id, endpoint_id)
    envelope = ping_event(tenant_id, endpoint_id).envelope()
    return delivery_repo.insert_one(uow, tenant_id, endpoint_id, envelope, encode(envelope))
