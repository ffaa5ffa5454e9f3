"""The consent ledger: record consents, read a contact's state, check a purpose, consent
receipts, and the compliance listing and CSV export."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView

from services.identity import consents
from shared.web import (
    Blueprint,
    PageArgs,
    current_principal,
    decode_cursor,
    idempotent,
    page,
    page_schema,
    requires,
    service,
    tenant_id,
    unit_of_work,
)

blp = Blueprint("consents", __name__, url_prefix="/v1", description="The GDPR consent ledger")

PURPOSES = tuple(consents.PURPOSES)
PROOF_MAX_BYTES = 64 * 1024


class Text(ma.fields.String):
    """A string PostgreSQL can store: no NUL character."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ma.ValidationError("Must not contain a NUL character.")
        return text


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Proof(ma.fields.Field):
    """What proves the consent, as the CRM keeps it: a string (a double opt-in token, a
    document reference) or a JSON object (the form as submitted)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str | dict):
            raise ma.ValidationError("Must be a string or a JSON object.")
        dumped = json.dumps(value, ensure_ascii=False)
        if len(dumped.encode()) > PROOF_MAX_BYTES:
            raise ma.ValidationError(f"Must be at most {PROOF_MAX_BYTES} bytes as JSON.")
        if _has_nul(value):  # PostgreSQL's jsonb cannot hold one
            raise ma.ValidationError("Must not contain a NUL character.")
        return value


class IPAddress(ma.fields.IP):
    """An IPv4 or IPv6 address, without an IPv6 zone (`%eth0`: local to one host)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        address = super()._deserialize(value, attr, data, **kwargs)
        if getattr(address, "scope_id", None):
            raise ma.ValidationError("Must be an IP address without a zone (%...).")
        return address


class Moment(ma.fields.AwareDateTime):
    """An RFC 3339 time (one without an offset is read as UTC), normalized to UTC."""

    def __init__(self, **kwargs: Any):
        super().__init__(default_timezone=UTC, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
            raise ma.ValidationError("Out of range.") from None


class SourceInSchema(ma.Schema):
    system = Text(required=True, validate=ma.validate.Length(1, 100),
                  metadata={"description": "Where the consent was captured, e.g. hubspot"})
    form = Text(allow_none=True, validate=ma.validate.Length(max=200),
                metadata={"description": "The form or page, e.g. newsletter-footer"})
    ip = IPAddress(allow_none=True, metadata={"description": "The person's IP address (evidence)"})
    user_agent = Text(allow_none=True, validate=ma.validate.Length(max=1000),
                      metadata={"description": "The person's browser (evidence)"})


class ConsentInSchema(ma.Schema):
    purpose = ma.fields.String(required=True, validate=ma.validate.OneOf(PURPOSES))
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(consents.STATUSES))
    legal_basis = ma.fields.String(required=True, validate=ma.validate.OneOf(consents.LEGAL_BASES))
    source = ma.fields.Nested(SourceInSchema, required=True)
    notice_version = Text(
        required=True, validate=ma.validate.Length(1, 100),
        metadata={"description": "The version of the privacy notice the person was shown"})
    proof = Proof(allow_none=True, metadata={
        "description": "Evidence of the consent: a string or an object (erased on request; its "
                       "salted hash stays in the ledger)"})
    captured_at = Moment(
        allow_none=True,
        metadata={"description": "When the person consented (default: now). At most 5 minutes "
                                 "ahead of the server's clock."})
    expires_at = Moment(
        allow_none=True,
        metadata={"description": "When a grant lapses; after captured_at"})


class SourceSchema(ma.Schema):
    system = ma.fields.String()
    form = ma.fields.String(allow_none=True)
    ip = ma.fields.String(allow_none=True)
    user_agent = ma.fields.String(allow_none=True)


class ConsentSchema(ma.Schema):
    id = ma.fields.UUID()
    contact_id = ma.fields.UUID(metadata={"description": "The contact it was captured for (for a "
                                                         "merged duplicate, the duplicate's id)"})
    purpose = ma.fields.String()
    status = ma.fields.String()
    legal_basis = ma.fields.String()
    source = ma.fields.Nested(SourceSchema)
    notice_version = ma.fields.String()
    proof = ma.fields.Raw(allow_none=True)
    captured_at = ma.fields.String()
    expires_at = ma.fields.String(allow_none=True)
    recorded_at = ma.fields.String()
    evidence_hash = ma.fields.String(
        allow_none=True,
        metadata={"description": "HMAC-SHA256 of the evidence under the tenant's salt; outlives "
                                 "the evidence's erasure"})
    evidence_erased = ma.fields.Boolean()


class PurposeStateSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "granted, withdrawn, expired or none"})
    record_id = ma.fields.UUID(allow_none=True)
    captured_at = ma.fields.String(allow_none=True)
    expires_at = ma.fields.String(allow_none=True)


class ContactConsentsSchema(ma.Schema):
    current = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Nested(PurposeStateSchema),
        metadata={"description": "Every purpose; the record with the latest captured_at decides"})
    history = ma.fields.List(ma.fields.Nested(ConsentSchema),
                             metadata={"description": "Oldest first, merged duplicates' included"})


class CheckQuerySchema(ma.Schema):
    contact_id = ma.fields.UUID(required=True)
    purpose = ma.fields.String(required=True, validate=ma.validate.OneOf(PURPOSES))


class CheckSchema(ma.Schema):
    allowed = ma.fields.Boolean()
    record_id = ma.fields.UUID(allow_none=True)
    reason = ma.fields.String(metadata={"description": "granted, withdrawn, expired or no_record"})


class ConsentQuerySchema(PageArgs):
    purpose = ma.fields.String(validate=ma.validate.OneOf(PURPOSES))
    status = ma.fields.String(validate=ma.validate.OneOf(consents.STATUSES))
    since = Moment(data_key="from", metadata={"description": "captured_at at or after"})
    until = Moment(data_key="to", metadata={"description": "captured_at before"})


ConsentPageSchema = page_schema(ConsentSchema, "ConsentPageSchema")


class ReceiptControllerSchema(ma.Schema):
    piiController = ma.fields.String()
    onBehalf = ma.fields.Boolean()
    contact = ma.fields.String()
    address = ma.fields.Dict()
    email = ma.fields.String()
    phone = ma.fields.String()
    piiControllerUrl = ma.fields.String()


class ReceiptPurposeSchema(ma.Schema):
    purpose = ma.fields.String()
    consentType = ma.fields.String(metadata={"description": "EXPLICIT for legal basis consent, else N/A"})
    purposeCategory = ma.fields.List(ma.fields.String())
    piiCategory = ma.fields.List(ma.fields.String())
    primaryPurpose = ma.fields.Boolean()
    termination = ma.fields.String()
    thirdPartyDisclosure = ma.fields.Boolean()
    thirdPartyName = ma.fields.String()


class ReceiptServiceSchema(ma.Schema):
    service = ma.fields.String()
    purposes = ma.fields.List(ma.fields.Nested(ReceiptPurposeSchema))


class ReceiptSchema(ma.Schema):
    """Kantara Initiative Consent Receipt v1.1."""

    version = ma.fields.String()
    jurisdiction = ma.fields.String()
    consentTimestamp = ma.fields.Integer(metadata={"description": "captured_at, epoch seconds"})
    collectionMethod = ma.fields.String()
    consentReceiptID = ma.fields.String()
    publicKey = ma.fields.String()
    language = ma.fields.String()
    piiPrincipalId = ma.fields.String(metadata={"description": "The contact id"})
    piiControllers = ma.fields.List(ma.fields.Nested(ReceiptControllerSchema))
    policyUrl = ma.fields.String()
    services = ma.fields.List(ma.fields.Nested(ReceiptServiceSchema))
    sensitive = ma.fields.Boolean()
    spiCat = ma.fields.List(ma.fields.String())


@blp.route("/contacts/<uuid:contact_id>/consents")
class ContactConsents(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(ConsentInSchema())
    @blp.response(201, ConsentSchema, description="Recorded")
    def post(self, body: dict[str, Any], contact_id: Any) -> tuple[dict[str, Any], int]:
        """Record a consent or its withdrawal (append-only: a correction is a new record)"""
        with unit_of_work() as uow:
            return consents.record_consent(uow, tenant_id(), current_principal().actor,
                                           str(contact_id), body), 201

    @requires("crm", "marketing", "compliance")
    @blp.response(200, ContactConsentsSchema)
    def get(self, contact_id: Any) -> dict[str, Any]:
        """A contact's current consent per purpose, and its full history"""
        with unit_of_work() as uow:
            return consents.contact_consents(uow, tenant_id(), str(contact_id))


@blp.route("/consents/check")
class ConsentCheck(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.arguments(CheckQuerySchema(), location="query")
    @blp.response(200, CheckSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """May this contact's data be used for this purpose now? (nothing recorded means no)"""
        with unit_of_work() as uow:
            return consents.check(uow, tenant_id(), str(query["contact_id"]), query["purpose"])


@blp.route("/consents/<uuid:record_id>/receipt")
class ConsentReceipt(MethodView):
    @requires("crm", "compliance")
    @blp.response(200, ReceiptSchema)
    def get(self, record_id: Any) -> dict[str, Any]:
        """A consent record as a Kantara Consent Receipt v1.1 (controller details come from the
        tenant's settings)"""
        with unit_of_work() as uow:
            return consents.receipt(uow, tenant_id(), str(record_id))




@blp.route("/consents")
class Consents(MethodView):
    @requires("compliance")
    @blp.arguments(ConsentQuerySchema(), location="query")
    @blp.response(200, ConsentPageSchema)
    @blp.alt_response(200, schema={"type": "string"}, content_type="text/csv", success=True,
                      example=",".join(consents.CSV_COLUMNS) + "\r\n",
                      description="A page of records; with `Accept: text/csv`, every matching"
                                  " record as CSV, header first")
    def get(self, query: dict[str, Any]) -> Any:
        """The tenant's consent ledger, by captured_at. With `Accept: text/csv`, every matching
        record as one CSV download (limit and cursor do not apply; cells that a spreadsheet would
        read as a formula start with an apostrophe)"""
        filters = {name: query.get(name) for name in ("purpose", "status", "since", "until")}
        if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
            return _csv_download(filters)
        after = decode_cursor(query["cursor"], 2)
        with unit_of_work() as uow:
            items = consents.list_records(uow, tenant_id(), after=after, limit=query["limit"] + 1,
                                          **filters)
        return page(items, query["limit"], lambda r: (r["captured_at"], r["id"]))


def _csv_download(filters: dict[str, Any]) -> Response:
    tenant = tenant_id()
    with unit_of_work() as uow:
        consents.audit_export(uow, tenant, current_principal().actor,
                              {"purpose": filters["purpose"], "status": filters["status"],
                               "from": filters["since"], "to": filters["until"]})
    db = service().db

    def chunks() -> Any:
        # Its own transaction, held while the body streams; a client that hangs up closes the
        # generator, which gives the connection back.
        with db.transaction() as uow:
            yield from consents.export_csv(uow, tenant, **filters)

    response = Response(chunks(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="consents.csv"'
    return response
