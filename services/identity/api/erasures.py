"""The rights to erasure and of access: erase a contact everywhere, follow the erasure, export
everything every service holds about a contact."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import g, request
from flask.views import MethodView

from services.identity import erasure, export
from shared import errors
from shared.web import (
    Blueprint,
    PageArgs,
    current_principal,
    decode_cursor,
    page,
    page_schema,
    requires,
    service,
    tenant_id,
    unit_of_work,
)

blp = Blueprint("erasures", __name__, url_prefix="/v1",
                description="Rights of the person: erasure and access (export)")

SERVICE_STATUS = ma.fields.String(validate=ma.validate.OneOf((erasure.PENDING, erasure.COMPLETED)))


class ErasureAcceptedSchema(ma.Schema):
    erasure_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"example": "pending"})

    class Meta:
        ordered = True


class ErasureSchema(ma.Schema):
    id = ma.fields.UUID()
    contact_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"description": "`completed` once every service has erased"})
    services = ma.fields.Dict(keys=ma.fields.String(), values=SERVICE_STATUS, metadata={
        "description": "Per service: `pending` or `completed`",
        "example": {"identity": "completed", "enrichment": "pending", "campaigns": "pending",
                    "webhooks": "pending"}})
    requested_at = ma.fields.String()
    completed_at = ma.fields.String(allow_none=True)

    class Meta:
        ordered = True


class ErasureQuerySchema(PageArgs):
    contact_id = ma.fields.UUID()
    status = ma.fields.String(validate=ma.validate.OneOf((erasure.PENDING, erasure.COMPLETED)))


ErasurePageSchema = page_schema(ErasureSchema, "ErasurePageSchema")


class ExportSchema(ma.Schema):
    contact_id = ma.fields.UUID()
    generated_at = ma.fields.String()
    services = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Dict(), metadata={
        "description": "Per service, what it holds: `identity` {contact, merged_contact_ids,"
                       " identities, consents, audit}; `enrichment`, `campaigns` and `webhooks` as those services"
                       " export them ({} when they hold nothing)"})

    class Meta:
        ordered = True


EXPORT_DOC = """Every datum every service holds about the contact, as one JSON document (the
rights of access and portability). The export is on the audit trail (`contact.exported`).

identity asks the other services with the caller's key, at these internal endpoints:
`GET {ENRICHMENT_URL}/v1/profiles/{contact_id}/export`,
`GET {CAMPAIGNS_URL}/v1/campaigns/contacts/{contact_id}/export` and
`GET {WEBHOOKS_URL}/v1/webhooks/contacts/{contact_id}/export` (404 there means the service holds
nothing: an empty part). When a service does not answer (refused, timeout, 5xx, after one retry),
the answer is 502 problem+json with `unavailable` (the services that failed), `reasons` and
`export` (the document with the parts that could be had, the failed ones null)."""

ERASE_DOC = """The right to erasure. identity erases what it holds at once, in one transaction:
the contact and its social identities are deleted, its email, phone and handles go on the
suppression list as salted hashes (a later import of any of them is flagged `suppressed`), and the
evidence behind its consent records (IP, user agent, proof) is deleted; the consent ledger keeps
its records as proof of past consent. The other services are asked over the bus
(`liaison.identity.contact.erasure_requested`) and confirm with
`liaison.<service>.erasure.completed`; follow it with `GET /v1/erasures/{erasure_id}`.

The contact no longer exists afterwards: erasing it again, like erasing an unknown contact,
is 404 (find the erasure with `GET /v1/erasures?contact_id=`)."""


def _after_id(cursor: str | None) -> str | None:
    after = decode_cursor(cursor, 1)
    if after is None:
        return None
    try:
        return str(uuid.UUID(after[0]))
    except ValueError:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None


@blp.route("/contacts/<uuid:contact_id>")
class ContactErasure(MethodView):
    @requires("compliance", "crm")
    @blp.response(202, ErasureAcceptedSchema, description="Erasure started",
                  headers={"Location": {"description": "The erasure", "schema": {"type": "string"}}})
    @blp.doc(description=ERASE_DOC)
    def delete(self, contact_id: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Erase a contact in every service (right to erasure)"""
        with unit_of_work() as uow:
            done = erasure.request_erasure(uow, tenant_id(), current_principal().actor, str(contact_id))
        return ({"erasure_id": done["id"], "status": done["status"]}, 202,
                {"Location": f"/v1/erasures/{done['id']}"})


@blp.route("/contacts/<uuid:contact_id>/export")
class ContactExport(MethodView):
    @requires("compliance")
    @blp.response(200, ExportSchema)
    @blp.alt_response(502, description="A service did not answer; the problem names it in"
                                        " `unavailable` and carries the rest in `export`")
    @blp.doc(description=EXPORT_DOC)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """Export everything every service holds about a contact (right of access)"""
        headers = {"Authorization": request.headers.get("Authorization", ""),
                   "Accept": "application/json", "X-Request-Id": g.get("request_id", "")}
        return export.export_contact(
            service().db.transaction, tenant_id(), current_principal().actor, str(contact_id),
            export.remote_parts(service().settings, str(contact_id)), headers,
        )


@blp.route("/erasures")
class Erasures(MethodView):
    @requires("compliance", "crm")
    @blp.arguments(ErasureQuerySchema(), location="query")
    @blp.response(200, ErasurePageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List erasures, newest first"""
        after = _after_id(query["cursor"])
        with unit_of_work() as uow:
            items = erasure.find_erasures(
                uow, tenant_id(), contact_id=str(query["contact_id"]) if query.get("contact_id") else None,
                status=query.get("status"), after=after, limit=query["limit"] + 1,
            )
        return page(items, query["limit"], lambda e: (e["id"],))


@blp.route("/erasures/<uuid:erasure_id>")
class ErasureStatus(MethodView):
    @requires("compliance", "crm")
    @blp.response(200, ErasureSchema)
    def get(self, erasure_id: Any) -> dict[str, Any]:
        """Follow an erasure: its status in every service"""
        with unit_of_work() as uow:
            return erasure.get_erasure(uow, tenant_id(), str(erasure_id))
