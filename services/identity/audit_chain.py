"""The tamper-evident audit trail: sealing entries into each tenant's hash chain, reading the
chain, verifying it, and taking in the audit entries of the other services.

Writers append entries unsealed (`services.identity.audit.record`), in their own transaction,
so they never wait on each other. Sealing gives each unsealed entry, in the order written, the
tenant's next `seq`, the previous entry's hash as `prev_hash` (`GENESIS` for the first) and

    hash = sha256(prev_hash + "\\n" + canonical JSON of {seq, at, actor, action, resource,
                                                         contact_id, details})

where the canonical JSON sorts keys, has no spaces, keeps non-ASCII as UTF-8, and `at` is written
`YYYY-MM-DDTHH:MM:SS.ffffffZ` (the form the API shows it in), so anyone can recompute a hash from
`GET /v1/audit`. Sealing runs under a per-tenant advisory lock: on demand before the trail is
read (so a compliance officer sees their own writes) and every second in identity's worker
(a periodic task of its worker, beside the relay and the consumer).

Editing an entry breaks its hash; deleting one leaves a gap in `seq` (or, for the newest, a log
shorter than the chain head recorded at sealing); reordering breaks `prev_hash`. A database
trigger refuses every change to a sealed entry and every delete, so tampering takes a superuser
who disables it, and verification finds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from services.identity.repository import audit as repo
from services.identity.repository import contacts as contact_repo
from shared.db import Database, UnitOfWork

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # the prev_hash of each tenant's first entry
SEAL_BATCH = 5_000  # entries hashed and written per UPDATE
SEAL_INTERVAL = 1.0  # seconds between the worker's sealing rounds

# Other services' audit entries reach identity, which keeps the one trail, as events.
AUDIT_RECORDED = "liaison.*.audit.recorded"


# -- hashing -----------------------------------------------------------------------------------
def canonical_at(at: datetime) -> str:
    """The one spelling of an entry's time, in the hash and in the API (fixed microseconds)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(seq: int, entry: dict[str, Any]) -> str:
    contact_id = entry.get("contact_id")
    return json.dumps(
        {
            "seq": seq,
            "at": canonical_at(entry["at"]) if isinstance(entry["at"], datetime) else entry["at"],
            "actor": entry["actor"],
            "action": entry["action"],
            "resource": entry["resource"],
            "contact_id": str(contact_id) if contact_id is not None else None,
            "details": entry.get("details") or {},
        },
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )


def entry_hash(prev_hash: str, seq: int, entry: dict[str, Any]) -> str:
    """The hash of an entry at `seq` whose predecessor's hash is `prev_hash`. `entry` holds at,
    actor, action, resource, contact_id, details (`at` a datetime or its canonical string)."""
    return hashlib.sha256(f"{prev_hash}\n{canonical_json(seq, entry)}".encode()).hexdigest()


# -- sealing -----------------------------------------------------------------------------------
def seal(uow: UnitOfWork, tenant_id: str, *, limit: int | None = None) -> int:
    """Seals the tenant's unsealed entries (at most `limit`) in the order they were written;
    returns how many. Holds the tenant's chain lock until the caller's transaction ends."""
    repo.lock_chain(uow, tenant_id)
    head = repo.head(uow, tenant_id)
    seq, prev = (head["seq"], head["hash"]) if head else (0, GENESIS)
    sealed = after_id = 0
    while limit is None or sealed < limit:
        want = SEAL_BATCH if limit is None else min(SEAL_BATCH, limit - sealed)
        rows = repo.unsealed(uow, tenant_id, after_id, want)
        if not rows:
            break
        ids, seqs, prevs, hashes = [], [], [], []
        for row in rows:
            seq += 1
            digest = entry_hash(prev, seq, row)
            ids.append(row["id"])
            seqs.append(seq)
            prevs.append(prev)
            hashes.append(digest)
            prev = digest
        repo.seal_entries(uow, tenant_id, ids, seqs, prevs, hashes)
        sealed += len(rows)
        after_id = rows[-1]["id"]
        if len(rows) < want:
            break
    if sealed:
        repo.set_head(uow, tenant_id, seq, prev)
    return sealed


def seal_pending(db: Database, batch: int = SEAL_BATCH) -> int:
    """One sealing round over every tenant with unsealed entries, a transaction per batch so the
    chain lock is never held long; returns how many entries it sealed."""
    with db.transaction() as uow:
        tenants = repo.tenants_with_unsealed(uow)
    total = 0
    for tenant_id in tenants:
        while True:
            with db.transaction() as uow:
                sealed = seal(uow, tenant_id, limit=batch)
            total += sealed
            if sealed < batch:
                break
    return total


# -- reading -----------------------------------------------------------------------------------
def view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "at": canonical_at(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "resource": row["resource"],
        "contact_id": str(row["contact_id"]) if row["contact_id"] is not None else None,
        "details": row["details"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


def list_entries(uow: UnitOfWork, tenant_id: str, *, contact_id: str | None, since: datetime | None,
                 until: datetime | None, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """Sealed entries in chain order. A contact's entries include those of the duplicates merged
    into it (the contact itself need not exist any more: an erased contact's trail remains)."""
    contact_ids = contact_repo.merged_ids(uow, tenant_id, contact_id) if contact_id else None
    rows = repo.find(uow, tenant_id, contact_ids=contact_ids, since=since, until=until,
                     after_seq=after_seq, limit=limit)
    return [view(r) for r in rows]


# -- verifying ---------------------------------------------------------------------------------
class Verification(NamedTuple):
    valid: bool
    entries: int
    first_invalid_seq: int | None


class ChainChecker:
    """Checks a chain fed entry by entry in seq order. The first invalid seq is that of the first
    edited or misplaced entry, or, for deleted entries, the first missing seq."""

    def __init__(self) -> None:
        self.entries = 0
        self.expected_seq = 1
        self.prev_hash = GENESIS
        self.first_invalid_seq: int | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.entries += 1
        if self.first_invalid_seq is not None:
            return  # past the first break nothing can be trusted; count only
        seq = row["seq"]
        if seq != self.expected_seq:
            # A gap: the expected entry was deleted (or seqs were rewritten).
            self.first_invalid_seq = min(seq, self.expected_seq)
        elif row["prev_hash"] != self.prev_hash or row["hash"] != entry_hash(self.prev_hash, seq, row):
            self.first_invalid_seq = seq
        else:
            self.prev_hash = row["hash"]
            self.expected_seq = seq + 1

    def finish(self, head: dict[str, Any] | None) -> Verification:
        """`head` is the chain head recorded at sealing: a log that ends before it lost its newest
        entries; one that ends elsewhere, or on another hash, was rewritten."""
        if self.first_invalid_seq is None and head is not None:
            last_seq = self.expected_seq - 1
            if last_seq < head["seq"]:
                self.first_invalid_seq = last_seq + 1
            elif last_seq > head["seq"]:
                self.first_invalid_seq = head["seq"] + 1
            elif self.prev_hash != head["hash"]:
                self.first_invalid_seq = last_seq
        return Verification(self.first_invalid_seq is None, self.entries, self.first_invalid_seq)


def check_chain(rows: Iterable[dict[str, Any]], head: dict[str, Any] | None) -> Verification:
    checker = ChainChecker()
    for row in rows:
        checker.add(row)
    return checker.finish(head)


def verify(uow: UnitOfWork, tenant_id: str) -> Verification:
    """Streams the tenant's whole chain through a server-side cursor. Must be the first thing
    its transaction does: it reads the head and the chain in one snapshot."""
    uow.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    head = repo.head(uow, tenant_id)
    return check_chain(repo.stream_chain(uow, tenant_id), head)


# -- other services' entries -------------------------------------------------------------------
def _text(data: dict[str, Any], name: str, max_length: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ValueError(f"audit entry: {name} must be a string of 1 to {max_length} characters")
    return value


def remote_entry(service: str, data: dict[str, Any], default_at: str | None) -> dict[str, Any]:
    """Checks an entry another service sent; raises ValueError when it is malformed (the consumer
    then retries it and dead-letters it, where an operator sees it)."""
    if not isinstance(data, dict):
        raise ValueError("audit entry: data must be an object")
    entry: dict[str, Any] = {
        "actor": _text(data, "actor", 200),
        "action": _text(data, "action", 100),
        "resource": _text(data, "resource", 500),
    }
    contact_id = data.get("contact_id")
    entry["contact_id"] = str(uuid.UUID(str(contact_id))) if contact_id is not None else None
    details = data.get("details") or {}
    if not isinstance(details, dict):
        raise ValueError("audit entry: details must be an object")
    # The trail is one for all services: say which one wrote the entry.
    entry["details"] = {"service": service, **details}
    at = data.get("at") or default_at
    if at is not None:
        moment = datetime.fromisoformat(str(at))
        if moment.tzinfo is None:
            raise ValueError("audit entry: at must carry a time zone (RFC 3339)")
        entry["at"] = moment
    return entry


def on_audit_recorded(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Consumer of `liaison.<service>.audit.recorded`: an audit entry of another service.

    The event type is this project's addition to the bus (CONTRACT section 5 allows new types):
    a service that changes personal data or consent, or exports or erases it, publishes one
    per change through its outbox, in the transaction of the change, with

        data: {"actor": "key:<key id>" | "service:<name>", "action": "profile.updated",
               "resource": "profile/<contact id>", "contact_id": "<uuid>" | null,
               "details": {...}  (what changed, never the personal data itself),
               "at": "<RFC 3339>" (when it happened; the event's time when absent)}

    and `tenantid` the tenant's id. identity appends it unsealed to the tenant's trail, with
    `details.service` naming the sender; the sealer chains it like identity's own entries."""
    service = envelope["type"].split(".")[1]
    entry = remote_entry(service, envelope.get("data"), envelope.get("time"))
    repo.append(uow, envelope["tenantid"], entry)
