"""Segment rules: every error names its path with a clear message, and the compiled SQL carries
values only as bound parameters."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.campaigns import segments
from shared import errors

TENANT = "11111111-1111-1111-1111-111111111111"
AT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def problems(rules) -> dict[str, list[str]]:
    with pytest.raises(errors.ValidationFailed) as caught:
        segments.compile_rules(rules, TENANT, AT)
    return caught.value.extra["errors"]


def cond(field, op, value) -> dict:
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(("rules", "path", "fragment"), [
    ({"all": [cond("age", "between", [30])]}, "rules.all.0.value", "between takes [low, high]"),
    ({"all": [cond("age", "between", [40, 30])]}, "rules.all.0.value", "low ≤ high"),
    ({"all": [cond("age", "gte", "thirty")]}, "rules.all.0.value", "age in whole years"),
    ({"all": [cond("age", "gte", True)]}, "rules.all.0.value", "age in whole years"),
    ({"all": [cond("shoe_size", "eq", 42)]}, "rules.all.0.field", "Unknown field 'shoe_size'"),
    ({"all": [cond("city", "like", "Lyon")]}, "rules.all.0.op", "Unknown op 'like'"),
    ({"all": [cond("city", "gte", "Lyon")]}, "rules.all.0.op", "city takes eq, neq, in, contains or exists"),
    ({"all": [cond("city", "exists", "yes")]}, "rules.all.0.value", "exists takes true or false"),
    ({"all": [cond("country", "eq", "France")]}, "rules.all.0.value", "ISO 3166-1 alpha-2"),
    ({"all": [cond("consent.carrier_pigeon", "eq", "granted")]}, "rules.all.0.field", "Unknown consent purpose"),
    ({"all": [cond("consent.sms_marketing", "eq", "yes")]}, "rules.all.0.value", "granted, withdrawn, expired, none"),
    ({"all": [cond("influence.tier", "gte", "huge")]}, "rules.all.0.value", "none, nano, micro, macro, mega"),
    ({"all": [cond("last_checkin_at", "near", {"lat": 45.7})]}, "rules.all.0.value", 'near takes {"lat", "lon", "km"}'),
    ({"all": [cond("last_checkin_at", "near", {"lat": 95, "lon": 0, "km": 1})]}, "rules.all.0.value", "lat -90..90"),
    ({"all": [cond("last_purchase_at", "near", {"lat": 1, "lon": 1, "km": 1})]}, "rules.all.0.op",
     "last_purchase_at takes"),
    ({"all": [cond("last_purchase_at", "within_days", 0)]}, "rules.all.0.value", "within_days takes a whole number"),
    ({"all": [cond("last_purchase_at", "gte", "2026-01-01T00:00:00")]}, "rules.all.0.value", "with its offset"),
    ({"all": [cond("interests", "in", [])]}, "rules.all.0.value", "list of 1 to 1000"),
    ({"all": [cond("attributes.ltv", "gte", "a lot")]}, "rules.all.0.value", "gte takes a number"),
    ({"all": [cond("engagement.satisfaction", "gte", float("nan"))]}, "rules.all.0.value", "takes a number"),
    ({"all": [{"field": "city", "op": "eq"}]}, "rules.all.0.value", "Missing value"),
    ({"all": [{"field": "city", "op": "eq", "value": "x", "extra": 1}]}, "rules.all.0", "Unknown key(s) extra"),
    ({"all": ["city = Lyon"]}, "rules.all.0", "A condition"),
    ({"any": []}, "rules.any", "at least one condition"),
    ({"all": {"field": "city"}}, "rules.all", "A list"),
    ({"both": []}, "rules", 'A group is {"all": [...]} or {"any": [...]}'),
    ({"all": [{"any": [cond("age", "gte", 30), cond("age", "between", 3)]}]}, "rules.all.0.any.1.value",
     "between takes [low, high]"),
])
def test_errors_name_the_path(rules, path, fragment):
    found = problems(rules)
    assert path in found, found
    assert any(fragment in message for message in found[path]), found[path]


def test_every_error_is_reported_at_once():
    found = problems({"all": [cond("age", "between", [1]), cond("nope", "eq", 1), cond("city", "eq", "Lyon")]})
    assert set(found) == {"rules.all.0.value", "rules.all.1.field"}


def test_depth_and_size_are_bounded():
    deep: dict = cond("age", "gte", 18)
    for _ in range(segments.MAX_DEPTH):
        deep = {"all": [deep]}
    segments.compile_rules(deep, TENANT, AT)  # 8 groups deep: fine
    assert "Groups nest at most 8 deep." in str(problems({"any": [deep]}))
    many = {"all": [cond("age", "gte", n % 100) for n in range(segments.MAX_CONDITIONS + 1)]}
    assert problems(many) == {"rules": [f"At most 200 conditions in all ({segments.MAX_CONDITIONS + 1} given)."]}


def rendered(rules) -> tuple[str, list]:
    compiled = segments.compile_rules(rules, TENANT, AT)
    return compiled.where.as_string(None), compiled.params


def test_values_are_only_bound_parameters():
    hostile = "x'); DROP TABLE campaigns.audience; --"
    rules = {"any": [
        cond("city", "eq", hostile), cond("city", "in", ["Zurich", hostile]), cond("profession", "contains", hostile),
        cond("country", "eq", "zz"), cond("interests", "contains", "Kitesurf"),
        cond("attributes.tier'; --", "eq", "Platinum"), cond("attributes.ltv", "between", [1234, 98765]),
        cond("consent.sms_marketing", "neq", "granted"), cond("influence.tier", "gte", "macro"),
        cond("last_checkin_at", "near", {"lat": 45.123456, "lon": 4.987654, "km": 12.5}),
        cond("age", "between", [33, 37]), cond("engagement.satisfaction", "gte", 77.7),
        cond("last_purchase_at", "between", ["2025-03-04T05:06:07Z", "2025-09-10T11:12:13+02:00"]),
    ]}
    text, params = rendered(rules)
    for value in ("DROP", "Zurich", "ZZ", "zz", "kitesurf", "Kitesurf", "Platinum", "tier'", "1234", "98765",
                  "macro", "45.12", "4.98", "12.5", "33", "37", "77.7", "2025", "sms_marketing", TENANT):
        assert value not in text, value
    assert text.count("%s") == len(params)
    assert hostile in params and ["ZZ"] in params and ["kitesurf"] in params and "tier'; --" in params


def test_ages_are_ranges_of_birth_dates():
    text, params = rendered({"all": [cond("age", "between", [30, 40])]})
    assert "a.birth_date > %s AND a.birth_date <= %s" in text
    # 15 June 2026: 30 means born on or before 15 June 1996; 40 means born after 15 June 1985
    assert params[1:5] == [date(1985, 6, 15), date(1996, 6, 15), 30, 40]


def test_a_leap_day_birthday_is_28_february_in_common_years():
    compiled = segments.compile_rules({"all": [cond("age", "gte", 1)]}, TENANT, datetime(2025, 2, 28, tzinfo=UTC))
    assert compiled.params[1] == date(2024, 2, 28)
    compiled = segments.compile_rules({"all": [cond("age", "gte", 1)]}, TENANT, datetime(2024, 2, 29, tzinfo=UTC))
    assert compiled.params[1] == date(2023, 2, 28)


def test_everyone_and_the_scope():
    text, params = rendered({"all": []})
    assert "a.tenant_id = %s AND a.contact_version IS NOT NULL" in text and params == [TENANT]
