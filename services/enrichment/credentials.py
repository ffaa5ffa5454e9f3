"""A tenant's own credentials for the providers: its X bearer token, FullContact key, Instagram or
Facebook access token (and Instagram business account id). When a tenant has set them for a
network, its jobs call that provider with them instead of the platform's (the environment's);
they are all or nothing per network, like the platform's.

- set: the fields must be exactly the adapter's credential keys (`Adapter.credential_env`), each a
  non-empty string; they are stored sealed (shared.secrets: AES-GCM, a key derived from
  LIAISON_SECRET_KEY, the tenant and network as associated data), with a hint (the last four
  characters of the first field, for a long enough value) so people can tell which key is set.
- remove: the tenant's jobs go back to the platform's credentials.
- listing: per registered provider, whose credentials its jobs use (`tenant`, `platform` or
  `none`); never the secret.
- for_tenant: the opened credentials, for a job run.

Each change is written to the audit trail (`liaison.enrichment.audit.recorded`), without the
secret. A row that does not open (LIAISON_SECRET_KEY changed since it was set) is logged and
yields empty credentials for that network, so the job reports the provider `not_configured`
rather than quietly spending the platform's quota for that tenant.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from services.enrichment import SCHEMA, SOURCE
from services.enrichment.projections import AUDIT_RECORDED
from services.enrichment.providers import registry
from services.enrichment.providers.http import Adapter
from services.enrichment.repository import credentials as repo
from shared import errors
from shared.db import UnitOfWork
from shared.events import CloudEvent, rfc3339, utcnow
from shared.secrets import SecretBox, SecretUnreadable

log = logging.getLogger(__name__)

PURPOSE = b"liaison enrichment provider credentials"
TENANT, PLATFORM, NONE = "tenant", "platform", "none"
MAX_LENGTH = 4096  # far above any provider's token; bounds what a request can make us store
HINT_LENGTH = 4
HINT_MIN_LENGTH = 12  # a shorter value would give away too much of itself in its hint


@lru_cache(maxsize=4)
def _box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key, PURPOSE)


def _context(tenant_id: str, network: str) -> bytes:
    # The canonical uuid form, so the API's and the worker's spelling of the tenant agree.
    return f"{uuid.UUID(tenant_id)}\x00{network}".encode()


def _adapter(network: str) -> type[Adapter]:
    adapter = registry().get(network)
    if adapter is None:
        raise errors.NotFound(
            f"provider {network} does not exist (known: {', '.join(sorted(registry()))})"
        )
    return adapter


def _hint(value: str) -> str:
    return value[-HINT_LENGTH:] if len(value) >= HINT_MIN_LENGTH else ""


def _check(adapter: type[Adapter], fields: Mapping[str, Any]) -> dict[str, str]:
    wanted = list(adapter.credential_env)
    problems: dict[str, list[str]] = {}
    for key in fields:
        if key not in adapter.credential_env:
            problems[key] = [f"Unknown field: {adapter.network} takes {', '.join(wanted)}."]
    for key in wanted:
        value = fields.get(key)
        if key not in fields:
            problems[key] = ["Missing data for required field."]
        elif not isinstance(value, str) or not value.strip():
            problems[key] = ["Must be a non-empty string."]
        elif value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            # A pasted newline would end up inside an HTTP header or URL.
            problems[key] = ["Must not contain control characters or surrounding spaces."]
        elif len(value) > MAX_LENGTH:
            problems[key] = [f"Longer than {MAX_LENGTH} characters."]
    if problems:
        raise errors.ValidationFailed({"credentials": problems},
                                      detail=f"These are not {adapter.network}'s credential fields.")
    return {key: fields[key] for key in wanted}


def _entry(adapter: type[Adapter], stored: Mapping[str, Any] | None,
           env: Mapping[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"network": adapter.network, "fields": list(adapter.credential_env)}
    if stored is not None:
        out["source"] = TENANT
        if stored["key_hint"]:
            out["key_hint"] = stored["key_hint"]
        out["updated_at"] = rfc3339(stored["updated_at"])
    else:
        out["source"] = PLATFORM if adapter.has_platform_credentials(env) else NONE
    return out


def _audit(uow: UnitOfWork, tenant_id: str, actor: str, action: str, network: str,
           details: dict[str, Any], now: datetime) -> None:
    uow.publish(SCHEMA, CloudEvent(AUDIT_RECORDED, SOURCE, tenant_id, {
        "actor": actor,
        "action": action,
        "resource": f"provider/{network}/credentials",
        "contact_id": None,
        "details": {"network": network, **details},
        "at": rfc3339(now),
    }))


def set_credentials(uow: UnitOfWork, secret_key: str, tenant_id: str, actor: str, network: str,
                    fields: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Stores (or replaces) the tenant's credentials for `network`; returns its listing entry."""
    adapter = _adapter(network)
    creds = _check(adapter, fields)
    now = now or utcnow()
    hint = _hint(creds[next(iter(adapter.credential_env))])
    sealed = _box(secret_key).seal(json.dumps(creds, sort_keys=True).encode(), _context(tenant_id, network))
    row = repo.upsert(uow, tenant_id, network, sealed, hint, now)
    _audit(uow, tenant_id, actor, "provider_credentials.set", network,
           {"fields": list(creds), "key_hint": hint}, now)
    return _entry(adapter, row, None)


def remove(uow: UnitOfWork, tenant_id: str, actor: str, network: str, now: datetime | None = None) -> None:
    """Deletes the tenant's credentials for `network`: its jobs use the platform's again."""
    _adapter(network)
    if not repo.delete(uow, tenant_id, network):
        raise errors.NotFound(f"this tenant has no credentials of its own for {network}")
    _audit(uow, tenant_id, actor, "provider_credentials.removed", network, {}, now or utcnow())


def listing(uow: UnitOfWork, tenant_id: str, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every registered provider and whose credentials the tenant's jobs call it with. `env` is
    where the platform's credentials are read (the process environment by default)."""
    stored = {row["network"]: row for row in repo.summaries(uow, tenant_id)}
    return [_entry(adapter, stored.get(network), env) for network, adapter in sorted(registry().items())]


def for_tenant(uow: UnitOfWork, tenant_id: str, secret_key: str) -> dict[str, dict[str, str]]:
    """network -> the tenant's own credentials, for the networks it set them for."""
    out: dict[str, dict[str, str]] = {}
    for row in repo.sealed(uow, tenant_id):
        network = row["network"]
        try:
            out[network] = json.loads(_box(secret_key).open(row["secret"], _context(tenant_id, network)))
        except SecretUnreadable:
            log.error("a tenant's provider credentials do not open (was LIAISON_SECRET_KEY changed?);"
                      " the provider is reported not configured until they are set again",
                      extra={"tenant_id": tenant_id, "network": network})
            out[network] = {}
    return out
