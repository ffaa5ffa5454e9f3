"""shared.secrets.SecretBox: AES-GCM sealing bound to a secret key, a purpose and a context."""

from __future__ import annotations

import pytest

from shared.secrets import NONCE_BYTES, TAG_BYTES, SecretBox, SecretUnreadable

KEY = "k" * 32
PURPOSE = b"liaison test secrets"
CONTEXT = b"tenant-a\x00x"


def test_a_sealed_value_opens_with_the_same_key_purpose_and_context():
    box = SecretBox(KEY, PURPOSE)
    sealed = box.seal(b'{"bearer_token": "AAAA-secret"}', CONTEXT)
    assert b"AAAA-secret" not in sealed
    assert len(sealed) == 1 + NONCE_BYTES + len(b'{"bearer_token": "AAAA-secret"}') + TAG_BYTES
    assert SecretBox(KEY, PURPOSE).open(sealed, CONTEXT) == b'{"bearer_token": "AAAA-secret"}'
    assert box.open(memoryview(sealed), CONTEXT) == b'{"bearer_token": "AAAA-secret"}'  # as psycopg reads bytea


def test_each_seal_draws_a_fresh_nonce():
    box = SecretBox(KEY, PURPOSE)
    first, second = box.seal(b"same", CONTEXT), box.seal(b"same", CONTEXT)
    assert first != second
    assert first[1:1 + NONCE_BYTES] != second[1:1 + NONCE_BYTES]


@pytest.mark.parametrize("box, context", [
    (SecretBox("another-secret-key-of-32-chars!!", PURPOSE), CONTEXT),  # another LIAISON_SECRET_KEY
    (SecretBox(KEY, b"another purpose"), CONTEXT),  # another use's derived key
    (SecretBox(KEY, PURPOSE), b"tenant-b\x00x"),  # copied to another tenant
    (SecretBox(KEY, PURPOSE), b"tenant-a\x00facebook"),  # or to another network
])
def test_it_does_not_open_with_another_key_purpose_or_context(box, context):
    sealed = SecretBox(KEY, PURPOSE).seal(b"secret", CONTEXT)
    with pytest.raises(SecretUnreadable):
        box.open(sealed, context)


def test_altered_or_truncated_bytes_do_not_open():
    box = SecretBox(KEY, PURPOSE)
    sealed = bytearray(box.seal(b"secret", CONTEXT))
    sealed[-1] ^= 1
    with pytest.raises(SecretUnreadable):
        box.open(bytes(sealed), CONTEXT)
    with pytest.raises(SecretUnreadable):
        box.open(b"\x01short", CONTEXT)
    with pytest.raises(SecretUnreadable):
        box.open(b"\x02" + bytes(sealed[1:]), CONTEXT)  # a version this code does not know


def test_it_needs_a_key_and_a_purpose_and_never_shows_the_key():
    with pytest.raises(ValueError):
        SecretBox("", PURPOSE)
    with pytest.raises(ValueError):
        SecretBox(KEY, b"")
    assert KEY not in repr(SecretBox(KEY, PURPOSE))
