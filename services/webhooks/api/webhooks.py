"""Webhook endpoints, their deliveries, replays, pings and secret rotation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.webhooks import EVENT_TYPES, deliveries, endpoints
from services.webhooks.repository import deliveries as delivery_repo
from services.webhooks.repository import endpoints as repo
from shared import errors
from shared.events import utcnow
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

SIGNING = """Each delivery is an HTTP POST of the event's CloudEvent envelope (JSON, as on the bus) with the
headers `Content-Type: application/json`, `Liaison-Webhook-Id`, `Liaison-Delivery-Id`, `Liaison-Event-Id`,
`Liaison-Event-Type` and `Liaison-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
HMAC-SHA256(secret, `<t>.<raw body>`) as Stripe signs (the secret is the whole `whsec_...` string).
During a secret rotation a second `v1=` is signed with the previous secret. Reject a timestamp more
than 5 minutes away from your clock, compare with a constant-time comparison, and dedupe on
`Liaison-Event-Id`: delivery is at least once. A 2xx answer within 10 s is success; anything else is
retried after 30 s, 1 min, 5 min, 30 min, 2 h, 5 h then every 10 h (±10 % jitter) until 24 h after the
event, then the delivery is `failed` (replayable). `410 Gone` disables the endpoint at once.
Redirects are not followed. Deliveries are kept 30 days. See docs/webhooks.md for receiver code."""

blp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks",
                description="Events sent to your CRM, signed, retried for a day, listed and replayable.\n\n"
                            + SIGNING)

EVENT_TYPES_DOC = ("Event types to receive: any of " + ", ".join(f"`{t}`" for t in EVENT_TYPES)
                   + "; or a pattern: `<prefix>.*` (every type under the prefix, e.g. `liaison.identity.*`)"
                     " or `*` (all). Anything else is a 422.")
URL_DOC = ("Where events are POSTed. Must be https://; plain http:// is accepted only for localhost, 127.0.0.1"
           " and ::1 (local development). Any host is accepted otherwise, private addresses included: the"
           " operator's network policy decides what the worker may reach.")


class WebhookInSchema(ma.Schema):
    url = ma.fields.String(required=True, validate=ma.validate.Length(1, 2048), metadata={"description": URL_DOC})
    event_types = ma.fields.List(ma.fields.String(validate=ma.validate.Length(1, 200)), required=True,
                                 validate=ma.validate.Length(1, 100), metadata={"description": EVENT_TYPES_DOC})
    description = ma.fields.String(validate=ma.validate.Length(0, 500))
    enabled = ma.fields.Boolean(load_default=True)


class WebhookPatchSchema(ma.Schema):
    url = ma.fields.String(validate=ma.validate.Length(1, 2048), metadata={"description": URL_DOC})
    event_types = ma.fields.List(ma.fields.String(validate=ma.validate.Length(1, 200)),
                                 validate=ma.validate.Length(1, 100), metadata={"description": EVENT_TYPES_DOC})
    description = ma.fields.String(validate=ma.validate.Length(0, 500))
    enabled = ma.fields.Boolean(metadata={
        "description": "false stops deliveries (pending ones fail, replayable); true resumes with new events"})


class WebhookSchema(ma.Schema):
    id = ma.fields.String()
    url = ma.fields.String()
    description = ma.fields.String()
    event_types = ma.fields.List(ma.fields.String())
    enabled = ma.fields.Boolean()
    disabled_reason = ma.fields.String(allow_none=True, metadata={
        "description": "Why it is disabled: by a PATCH, or the receiver answered 410 Gone"})
    previous_secret_expires_at = ma.fields.String(allow_none=True, metadata={
        "description": "Until then, deliveries are signed with the previous secret too (after a rotation)"})
    created_at = ma.fields.String()
    updated_at = ma.fields.String()


class WebhookWithSecretSchema(WebhookSchema):
    secret = ma.fields.String(metadata={
        "description": "The signing secret (`whsec_...`). Shown only here: store it now.",
        "example": "whsec_3q2-7wEXAMPLEexampleEXAMPLEexample0000000"})


class RotateSchema(ma.Schema):
    expire_previous_in_hours = ma.fields.Integer(load_default=24, strict=True, validate=ma.validate.Range(0, 24),
                                                 metadata={"description": "How long the previous secret keeps "
                                                           "signing too (0: it stops at once, for a leaked secret)"})


class AttemptSchema(ma.Schema):
    number = ma.fields.Integer()
    at = ma.fields.String()
    status_code = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    duration_ms = ma.fields.Integer()


class DeliverySchema(ma.Schema):
    id = ma.fields.String()
    webhook_id = ma.fields.String()
    event_id = ma.fields.String()
    event_type = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(deliveries.STATUSES)})
    attempts = ma.fields.Integer()
    next_attempt_at = ma.fields.String(allow_none=True, metadata={"description": "When pending: the next attempt"})
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    created_at = ma.fields.String()
    delivered_at = ma.fields.String(allow_none=True)


class DeliveryDetailSchema(DeliverySchema):
    request_body = ma.fields.String(allow_none=True, metadata={
        "description": "The body sent (null once erased with the contact it was about)"})
    attempt_history = ma.fields.List(ma.fields.Nested(AttemptSchema))


class DeliveryArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf(deliveries.STATUSES))


WebhookListSchema = page_schema(WebhookSchema, "WebhookListSchema")
DeliveryListSchema = page_schema(DeliverySchema, "WebhookDeliveryListSchema")


def _after_id(cursor: str | None) -> str | None:
    after = decode_cursor(cursor, 1)
    if after is None:
        return None
    try:
        return str(uuid.UUID(after[0]))
    except ValueError:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None


def _box():
    return endpoints.secret_box(service().settings.secret_key)


@blp.route("")
class Webhooks(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(WebhookInSchema(), example={
        "url": "https://crm.example.com/liaison/events", "description": "Consents into the CRM",
        "event_types": ["liaison.identity.consent.recorded", "liaison.campaigns.delivery.updated"]})
    @blp.response(201, WebhookWithSecretSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Register an endpoint; the answer shows its signing secret, once"""
        with unit_of_work() as uow:
            return endpoints.create(uow, _box(), tenant_id(), body)

    @requires("crm", "compliance")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, WebhookListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List endpoints, newest first"""
        with unit_of_work(read_only=True) as uow:
            rows = repo.page(uow, tenant_id(), args["limit"] + 1, _after_id(args["cursor"]))
        return page([endpoints.view(r) for r in rows], args["limit"], lambda w: (w["id"],))


@blp.route("/<uuid:webhook_id>")
class Webhook(MethodView):
    @requires("crm", "compliance")
    @blp.response(200, WebhookSchema)
    def get(self, webhook_id: Any) -> dict[str, Any]:
        """Read an endpoint (never its secret)"""
        with unit_of_work(read_only=True) as uow:
            return endpoints.view(endpoints.get(uow, tenant_id(), str(webhook_id)))

    @requires("crm")
    @blp.arguments(WebhookPatchSchema())
    @blp.response(200, WebhookSchema)
    def patch(self, body: dict[str, Any], webhook_id: Any) -> dict[str, Any]:
        """Change an endpoint's URL, event types, description, or enable or disable it"""
        with unit_of_work() as uow:
            return endpoints.update(uow, tenant_id(), str(webhook_id), body)

    @requires("crm")
    @blp.response(204)
    def delete(self, webhook_id: Any) -> None:
        """Delete an endpoint, with its deliveries (pending ones are not sent)"""
        with unit_of_work() as uow:
            endpoints.delete(uow, tenant_id(), str(webhook_id))


@blp.route("/<uuid:webhook_id>/rotate-secret")
class RotateSecret(MethodView):
    @requires("crm")
    @blp.arguments(RotateSchema(), required=False)
    @blp.response(200, WebhookWithSecretSchema)
    def post(self, body: dict[str, Any], webhook_id: Any) -> dict[str, Any]:
        """Replace the signing secret; the answer shows the new one, once

        The previous secret keeps signing alongside (a second `v1=`) for `expire_previous_in_hours`
        (24 by default; 0 stops it at once, for a leaked secret)."""
        overlap = timedelta(hours=(body or {}).get("expire_previous_in_hours", 24))
        with unit_of_work() as uow:
            return endpoints.rotate_secret(uow, _box(), tenant_id(), str(webhook_id), overlap, utcnow())


@blp.route("/<uuid:webhook_id>/ping")
class Ping(MethodView):
    @requires("crm")
    @blp.response(202, DeliverySchema, description="The ping delivery, sent by the worker within seconds",
                  headers={"Location": {"description": "The delivery", "schema": {"type": "string"}}})
    def post(self, webhook_id: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Send a `liaison.webhooks.ping` event to this endpoint (enabled or not) to test it"""
        with unit_of_work() as uow:
            row = deliveries.view(endpoints.ping(uow, tenant_id(), str(webhook_id)))
        return row, 202, {"Location": f"/v1/webhooks/{webhook_id}/deliveries/{row['id']}"}


@blp.route("/<uuid:webhook_id>/deliveries")
class Deliveries(MethodView):
    @requires("crm", "compliance")
    @blp.arguments(DeliveryArgs(), location="query")
    @blp.response(200, DeliveryListSchema)
    def get(self, args: dict[str, Any], webhook_id: Any) -> dict[str, Any]:
        """List an endpoint's deliveries, newest first (kept 30 days)"""
        tenant = tenant_id()
        with unit_of_work(read_only=True) as uow:
            endpoints.get(uow, tenant, str(webhook_id))
            rows = delivery_repo.page(uow, tenant, str(webhook_id), args["limit"] + 1, _after_id(args["cursor"]),
                                      args.get("status"))
        return page([deliveries.view(r) for r in rows], args["limit"], lambda d: (d["id"],))


@blp.route("/<uuid:webhook_id>/deliveries/<uuid:delivery_id>")
class Delivery(MethodView):
    @requires("crm", "compliance")
    @blp.response(200, DeliveryDetailSchema)
    def get(self, webhook_id: Any, delivery_id: Any) -> dict[str, Any]:
        """Read a delivery: the body sent and every attempt"""
        with unit_of_work(read_only=True) as uow:
            return deliveries.detail(uow, tenant_id(), str(webhook_id), str(delivery_id))


@blp.route("/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/replay")
class Replay(MethodView):
    @requires("crm")
    @blp.response(202, DeliverySchema, description="Due now: the worker sends it within seconds")
    @blp.alt_response(409, response="CONFLICT", description="Its payload was erased with the contact it was about")
    def post(self, webhook_id: Any, delivery_id: Any) -> tuple[dict[str, Any], int]:
        """Send a delivery again now, whatever its status

        One more attempt for a finished delivery (failed or succeeded), signed anew; a pending one
        is tried at once and keeps its remaining retries. 409 once its payload was erased."""
        with unit_of_work() as uow:
            return deliveries.replay(uow, tenant_id(), str(webhook_id), str(delivery_id)), 202


class ExportedDeliverySchema(DeliverySchema):
    request_body = ma.fields.String(metadata={"description": "The body sent"})


class ContactExportSchema(ma.Schema):
    contact_id = ma.fields.String()
    deliveries = ma.fields.List(ma.fields.Nested(ExportedDeliverySchema), metadata={
        "description": "Deliveries of events about the contact to the tenant's endpoints, with the body sent"})


contacts_blp = Blueprint("webhook_contacts", __name__, url_prefix="/v1/webhooks/contacts",
                         description="What webhooks holds about a contact")


@contacts_blp.route("/<uuid:contact_id>/export")
class ContactExport(MethodView):
    @requires("compliance")
    @contacts_blp.response(200, ContactExportSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """Everything webhooks holds about a contact (right of access). 404 when it holds nothing"""
        tenant, contact = tenant_id(), str(contact_id)
        with unit_of_work(read_only=True) as uow:
            held = deliveries.export_for_contact(uow, tenant, contact)
        if not held:
            raise errors.NotFound(f"webhooks holds nothing about contact {contact}")
        return {"contact_id": contact, "deliveries": held}
