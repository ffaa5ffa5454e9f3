"""Triggers: sends that answer an event (a check-in near a shop, a new follower, a new contact)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.campaigns import CHANNELS, templates, triggers
from services.campaigns.api.campaigns import DELIVERY_STATUSES, DeliveryListSchema, delivery_view, parse_cursor_id
from services.campaigns.repository import triggers as repo
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

blp = Blueprint("triggers", __name__, url_prefix="/v1/triggers", description="Event-triggered sends")


class GeofenceSchema(ma.Schema):
    lat = ma.fields.Float(required=True, allow_nan=False, validate=ma.validate.Range(-90, 90))
    lon = ma.fields.Float(required=True, allow_nan=False, validate=ma.validate.Range(-180, 180))
    radius_m = ma.fields.Float(required=True, allow_nan=False, validate=ma.validate.Range(1, 100_000))


class ConditionsSchema(ma.Schema):
    network = ma.fields.String(validate=ma.validate.OneOf(("x", "facebook", "instagram", "linkedin", "tiktok")))
    geofence = ma.fields.Nested(GeofenceSchema, metadata={"description": "Check-ins within radius_m of the point"})


class TriggerInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    event = ma.fields.String(required=True, validate=ma.validate.OneOf(triggers.EVENTS))
    conditions = ma.fields.Nested(ConditionsSchema)
    channel = ma.fields.String(required=True, validate=ma.validate.OneOf(CHANNELS))
    content = ma.fields.Dict(required=True, metadata={
        "description": "The channel's content, as a campaign's: {subject, body} for email, {body} otherwise",
        "example": {"subject": "Welcome, {{ contact.first_name }}", "body": "Glad to have you."}})
    cooldown_hours = ma.fields.Integer(load_default=24, strict=True, validate=ma.validate.Range(0, 24 * 365),
                                       metadata={"description": "At most one message per contact in this time"})

    @ma.validates_schema
    def _geofence_is_for_checkins(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("conditions") or {}).get("geofence") and data.get("event") != "social.checkin":
            raise ma.ValidationError("A geofence applies to social.checkin only.", "conditions")


class TriggerSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    event = ma.fields.String()
    conditions = ma.fields.Dict()
    channel = ma.fields.String()
    content = ma.fields.Dict()
    cooldown_hours = ma.fields.Integer()
    active = ma.fields.Boolean()
    created_at = ma.fields.String()


class TriggerDeliveryArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf(DELIVERY_STATUSES))


TriggerListSchema = page_schema(TriggerSchema, "TriggerListSchema")


@blp.route("")
class Triggers(MethodView):
    @requires("marketing")
    @idempotent
    @blp.arguments(TriggerInSchema(), example={
        "name": "Welcome", "event": "contact.created", "channel": "email", "cooldown_hours": 24,
        "content": {"subject": "Welcome, {{ contact.first_name }}", "body": "Glad to have you."}})
    @blp.response(201, TriggerSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a trigger: a message sent within seconds of an event, under the same consent rules"""
        with unit_of_work() as uow:
            return triggers.create(uow, tenant_id(), body, templates.validate_content)

    @requires("marketing", "compliance")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, TriggerListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List triggers, newest first"""
        after = decode_cursor(args["cursor"], 1)
        with unit_of_work(read_only=True) as uow:
            rows = repo.page(uow, tenant_id(), args["limit"] + 1, parse_cursor_id(after[0]) if after else None)
        return page([triggers.view(r) for r in rows], args["limit"], lambda t: (t["id"],))


@blp.route("/<uuid:trigger_id>")
class Trigger(MethodView):
    @requires("marketing", "compliance")
    @blp.response(200, TriggerSchema)
    def get(self, trigger_id: Any) -> dict[str, Any]:
        """Read a trigger"""
        with unit_of_work(read_only=True) as uow:
            return triggers.get(uow, tenant_id(), str(trigger_id))

    @requires("marketing")
    @blp.response(204)
    def delete(self, trigger_id: Any) -> None:
        """Stop a trigger (it is kept, inactive, with its deliveries)"""
        with unit_of_work() as uow:
            triggers.deactivate(uow, tenant_id(), str(trigger_id))


@blp.route("/<uuid:trigger_id>/deliveries")
class TriggerDeliveries(MethodView):
    @requires("marketing", "compliance")
    @blp.arguments(TriggerDeliveryArgs(), location="query")
    @blp.response(200, DeliveryListSchema)
    def get(self, args: dict[str, Any], trigger_id: Any) -> dict[str, Any]:
        """List a trigger's deliveries, like a campaign's"""
        after = decode_cursor(args["cursor"], 1)
        tenant = tenant_id()
        with unit_of_work(read_only=True) as uow:
            triggers.get(uow, tenant, str(trigger_id))
            rows = repo.deliveries(uow, tenant, str(trigger_id), args["limit"] + 1,
                                   parse_cursor_id(after[0]) if after else None, args.get("status"))
        return page([delivery_view(r, tenant) for r in rows], args["limit"], lambda d: (d["id"],))
