"""What campaigns holds about a contact: its part of the access export (identity gathers it)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.campaigns import audience
from shared import errors
from shared.web import Blueprint, requires, tenant_id, unit_of_work

blp = Blueprint("campaign_contacts", __name__, url_prefix="/v1/campaigns/contacts",
                description="What campaigns holds about a contact")


class ExportSchema(ma.Schema):
    contact_id = ma.fields.String()
    audience = ma.fields.Dict(allow_none=True, metadata={"description": "The contact as campaigns segments it"})
    consents = ma.fields.List(ma.fields.Dict())
    handles = ma.fields.List(ma.fields.Dict())
    deliveries = ma.fields.List(ma.fields.Dict(), metadata={"description": "What was sent to the contact"})
    conversions = ma.fields.List(ma.fields.Dict())


@blp.route("/<uuid:contact_id>/export")
class ContactExport(MethodView):
    @requires("compliance")
    @blp.response(200, ExportSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """Everything campaigns holds about a contact (right of access). 404 when it holds nothing"""
        tenant, contact = tenant_id(), str(contact_id)
        with unit_of_work(read_only=True) as uow:
            held = audience.export_for_contact(uow, tenant, contact)
        if not any(held.values()):
            raise errors.NotFound(f"campaigns holds nothing about contact {contact}")
        return {"contact_id": contact, **held}
