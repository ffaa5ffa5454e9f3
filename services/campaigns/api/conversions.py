"""Conversions reported by the CRM or the shop, attributed to the campaign that earned them."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.campaigns import results
from shared.web import Blueprint, idempotent, requires, tenant_id, unit_of_work

blp = Blueprint("conversions", __name__, url_prefix="/v1/conversions", description="Conversions and attribution")


class ConversionInSchema(ma.Schema):
    contact_id = ma.fields.UUID(required=True)
    # The bounds again as numbers for the document: apispec writes a Decimal field's bounds as
    # the strings "0.00" and "1000000000.00", which makes the OpenAPI document invalid.
    value = ma.fields.Decimal(required=True, places=2, as_string=False, allow_nan=False,
                              validate=ma.validate.Range(0, 10**9), metadata={"minimum": 0, "maximum": 10**9})
    currency = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217, e.g. EUR"))
    occurred_at = ma.fields.AwareDateTime(required=True)
    campaign_id = ma.fields.UUID(allow_none=True, metadata={
        "description": "When the CRM knows it; otherwise the contact's last delivery within 7 days gets it"})


class ConversionSchema(ma.Schema):
    id = ma.fields.String()
    contact_id = ma.fields.String()
    campaign_id = ma.fields.String(allow_none=True)
    delivery_id = ma.fields.String(allow_none=True, metadata={"description": "The last touch it was attributed to"})
    channel = ma.fields.String(allow_none=True)
    value = ma.fields.Float()
    currency = ma.fields.String()
    occurred_at = ma.fields.String()
    created_at = ma.fields.String()


@blp.route("")
class Conversions(MethodView):
    @requires("crm", "marketing")
    @idempotent
    @blp.arguments(ConversionInSchema())
    @blp.response(201, ConversionSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record a conversion (a purchase), attributed by last touch within 7 days"""
        with unit_of_work() as uow:
            return results.record_conversion(uow, tenant_id(), body)
