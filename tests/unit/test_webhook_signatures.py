"""The webhook signature is Stripe's scheme: HMAC-SHA256 keyed with the whole secret over
`{t}.{raw body}`, one `v1=` per live secret; and the event-type patterns an endpoint subscribes with."""

import hashlib
import hmac

import pytest

from services.webhooks.events import matches, unknown_event_types
from services.webhooks.signatures import new_secret, sign, signature_header
from tests.integration.test_webhooks import verify_liaison_signature

SECRET = "whsec_test_secret"
BODY = b'{"id":"evt_1","type":"liaison.identity.consent.recorded"}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == sign(SECRET, 1700000000, BODY.decode()) == expected
    assert signature_header([SECRET], 1700000000, BODY) == f"t=1700000000,v1={expected}"


def test_during_a_rotation_each_secret_signs_and_either_verifies():
    old, new = new_secret(), new_secret()
    assert old.startswith("whsec_") and old != new
    header = signature_header([new, old], 1700000000, BODY)
    assert header.count(",v1=") == 2 and header.index(sign(new, 1700000000, BODY)) < header.index(
        sign(old, 1700000000, BODY))
    for secret in (new, old):
        assert verify_liaison_signature(secret, header, BODY, now=1700000100)
    assert not verify_liaison_signature(new_secret(), header, BODY, now=1700000100)
    assert not verify_liaison_signature(new, header, BODY, now=1700000000 + 301)
    assert not verify_liaison_signature(new, "v1=" + sign(new, 1700000000, BODY), BODY, now=1700000000)
    with pytest.raises(ValueError):
        signature_header([], 1700000000, BODY)


@pytest.mark.parametrize(("pattern", "event_type", "expected"), [
    ("*", "liaison.campaigns.delivery.updated", True),
    ("liaison.identity.*", "liaison.identity.consent.recorded", True),
    ("liaison.enrichment.social.mention.*", "liaison.enrichment.social.mention.negative", True),
    ("liaison.enrichment.social.mention", "liaison.enrichment.social.mention.negative", False),
    ("liaison.identity.*", "liaison.identityx.consent.recorded", False),
    ("liaison.ident*", "liaison.identity.consent.recorded", False),
])
def test_patterns_cover_whole_words(pattern, event_type, expected):
    assert matches(pattern, event_type) is expected


def test_only_the_contracts_event_types_or_patterns_over_them_are_accepted():
    assert unknown_event_types(["liaison.identity.consent.recorded", "liaison.campaigns.*", "*"]) == []
    assert unknown_event_types(["liaison.billing.*", "liaison.identity.contact.deleted", "liaison.ident*"]) == [
        "liaison.billing.*", "liaison.identity.contact.deleted", "liaison.ident*"]
