"""Inbound offers: what a customer portal or a social page app shows a contact."""

from __future__ import annotations

from functools import partial
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.campaigns import offers, templates, tracking
from shared.web import Blueprint, requires, service, tenant_id, unit_of_work

blp = Blueprint("offers", __name__, url_prefix="/v1/offers", description="Inbound offers")


class OfferArgs(ma.Schema):
    contact_id = ma.fields.UUID(required=True)


class OfferSchema(ma.Schema):
    campaign_id = ma.fields.String()
    title = ma.fields.String()
    body = ma.fields.String()
    ends_at = ma.fields.String()


class OfferListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(OfferSchema))


@blp.route("")
class Offers(MethodView):
    @requires("crm", "marketing")
    @blp.arguments(OfferArgs(), location="query")
    @blp.response(200, OfferListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The open offers of the campaigns this contact was in, rendered from their `web` content

        The same personalized offer the contact received by email or SMS; links are tracked
        against the campaign. Newest campaign first; an empty list for a contact with none."""
        tenant, settings = tenant_id(), service().settings
        click = partial(tracking.click_url, tracking.public_url(settings), settings.secret_key, tenant)
        with unit_of_work(read_only=True) as uow:
            items = offers.offers_for(uow, tenant, str(args["contact_id"]), templates.render_content, click)
        return {"items": items}
