"""Signing webhook requests as Stripe does: `Liaison-Signature: t=<unix seconds>,v1=<hex>`, where
the hex is HMAC-SHA256 keyed with the endpoint's secret (the whole `whsec_...` string, as UTF-8)
over `f"{t}.{body}"`. During a secret rotation each live secret adds its own `v1=` (the new one
first), so a receiver that knows either secret accepts the request."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
HEADER = "Liaison-Signature"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def signature_header(live_secrets: list[str], timestamp: int, body: str | bytes) -> str:
    """The Liaison-Signature value: `t=` then one `v1=` per live secret, in the order given."""
    if not live_secrets:
        raise ValueError("at least one secret signs a delivery")
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in live_secrets)])
