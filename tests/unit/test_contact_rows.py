"""The bulk import's fast validator must give marshmallow's answer for every row it accepts.

Rows are generated from a fixed seed: each field is valid nine times in ten and otherwise one of
the malformed values CRMs send, so both the fast path and the fallback are exercised."""

import random

import marshmallow as ma

from services.identity.api.contact_rows import quick_load
from services.identity.api.contacts import ContactInSchema

schema = ContactInSchema()

JUNK = [3, 2.5, True, [1], {"a": 1}, "", "x" * 201]
FIELDS = {
    "email": (["a@b.co", " A@B.CO ", "jeanne.martin@example.fr", None], ["not-an-email", "a@b", "x@y.z w"]),
    "phone": (["+33612345678", "+33 6 12 34 56 78", "0033612345678", "+1 (415) 555-0100", None],
              ["0612", "+0", "+33 abc"]),
    "first_name": (["Ana", "Jean-Éric", "", None, "x" * 200], ["x" * 201]),
    "last_name": (["Martin", None, "O'Brien"], ["x" * 201]),
    "locale": (["fr-FR", "en_GB", "fr", "zh-Hant-TW", None], ["123", "f", "fr-"]),
    "timezone": (["Europe/Paris", "UTC", "America/New_York", None], ["Mars/Base", "europe/paris"]),
    "attributes": ([{}, {"tier": "gold"}, {"n": 1, "tags": ["a"], "nested": {"x": None}}],
                   [None, {"": 1}, {"k" * 101: 1}]),
}
CRM_REFS = (
    [{"system": "salesforce", "id": "001A"}, {"system": "h", "id": "x" * 200}, {"system": "s" * 100, "id": "1"}],
    [None, {"system": "sf"}, {"system": "sf", "id": "1", "extra": 1}, {"system": "x" * 101, "id": "1"},
     {"system": "sf", "id": 1}, {"system": "", "id": "1"}],
)


def pick(rng, valid, invalid):
    return rng.choice(valid) if rng.random() < 0.9 else rng.choice(invalid + JUNK)


def make_row(rng):
    if rng.random() < 0.03:
        return rng.choice(JUNK + [None, "row"])
    row = {"crm_ref": pick(rng, *CRM_REFS)}
    for name, (valid, invalid) in FIELDS.items():
        if rng.random() < 0.7:
            row[name] = pick(rng, valid, invalid)
    if rng.random() < 0.03:
        row["unknown_field"] = 1
    return row


def test_the_fast_path_agrees_with_marshmallow():
    rng = random.Random(20261123)
    fast_rows = 0
    for _ in range(20_000):
        row = make_row(rng)
        fast = quick_load(row)
        if fast is None:
            continue  # marshmallow decides, and words the errors
        fast_rows += 1
        try:
            expected = schema.load(row)
        except ma.ValidationError as error:
            raise AssertionError(f"fast path accepted {row!r}, marshmallow refuses: {error.messages}") from None
        assert fast == expected, row
    assert fast_rows > 5_000  # the generator really reaches the fast path


def test_a_typical_crm_row_takes_the_fast_path():
    row = {"crm_ref": {"system": "hubspot", "id": "123"}, "email": "A@B.CO", "phone": "+33 6 12 34 56 78",
           "first_name": "Ana", "last_name": None, "locale": "fr_FR", "timezone": "Europe/Paris",
           "attributes": {"tier": "gold"}}
    assert quick_load(row) == schema.load(row)
