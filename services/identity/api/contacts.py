"""Contacts: upsert by CRM reference, bulk upsert, read, change, find, merge."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.identity import contacts
from services.identity.api.contact_rows import quick_load
from services.identity.api.fields import EachRow, Email, Locale, Phone, TimeZone
from shared.web import (
    Blueprint,
    PageArgs,
    current_principal,
    decode_cursor,
    idempotent,
    page,
    page_schema,
    requires,
    tenant_id,
    unit_of_work,
)

blp = Blueprint("contacts", __name__, url_prefix="/v1/contacts", description="CRM contacts")

BULK_MAX = 10_000


class CrmRefSchema(ma.Schema):
    system = ma.fields.String(required=True, validate=ma.validate.Length(1, 100),
                              metadata={"description": "The CRM, e.g. salesforce, hubspot"})
    id = ma.fields.String(required=True, validate=ma.validate.Length(1, 200),
                          metadata={"description": "The record's id in that CRM"})


class ContactFieldsSchema(ma.Schema):
    email = Email(allow_none=True, metadata={"example": "jeanne@example.com"})
    phone = Phone(allow_none=True, metadata={"description": "E.164", "example": "+33612345678"})
    first_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    last_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    locale = Locale(allow_none=True, metadata={"example": "fr-FR"})
    timezone = TimeZone(allow_none=True, metadata={"example": "Europe/Paris"})
    attributes = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(1, 100)),
                                metadata={"description": "Free-form CRM attributes, merged key by key"})


class ContactInSchema(ContactFieldsSchema):
    crm_ref = ma.fields.Nested(CrmRefSchema, required=True)


class ContactPatchSchema(ContactFieldsSchema):
    crm_ref = ma.fields.Nested(CrmRefSchema)


class ContactSchema(ContactInSchema):
    id = ma.fields.UUID()
    suppressed = ma.fields.Boolean(
        metadata={"description": "An identifier of this contact matches an erased contact's"}
    )
    created_at = ma.fields.String()
    updated_at = ma.fields.String()

    class Meta:
        ordered = True


class BulkInSchema(ma.Schema):
    contacts = EachRow(ma.fields.Nested(ContactInSchema), required=True,
                       validate=ma.validate.Length(1, BULK_MAX))


class RowErrorSchema(ma.Schema):
    index = ma.fields.Integer()
    errors = ma.fields.Dict()


class BulkResultSchema(ma.Schema):
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    errors = ma.fields.List(ma.fields.Nested(RowErrorSchema))


class ContactQuerySchema(PageArgs):
    email = Email()
    crm_system = ma.fields.String()
    crm_id = ma.fields.String()


ContactPageSchema = page_schema(ContactSchema, "ContactPageSchema")


class MergeInSchema(ma.Schema):
    duplicate_id = ma.fields.UUID(required=True)


_contact_in = ContactInSchema()


@blp.route("")
class Contacts(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(ContactInSchema())
    @blp.response(201, ContactSchema, description="Created")
    @blp.alt_response(200, schema=ContactSchema, description="A contact with this crm_ref existed and was updated")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Create or update a contact by CRM reference (an upsert)"""
        with unit_of_work() as uow:
            [(contact, created)] = contacts.upsert_contacts(
                uow, tenant_id(), current_principal().actor, [body]
            )
        return contact, 201 if created else 200

    @requires("crm", "marketing", "compliance")
    @blp.arguments(ContactQuerySchema(), location="query")
    @blp.response(200, ContactPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Find contacts by email or CRM reference"""
        after = decode_cursor(query["cursor"], 1)
        with unit_of_work() as uow:
            items = contacts.find_contacts(
                uow, tenant_id(), email=query.get("email"), crm_system=query.get("crm_system"),
                crm_id=query.get("crm_id"), after=after[0] if after else None,
                limit=query["limit"] + 1,
            )
        return page(items, query["limit"], lambda c: (c["id"],))


@blp.route("/bulk")
class ContactsBulk(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(BulkInSchema())
    @blp.response(200, BulkResultSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Upsert up to 10,000 contacts: good rows land, bad rows are reported by index"""
        errors: list[dict[str, Any]] = []
        by_ref: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        for index, row in enumerate(body["contacts"]):
            contact = quick_load(row)
            if contact is None:
                try:
                    contact = _contact_in.load(row if isinstance(row, dict) else {"_": row})
                except ma.ValidationError as exc:
                    errors.append({"index": index, "errors": exc.normalized_messages()})
                    continue
            ref = (contact["crm_ref"]["system"], contact["crm_ref"]["id"])
            if ref in by_ref:  # the same record twice in one batch: the later row wins
                errors.append({"index": by_ref[ref][0],
                               "errors": {"crm_ref": [f"Superseded by row {index} with the same crm_ref."]}})
            by_ref[ref] = (index, contact)
        rows = [contact for _, contact in by_ref.values()]
        with unit_of_work() as uow:
            results = contacts.upsert_contacts(uow, tenant_id(), current_principal().actor, rows,
                                               with_contacts=False)
        created = sum(1 for _, was_created in results if was_created)
        errors.sort(key=lambda e: e["index"])
        return {"created": created, "updated": len(results) - created, "errors": errors}


@blp.route("/<uuid:contact_id>")
class Contact(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.response(200, ContactSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """Read a contact"""
        with unit_of_work(read_only=True) as uow:
            return contacts.view(contacts.get_contact(uow, tenant_id(), str(contact_id)))

    @requires("crm")
    @blp.arguments(ContactPatchSchema())
    @blp.response(200, ContactSchema)
    def patch(self, body: dict[str, Any], contact_id: Any) -> dict[str, Any]:
        """Change some fields of a contact (attributes merge key by key; null removes a key)"""
        with unit_of_work() as uow:
            return contacts.update_contact(uow, tenant_id(), current_principal().actor,
                                           str(contact_id), body)


@blp.route("/<uuid:contact_id>/merge")
class ContactMerge(MethodView):
    @requires("crm")
    @blp.arguments(MergeInSchema())
    @blp.response(200, ContactSchema)
    def post(self, body: dict[str, Any], contact_id: Any) -> dict[str, Any]:
        """Merge a duplicate into this contact: its identities and consent history move here,
        and the duplicate is gone"""
        with unit_of_work() as uow:
            return contacts.merge_contacts(uow, tenant_id(), current_principal().actor,
                                           str(contact_id), str(body["duplicate_id"]))
