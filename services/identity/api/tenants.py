"""Tenants and API keys: managed with the admin key only."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.identity import tenants
from shared.auth import SCOPES
from shared.events import rfc3339
from shared.web import Blueprint, current_principal, idempotent, requires, unit_of_work

blp = Blueprint("tenants", __name__, url_prefix="/v1", description="Tenants and their API keys")


class ControllerSchema(ma.Schema):
    """The data controller named on consent receipts."""

    name = ma.fields.String(validate=ma.validate.Length(max=200))
    contact = ma.fields.String(validate=ma.validate.Length(max=200))
    email = ma.fields.String(validate=ma.validate.Length(max=320))
    phone = ma.fields.String(validate=ma.validate.Length(max=50))
    address = ma.fields.Dict()
    url = ma.fields.Url()


class TenantSettingsSchema(ma.Schema):
    controller = ma.fields.Nested(ControllerSchema)
    jurisdiction = ma.fields.String(metadata={"description": "e.g. EU, FR"})
    policy_url = ma.fields.Url()
    language = ma.fields.String(metadata={"description": "Receipt language, e.g. en"})


class TenantInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    settings = ma.fields.Nested(TenantSettingsSchema, load_default=dict)


class TenantPatchSchema(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(1, 200))
    settings = ma.fields.Nested(TenantSettingsSchema)


class TenantSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    settings = ma.fields.Nested(TenantSettingsSchema)
    created_at = ma.fields.String()


class KeyInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    scopes = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(SCOPES)), required=True,
        validate=ma.validate.Length(min=1),
    )


class KeySchema(ma.Schema):
    id = ma.fields.UUID()
    tenant_id = ma.fields.UUID()
    name = ma.fields.String()
    key = ma.fields.String(metadata={"description": "Shown once; only its hash is stored."})
    scopes = ma.fields.List(ma.fields.String())
    created_at = ma.fields.String()


class CurrentKeySchema(ma.Schema):
    id = ma.fields.UUID()
    tenant_id = ma.fields.UUID()
    scopes = ma.fields.List(ma.fields.String())


def _tenant(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "settings": row["settings"],
            "created_at": rfc3339(row["created_at"])}


@blp.route("/tenants")
class Tenants(MethodView):
    @requires(admin=True)
    @idempotent
    @blp.arguments(TenantInSchema())
    @blp.response(201, TenantSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a tenant"""
        with unit_of_work() as uow:
            return _tenant(tenants.create_tenant(uow, body["name"], body["settings"]))


@blp.route("/tenants/<uuid:tenant_id>")
class Tenant(MethodView):
    @requires(admin=True)
    @blp.response(200, TenantSchema)
    def get(self, tenant_id: Any) -> dict[str, Any]:
        """Read a tenant"""
        with unit_of_work() as uow:
            return _tenant(tenants.get_tenant(uow, str(tenant_id)))

    @requires(admin=True)
    @blp.arguments(TenantPatchSchema())
    @blp.response(200, TenantSchema)
    def patch(self, body: dict[str, Any], tenant_id: Any) -> dict[str, Any]:
        """Rename a tenant or change its settings (controller details for consent receipts)"""
        with unit_of_work() as uow:
            return _tenant(tenants.update_tenant(uow, str(tenant_id), body.get("name"), body.get("settings")))


@blp.route("/tenants/<uuid:tenant_id>/api-keys")
class TenantKeys(MethodView):
    @requires(admin=True)
    @idempotent
    @blp.arguments(KeyInSchema())
    @blp.response(201, KeySchema)
    def post(self, body: dict[str, Any], tenant_id: Any) -> dict[str, Any]:
        """Create an API key for a tenant (the key is shown once)"""
        with unit_of_work() as uow:
            row = tenants.create_key(uow, str(tenant_id), body["name"], body["scopes"])
        return {"id": str(row["id"]), "tenant_id": str(row["tenant_id"]), "name": row["name"],
                "key": row["key"], "scopes": row["scopes"], "created_at": rfc3339(row["created_at"])}


@blp.route("/api-keys/<uuid:key_id>")
class ApiKey(MethodView):
    @requires(admin=True)
    @blp.response(204)
    def delete(self, key_id: Any) -> None:
        """Revoke an API key: it stops working on every service within 5 seconds"""
        with unit_of_work() as uow:
            tenants.revoke_key(uow, str(key_id))


@blp.route("/api-keys/current")
class CurrentKey(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.response(200, CurrentKeySchema)
    def get(self) -> dict[str, Any]:
        """Who this key is: its tenant and scopes (how the other services check a key)"""
        principal = current_principal()
        return {"id": principal.key_id, "tenant_id": principal.tenant_id,
                "scopes": sorted(principal.scopes)}
