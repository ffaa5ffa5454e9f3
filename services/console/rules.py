"""The segment builder's rows (field, op, value as typed) turned into the rules campaigns takes.
campaigns validates the result and names what is wrong (`rules.all.2.value`); this module only
reads what a person types into the JSON value each op expects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NUMERIC_FIELDS = ("age", "influence.score", "engagement.sentiment", "engagement.satisfaction")
TIME_FIELDS = ("last_checkin_at", "last_purchase_at")
TEXT_FIELDS = ("city", "country", "profession", "interests", "influence.tier")
PURPOSES = ("email_marketing", "sms_marketing", "social_dm_marketing", "profile_enrichment", "geolocation")
FIELDS = (*NUMERIC_FIELDS, *TEXT_FIELDS, *TIME_FIELDS, *(f"consent.{p}" for p in PURPOSES))
OPS = ("eq", "neq", "in", "contains", "gte", "lte", "between", "exists", "within_days", "near")
LIST_OPS = ("in", "between")
HINTS = {
    "in": "a, b, c", "between": "low, high", "exists": "true or false", "within_days": "number of days",
    "near": "lat, lon, km",
}


def _scalar(field: str, text: str) -> Any:
    """A number for a numeric field (and for attributes.* when it reads as one), true/false for
    attributes.* booleans, else the text as typed."""
    text = text.strip()
    numeric = field in NUMERIC_FIELDS or field.startswith("attributes.")
    if numeric:
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is not None:
            return int(number) if number.is_integer() and "." not in text else number
    if field.startswith("attributes.") and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def value_of(field: str, op: str, text: str) -> Any:
    if op == "exists":
        return text.strip().lower() not in ("false", "no", "0")
    if op == "within_days":
        try:
            return int(text.strip())
        except ValueError:
            return text.strip()  # campaigns says what it expects
    if op == "near":
        parts = [p.strip() for p in text.split(",")]
        try:
            lat, lon, km = (float(p) for p in parts)
        except ValueError:
            return text.strip()
        return {"lat": lat, "lon": lon, "km": km}
    if op in LIST_OPS or (op == "contains" and field == "interests" and "," in text):
        return [_scalar(field, part) for part in text.split(",") if part.strip()]
    return _scalar(field, text)


def rules_from_rows(match: str, fields: Sequence[str], ops: Sequence[str], values: Sequence[str]) -> dict[str, Any]:
    """{"all" | "any": [conditions]} from the builder's rows; a row without a field is ignored
    (an empty builder is the whole audience, as campaigns reads `{"all": []}`)."""
    conditions = []
    for field, op, text in zip(fields, ops, values, strict=False):
        field, op = field.strip(), op.strip()
        if not field:
            continue
        conditions.append({"field": field, "op": op, "value": value_of(field, op, text)})
    return {"any" if match == "any" else "all": conditions}


def rows_from_rules(rules: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """The builder's rows back from flat rules (to show a saved segment); nested groups are
    shown as their JSON, which the builder does not edit."""
    match = "any" if "any" in rules else "all"
    rows = []
    for condition in rules.get(match) or []:
        if not isinstance(condition, dict) or "field" not in condition:
            continue
        value = condition.get("value")
        if isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = ", ".join(str(value.get(k, "")) for k in ("lat", "lon", "km"))
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = "" if value is None else str(value)
        rows.append({"field": str(condition["field"]), "op": str(condition.get("op", "")), "value": text})
    return match, rows
