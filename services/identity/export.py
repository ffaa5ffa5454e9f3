"""The right of access: every datum every service holds about a contact, as one JSON document.

identity assembles it: its own part from its tables, the other services' parts from their export
endpoints, asked over HTTP with the caller's own key (a compliance key works on every service):

    enrichment  GET {ENRICHMENT_URL}/v1/profiles/{contact_id}/export
    campaigns   GET {CAMPAIGNS_URL}/v1/campaigns/contacts/{contact_id}/export
    webhooks    GET {WEBHOOKS_URL}/v1/webhooks/contacts/{contact_id}/export

A 200 is that service's part; a 404 means it holds nothing about the contact (an empty part).
A service that does not answer (connection refused, timeout, 5xx, after one retry) or answers
something else makes the export incomplete: that is an error, reported as 502 naming each
service that failed, never an export that silently lacks a part. Every export, complete or not,
is on the audit trail (`contact.exported`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import requests

from services.identity import audit_chain, consents
from services.identity import contacts as contact_cases
from services.identity import identities as identity_cases
from services.identity.audit import AuditEntry, record
from services.identity.repository import audit as audit_repo
from services.identity.repository import contacts as contact_repo
from shared import errors
from shared.db import UnitOfWork
from shared.events import rfc3339, utcnow
from shared.settings import Settings

TIMEOUT = (3.05, 20.0)  # seconds to connect, to read: a large campaign history takes a moment
ATTEMPTS = 2  # one retry when a service does not answer or answers 5xx
RETRY_WAIT = 0.2
AUDIT_PAGE = 1000

Transaction = Callable[[], AbstractContextManager[UnitOfWork]]


@dataclass(frozen=True)
class RemotePart:
    service: str
    url: str


def remote_parts(settings: Settings, contact_id: str) -> list[RemotePart]:
    """The other services' export endpoints (an internal convention of this project)."""
    return [
        RemotePart("enrichment", f"{settings.enrichment_url.rstrip('/')}/v1/profiles/{contact_id}/export"),
        RemotePart("campaigns",
                   f"{settings.campaigns_url.rstrip('/')}/v1/campaigns/contacts/{contact_id}/export"),
        RemotePart("webhooks", f"{settings.webhooks_url.rstrip('/')}/v1/webhooks/contacts/{contact_id}/export"),
    ]


class PartUnavailable(Exception):
    """A service's part could not be had; the message says why, without personal data."""


def fetch_part(part: RemotePart, headers: dict[str, str]) -> dict[str, Any]:
    """One service's part: its JSON object, or {} when it holds nothing (404)."""
    reason = "did not answer"
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_WAIT)
        try:
            response = requests.get(part.url, headers=headers, timeout=TIMEOUT)
        except requests.Timeout:
            reason = "did not answer in time"
            continue
        except requests.ConnectionError:
            reason = "could not be reached"
            continue
        except requests.RequestException as exc:  # a malformed URL and the like: no use retrying
            raise PartUnavailable(f"could not be asked ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            reason = f"answered {response.status_code}"
            continue
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            raise PartUnavailable(f"answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise PartUnavailable("answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise PartUnavailable("answered JSON that is not an object")
        return body
    raise PartUnavailable(f"{reason} ({ATTEMPTS} attempts)")


def fetch_parts(parts: list[RemotePart], headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Asks every service at once; returns (parts by service, reasons by failed service)."""
    found: dict[str, Any] = {}
    failed: dict[str, str] = {}
    if not parts:
        return found, failed
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        futures = {part.service: pool.submit(fetch_part, part, headers) for part in parts}
        for service, future in futures.items():
            try:
                found[service] = future.result()
            except PartUnavailable as exc:
                failed[service] = str(exc)
    return found, failed


def identity_part(uow: UnitOfWork, tenant_id: str, contact_id: str) -> dict[str, Any]:
    """What identity holds: the contact, its handles, its consent history (with the evidence)
    and the audit trail about it, its merged duplicates included. 404 when it does not exist."""
    contact = contact_cases.get_contact(uow, tenant_id, contact_id)
    contact_ids = contact_repo.merged_ids(uow, tenant_id, contact_id)
    audit: list[dict[str, Any]] = []
    after = 0
    while True:
        rows = audit_repo.find(uow, tenant_id, contact_ids=contact_ids, since=None, until=None,
                               after_seq=after, limit=AUDIT_PAGE)
        audit += [audit_chain.view(r) for r in rows]
        if len(rows) < AUDIT_PAGE:
            break
        after = rows[-1]["seq"]
    return {
        "contact": contact_cases.view(contact),
        "merged_contact_ids": contact_ids[1:],
        "identities": identity_cases.list_handles(uow, tenant_id, contact_id),
        "consents": consents.export_for_contact(uow, tenant_id, contact_id),
        "audit": audit,
    }


def export_contact(transaction: Transaction, tenant_id: str, actor: str, contact_id: str,
                   parts: list[RemotePart], headers: dict[str, str]) -> dict[str, Any]:
    """The whole document. Raises UpstreamFailed (502) when a service's part is missing; the
    problem then carries the parts that could be had (`export`) and names the others
    (`unavailable`, with `reasons`). No transaction stays open while other services are asked."""
    with transaction() as uow:
        audit_chain.seal(uow, tenant_id)  # the trail in the export is complete up to now
    with transaction() as uow:
        own = identity_part(uow, tenant_id, contact_id)
    found, failed = fetch_parts(parts, headers)
    services: dict[str, Any] = {"identity": own}
    for part in parts:
        services[part.service] = found.get(part.service)
    document = {"contact_id": contact_id, "generated_at": rfc3339(utcnow()), "services": services}
    outcome = {name: ("unavailable" if name in failed else "empty" if section == {} else "included")
               for name, section in services.items()}
    with transaction() as uow:
        record(uow, tenant_id, actor, AuditEntry(
            "contact.exported", f"contact/{contact_id}", contact_id, {"services": outcome},
        ))
    if failed:
        names = sorted(failed)
        raise errors.UpstreamFailed(
            f"The export is incomplete: {', '.join(names)} did not answer. The parts that could be "
            "had are in `export`; ask again later for the whole document.",
            unavailable=names, reasons=failed, export=document,
        )
    return document
