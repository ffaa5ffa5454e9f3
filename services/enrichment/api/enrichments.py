"""Enrichment jobs: request one for a contact, and follow it."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.enrichment import jobs
from shared.web import Blueprint, idempotent, requires, tenant_id, unit_of_work

blp = Blueprint("enrichments", __name__, url_prefix="/v1/enrichments",
                description="Gathering a contact's profile from social networks and a person vendor")


class EnrichmentInSchema(ma.Schema):
    contact_id = ma.fields.UUID(required=True, metadata={"description": "The contact to enrich"})


class AcceptedSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "The job's id"})
    status = ma.fields.String(metadata={
        "description": "`queued`; `skipped` (with reason `no_consent`) when the contact has not "
                       "consented to profile_enrichment, and no provider is called"})
    reason = ma.fields.String()


class ProviderOutcomeSchema(ma.Schema):
    network = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(jobs.PROVIDER_STATUSES)})
    error = ma.fields.String(metadata={"description": "What the provider said, when not ok"})


class EnrichmentSchema(ma.Schema):
    id = ma.fields.String()
    contact_id = ma.fields.String()
    status = ma.fields.String(metadata={"enum": ["queued", "running", "completed", "skipped", "failed"]})
    reason = ma.fields.String(metadata={
        "description": "`no_consent` (skipped: no profile_enrichment consent, at the request or "
                       "when the job ran); `no_sources` (completed: no provider could look the "
                       "contact up, e.g. no handle linked yet)"})
    providers = ma.fields.List(ma.fields.Nested(ProviderOutcomeSchema), metadata={
        "description": "Each provider that applied and its answer. The job failed when all of "
                       "them failed (not_found counts as an answer)"})
    requested_by = ma.fields.String(metadata={
        "enum": ["api", "freshness"],
        "description": "`api`: a request to this API; `freshness`: the scheduler re-enriching a profile older "
                       "than the freshness limit (ENRICHMENT_FRESHNESS_DAYS)"})
    created_at = ma.fields.String()
    started_at = ma.fields.String(allow_none=True)
    finished_at = ma.fields.String(allow_none=True)


@blp.route("")
class Enrichments(MethodView):
    @requires("crm")
    @idempotent
    @blp.arguments(EnrichmentInSchema())
    @blp.response(202, AcceptedSchema, description="Accepted: queued, or skipped without consent")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Request the enrichment of a contact's profile (runs in the background)"""
        with unit_of_work() as uow:
            job = jobs.request(uow, tenant_id(), str(body["contact_id"]))
        accepted = {"id": job["id"], "status": job["status"]}
        if "reason" in job:
            accepted["reason"] = job["reason"]
        return accepted, 202


@blp.route("/<uuid:job_id>")
class Enrichment(MethodView):
    @requires("crm", "marketing", "compliance")
    @blp.response(200, EnrichmentSchema)
    def get(self, job_id: Any) -> dict[str, Any]:
        """An enrichment job: its status and each provider's answer"""
        with unit_of_work(read_only=True) as uow:
            return jobs.get(uow, tenant_id(), str(job_id))
