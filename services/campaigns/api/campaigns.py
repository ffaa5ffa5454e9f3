"""Campaigns: create, read, launch, cancel; their deliveries and their report."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView

from services.campaigns import CHANNELS, campaigns, results, templates, tracking
from services.campaigns.repository import campaigns as repo
from shared import errors
from shared.events import rfc3339
from shared.web import (
    Blueprint,
    PageArgs,
    decode_cursor,
    idempotent,
    page,
    page_schema,
    requires,
    service,
    tenant_id,
    unit_of_work,
)

blp = Blueprint("campaigns", __name__, url_prefix="/v1/campaigns",
                description="Cross-channel offers to a segment: email, SMS and social DM")

HH_MM = ma.validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="A time of day as HH:MM, 00:00 to 23:59.")
STATUSES = ("draft", "scheduled", "launching", "running", "completed", "cancelled")
# The contract's delivery statuses. Inside, `sending` (handed to the provider, outcome not yet
# recorded) is shown as queued: for a user it has not been sent yet.
DELIVERY_STATUSES = ("queued", "sent", "delivered", "failed", "suppressed", "deferred")


class EmailContentSchema(ma.Schema):
    subject = ma.fields.String(required=True, validate=ma.validate.Length(1, 998))
    body = ma.fields.String(required=True, validate=ma.validate.Length(1, 100_000))


class BodyContentSchema(ma.Schema):
    body = ma.fields.String(required=True, validate=ma.validate.Length(1, 10_000))


class WebContentSchema(ma.Schema):
    title = ma.fields.String(required=True, validate=ma.validate.Length(1, 300))
    body = ma.fields.String(required=True, validate=ma.validate.Length(1, 100_000))


class ContentSchema(ma.Schema):
    email = ma.fields.Nested(EmailContentSchema)
    sms = ma.fields.Nested(BodyContentSchema)
    social_dm = ma.fields.Nested(BodyContentSchema)
    web = ma.fields.Nested(WebContentSchema, metadata={"description": "The inbound offer (GET /v1/offers)"})


class FrequencyCapSchema(ma.Schema):
    max = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 1000))
    per_hours = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 24 * 365))


class QuietHoursSchema(ma.Schema):
    start = ma.fields.String(required=True, validate=HH_MM)
    end = ma.fields.String(required=True, validate=HH_MM)

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("start") == data.get("end"):
            raise ma.ValidationError("start and end must differ.", "end")


class CampaignInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    segment_id = ma.fields.UUID(required=True)
    channels = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(CHANNELS)), required=True,
        validate=ma.validate.Length(1, len(CHANNELS)),
        metadata={"description": "Order = preference (first_eligible sends on the first one the contact can get)"})
    strategy = ma.fields.String(load_default="first_eligible",
                                validate=ma.validate.OneOf(("first_eligible", "all_eligible")))
    content = ma.fields.Nested(ContentSchema, required=True, metadata={
        "description": "Templates (jinja2, sandboxed): {{ contact.first_name }}, {{ profile.city }}, "
                       "{{ link(\"https://...\") }} for a tracked link"})
    schedule_at = ma.fields.AwareDateTime(allow_none=True)
    frequency_cap = ma.fields.Nested(FrequencyCapSchema, allow_none=True, metadata={
        "description": "At most `max` messages to a contact in `per_hours`, across all campaigns and triggers"})
    quiet_hours = ma.fields.Nested(QuietHoursSchema, allow_none=True, metadata={
        "description": "In the contact's time zone; a send that falls in them is deferred to their end"})
    cost_per_message = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.OneOf(CHANNELS)),
                                      values=ma.fields.Float(validate=ma.validate.Range(0, 1000), allow_nan=False))
    offer_ends_at = ma.fields.AwareDateTime(allow_none=True)

    @ma.validates_schema
    def _channels_once(self, data: dict[str, Any], **_: Any) -> None:
        channels = data.get("channels") or []
        if len(set(channels)) != len(channels):
            raise ma.ValidationError("Each channel once.", "channels")


class CampaignSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    segment_id = ma.fields.String()
    channels = ma.fields.List(ma.fields.String())
    strategy = ma.fields.String()
    content = ma.fields.Dict()
    schedule_at = ma.fields.String(allow_none=True)
    frequency_cap = ma.fields.Dict()
    quiet_hours = ma.fields.Dict()
    cost_per_message = ma.fields.Dict()
    offer_ends_at = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(STATUSES)})
    audience = ma.fields.Integer(allow_none=True, metadata={"description": "Contacts in the segment at launch"})
    created_at = ma.fields.String()
    launched_at = ma.fields.String()
    finished_at = ma.fields.String()


class CampaignListArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES))


class DeliverySchema(ma.Schema):
    id = ma.fields.String()
    campaign_id = ma.fields.String(allow_none=True)
    trigger_id = ma.fields.String(allow_none=True)
    contact_id = ma.fields.String()
    channel = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(DELIVERY_STATUSES)})
    reason = ma.fields.String(allow_none=True)
    send_after = ma.fields.String(allow_none=True)
    provider_message_id = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer()
    cost = ma.fields.Float(allow_none=True)
    unsubscribe_url = ma.fields.String(allow_none=True)
    sent_at = ma.fields.String(allow_none=True)
    delivered_at = ma.fields.String(allow_none=True)
    opened_at = ma.fields.String(allow_none=True)
    clicked_at = ma.fields.String(allow_none=True)
    content = ma.fields.Dict(metadata={"description": "Exactly what was sent (detail only)"})


class DeliveryListArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf(DELIVERY_STATUSES))
    channel = ma.fields.String(validate=ma.validate.OneOf(CHANNELS))


class ChannelFiguresSchema(ma.Schema):
    queued = ma.fields.Integer()
    sent = ma.fields.Integer()
    delivered = ma.fields.Integer()
    failed = ma.fields.Integer()
    opened = ma.fields.Integer()
    clicked = ma.fields.Integer()
    converted = ma.fields.Integer()
    revenue = ma.fields.Float()
    cost = ma.fields.Float()


class ReportSchema(ma.Schema):
    campaign_id = ma.fields.String()
    status = ma.fields.String()
    audience = ma.fields.Integer()
    reach = ma.fields.Integer()
    by_channel = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ChannelFiguresSchema))
    suppressed = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    converted = ma.fields.Integer()
    revenue = ma.fields.Float()
    cost = ma.fields.Float()
    conversion_rate = ma.fields.Float(allow_none=True)
    roi = ma.fields.Float(allow_none=True)


class TimelineArgs(ma.Schema):
    bucket = ma.fields.String(load_default="hour", validate=ma.validate.OneOf(tuple(results.TIMELINE_BUCKETS)),
                              metadata={"description": "hour (default) or day"})


class TimelinePointSchema(ma.Schema):
    at = ma.fields.String(metadata={"description": "Start of the hour (or day), RFC 3339 UTC"})
    sent = ma.fields.Integer(metadata={"description": "Messages sent in it"})
    opened = ma.fields.Integer(metadata={"description": "Messages first opened in it"})
    clicked = ma.fields.Integer(metadata={"description": "Messages first clicked in it"})
    converted = ma.fields.Integer(metadata={"description": "Conversions to the campaign that occurred in it"})


class TimelineSchema(ma.Schema):
    campaign_id = ma.fields.String()
    bucket = ma.fields.String(metadata={
        "description": "hour or day: an hourly series longer than 31 days is given per day"})
    items = ma.fields.List(ma.fields.Nested(TimelinePointSchema), metadata={
        "description": "Oldest first, from the first period that saw anything to the last, gaps as zeros; "
                       "empty before anything was sent"})


CampaignListSchema = page_schema(CampaignSchema, "CampaignListSchema")
DeliveryListSchema = page_schema(DeliverySchema, "DeliveryListSchema")


@blp.route("")
class Campaigns(MethodView):
    @requires("marketing")
    @idempotent
    @blp.arguments(CampaignInSchema())
    @blp.response(201, CampaignSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a campaign (a draft)

        Every template must render: a template error is a 422 naming the field and line."""
        with unit_of_work() as uow:
            return campaigns.create(uow, tenant_id(), body, templates.validate_content)

    @requires("marketing", "compliance")
    @blp.arguments(CampaignListArgs(), location="query")
    @blp.response(200, CampaignListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List campaigns, newest first"""
        after = decode_cursor(args["cursor"], 1)
        with unit_of_work(read_only=True) as uow:
            rows = repo.page(uow, tenant_id(), args["limit"] + 1, parse_cursor_id(after[0]) if after else None,
                             args.get("status"))
        return page([campaigns.view(r) for r in rows], args["limit"], lambda c: (c["id"],))


@blp.route("/<uuid:campaign_id>")
class Campaign(MethodView):
    @requires("marketing", "compliance")
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: Any) -> dict[str, Any]:
        """Read a campaign"""
        with unit_of_work(read_only=True) as uow:
            return campaigns.get(uow, tenant_id(), str(campaign_id))


@blp.route("/<uuid:campaign_id>/launch")
class Launch(MethodView):
    @requires("marketing")
    @blp.response(202, CampaignSchema)
    def post(self, campaign_id: Any) -> dict[str, Any]:
        """Launch a campaign (or schedule it, when its schedule_at is in the future)

        The audience is the segment's members at launch; the launch runs in the worker and the
        campaign shows `launching`, then `running`. 409 unless draft or scheduled."""
        with unit_of_work() as uow:
            return campaigns.launch(uow, tenant_id(), str(campaign_id))


@blp.route("/<uuid:campaign_id>/cancel")
class Cancel(MethodView):
    @requires("marketing")
    @blp.response(200, CampaignSchema)
    def post(self, campaign_id: Any) -> dict[str, Any]:
        """Cancel a campaign: nothing more is sent. 409 once completed or cancelled"""
        with unit_of_work() as uow:
            return campaigns.cancel(uow, tenant_id(), str(campaign_id))


@blp.route("/<uuid:campaign_id>/deliveries")
class Deliveries(MethodView):
    @requires("marketing", "compliance")
    @blp.arguments(DeliveryListArgs(), location="query")
    @blp.response(200, DeliveryListSchema)
    def get(self, args: dict[str, Any], campaign_id: Any) -> dict[str, Any]:
        """List a campaign's deliveries"""
        after = decode_cursor(args["cursor"], 1)
        tenant = tenant_id()
        with unit_of_work(read_only=True) as uow:
            campaigns.get(uow, tenant, str(campaign_id))
            rows = repo.deliveries(uow, tenant, str(campaign_id), args["limit"] + 1,
                                   parse_cursor_id(after[0]) if after else None, args.get("status"),
                                   args.get("channel"))
        return page([delivery_view(r, tenant) for r in rows], args["limit"], lambda d: (d["id"],))


@blp.route("/<uuid:campaign_id>/deliveries/<uuid:delivery_id>")
class Delivery(MethodView):
    @requires("marketing", "compliance")
    @blp.response(200, DeliverySchema)
    def get(self, campaign_id: Any, delivery_id: Any) -> dict[str, Any]:
        """Read a delivery, with exactly what was sent"""
        tenant = tenant_id()
        with unit_of_work(read_only=True) as uow:
            row = repo.delivery(uow, tenant, str(campaign_id), str(delivery_id))
        if row is None:
            raise errors.NotFound.of("delivery", delivery_id)
        return {**delivery_view(row, tenant), "content": row["content"] or {}}


@blp.route("/<uuid:campaign_id>/report")
class Report(MethodView):
    @requires("marketing", "compliance")
    @blp.response(200, ReportSchema)
    @blp.alt_response(200, content_type="text/csv", description="With `Accept: text/csv`: a line per channel")
    def get(self, campaign_id: Any) -> Any:
        """A campaign's results per channel: reach, outcomes, conversions, revenue, cost, ROI"""
        with unit_of_work(read_only=True) as uow:
            found = results.report(uow, tenant_id(), str(campaign_id))
        if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
            return Response(results.report_csv(found), mimetype="text/csv", headers={
                "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-report.csv"'})
        return found


@blp.route("/<uuid:campaign_id>/timeline")
class Timeline(MethodView):
    @requires("marketing", "compliance")
    @blp.arguments(TimelineArgs(), location="query")
    @blp.response(200, TimelineSchema)
    def get(self, args: dict[str, Any], campaign_id: Any) -> dict[str, Any]:
        """A campaign's results over time: sends, opens, clicks and conversions per hour (or day)"""
        with unit_of_work(read_only=True) as uow:
            return results.timeline(uow, tenant_id(), str(campaign_id), args["bucket"])


def delivery_view(row: dict[str, Any], tenant: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "content":
            continue
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[key] = value
    out["status"] = "queued" if row["status"] == "sending" else row["status"]
    out["cost"] = float(row["cost"]) if row["cost"] is not None else None
    settings = service().settings
    out["unsubscribe_url"] = tracking.unsubscribe_url(tracking.public_url(settings), settings.secret_key, tenant,
                                                      out["id"])
    out.pop("address", None)
    return out


def parse_cursor_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None
