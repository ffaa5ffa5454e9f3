"""The audit trail: every change to personal data or consent, every export and every erasure, in
every service, chained by hash."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.identity import audit_chain
from shared import errors
from shared.web import Blueprint, PageArgs, decode_cursor, page, page_schema, requires, tenant_id, unit_of_work

blp = Blueprint(
    "audit", __name__, url_prefix="/v1/audit",
    description="The hash-chained audit trail (each tenant has its own chain). An entry's `hash` is"
                " sha256 of its `prev_hash`, a line feed, and the canonical JSON (sorted keys, no"
                " spaces, UTF-8) of {seq, at, actor, action, resource, contact_id, details}, `at` as"
                " shown here; the first entry's `prev_hash` is 64 zeros. Entries of the other"
                " services carry `details.service`.",
)


class AuditQuerySchema(PageArgs):
    contact_id = ma.fields.UUID(metadata={
        "description": "Only entries about this contact, those of the duplicates merged into it"
                       " included (also after the contact was erased)"})
    since = ma.fields.AwareDateTime(data_key="from", default_timezone=UTC,
                                    metadata={"description": "Entries at or after this time (RFC 3339)"})
    until = ma.fields.AwareDateTime(data_key="to", default_timezone=UTC,
                                    metadata={"description": "Entries before this time (exclusive)"})


class AuditEntrySchema(ma.Schema):
    seq = ma.fields.Integer(metadata={"description": "Place in the tenant's chain, from 1, no gaps"})
    at = ma.fields.String(metadata={"description": "RFC 3339, UTC, microseconds: the hashed form"})
    actor = ma.fields.String(metadata={"description": "`key:<api key id>`, `admin` or `service:<name>`"})
    action = ma.fields.String(metadata={"example": "contact.updated"})
    resource = ma.fields.String(metadata={"example": "contact/0190a3b4-..."})
    contact_id = ma.fields.UUID(allow_none=True)
    details = ma.fields.Dict(metadata={"description": "What changed; never the personal data itself"})
    prev_hash = ma.fields.String()
    hash = ma.fields.String()

    class Meta:
        ordered = True


AuditPageSchema = page_schema(AuditEntrySchema, "AuditPageSchema")


class VerificationSchema(ma.Schema):
    valid = ma.fields.Boolean()
    entries = ma.fields.Integer(metadata={"description": "How many entries the chain holds"})
    first_invalid_seq = ma.fields.Integer(allow_none=True, metadata={
        "description": "The first edited or misplaced entry's seq, or for deleted entries the first"
                       " missing seq; null when the chain is intact"})

    class Meta:
        ordered = True


def _after_seq(cursor: str | None) -> int:
    after = decode_cursor(cursor, 1)
    if after is None:
        return 0
    try:
        return int(after[0])
    except ValueError:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]}) from None


@blp.route("")
class AuditTrail(MethodView):
    @requires("compliance")
    @blp.arguments(AuditQuerySchema(), location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List audit entries in chain order, by contact and time"""
        after = _after_seq(query["cursor"])
        tenant = tenant_id()
        with unit_of_work() as uow:  # seal first: the caller sees every committed write
            audit_chain.seal(uow, tenant)
        with unit_of_work() as uow:
            items = audit_chain.list_entries(
                uow, tenant, contact_id=str(query["contact_id"]) if query.get("contact_id") else None,
                since=query.get("since"), until=query.get("until"), after_seq=after,
                limit=query["limit"] + 1,
            )
        return page(items, query["limit"], lambda e: (e["seq"],))


@blp.route("/verify")
class AuditVerify(MethodView):
    @requires("compliance")
    @blp.response(200, VerificationSchema)
    def get(self) -> dict[str, Any]:
        """Verify the tenant's whole chain: detects edited, deleted and reordered entries"""
        tenant = tenant_id()
        with unit_of_work() as uow:
            audit_chain.seal(uow, tenant)
        with unit_of_work() as uow:
            result = audit_chain.verify(uow, tenant)
        return {"valid": result.valid, "entries": result.entries,
                "first_invalid_seq": result.first_invalid_seq}
