"""Contact profiles as enrichment gathered them, and what enrichment holds about a contact."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.enrichment import jobs, profiles, projections
from shared import errors
from shared.web import Blueprint, requires, tenant_id, unit_of_work

blp = Blueprint("profiles", __name__, url_prefix="/v1/profiles",
                description="Contact profiles: demographics, influence, engagement, geolocation")


class DemographicsSchema(ma.Schema):
    age = ma.fields.Raw(allow_none=True, metadata={"description": "An age range, e.g. 30-39"})
    city = ma.fields.String(allow_none=True)
    country = ma.fields.String(allow_none=True)
    profession = ma.fields.String(allow_none=True)
    interests = ma.fields.List(ma.fields.String())


class InfluenceSchema(ma.Schema):
    followers = ma.fields.Integer(allow_none=True)
    following = ma.fields.Integer(allow_none=True)
    posts_per_month = ma.fields.Float(allow_none=True)
    engagement_rate = ma.fields.Float(allow_none=True, metadata={"description": "A fraction: 0.034 is 3.4 %"})
    score = ma.fields.Float(allow_none=True, metadata={"description": "0-100"})
    tier = ma.fields.String(allow_none=True, metadata={"enum": ["none", "nano", "micro", "macro", "mega"]})


class EngagementSchema(ma.Schema):
    mentions = ma.fields.Integer()
    positive = ma.fields.Integer()
    neutral = ma.fields.Integer()
    negative = ma.fields.Integer()
    sentiment = ma.fields.Float(allow_none=True, metadata={"description": "-1..1; null without mentions"})
    satisfaction = ma.fields.Float(allow_none=True, metadata={"description": "0-100; null without mentions"})


class CheckinSchema(ma.Schema):
    place = ma.fields.String(allow_none=True)
    lat = ma.fields.Float(allow_none=True)
    lon = ma.fields.Float(allow_none=True)
    at = ma.fields.String(allow_none=True)


class GeolocationSchema(ma.Schema):
    last_checkin = ma.fields.Nested(CheckinSchema, allow_none=True)


class SourceSchema(ma.Schema):
    network = ma.fields.String()
    fetched_at = ma.fields.String(allow_none=True)


class ProfileSchema(ma.Schema):
    contact_id = ma.fields.String()
    demographics = ma.fields.Nested(DemographicsSchema)
    influence = ma.fields.Nested(InfluenceSchema)
    engagement = ma.fields.Nested(EngagementSchema)
    geolocation = ma.fields.Nested(GeolocationSchema)
    sources = ma.fields.List(ma.fields.Nested(SourceSchema))
    updated_at = ma.fields.String(allow_none=True)
    provenance = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.Nested(SourceSchema)),
        metadata={"description": "Where each field came from: \"demographics.city\", "
                                 "\"influence.followers\", ... → [{network, fetched_at}] (one source "
                                 "per network that went into the figure; empty when nothing has "
                                 "said yet)"})


class ExportSchema(ma.Schema):
    contact_id = ma.fields.String()
    consents = ma.fields.List(ma.fields.Dict())
    handles = ma.fields.List(ma.fields.Dict())
    profile = ma.fields.Dict(allow_none=True)
    social_events = ma.fields.List(ma.fields.Dict())
    enrichments = ma.fields.List(ma.fields.Dict())


@blp.route("/<uuid:contact_id>")
class Profile(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.response(200, ProfileSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """A contact's profile, each field with where it came from. 404 when enrichment has never
        heard of the contact (no consent, handle, feed event or profile); a contact it knows but
        has not enriched yet has nulls, and zero mentions"""
        with unit_of_work() as uow:
            found = profiles.view(uow, tenant_id(), str(contact_id))
        if found is None:
            raise errors.NotFound.of("profile", contact_id)
        return found


@blp.route("/<uuid:contact_id>/export")
class ProfileExport(MethodView):
    @requires("compliance")
    @blp.response(200, ExportSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """Everything enrichment holds about a contact (right of access). 404 when it holds nothing"""
        tenant, contact = tenant_id(), str(contact_id)
        with unit_of_work() as uow:
            held = projections.export_for_contact(uow, tenant, contact)
            held["enrichments"] = jobs.of_contact(uow, tenant, contact)
        if not any(held.values()):
            raise errors.NotFound(f"enrichment holds nothing about contact {contact}")
        return {"contact_id": contact, **held}
