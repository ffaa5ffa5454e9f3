"""The hash chain's rules, without a database: what is hashed, and what verification reports."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.identity.audit_chain import (
    GENESIS,
    canonical_at,
    check_chain,
    entry_hash,
    remote_entry,
)

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def chain(count):
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        row = {"seq": seq, "at": START + timedelta(seconds=seq), "actor": "key:k", "action": "contact.updated",
               "resource": f"contact/{seq}", "contact_id": None, "details": {"n": seq}, "prev_hash": prev}
        row["hash"] = entry_hash(prev, seq, row)
        prev = row["hash"]
        rows.append(row)
    return rows


def head_of(rows):
    return {"seq": rows[-1]["seq"], "hash": rows[-1]["hash"]}


def test_the_hash_is_sha256_of_the_previous_hash_and_canonical_json():
    entry = {"at": datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), "actor": "key:k",
             "action": "contact.created", "resource": "contact/1", "contact_id": None,
             "details": {"z": 1, "a": "é"}}
    expected = hashlib.sha256(
        (GENESIS + "\n" + '{"action":"contact.created","actor":"key:k","at":"2024-05-01T10:00:00.000000Z",'
         '"contact_id":null,"details":{"a":"é","z":1},"resource":"contact/1","seq":1}').encode()
    ).hexdigest()
    assert entry_hash(GENESIS, 1, entry) == expected
    # The API's spelling of the time hashes the same as the datetime.
    assert entry_hash(GENESIS, 1, {**entry, "at": canonical_at(entry["at"])}) == expected
    assert entry_hash(GENESIS, 2, entry) != expected


def test_an_intact_chain_is_valid():
    rows = chain(5)
    assert check_chain(rows, head_of(rows)) == (True, 5, None)
    assert check_chain([], None) == (True, 0, None)


@pytest.mark.parametrize("field", ["actor", "action", "resource", "details", "at", "contact_id"])
def test_an_edited_entry_is_found(field):
    rows = chain(5)
    edited = {"actor": "key:x", "action": "x", "resource": "x", "details": {"n": 0},
              "at": START, "contact_id": "0190a3b4-0000-7000-8000-000000000000"}[field]
    head = head_of(rows)
    rows[2] = {**rows[2], field: edited}
    assert check_chain(rows, head) == (False, 5, 3)


def test_deleted_entries_are_found_at_the_first_missing_seq():
    rows = chain(5)
    assert check_chain(rows[:1] + rows[2:], head_of(rows)) == (False, 4, 2)
    assert check_chain(rows[1:], head_of(rows)) == (False, 4, 1)
    assert check_chain(rows[:3], head_of(rows)) == (False, 3, 4)  # the newest, against the head


def test_reordered_and_forged_entries_are_found():
    rows = chain(5)
    swapped = [rows[0], {**rows[2], "seq": 2}, {**rows[1], "seq": 3}, rows[3], rows[4]]
    assert check_chain(swapped, head_of(rows)) == (False, 5, 2)
    longer = chain(6)  # a sixth entry the sealer never wrote (the head says 5)
    assert check_chain(longer, head_of(rows)) == (False, 6, 6)
    other = chain(5)
    other[4] = {**other[4], "hash": "f" * 64}
    assert check_chain(other, head_of(rows)) == (False, 5, 5)


def test_other_services_entries_are_checked():
    entry = remote_entry("enrichment", {"actor": "service:enrichment", "action": "profile.updated",
                                        "resource": "profile/1",
                                        "contact_id": "0190a3b4-0000-7000-8000-000000000000",
                                        "details": {"fields": ["city"]}, "at": "2024-05-01T10:00:00Z"}, None)
    assert entry["details"] == {"service": "enrichment", "fields": ["city"]}
    assert entry["at"] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    defaulted = remote_entry("campaigns", {"actor": "a", "action": "b", "resource": "c"}, "2024-05-02T00:00:00Z")
    assert defaulted["at"] == datetime(2024, 5, 2, tzinfo=UTC) and defaulted["contact_id"] is None
    for bad in ({"action": "b", "resource": "c"}, {"actor": "a", "action": "", "resource": "c"},
                {"actor": "a", "action": "b", "resource": "c", "contact_id": "nope"},
                {"actor": "a", "action": "b", "resource": "c", "details": [1]},
                {"actor": "a", "action": "b", "resource": "c", "at": "2024-05-01T10:00:00"},
                {"actor": "a", "action": "b", "resource": "c", "at": "yesterday"}, "not an object"):
        with pytest.raises(ValueError):
            remote_entry("enrichment", bad, None)
