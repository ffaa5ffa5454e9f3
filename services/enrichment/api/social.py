"""The social listening feed and the prospects it turns up."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.enrichment import social
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

blp = Blueprint("social", __name__, url_prefix="/v1/social", description="Social listening feed")

# A handle, with or without its @: no URL (no slash), no space inside.
HANDLE = re.compile(r"\s*@?\s*[^\s/@][^\s/]*\s*\Z")


class PlaceSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 300))
    lat = ma.fields.Float(required=True, allow_nan=False, validate=ma.validate.Range(-90, 90))
    lon = ma.fields.Float(required=True, allow_nan=False, validate=ma.validate.Range(-180, 180))


class FeedEventSchema(ma.Schema):
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(social.EVENT_TYPES))
    network = ma.fields.String(required=True, validate=ma.validate.OneOf(social.NETWORKS))
    handle = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(1, 300),
                  ma.validate.Regexp(HANDLE, error="A handle such as `@ana_lyon`, not a profile URL.")],
        metadata={"description": "The author's handle (`@ana_lyon` or `ana_lyon`), not a profile URL; "
                                 "matched case-insensitively to the handles linked to contacts"},
    )
    occurred_at = ma.fields.AwareDateTime(required=True, metadata={"description": "RFC 3339 with offset"})
    text = ma.fields.String(validate=ma.validate.Length(max=10_000), metadata={"description": "A mention's text"})
    place = ma.fields.Nested(PlaceSchema, metadata={"description": "Where a check-in was (required for one)"})
    brand_account = ma.fields.String(validate=ma.validate.Length(1, 300),
                                     metadata={"description": "The brand's account the event concerns"})
    sentiment = ma.fields.Float(
        allow_none=True, allow_nan=False, validate=ma.validate.Range(-1, 1),
        metadata={"description": "The listening platform's own score of a mention, -1..1; wins over ours"},
    )
    followers = ma.fields.Integer(
        allow_none=True, strict=True, validate=ma.validate.Range(0, 10**12),
        metadata={"description": "The author's audience as the listening platform reports it. It gives a "
                                 "prospect's influence; a contact's comes from enrichment."},
    )

    @ma.validates_schema
    def _checkin_has_place(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") == "checkin" and not data.get("place"):
            raise ma.ValidationError("A check-in needs its place.", "place")


class FeedBatchSchema(ma.Schema):
    events = ma.fields.List(
        ma.fields.Nested(FeedEventSchema), required=True, validate=ma.validate.Length(1, social.BATCH_MAX),
        metadata={"description": "1 to 1,000 events. One invalid event refuses the whole batch and "
                                 "nothing is stored: the 422 names it as `errors.events.<index>.<field>`, "
                                 "so the platform can fix it and resend the batch as it was."},
    )


class FeedAcceptedSchema(ma.Schema):
    accepted = ma.fields.Integer(metadata={"description": "Events stored"})
    contacts = ma.fields.Integer(metadata={"description": "Distinct contacts the stored events concern"})
    prospects = ma.fields.Integer(metadata={"description": "Distinct handles no contact has yet, stored as prospects"})
    skipped = ma.fields.Integer(
        metadata={"description": "Check-ins not stored: the contact has no `geolocation` consent, or the handle "
                                 "is a prospect's"},
    )


class ProspectInfluenceSchema(ma.Schema):
    followers = ma.fields.Integer()
    score = ma.fields.Float(metadata={"description": "0-100, as for contacts, from the audience alone"})
    tier = ma.fields.String(metadata={"description": "none, nano, micro, macro or mega"})


class ProspectSchema(ma.Schema):
    network = ma.fields.String()
    handle = ma.fields.String()
    mentions = ma.fields.Integer()
    positive = ma.fields.Integer()
    neutral = ma.fields.Integer()
    negative = ma.fields.Integer()
    follows = ma.fields.Integer(metadata={"description": "Follows of the brand's accounts"})
    sentiment = ma.fields.Float(allow_none=True, metadata={"description": "Mean of the mentions, -1..1"})
    influence = ma.fields.Nested(
        ProspectInfluenceSchema, allow_none=True,
        metadata={"description": "From the audience the feed reported (`followers`); null when it never did"},
    )
    first_seen = ma.fields.DateTime(format="iso")
    last_seen = ma.fields.DateTime(format="iso")


ProspectListSchema = page_schema(ProspectSchema, "ProspectListSchema")


@blp.route("/events")
class FeedEvents(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(FeedBatchSchema())
    @blp.response(202, FeedAcceptedSchema, description="Stored, resolved and published")
    def post(self, body: dict[str, Any]) -> dict[str, int]:
        """Post a batch of the social listening feed (mentions, check-ins, follows)

        Handles resolve to contacts; an unknown handle's events are kept as a prospect's, and a
        later link of the handle carries them over. A check-in is stored only with the contact's
        `geolocation` consent (otherwise counted in `skipped`); a mention is scored for sentiment
        (the `sentiment` sent wins) and updates the profile's engagement when the contact allows
        `profile_enrichment`; a follow is recorded. Each stored event publishes its
        `liaison.enrichment.social.*` event; a negative mention from a known contact also publishes
        `liaison.enrichment.social.mention.negative`."""
        with unit_of_work() as uow:
            return social.ingest(uow, tenant_id(), body["events"])


@blp.route("/prospects")
class Prospects(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, ProspectListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the handles seen in the feed that match no contact yet, most engaged first

        Ordered by mentions (descending), then the latest seen first. Influence is known for the
        prospects whose events reported the author's audience (`followers`)."""
        after = _after(decode_cursor(args["cursor"], 4))
        with unit_of_work(read_only=True) as uow:
            items = social.prospects(uow, tenant_id(), args["limit"], after)
        return page(items, args["limit"],
                    lambda p: (p["mentions"], p["last_seen"].isoformat(), p["network"], p["handle"]))


def _after(values: list[str] | None) -> tuple[int, datetime, str, str] | None:
    if values is None:
        return None
    try:
        return int(values[0]), datetime.fromisoformat(values[1]), values[2], values[3]
    except ValueError:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None
