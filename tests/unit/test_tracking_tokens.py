"""Tracking tokens: they round-trip, anything forged, altered, truncated or signed with another
secret reads as None, and a click token only ever leads to the target it was signed with."""

from __future__ import annotations

import base64
import uuid

import pytest

from services.campaigns import tracking
from services.campaigns.tracking import Claims
from shared.settings import Settings, SettingsError

SECRET = "s3cret-s3cret-s3cret"
TENANT, DELIVERY = str(uuid.uuid4()), str(uuid.uuid4())
BASE = "https://go.example"


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def raw(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_round_trip_of_each_kind():
    opened = tracking.open_url(BASE + "/", SECRET, TENANT, DELIVERY)
    assert opened.startswith("https://go.example/t/o/")
    assert tracking.read(SECRET, token_of(opened)) == Claims(TENANT, DELIVERY, "o")
    target = "https://shop.example/offer?x=1&utm=é#top"
    clicked = tracking.click_url(BASE, SECRET, TENANT, DELIVERY, target)
    assert clicked.startswith("https://go.example/t/c/")
    assert tracking.read(SECRET, token_of(clicked)) == Claims(TENANT, DELIVERY, "c", target)
    unsub = tracking.unsubscribe_url(BASE, SECRET, TENANT, DELIVERY)
    assert unsub.startswith("https://go.example/t/u/")
    assert tracking.read(SECRET, token_of(unsub)) == Claims(TENANT, DELIVERY, "u")
    assert tracking.linker(BASE, SECRET, TENANT, DELIVERY)(target) == clicked
    # The token is URL-safe and the MAC is 128 bits.
    assert set(token_of(clicked)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(raw(token_of(opened))) == 2 + 16 + 16 + 16


def test_other_secret_forged_altered_or_garbled_tokens_are_refused():
    good = token_of(tracking.click_url(BASE, SECRET, TENANT, DELIVERY, "https://shop.example/"))
    assert tracking.read("another-secret-of-16+", good) is None
    data = bytearray(raw(good))
    for index in (0, 1, 5, 20, 40, len(data) - 1):
        altered = bytearray(data)
        altered[index] ^= 0x01
        assert tracking.read(SECRET, encode(bytes(altered))) is None, index
    for garbled in ("", "x", "!!!!", good[:-2], good + "AA", "A" * 60, "é" * 10, "A" * 100_000):
        assert tracking.read(SECRET, garbled) is None


def test_no_open_redirect():
    good = raw(token_of(tracking.click_url(BASE, SECRET, TENANT, DELIVERY, "https://shop.example/")))
    payload, mac = good[:-16], good[-16:]
    # Another target with the original MAC, or appended after the signed token: refused.
    assert tracking.read(SECRET, encode(payload[:34] + b"https://evil.example/" + mac)) is None
    assert tracking.read(SECRET, encode(good) + encode(b"https://evil.example/")) is None
    # An open or unsubscribe token cannot be turned into a click.
    opened = raw(token_of(tracking.open_url(BASE, SECRET, TENANT, DELIVERY)))
    assert tracking.read(SECRET, encode(opened[:1] + b"c" + opened[2:])) is None
    # Only http(s) targets can be signed at all.
    for target in ("javascript:alert(1)", "//evil.example", "data:text/html,x"):
        with pytest.raises(ValueError):
            tracking.click_url(BASE, SECRET, TENANT, DELIVERY, target)


def test_a_click_target_must_be_signed_with_it_and_only_clicks_carry_one():
    with pytest.raises(ValueError):
        tracking.token(SECRET, TENANT, DELIVERY, "o", "https://shop.example/")
    with pytest.raises(ValueError):
        tracking.token(SECRET, TENANT, DELIVERY, "c")
    with pytest.raises(ValueError):
        tracking.token(SECRET, TENANT, DELIVERY, "x")


def test_public_url_setting():
    settings = Settings(database_url="postgresql://x", broker_url="amqp://x", admin_key="", secret_key=SECRET,
                        campaigns_url="http://127.0.0.1:8003/")
    assert tracking.public_url(settings, {}) == "http://127.0.0.1:8003"
    assert tracking.public_url(settings, {"CAMPAIGNS_PUBLIC_URL": "https://go.example/"}) == "https://go.example"
    with pytest.raises(SettingsError):
        tracking.public_url(settings, {"CAMPAIGNS_PUBLIC_URL": "go.example"})
