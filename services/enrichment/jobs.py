"""Enrichment jobs: a request to gather a contact's profile from the providers, and its run.

- request: without `profile_enrichment` consent (services.enrichment.projections.allowed) the
  job is created `skipped` with reason `no_consent` and nothing else happens. Otherwise it is
  created `queued`, and `liaison.enrichment.job.requested` goes to the outbox in the same
  transaction; enrichment's worker consumes it and runs the job.
- run: in its own transactions, never holding one across a provider call: (1) claim the job
  (queued → running; a job not queued, e.g. a repeated event, is left alone), checking consent
  again (withdrawn since the request → skipped, no_consent), and read the contact's handles;
  (2) call each provider that applies to them; (3) record each provider's answer, merge the
  results into the profile (services.enrichment.profiles), finish the job and publish
  `liaison.enrichment.profile.updated` when a field changed. Consent is checked once more in (3):
  a withdrawal during the calls stores nothing.
- credentials: (1) also reads the tenant's own provider credentials (services.enrichment.credentials);
  a provider the tenant set them for is called with them, the others with the platform's.

Who is looked up: enrichment knows a contact's social handles (enrichment.contact_handles, fed by
identity's handle events) but not their email or phone, which identity keeps. So the person
vendor (FullContact), which looks people up by email or phone, applies only through the handles
it accepts; until identity shares contact points with enrichment, it does not apply to a
handle-only subject and is not listed in the job's providers.

A provider's status in the job: `ok`, or the code of its typed error (`not_found`,
`not_configured`, `rate_limited`, `unavailable`, `bad_credentials`) with the error's text. The job
is `failed` when every provider that applied failed (anything but ok and not_found), `completed`
otherwise, including when no provider applied (reason `no_sources`: nothing to look the contact up
by yet).

A job whose worker died while it ran, or whose request event never reached a worker, is handed
out again by `hand_out_abandoned_jobs` (the worker runs it every minute): after JOB_LEASE (10
minutes, longer than a run's worst case of provider retries and rate-limit waits) without a sign
of life it goes back to queued and its event is published again; a job abandoned MAX_ATTEMPTS (3)
times ends `failed` with reason `worker_lost`, so a job that kills its worker cannot loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from services.enrichment import PROFILE_ENRICHMENT, SCHEMA, SOURCE, credentials, profiles
from services.enrichment.projections import allowed
from services.enrichment.providers.http import Adapter, ProfileData, ProviderError, Subject
from services.enrichment.repository import jobs as repo
from services.enrichment.repository import projections as projections_repo
from shared import errors
from shared.consumer import Handler
from shared.db import Database, UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow
from shared.ids import new_id

JOB_REQUESTED = "liaison.enrichment.job.requested"
PROFILE_UPDATED = profiles.PROFILE_UPDATED

NO_CONSENT = "no_consent"
NO_SOURCES = "no_sources"
WORKER_LOST = "worker_lost"
JOB_LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 3
OK = "ok"
# Answers that say something about the person (possibly that the provider does not know them).
ANSWERED = frozenset({OK, "not_found"})
PROVIDER_STATUSES = ("ok", "not_found", "not_configured", "rate_limited", "unavailable", "bad_credentials")


def _view(job: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": str(job["id"]),
        "contact_id": str(job["contact_id"]),
        "status": job["status"],
        "providers": job["providers"] or [],
        "requested_by": job["requested_by"],
        "created_at": rfc3339(job["created_at"]),
        "started_at": rfc3339(job["started_at"]) if job["started_at"] else None,
        "finished_at": rfc3339(job["finished_at"]) if job["finished_at"] else None,
    }
    if job["reason"]:
        out["reason"] = job["reason"]
    return out


def request(uow: UnitOfWork, tenant_id: str, contact_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Creates the job: queued (and its event published), or skipped without consent."""
    now = now or utcnow()
    consented = allowed(uow, tenant_id, contact_id, PROFILE_ENRICHMENT, now)
    job = repo.insert(uow, tenant_id, {
        "id": new_id(),
        "contact_id": contact_id,
        "status": "queued" if consented else "skipped",
        "reason": None if consented else NO_CONSENT,
        "created_at": now,
        "finished_at": None if consented else now,
    })
    if consented:
        uow.publish(SCHEMA, requested_event(tenant_id, str(job["id"]), contact_id))
    return _view(job)


def requested_event(tenant_id: str, job_id: str, contact_id: str) -> CloudEvent:
    """`liaison.enrichment.job.requested`: the worker that consumes it runs the job."""
    return CloudEvent(JOB_REQUESTED, SOURCE, tenant_id, {"job_id": job_id, "contact_id": contact_id},
                      subject=contact_id)


def get(uow: UnitOfWork, tenant_id: str, job_id: str) -> dict[str, Any]:
    job = repo.get(uow, tenant_id, job_id)
    if job is None:
        raise errors.NotFound.of("enrichment", job_id)
    return _view(job)


def of_contact(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[dict[str, Any]]:
    return [_view(j) for j in repo.of_contact(uow, tenant_id, contact_id)]


# -- the run -----------------------------------------------------------------------------------
def _call(adapter: Adapter, subject: Subject, tenant_id: str,
          creds: Mapping[str, str] | None = None) -> tuple[dict[str, Any], ProfileData | None]:
    try:
        data = adapter.fetch(subject, tenant=tenant_id, credentials=creds)
    except ProviderError as exc:
        # A provider answering nonsense is, for the job, a provider not available right now.
        code = exc.code if exc.code in PROVIDER_STATUSES else "unavailable"
        return {"network": adapter.network, "status": code, "error": exc.detail}, None
    return {"network": adapter.network, "status": OK}, data


def run_job(db: Database, tenant_id: str, job_id: str, adapters: Mapping[str, Adapter],
            secret_key: str, now: Callable[[], datetime] = utcnow) -> dict[str, Any] | None:
    """Runs a queued job (see the module docstring); returns the job as it ends, or None when it
    was not queued (already run or running, or unknown). `secret_key` (LIAISON_SECRET_KEY) opens
    the tenant's stored credentials."""
    with db.transaction() as uow:
        job = repo.claim(uow, tenant_id, job_id, now())
        if job is None:
            return None
        contact_id = str(job["contact_id"])
        if not allowed(uow, tenant_id, contact_id, PROFILE_ENRICHMENT, now()):
            repo.finish(uow, tenant_id, job_id, "skipped", NO_CONSENT, [], now())
            return get(uow, tenant_id, job_id)
        handles = {h["network"]: h["handle"] for h in projections_repo.handles_of(uow, tenant_id, contact_id)}
        tenant_creds = credentials.for_tenant(uow, tenant_id, secret_key)

    # No transaction is open while the providers are asked.
    subject = Subject(handles=handles)
    answers: list[dict[str, Any]] = []
    results: list[ProfileData] = []
    for _network, adapter in sorted(adapters.items()):
        if not adapter.applies(subject):
            continue
        answer, data = _call(adapter, subject, tenant_id, tenant_creds.get(adapter.network))
        answers.append(answer)
        if data is not None:
            results.append(data)

    with db.transaction() as uow:
        repo.lock_consent(uow, tenant_id, contact_id, PROFILE_ENRICHMENT)
        if not allowed(uow, tenant_id, contact_id, PROFILE_ENRICHMENT, now()):
            repo.finish(uow, tenant_id, job_id, "skipped", NO_CONSENT, answers, now())
            return get(uow, tenant_id, job_id)
        if not answers:
            status, reason = "completed", NO_SOURCES
        elif all(a["status"] not in ANSWERED for a in answers):
            status, reason = "failed", None
        else:
            status, reason = "completed", None
        changed = profiles.save(uow, tenant_id, contact_id, results, now())
        repo.finish(uow, tenant_id, job_id, status, reason, answers, now())
        profiles.publish_snapshot(uow, tenant_id, contact_id, changed, now())
        return get(uow, tenant_id, job_id)


def hand_out_abandoned_jobs(db: Database, now: Callable[[], datetime] = utcnow, lease: timedelta = JOB_LEASE,
                            max_attempts: int = MAX_ATTEMPTS, batch: int = 1000) -> dict[str, int]:
    """Queues again, and publishes again, the jobs with no sign of life for `lease`; fails those
    abandoned `max_attempts` times already. Returns how many of each."""
    moment = now()
    with db.transaction() as uow:
        failed = repo.fail_exhausted(uow, moment - lease, max_attempts, WORKER_LOST, moment)
        stuck = repo.hand_out_abandoned(uow, moment - lease, max_attempts, moment, batch)
        uow.publish_many(SCHEMA, [requested_event(str(j["tenant_id"]), str(j["id"]), str(j["contact_id"]))
                                  for j in stuck])
    return {"requeued": len(stuck), "failed": failed}


def handle_job_requested(db: Database, adapters: Mapping[str, Adapter], secret_key: str,
                         uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """The consumer's handler for job.requested. The consumer's own transaction (`uow`) only
    records the event as handled; the run uses transactions of its own from `db`, so no
    transaction stays open across the provider calls. A repeated event finds the job no longer
    queued and does nothing."""
    run_job(db, envelope["tenantid"], envelope["data"]["job_id"], adapters, secret_key)


def job_handler(adapters: Mapping[str, Adapter], db: Database, secret_key: str) -> Handler:
    """The handler for `liaison.enrichment.job.requested`, bound to the worker's adapters (built
    once per process: one session, breaker and rate limiter per provider), database and the key
    that opens tenants' credentials."""

    def handler(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        handle_job_requested(db, adapters, secret_key, uow, envelope)

    return handler
