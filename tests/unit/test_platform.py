import pytest

from services.identity.contacts import normalize_email, normalize_phone
from shared import errors
from shared.auth import CachedVerifier, Principal
from shared.consumer import topic_matches
from shared.ids import new_id
from shared.settings import Settings, SettingsError
from shared.web import decode_cursor, encode_cursor

GOOD_ENV = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1/test",
    "BROKER_URL": "amqp://guest:guest@127.0.0.1//",
    "LIAISON_SECRET_KEY": "s" * 32,
}


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("liaison.identity.contact.upserted", "liaison.identity.contact.upserted", True),
        ("liaison.*.erasure.completed", "liaison.campaigns.erasure.completed", True),
        ("liaison.*.erasure.completed", "liaison.erasure.completed", False),
        ("liaison.#", "liaison.enrichment.social.mention.negative", True),
        ("liaison.#.negative", "liaison.enrichment.social.mention.negative", True),
        ("#", "anything.at.all", True),
        ("liaison.enrichment.social.mention", "liaison.enrichment.social.mention.negative", False),
    ],
)
def test_topic_patterns_match_like_rabbitmq(pattern, key, matches):
    assert topic_matches(pattern, key) is matches


def test_cursor_round_trips_and_forged_cursors_are_refused():
    assert decode_cursor(encode_cursor("a", 2), 2) == ["a", "2"]
    assert decode_cursor(None, 1) is None
    for forged in ("not-base64!!", encode_cursor("a"), "W10"):
        with pytest.raises(errors.ValidationFailed):
            decode_cursor(forged, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"BROKER_URL": "kafka://x"}, "BROKER_URL"),
        ({"LIAISON_SECRET_KEY": "short"}, "LIAISON_SECRET_KEY"),
        ({"DB_POOL_MAX": "many"}, "DB_POOL_MAX"),
        ({"KEY_CACHE_SECONDS": "30"}, "KEY_CACHE_SECONDS"),
        ({"LIAISON_ADMIN_KEY": "short"}, "LIAISON_ADMIN_KEY"),
    ],
)
def test_a_bad_setting_is_named_at_start(change, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**GOOD_ENV, **change})


def test_key_answers_are_cached_only_for_the_ttl():
    answers = iter([Principal("k", "t", frozenset({"crm"})), None])
    calls = []

    class Store:
        def verify(self, key):
            calls.append(key)
            return next(answers)

    clock_value = [0.0]
    verifier = CachedVerifier(Store(), ttl=2.0, clock=lambda: clock_value[0])
    assert verifier.verify("lsn_a").scopes == {"crm"}
    clock_value[0] = 1.9
    assert verifier.verify("lsn_a") is not None  # still cached
    clock_value[0] = 2.1
    assert verifier.verify("lsn_a") is None  # revoked: seen once the entry expired
    assert len(calls) == 2


def test_ids_are_time_ordered_uuid7():
    ids = [new_id() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert [i.bytes[:6] for i in ids] == sorted(i.bytes[:6] for i in ids)
    assert len(set(ids)) == 1000


def test_phone_numbers_become_e164():
    assert normalize_phone("+33 6 12-34-56.78") == "+33612345678"
    assert normalize_phone("0033612345678") == "+33612345678"
    for bad in ("0612345678", "+0123", "+33 abc"):
        with pytest.raises(ValueError):
            normalize_phone(bad)


def test_emails_are_trimmed_and_folded():
    assert normalize_email("  Jeanne.Martin@Example.FR ") == "jeanne.martin@example.fr"
    with pytest.raises(ValueError):
        normalize_email("not-an-address")
