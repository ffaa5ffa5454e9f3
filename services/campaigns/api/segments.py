"""Segments: dynamic audiences defined by rules, their preview, analytics and comparison."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.campaigns import PURPOSES, segments
from shared import errors
from shared.web import (
    Blueprint,
    PageArgs,
    decode_cursor,
    idempotent,
    page,
    page_schema,
    requires,
    tenant_id,
    unit_of_work,
)

blp = Blueprint("segments", __name__, url_prefix="/v1/segments",
                description="Dynamic segments of the audience, evaluated when asked")

READERS = ("marketing", "compliance")

RULES_DOC = (
    'A group: `{"all": [...]}` or `{"any": [...]}`, nestable up to 8 groups deep, with at most 200 '
    'conditions `{"field", "op", "value"}` in all (`{"all": []}` is the whole audience). '
    "Fields and their ops: `age` (eq, neq, gte, lte, between, exists: exact from the birth date, else "
    "the profile's age range, which matches only if every age in it does); `city`, `profession` (eq, "
    "neq, in, contains, exists; case-insensitive); `country` (eq, neq, in, exists; ISO 3166-1 alpha-2); "
    "`interests` (contains a value or all of a list, in = any of a list, exists); `influence.tier` "
    "(eq, neq, in, gte, lte, exists; none < nano < micro < macro < mega); `influence.score`, "
    "`engagement.sentiment`, `engagement.satisfaction` (eq, neq, gte, lte, between, exists); "
    "`last_checkin_at` and `last_purchase_at` (gte, lte, between with RFC 3339 times, within_days: n, "
    'exists; and on `last_checkin_at`, near `{"lat", "lon", "km"}`: the last check-in\'s place); '
    "`attributes.<key>` (eq, neq, in on text, numbers or booleans; gte, lte, between on numbers; "
    f"exists); `consent.<purpose>` (eq, neq, in of granted, withdrawn, expired, none; purposes: "
    f"{', '.join(PURPOSES)}). `between` takes `[low, high]`, inclusive; `exists` takes true or false. "
    "A contact whose value is unknown matches neither `eq` nor `neq`. An invalid rule is a 422 "
    "naming its path, e.g. `rules.all.2.value`."
)


RULES_EXAMPLE = {"all": [{"field": "country", "op": "eq", "value": "FR"},
                         {"any": [{"field": "interests", "op": "contains", "value": "running"},
                                  {"field": "consent.email_marketing", "op": "eq", "value": "granted"}]}]}


class SegmentInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200),
                            metadata={"example": "Runners in France"})
    rules = ma.fields.Dict(required=True, metadata={"description": RULES_DOC, "example": RULES_EXAMPLE})


class RulesInSchema(ma.Schema):
    rules = ma.fields.Dict(required=True, metadata={"description": RULES_DOC, "example": RULES_EXAMPLE})


class SegmentPatchSchema(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(1, 200), metadata={"example": "Runners in France"})
    rules = ma.fields.Dict(metadata={"description": RULES_DOC, "example": RULES_EXAMPLE})

    @ma.validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Give name, rules or both.", "_schema")


class SegmentSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    rules = ma.fields.Dict(metadata={"description": "As given"})
    created_at = ma.fields.DateTime(format="iso")
    updated_at = ma.fields.DateTime(format="iso")


SegmentListSchema = page_schema(SegmentSchema, "SegmentListSchema")


class PreviewSchema(ma.Schema):
    count = ma.fields.Integer(metadata={"description": "Contacts in the segment now"})
    sample = ma.fields.List(ma.fields.String(), metadata={
        "description": "Up to 10 of them: the first by contact id, so the same data gives the same sample"})


class SpreadSchema(ma.Schema):
    mean = ma.fields.Float(allow_none=True)
    std = ma.fields.Float(allow_none=True, metadata={"description": "Population standard deviation"})


class AnalyticsSchema(ma.Schema):
    segment_id = ma.fields.String()
    size = ma.fields.Integer(metadata={"description": "Contacts in the segment now"})
    tiers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata={
        "description": "Contacts per influence tier: none, nano, micro, macro, mega, and unknown (no influence known)"})
    age = ma.fields.Nested(SpreadSchema, metadata={
        "description": "Exact from the birth date, else the middle of the profile's age range (open ranges "
                       "such as 65+ are left out); null over no data"})
    influence_score = ma.fields.Nested(SpreadSchema, metadata={"description": "0-100; null over no data"})
    satisfaction = ma.fields.Nested(SpreadSchema, metadata={"description": "0-100; null over no data"})
    conversion_rate = ma.fields.Float(allow_none=True, metadata={
        "description": "Conversions attributed to the campaigns sent to this segment ÷ the distinct contacts "
                       "they reached (sent or delivered); null when they reached no one"})
    revenue = ma.fields.Float(metadata={"description": "Sum of those conversions' values"})


class CompareArgs(ma.Schema):
    ids = ma.fields.String(required=True, metadata={"description": "1 to 20 segment ids, comma-separated"})


class CompareSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AnalyticsSchema), metadata={"description": "In the order asked"})


@blp.route("")
class Segments(MethodView):
    @requires("marketing")
    @idempotent
    @blp.arguments(SegmentInSchema())
    @blp.response(201, SegmentSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a segment

        The rules are validated, stored as given and evaluated at each preview, analytics or
        launch against the audience as it is then."""
        with unit_of_work() as uow:
            return segments.create(uow, tenant_id(), body["name"], body["rules"])

    @requires(*READERS)
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, SegmentListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the segments, newest first"""
        after = _after(decode_cursor(args["cursor"], 2))
        with unit_of_work(read_only=True) as uow:
            items = segments.list_(uow, tenant_id(), args["limit"], after)
        return page(items, args["limit"], lambda s: (s["created_at"].isoformat(), s["id"]))


# Before /<uuid:segment_id>: `preview` and `compare` are paths of their own, never segment ids.
@blp.route("/preview")
class RulesPreview(MethodView):
    @requires(*READERS)
    @blp.arguments(RulesInSchema())
    @blp.response(200, PreviewSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """How many contacts rules select now, and a sample of them, without saving a segment

        Answers as `GET /v1/segments/{segment_id}/preview` would for a segment of these rules, and
        stores nothing. The rules are validated as at creation: an invalid one is a 422 naming its
        path, e.g. `rules.all.2.value`."""
        with unit_of_work(read_only=True) as uow:
            return segments.preview_rules(uow, tenant_id(), body["rules"])


@blp.route("/compare")
class Compare(MethodView):
    @requires(*READERS)
    @blp.arguments(CompareArgs(), location="query")
    @blp.response(200, CompareSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Compare segments: the analytics of each, in the order asked

        404 when one of them does not exist; 422 for more than 20."""
        ids = [part.strip() for part in args["ids"].split(",") if part.strip()]
        if not 1 <= len(ids) <= segments.MAX_COMPARE:
            raise errors.ValidationFailed({"ids": [f"1 to {segments.MAX_COMPARE} segment ids, comma-separated."]})
        bad = [i for i in ids if not _is_uuid(i)]
        if bad:
            raise errors.ValidationFailed({"ids": [f"Not a segment id: {', '.join(bad[:5])}."]})
        with unit_of_work(read_only=True) as uow:
            return segments.compare(uow, tenant_id(), [str(uuid.UUID(i)) for i in ids])


@blp.route("/<uuid:segment_id>")
class Segment(MethodView):
    @requires(*READERS)
    @blp.response(200, SegmentSchema)
    def get(self, segment_id: Any) -> dict[str, Any]:
        """A segment"""
        with unit_of_work(read_only=True) as uow:
            return segments.get(uow, tenant_id(), str(segment_id))

    @requires("marketing")
    @blp.arguments(SegmentPatchSchema())
    @blp.response(200, SegmentSchema)
    def patch(self, body: dict[str, Any], segment_id: Any) -> dict[str, Any]:
        """Rename a segment or replace its rules"""
        with unit_of_work() as uow:
            return segments.update(uow, tenant_id(), str(segment_id), body)

    @requires("marketing")
    @blp.response(204)
    def delete(self, segment_id: Any) -> None:
        """Delete a segment

        409 while a campaign that is not finished (draft, scheduled, launching, running) targets it."""
        with unit_of_work() as uow:
            segments.delete(uow, tenant_id(), str(segment_id))


@blp.route("/<uuid:segment_id>/preview")
class Preview(MethodView):
    @requires(*READERS)
    @blp.response(200, PreviewSchema)
    def get(self, segment_id: Any) -> dict[str, Any]:
        """How many contacts the segment holds now, and a sample of them"""
        with unit_of_work(read_only=True) as uow:
            return segments.preview(uow, tenant_id(), str(segment_id))


@blp.route("/<uuid:segment_id>/analytics")
class Analytics(MethodView):
    @requires(*READERS)
    @blp.response(200, AnalyticsSchema)
    def get(self, segment_id: Any) -> dict[str, Any]:
        """How big and how homogeneous the segment is, and what the campaigns sent to it earned"""
        with unit_of_work(read_only=True) as uow:
            return segments.analytics(uow, tenant_id(), str(segment_id))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _after(values: list[str] | None) -> tuple[datetime, str] | None:
    if values is None:
        return None
    try:
        return datetime.fromisoformat(values[0]), str(uuid.UUID(values[1]))
    except ValueError:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None
