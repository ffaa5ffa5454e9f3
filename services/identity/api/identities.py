"""Social identities: link handles to contacts and resolve handles to contacts."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.identity import identities
from services.identity.handles import NETWORKS
from shared.web import Blueprint, current_principal, idempotent, page_schema, requires, tenant_id, unit_of_work

blp = Blueprint("identities", __name__, url_prefix="/v1", description="Social identities")

RESOLVE_MAX = 1000


class HandleRefSchema(ma.Schema):
    network = ma.fields.String(required=True, validate=ma.validate.OneOf(NETWORKS))
    handle = ma.fields.String(
        required=True, validate=ma.validate.Length(1, 300),
        metadata={"description": "A handle (`@foo`) or a profile URL (`https://x.com/foo`)"},
    )


class IdentityInSchema(HandleRefSchema):
    network_user_id = ma.fields.String(validate=ma.validate.Length(max=100))
    verified = ma.fields.Boolean(load_default=False)
    source = ma.fields.String(validate=ma.validate.Length(max=100))


class IdentitySchema(ma.Schema):
    id = ma.fields.UUID()
    contact_id = ma.fields.UUID()
    network = ma.fields.String()
    handle = ma.fields.String(metadata={"description": "Normalized: no @, no URL, case-folded"})
    network_user_id = ma.fields.String(allow_none=True)
    verified = ma.fields.Boolean()
    source = ma.fields.String(allow_none=True)
    created_at = ma.fields.String()


IdentityListSchema = page_schema(IdentitySchema, "IdentityListSchema")


class ResolvedSchema(ma.Schema):
    contact_id = ma.fields.UUID()
    identity_id = ma.fields.UUID()


class ResolveBatchInSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HandleRefSchema), required=True,
                           validate=ma.validate.Length(1, RESOLVE_MAX))


class ResolvedItemSchema(ma.Schema):
    network = ma.fields.String()
    handle = ma.fields.String()
    contact_id = ma.fields.UUID(allow_none=True)
    error = ma.fields.String()


class ResolveBatchSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ResolvedItemSchema))


@blp.route("/contacts/<uuid:contact_id>/identities")
class ContactIdentities(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(IdentityInSchema())
    @blp.response(201, IdentitySchema, description="Linked")
    @blp.alt_response(200, schema=IdentitySchema, description="This handle was already linked to this contact")
    @blp.alt_response(409, description="The handle is linked to another contact, named in `contact_id`")
    def post(self, body: dict[str, Any], contact_id: Any) -> tuple[dict[str, Any], int]:
        """Link a social handle to a contact"""
        with unit_of_work() as uow:
            identity, created = identities.link_handle(
                uow, tenant_id(), current_principal().actor, str(contact_id), body
            )
        return identity, 201 if created else 200

    @requires("crm", "marketing", "compliance")
    @blp.response(200, IdentityListSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """List a contact's social identities"""
        with unit_of_work() as uow:
            return {"items": identities.list_handles(uow, tenant_id(), str(contact_id)),
                    "next_cursor": None}


@blp.route("/contacts/<uuid:contact_id>/identities/<uuid:identity_id>")
class ContactIdentity(MethodView):
    @requires("crm")
    @blp.response(204)
    def delete(self, contact_id: Any, identity_id: Any) -> None:
        """Unlink a social handle"""
        with unit_of_work() as uow:
            identities.unlink_handle(uow, tenant_id(), current_principal().actor,
                                     str(contact_id), str(identity_id))


@blp.route("/identities/resolve")
class Resolve(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.arguments(HandleRefSchema(), location="query")
    @blp.response(200, ResolvedSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Which contact has this handle (404 when none)"""
        with unit_of_work(read_only=True) as uow:
            return identities.resolve(uow, tenant_id(), query["network"], query["handle"])

    @requires("crm", "marketing", "compliance")
    @blp.arguments(ResolveBatchInSchema())
    @blp.response(200, ResolveBatchSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Resolve up to 1,000 handles at once, answered in the order asked"""
        with unit_of_work(read_only=True) as uow:
            return {"items": identities.resolve_many(uow, tenant_id(), body["items"])}
