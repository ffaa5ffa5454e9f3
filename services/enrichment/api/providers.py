"""The providers enrichment asks, and a tenant's own credentials for them."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.enrichment import credentials
from shared.web import Blueprint, current_principal, page_schema, requires, service, tenant_id, unit_of_work

blp = Blueprint("providers", __name__, url_prefix="/v1/providers",
                description="The providers enrichment asks, and the tenant's own credentials for them")


class ProviderSchema(ma.Schema):
    network = ma.fields.String(metadata={"description": "The provider: `x`, `instagram`, `facebook`, `fullcontact`"})
    fields = ma.fields.List(ma.fields.String(), metadata={
        "description": "The credential fields a tenant sets for this provider"})
    source = ma.fields.String(metadata={
        "enum": [credentials.TENANT, credentials.PLATFORM, credentials.NONE],
        "description": "Whose credentials the tenant's jobs use: its own (`tenant`), the platform's "
                       "(`platform`), or none, in which case the provider is reported `not_configured`"})
    key_hint = ma.fields.String(metadata={
        "description": "The last 4 characters of the tenant's first credential field (absent for a short value)"})
    updated_at = ma.fields.String(metadata={"description": "When the tenant set its credentials"})


ProviderListSchema = page_schema(ProviderSchema, "ProviderList")


class CredentialsInSchema(ma.Schema):
    credentials = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.String(), required=True,
        metadata={"description": "Exactly the provider's `fields`, each a non-empty string: "
                                 "x `{bearer_token}`, fullcontact `{api_key}`, facebook `{access_token}`, "
                                 "instagram `{access_token, business_account_id}`. Stored encrypted; "
                                 "never shown again.",
                  "example": {"bearer_token": "AAAAAAAAAAAAAAAAAAAAAExample"}},
    )


@blp.route("")
class Providers(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.response(200, ProviderListSchema)
    def get(self) -> dict[str, Any]:
        """The providers, and whose credentials the tenant's jobs call each with"""
        with unit_of_work(read_only=True) as uow:
            return {"items": credentials.listing(uow, tenant_id()), "next_cursor": None}


@blp.route("/<string:network>/credentials")
class ProviderCredentials(MethodView):
    @requires("crm")
    @blp.arguments(CredentialsInSchema())
    @blp.response(200, ProviderSchema)
    def put(self, body: dict[str, Any], network: str) -> dict[str, Any]:
        """Set the tenant's own credentials for a provider; its jobs then use them instead of the platform's"""
        with unit_of_work() as uow:
            return credentials.set_credentials(uow, service().settings.secret_key, tenant_id(),
                                               current_principal().actor, network, body["credentials"])

    @requires("crm")
    @blp.response(204)
    def delete(self, network: str) -> None:
        """Remove the tenant's own credentials for a provider; its jobs use the platform's again"""
        with unit_of_work() as uow:
            credentials.remove(uow, tenant_id(), current_principal().actor, network)
