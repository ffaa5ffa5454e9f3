"""Secrets kept at rest: AES-256-GCM with a key derived from LIAISON_SECRET_KEY.

`SecretBox(secret_key, purpose)` derives its own key with HKDF-SHA256 (`info=purpose`), so each use
(say, enrichment's provider credentials) has a key of its own and a leak of one use's key does
not open the others. `seal` draws a fresh 12-byte nonce per call and stores it with the
ciphertext; `context` is authenticated but not stored (GCM's associated data): the caller passes
what the value belongs to (a tenant and a record), and a sealed value copied to another record
fails to open there.

Stored form: one version byte, the nonce, then the ciphertext with GCM's 16-byte tag. The version
leaves room for a later key rotation; there is one version today.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
NONCE_BYTES = 12  # GCM's standard nonce; random nonces are safe far beyond our write volume
TAG_BYTES = 16


class SecretUnreadable(ValueError):
    """A sealed value that does not open: another secret key, another context, or altered bytes."""


class SecretBox:
    def __init__(self, secret_key: str, purpose: bytes):
        if not secret_key:
            raise ValueError("a secret key is needed to seal or open secrets")
        if not purpose:
            raise ValueError("a purpose is needed, so each use derives its own key")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret_key.encode())
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        sealed = bytes(sealed)  # psycopg hands bytea back as a memoryview
        if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[:1] != VERSION:
            raise SecretUnreadable("not a sealed value")
        nonce, ciphertext = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, context)
        except InvalidTag:
            raise SecretUnreadable(
                "the sealed value does not open: another secret key, another context, or altered bytes"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(...)"  # never the key
