"""The suppression list: salted hashes of an erased contact's email, phone and handles. A hash,
not the value, so the list itself holds no personal data; salted per tenant (HMAC-SHA256), so it
cannot be matched against another tenant's list or a dictionary of common addresses."""

from __future__ import annotations

import hashlib
import hmac


def identifier_hash(salt: bytes, value: str) -> str:
    return hmac.new(salt, value.encode(), hashlib.sha256).hexdigest()


def contact_pairs(salt: bytes, email: str | None, phone: str | None) -> list[tuple[str, str]]:
    pairs = []
    if email:
        pairs.append(("email", identifier_hash(salt, email)))
    if phone:
        pairs.append(("phone", identifier_hash(salt, phone)))
    return pairs


def handle_pair(salt: bytes, network: str, handle: str) -> tuple[str, str]:
    return (f"handle:{network}", identifier_hash(salt, handle))
