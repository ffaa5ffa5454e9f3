"""Segments: named rules over the audience, evaluated against the data as it is at the time of the
call (CONTRACT section 4: segments are dynamic). This module validates rules, compiles them to SQL
and holds the segment use cases; `repository.segments` runs the SQL.

Rules are `{"all": [...]}` or `{"any": [...]}`, nestable up to MAX_DEPTH groups deep and holding at
most MAX_CONDITIONS conditions in all, of conditions `{"field", "op", "value"}`. `{"all": []}` is
the whole audience; an empty `any` is refused (it could only match no one). Every error names its
path (`rules.all.2.value`) and all errors of a rule set are reported at once.

Compilation yields a `psycopg.sql.Composed` boolean expression over `campaigns.audience AS a` and
its parameters: values are only ever bound parameters; column names and operators come from the
fixed fragments below, never from the request. Every segment is restricted to the key's tenant
and to contacts identity told us of (`contact_version IS NOT NULL`: a row with only enrichment's
profile is not a contact yet). Suppressed contacts are members: suppression, like consent, is
applied per recipient at send time.

Semantics, field by field:

- Unknown values: a contact whose value is unknown (NULL) matches neither `eq` nor `neq` (nor
  `gte`, `lte`, `between`, `in`, `contains`): "city neq Paris" means "known to live elsewhere".
  `exists: false` is how to select the unknown.
- Text (`city`, `profession`): case-insensitive; `contains` is a case-insensitive substring.
  `country`: ISO 3166-1 alpha-2, compared upper-case (`fr` is `FR`).
- `interests`: stored case-folded; `contains "tennis"` (or a list: every one of them), `in [...]`
  (at least one of them), `exists` (any interest at all).
- `influence.tier`: none < nano < micro < macro < mega, so `gte "micro"` is micro, macro or mega.
- `influence.score` (0-100), `engagement.sentiment` (-1..1), `engagement.satisfaction` (0-100):
  numbers; `eq` and the bounds compare at the stored precision (real), so a bound equal to a
  stored value matches it.
- `age`: from the birth date when the CRM gave one (`attributes.birth_date`): exact, and it moves
  with birthdays: a contact who turns 41 leaves `between [30, 40]` that day (born on 29 February:
  a year older on 1 March in common years). The condition is turned into a range of birth dates
  (`age >= n` is `birth_date <= today - n years`), so the birth-date index answers it. Without a
  birth date, the profile's age range ("30-39", "65+") is used, and a range matches only if every
  age in it satisfies the condition: "30-39" matches `between [25, 45]` and `gte 30` but not
  `between [35, 50]`, and an open range ("65+") never matches `lte` or `between`. Dates are UTC.
- `last_checkin_at`, `last_purchase_at`: RFC 3339 bounds (`gte`, `lte`, `between`),
  `within_days: n` (at most n days before the time of evaluation, not after it), `exists`.
  `near {"lat", "lon", "km"}` on `last_checkin_at`: the great-circle (haversine) distance from
  the last check-in's place is at most `km`; a latitude band is checked first so that the exact
  distance is computed only for nearby rows.
- `attributes.<key>` (the CRM's custom fields): `eq`, `neq`, `in` on text (case-insensitive),
  numbers or booleans; `gte`, `lte`, `between` on numbers (an attribute holding anything else does
  not match); `exists` (present and not null).
- `consent.<purpose>`: the contact's status for the purpose: `granted`, `withdrawn`, `expired` (a
  stored grant past its `expires_at` is expired, whatever the last event said) or `none` (nothing
  recorded). Every contact has a status, so `neq "granted"` includes those never asked.

Analytics (`analytics`) describe the segment as it is now and what the campaigns sent to it earned:

- `size`, and `tiers`: {none, nano, micro, macro, mega, unknown} -> contacts (unknown: no
  influence known).
- `age`, `influence_score`, `satisfaction`: mean and standard deviation over the members whose value
  is known; null when none is. Age is exact from the birth date, else the midpoint of the age range
  (an open range such as "65+" has none and is left out). The deviation is the population one
  (the segment is the whole population described, not a sample of it).
- `conversion_rate`: conversions attributed to the campaigns sent to this segment (by campaign or
  by one of their deliveries) divided by the distinct contacts those campaigns reached (a delivery
  `sent` or `delivered`); null when they reached no one. Several conversions by one contact all
  count, so it may exceed 1. `revenue`: the sum of those conversions' values (0 without any),
  as recorded, whatever their currency.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from services.campaigns import PURPOSES
from services.campaigns.repository import segments as repo
from shared import errors
from shared.db import UnitOfWork

MAX_DEPTH = 8
MAX_CONDITIONS = 200
MAX_LIST = 1000
MAX_TEXT = 300
MAX_COMPARE = 20
SAMPLE_SIZE = 10
TIERS = ("none", "nano", "micro", "macro", "mega")
CONSENT_STATUSES = ("granted", "withdrawn", "expired", "none")
OPS = ("eq", "neq", "in", "contains", "gte", "lte", "between", "exists", "within_days", "near")
EARTH_KM = 6371.0088
KM_PER_DEGREE = math.pi * EARTH_KM / 180

# field -> (kind, column): the only column fragments a rule can reach.
FIELDS: dict[str, tuple[str, str]] = {
    "age": ("age", ""),
    "city": ("text", "a.city"),
    "country": ("country", "a.country"),
    "profession": ("text", "a.profession"),
    "interests": ("interests", "a.interests"),
    "influence.tier": ("tier", "a.influence_tier"),
    "influence.score": ("number", "a.influence_score"),
    "engagement.sentiment": ("number", "a.sentiment"),
    "engagement.satisfaction": ("number", "a.satisfaction"),
    "last_checkin_at": ("time", "a.last_checkin_at"),
    "last_purchase_at": ("time", "a.last_purchase_at"),
}
KIND_OPS: dict[str, tuple[str, ...]] = {
    "age": ("eq", "neq", "gte", "lte", "between", "exists"),
    "text": ("eq", "neq", "in", "contains", "exists"),
    "country": ("eq", "neq", "in", "exists"),
    "interests": ("contains", "in", "exists"),
    "tier": ("eq", "neq", "in", "gte", "lte", "exists"),
    "number": ("eq", "neq", "gte", "lte", "between", "exists"),
    "time": ("gte", "lte", "between", "within_days", "exists"),
    "checkin": ("gte", "lte", "between", "within_days", "exists", "near"),
    "attribute": ("eq", "neq", "in", "gte", "lte", "between", "exists"),
    "consent": ("eq", "neq", "in"),
}
FIELD_NAMES = ", ".join([*FIELDS, "attributes.<key>", "consent.<purpose>"])


class Invalid(Exception):
    """One rule error: the path's last part (`value`, `op`...) and its message."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where, self.message = where, message


@dataclass
class Compiled:
    """A boolean SQL expression over `campaigns.audience AS a` and its parameters, in order."""

    where: sql.Composed
    params: list[Any] = field(default_factory=list)


def _expr(text: str, *params: Any) -> Compiled:
    """A fixed SQL fragment whose `%s` placeholders take `params` (never the request's text)."""
    return Compiled(sql.Composed([sql.SQL(text)]), list(params))


def _join(parts: list[Compiled], glue: str) -> Compiled:
    joined = sql.SQL(glue).join([sql.Composed([sql.SQL("("), p.where, sql.SQL(")")]) for p in parts])
    return Compiled(sql.Composed([joined]), [v for p in parts for v in p.params])


# -- validation and compilation ----------------------------------------------------------------
def compile_rules(rules: Any, tenant_id: str, at: datetime | None = None) -> Compiled:
    """The members of a segment: `rules` validated (ValidationFailed naming every error's path)
    and compiled, restricted to the tenant and to known contacts. `at` is the moment of
    evaluation (ages, expiries, within_days); now by default."""
    at = at or datetime.now(UTC)
    compiler = _Compiler(at)
    body = compiler.group(rules, "rules", 1)
    if compiler.errors:
        raise errors.ValidationFailed(compiler.errors, detail="The segment's rules are invalid.")
    if compiler.conditions > MAX_CONDITIONS:
        raise errors.ValidationFailed(
            {"rules": [f"At most {MAX_CONDITIONS} conditions in all ({compiler.conditions} given)."]},
            detail="The segment's rules are invalid.")
    scope = _expr("a.tenant_id = %s AND a.contact_version IS NOT NULL", tenant_id)
    return _join([scope, body], " AND ")


def validate_rules(rules: Any) -> None:
    """ValidationFailed unless `rules` compile."""
    compile_rules(rules, str(uuid.UUID(int=0)))


class _Compiler:
    def __init__(self, at: datetime):
        self.at = at if at.tzinfo else at.replace(tzinfo=UTC)
        self.today = self.at.astimezone(UTC).date()
        self.errors: dict[str, list[str]] = {}
        self.conditions = 0

    def fail(self, path: str, message: str) -> Compiled:
        self.errors.setdefault(path, []).append(message)
        return _expr("false")

    def group(self, node: Any, path: str, depth: int) -> Compiled:
        if not isinstance(node, dict) or len(node) != 1 or next(iter(node)) not in ("all", "any"):
            return self.fail(path, 'A group is {"all": [...]} or {"any": [...]}.')
        if depth > MAX_DEPTH:
            return self.fail(path, f"Groups nest at most {MAX_DEPTH} deep.")
        kind, items = next(iter(node.items()))
        path = f"{path}.{kind}"
        if not isinstance(items, list):
            return self.fail(path, "A list of conditions and groups.")
        if not items:
            if kind == "any":
                return self.fail(path, "`any` needs at least one condition (an empty one matches no one).")
            return _expr("true")  # all of nothing: the whole audience
        parts = [self.item(item, f"{path}.{i}", depth) for i, item in enumerate(items)]
        return _join(parts, " AND " if kind == "all" else " OR ")

    def item(self, node: Any, path: str, depth: int) -> Compiled:
        if isinstance(node, dict) and "field" not in node and len(node) == 1 and next(iter(node)) in ("all", "any"):
            return self.group(node, path, depth + 1)
        if not isinstance(node, dict):
            return self.fail(path, 'A condition {"field", "op", "value"} or a group {"all"|"any": [...]}.')
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            return _expr("false")  # reported once by compile_rules
        unknown = sorted(set(node) - {"field", "op", "value"})
        if unknown:
            return self.fail(path, f"Unknown key(s) {', '.join(unknown)}: a condition has field, op and value.")
        try:
            return self.condition(node, path)
        except Invalid as exc:
            return self.fail(f"{path}.{exc.where}", exc.message)

    def condition(self, node: dict[str, Any], path: str) -> Compiled:
        name, op = node.get("field"), node.get("op")
        if not isinstance(name, str) or not name:
            raise Invalid("field", f"Missing field: one of {FIELD_NAMES}.")
        kind, column, key = _field(name)
        if not isinstance(op, str) or op not in OPS:
            raise Invalid("op", f"Unknown op {op!r}: one of {', '.join(OPS)}." if op is not None
                          else f"Missing op: one of {', '.join(OPS)}.")
        allowed = KIND_OPS[kind]
        if op not in allowed:
            raise Invalid("op", f"{name} takes {', '.join(allowed[:-1])} or {allowed[-1]}, not {op}.")
        if "value" not in node:
            raise Invalid("value", f"Missing value for {op}.")
        value = node["value"]
        if op == "exists":
            if not isinstance(value, bool):
                raise Invalid("value", "exists takes true or false.")
            return self.exists(kind, column, key, value)
        method = getattr(self, f"_{kind}")
        return method(column, key, op, value)

    # -- per kind ------------------------------------------------------------------------------
    def exists(self, kind: str, column: str, key: str, value: bool) -> Compiled:
        if kind == "age":
            known = "(a.birth_date IS NOT NULL OR a.age_min IS NOT NULL)"
            return _expr(known if value else f"NOT {known}")
        if kind == "interests":
            return _expr("a.interests <> '{}'" if value else "a.interests = '{}'")
        if kind == "attribute":
            typed = "jsonb_typeof(a.attributes -> %s)"
            return _expr(f"{typed} <> 'null'" if value else f"coalesce({typed}, 'null') = 'null'", key)
        return _expr(f"{column} IS {'NOT ' if value else ''}NULL")

    def _text(self, column: str, _key: str, op: str, value: Any) -> Compiled:
        if op == "contains":
            return _expr(f"{column} ILIKE %s", "%" + _like_escape(_text(value, op)) + "%")
        values = _texts(value) if op == "in" else [_text(value, op)]
        compare = "NOT IN" if op == "neq" else "IN"
        return _expr(f"lower({column}) {compare} ({', '.join(['lower(%s)'] * len(values))})", *values)

    def _country(self, column: str, _key: str, op: str, value: Any) -> Compiled:
        values = _texts(value, _country) if op == "in" else [_country(value, op)]
        if op == "neq":
            return _expr(f"{column} <> %s", values[0])
        return _expr(f"{column} = ANY(%s::text[])", values)

    def _interests(self, column: str, _key: str, op: str, value: Any) -> Compiled:
        if op == "in":
            return _expr(f"{column} && %s::text[]", [v.casefold() for v in _texts(value)])
        wanted = _texts(value) if isinstance(value, list) else [_text(value, op)]
        return _expr(f"{column} @> %s::text[]", [v.casefold() for v in wanted])

    def _tier(self, column: str, _key: str, op: str, value: Any) -> Compiled:
        if op == "in":
            tiers = _texts(value, _tier)
        else:
            tier = _tier(value, op)
            rank = TIERS.index(tier)
            tiers = {"eq": [tier], "neq": [t for t in TIERS if t != tier], "gte": list(TIERS[rank:]),
                     "lte": list(TIERS[:rank + 1])}[op]
        return _expr(f"{column} = ANY(%s::text[])", tiers)

    def _number(self, column: str, _key: str, op: str, value: Any) -> Compiled:
        # real columns: the bounds are cast to real, so 0.7 matches a stored 0.7
        if op == "between":
            low, high = _pair(value, _number)
            return _expr(f"{column} BETWEEN %s::real AND %s::real", low, high)
        symbol = {"eq": "=", "neq": "<>", "gte": ">=", "lte": "<="}[op]
        return _expr(f"{column} {symbol} %s::real", _number(value, op))

    def _age(self, _column: str, _key: str, op: str, value: Any) -> Compiled:
        if op == "between":
            low, high = _pair(value, _age)
        else:
            low = high = _age(value, op)
        born_by = _years_before(self.today, low)          # had their low-th birthday
        born_after = _years_before(self.today, high + 1)  # not yet their (high + 1)-th
        exact = "a.birth_date IS NOT NULL AND "
        ranged = "a.birth_date IS NULL AND "
        if op == "gte":
            return _expr(f"({exact}a.birth_date <= %s) OR ({ranged}a.age_min >= %s)", born_by, low)
        if op == "lte":
            return _expr(f"({exact}a.birth_date > %s) OR ({ranged}a.age_max <= %s)", born_after, high)
        if op == "neq":
            return _expr(f"({exact}(a.birth_date > %s OR a.birth_date <= %s))"
                         f" OR ({ranged}(a.age_max < %s OR a.age_min > %s))", born_by, born_after, low, low)
        return _expr(f"({exact}a.birth_date > %s AND a.birth_date <= %s)"
                     f" OR ({ranged}a.age_min >= %s AND a.age_max <= %s)", born_after, born_by, low, high)

    def _time(self, column: str, _key: str, op: str, value: Any) -> Compiled:
        if op == "within_days":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36_500:
                raise Invalid("value", "within_days takes a whole number of days, 1 to 36500.")
            return _expr(f"{column} >= %s AND {column} <= %s", self.at - timedelta(days=value), self.at)
        if op == "between":
            low, high = _pair(value, _moment)
            return _expr(f"{column} BETWEEN %s AND %s", low, high)
        return _expr(f"{column} {'>=' if op == 'gte' else '<='} %s", _moment(value, op))

    def _checkin(self, column: str, key: str, op: str, value: Any) -> Compiled:
        if op != "near":
            return self._time(column, key, op, value)
        lat, lon, km = _near(value)
        band = km / KM_PER_DEGREE
        return _expr(
            "a.last_checkin_lat BETWEEN %s AND %s AND a.last_checkin_lon IS NOT NULL"
            " AND 2 * %s * asin(least(1, sqrt(power(sin(radians(a.last_checkin_lat - %s) / 2), 2)"
            " + cos(radians(%s)) * cos(radians(a.last_checkin_lat))"
            " * power(sin(radians(a.last_checkin_lon - %s) / 2), 2)))) <= %s",
            lat - band, lat + band, EARTH_KM, lat, lat, lon, km,
        )

    def _attribute(self, _column: str, key: str, op: str, value: Any) -> Compiled:
        if op in ("gte", "lte", "between"):
            number = "(CASE WHEN jsonb_typeof(a.attributes -> %s) = 'number' THEN (a.attributes ->> %s)::numeric END)"
            if op == "between":
                low, high = _pair(value, _number)
                return _expr(f"{number} BETWEEN %s AND %s", key, key, low, high)
            return _expr(f"{number} {'>=' if op == 'gte' else '<='} %s", key, key, _number(value, op))
        values = _scalars(value) if op == "in" else [_scalar(value, op)]
        texts = [v for v in values if isinstance(v, str)]
        others = [v for v in values if not isinstance(v, str)]
        parts = []
        if texts:
            parts.append(_expr(f"lower(a.attributes ->> %s) {'NOT IN' if op == 'neq' else 'IN'}"
                               f" ({', '.join(['lower(%s)'] * len(texts))})", key, *texts))
        for other in others:
            parts.append(_expr(f"a.attributes -> %s {'<>' if op == 'neq' else '='} %s", key, Jsonb(other)))
        return parts[0] if len(parts) == 1 else _join(parts, " OR ")

    def _consent(self, _column: str, purpose: str, op: str, value: Any) -> Compiled:
        if op == "in":
            statuses = _texts(value, _status)
        else:
            status = _status(value, op)
            statuses = [status] if op == "eq" else [s for s in CONSENT_STATUSES if s != status]
        # A grant past its expiry is expired, whatever was last recorded. Each status is written
        # as plain conditions on the row (not a CASE), so the planner can estimate them.
        row = ("SELECT 1 FROM campaigns.audience_consents c WHERE c.tenant_id = a.tenant_id"
               " AND c.contact_id = a.contact_id AND c.purpose = %s AND ")
        if "none" in statuses:  # no row is `none`: exclude the contacts whose row says otherwise
            others = [s for s in CONSENT_STATUSES if s not in statuses]
            if not others:
                return _expr("true")
            status, params = _statuses(others, self.at)
            return _expr(f"NOT EXISTS ({row}({status}))", purpose, *params)
        status, params = _statuses(statuses, self.at)
        return _expr(f"EXISTS ({row}({status}))", purpose, *params)


def _statuses(statuses: list[str], at: datetime) -> tuple[str, list[Any]]:
    """A consent row's status now is one of `statuses`, as SQL over `c`, and its parameters."""
    parts, params = [], []
    for status in dict.fromkeys(statuses):
        if status == "granted":
            parts.append("c.status = 'granted' AND (c.expires_at IS NULL OR c.expires_at > %s)")
            params.append(at)
        elif status == "expired":
            parts.append("c.status = 'expired' OR (c.status = 'granted' AND c.expires_at <= %s)")
            params.append(at)
        else:
            parts.append("c.status = %s")
            params.append(status)
    return " OR ".join(f"({p})" for p in parts), params


def _field(name: str) -> tuple[str, str, str]:
    if name in FIELDS:
        kind, column = FIELDS[name]
        return ("checkin" if name == "last_checkin_at" else kind), column, ""
    prefix, _, key = name.partition(".")
    if prefix == "attributes" and key:
        if len(key) > 200:
            raise Invalid("field", "An attribute key has at most 200 characters.")
        return "attribute", "", key
    if prefix == "consent" and key:
        if key not in PURPOSES:
            raise Invalid("field", f"Unknown consent purpose {key!r}: one of {', '.join(PURPOSES)}.")
        return "consent", "", key
    raise Invalid("field", f"Unknown field {name!r}: one of {FIELD_NAMES}.")


# -- values ------------------------------------------------------------------------------------
def _text(value: Any, op: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_TEXT:
        raise Invalid("value", f"{op} takes a text of 1 to {MAX_TEXT} characters.")
    return value.strip()


def _texts(value: Any, each: Any = None) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
        raise Invalid("value", f"Takes a list of 1 to {MAX_LIST} values.")
    return [(each or _text)(v, "each value of the list") for v in value]


def _country(value: Any, op: str) -> str:
    if not isinstance(value, str) or len(value.strip()) != 2 or not value.strip().isascii() \
            or not value.strip().isalpha():
        raise Invalid("value", f"{op} takes an ISO 3166-1 alpha-2 country code, e.g. FR.")
    return value.strip().upper()


def _tier(value: Any, op: str) -> str:
    if value not in TIERS:
        raise Invalid("value", f"{op} takes a tier: one of {', '.join(TIERS)}.")
    return value


def _status(value: Any, op: str) -> str:
    if value not in CONSENT_STATUSES:
        raise Invalid("value", f"{op} takes a consent status: one of {', '.join(CONSENT_STATUSES)}.")
    return value


def _number(value: Any, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or abs(value) > 1e15:
        raise Invalid("value", f"{op} takes a number.")
    return value


def _age(value: Any, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 150:
        raise Invalid("value", f"{op} takes an age in whole years, 0 to 150.")
    return value


def _moment(value: Any, op: str) -> datetime:
    moment = None
    if isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise Invalid("value", f"{op} takes an RFC 3339 time with its offset, e.g. 2026-01-31T00:00:00Z.")
    return moment


def _pair(value: Any, each: Any) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise Invalid("value", "between takes [low, high].")
    low, high = each(value[0], "between"), each(value[1], "between")
    if low > high:
        raise Invalid("value", "between takes [low, high] with low ≤ high.")
    return low, high


def _scalar(value: Any, op: str) -> str | int | float | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value, op)
    return _text(value, op)


def _scalars(value: Any) -> list[Any]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
        raise Invalid("value", f"in takes a list of 1 to {MAX_LIST} values.")
    return [_scalar(v, "each value of the list") for v in value]


def _near(value: Any) -> tuple[float, float, float]:
    if not isinstance(value, dict) or set(value) != {"lat", "lon", "km"}:
        raise Invalid("value", 'near takes {"lat", "lon", "km"}.')
    lat, lon, km = (_number(value[k], "near") for k in ("lat", "lon", "km"))
    if not -90 <= lat <= 90 or not -180 <= lon <= 180 or not 0 < km <= 20_000:
        raise Invalid("value", "near takes lat -90..90, lon -180..180 and km above 0, at most 20000.")
    return lat, lon, km


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _years_before(day: date, years: int) -> date:
    """The same day `years` earlier; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


# -- use cases ---------------------------------------------------------------------------------
def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "rules": row["rules"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def create(uow: UnitOfWork, tenant_id: str, name: str, rules: dict[str, Any]) -> dict[str, Any]:
    validate_rules(rules)
    return _view(repo.insert(uow, tenant_id, str(uuid.uuid4()), name, rules))


def get(uow: UnitOfWork, tenant_id: str, segment_id: str) -> dict[str, Any]:
    row = repo.get(uow, tenant_id, segment_id)
    if row is None:
        raise errors.NotFound.of("segment", segment_id)
    return _view(row)


def list_(uow: UnitOfWork, tenant_id: str, limit: int, after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    """Newest first; limit + 1 rows (the extra one says there is a next page)."""
    return [_view(r) for r in repo.list_(uow, tenant_id, limit + 1, after)]


def update(uow: UnitOfWork, tenant_id: str, segment_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    if "rules" in changes:
        validate_rules(changes["rules"])
    row = repo.update(uow, tenant_id, segment_id, changes.get("name"), changes.get("rules"))
    if row is None:
        raise errors.NotFound.of("segment", segment_id)
    return _view(row)


def delete(uow: UnitOfWork, tenant_id: str, segment_id: str) -> None:
    """A segment that an unfinished campaign targets stays (409): its launch would find nothing."""
    if repo.get(uow, tenant_id, segment_id, lock=True) is None:
        raise errors.NotFound.of("segment", segment_id)
    using = repo.active_campaigns(uow, tenant_id, segment_id)
    if using:
        raise errors.Conflict(f"Campaigns that are not finished target this segment: {', '.join(using)}. "
                              "Cancel them, or wait until they complete, before deleting it.")
    repo.delete(uow, tenant_id, segment_id)


def members(uow: UnitOfWork, tenant_id: str, segment_id: str, at: datetime | None = None) -> Compiled:
    """The segment's rules compiled at `at` (now by default): for previews, analytics and launches."""
    return compile_rules(get(uow, tenant_id, segment_id)["rules"], tenant_id, at)


def preview(uow: UnitOfWork, tenant_id: str, segment_id: str, at: datetime | None = None) -> dict[str, Any]:
    """How many contacts the segment holds now, and the first ones by contact id (a stable sample)."""
    return _count_and_sample(uow, members(uow, tenant_id, segment_id, at))


def preview_rules(uow: UnitOfWork, tenant_id: str, rules: Any, at: datetime | None = None) -> dict[str, Any]:
    """What `preview` would answer for a segment of these rules, without saving one (the builder's
    live count): validated as at creation, evaluated now, nothing stored."""
    return _count_and_sample(uow, compile_rules(rules, tenant_id, at))


def _count_and_sample(uow: UnitOfWork, compiled: Compiled) -> dict[str, Any]:
    count, sample = repo.count_and_sample(uow, compiled, SAMPLE_SIZE)
    return {"count": count, "sample": [str(c) for c in sample]}


def analytics(uow: UnitOfWork, tenant_id: str, segment_id: str, at: datetime | None = None) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    stats = repo.analytics(uow, tenant_id, segment_id, members(uow, tenant_id, segment_id, at),
                           at.astimezone(UTC).date())
    return {
        "segment_id": segment_id,
        "size": stats["size"],
        "tiers": {tier: stats[f"tier_{tier}"] for tier in (*TIERS, "unknown")},
        "age": _spread(stats, "age"),
        "influence_score": _spread(stats, "influence_score"),
        "satisfaction": _spread(stats, "satisfaction"),
        "conversion_rate": (stats["conversions"] / stats["reached"]) if stats["reached"] else None,
        "revenue": float(stats["revenue"]),
    }


def compare(uow: UnitOfWork, tenant_id: str, segment_ids: list[str], at: datetime | None = None) -> dict[str, Any]:
    """Analytics of each segment, in the order asked (a repeated id is answered again)."""
    if not 1 <= len(segment_ids) <= MAX_COMPARE:
        raise errors.ValidationFailed({"ids": [f"1 to {MAX_COMPARE} segment ids, comma-separated."]})
    known = repo.existing(uow, tenant_id, segment_ids)
    missing = [s for s in dict.fromkeys(segment_ids) if s not in known]
    if missing:
        raise errors.NotFound(f"No such segment: {', '.join(missing)}.")
    at = at or datetime.now(UTC)
    done: dict[str, dict[str, Any]] = {}
    for segment_id in segment_ids:
        if segment_id not in done:
            done[segment_id] = analytics(uow, tenant_id, segment_id, at)
    return {"items": [done[s] for s in segment_ids]}


def _spread(stats: dict[str, Any], name: str) -> dict[str, float | None]:
    mean, std = stats[f"{name}_mean"], stats[f"{name}_std"]
    return {"mean": None if mean is None else float(mean), "std": None if std is None else float(std)}
