"""API keys, scopes and tenancy.

A key is `lsn_` followed by 32 random bytes (URL-safe base64); only its SHA-256 is stored, which
is enough for a secret of that entropy and keeps the lookup one indexed equality. identity owns
the keys; the other services ask it (`GET /v1/api-keys/current`) and cache the answer for at most
`KEY_CACHE_SECONDS` (2 s by default), so a revoked key stops working everywhere within that."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import requests

from shared import errors

SCOPES = ("crm", "marketing", "compliance")
ADMIN = "admin"
KEY_PREFIX = "lsn_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's key with its scopes, or the operator's admin key."""

    key_id: str | None
    tenant_id: str | None
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def actor(self) -> str:
        return "admin" if self.is_admin else f"key:{self.key_id}"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyVerifier(Protocol):
    def verify(self, key: str) -> Principal | None: ...


class AdminAwareVerifier:
    """Recognises the operator's admin key before asking the tenant key store."""

    def __init__(self, admin_key: str, inner: KeyVerifier):
        self.admin_key = admin_key
        self.inner = inner
        self._admin = Principal(None, None, frozenset({ADMIN}))

    def verify(self, key: str) -> Principal | None:
        if self.admin_key and hmac.compare_digest(key.encode(), self.admin_key.encode()):
            return self._admin
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        return self.inner.verify(key)


class CachedVerifier:
    """Remembers answers (including "unknown key") for `ttl` seconds per process."""

    def __init__(self, inner: KeyVerifier, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.inner = inner
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def verify(self, key: str) -> Principal | None:
        # Keyed by the key itself: a dict lookup, no hashing on the hot path of every request.
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        principal = self.inner.verify(key)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[key] = (now + self.ttl, principal)
        return principal


class RemoteVerifier:
    """Asks identity who a key belongs to; for the services that do not own the keys."""

    def __init__(self, identity_url: str, timeout: float = 2.0):
        self.url = identity_url.rstrip("/") + "/v1/api-keys/current"
        self.timeout = timeout
        self.session = requests.Session()

    def verify(self, key: str) -> Principal | None:
        try:
            response = self.session.get(
                self.url, headers={"Authorization": f"Bearer {key}"}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise errors.Unavailable("identity, which checks API keys, did not answer; retry shortly.") from exc
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise errors.Unavailable(f"identity answered {response.status_code} when asked about the API key.")
        body = response.json()
        return Principal(body["id"], body["tenant_id"], frozenset(body["scopes"]))
