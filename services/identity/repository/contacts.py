from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.db import UnitOfWork

# The columns a contact row is read with everywhere.
COLUMN_NAMES = ("id", "tenant_id", "crm_system", "crm_id", "email", "phone", "first_name", "last_name",
                "locale", "timezone", "attributes", "suppressed", "created_at", "updated_at")
COLUMNS = sql.SQL(", ").join(map(sql.Identifier, COLUMN_NAMES))
WRITABLE = ("crm_system", "crm_id", "email", "phone", "first_name", "last_name", "locale",
            "timezone", "attributes")

# One statement upserts a whole batch by CRM reference, and writes each changed contact's
# contact.upserted event to the outbox and its audit entry, so nothing goes back and forth per row.
# A field a row does not carry keeps its stored value (the row's `present` lists those it carries);
# `attributes` merge key by key. Rows another transaction inserted at the same moment are skipped
# by ON CONFLICT DO NOTHING and come back missing, for the caller to upsert again (as updates).
UPSERT_BATCH = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        ord int, id uuid, crm_system text, crm_id text, email text, phone text,
        first_name text, last_name text, locale text, timezone text, attributes jsonb,
        present text[], suppressed boolean)
), updated AS (
    UPDATE identity.contacts c SET
        email      = CASE WHEN 'email' = ANY(i.present) THEN i.email ELSE c.email END,
        phone      = CASE WHEN 'phone' = ANY(i.present) THEN i.phone ELSE c.phone END,
        first_name = CASE WHEN 'first_name' = ANY(i.present) THEN i.first_name ELSE c.first_name END,
        last_name  = CASE WHEN 'last_name' = ANY(i.present) THEN i.last_name ELSE c.last_name END,
        locale     = CASE WHEN 'locale' = ANY(i.present) THEN i.locale ELSE c.locale END,
        timezone   = CASE WHEN 'timezone' = ANY(i.present) THEN i.timezone ELSE c.timezone END,
        attributes = c.attributes || COALESCE(i.attributes, '{}'::jsonb),
        suppressed = c.suppressed OR i.suppressed,
        updated_at = now()
    FROM input i
    WHERE c.tenant_id = %(tenant)s AND c.crm_system = i.crm_system AND c.crm_id = i.crm_id
    RETURNING i.ord, false AS inserted, i.present, identity.contact_json(c) AS contact
), inserted AS (
    INSERT INTO identity.contacts AS n (tenant_id, id, crm_system, crm_id, email, phone, first_name,
                                        last_name, locale, timezone, attributes, suppressed)
    SELECT %(tenant)s, i.id, i.crm_system, i.crm_id, i.email, i.phone, i.first_name,
           i.last_name, i.locale, i.timezone, COALESCE(i.attributes, '{}'::jsonb), i.suppressed
    FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.ord = i.ord)
    ON CONFLICT (tenant_id, crm_system, crm_id) DO NOTHING
    RETURNING n.id, identity.contact_json(n) AS contact
), changed AS (
    SELECT ord, inserted, present, contact FROM updated
    UNION ALL
    SELECT i.ord, true, i.present, n.contact FROM inserted n JOIN input i ON i.id = n.id
), events AS (
    INSERT INTO identity.outbox (tenant_id, routing_key, envelope)
    SELECT %(tenant)s, %(event_type)s::text, jsonb_build_object(
        'specversion', '1.0', 'id', gen_random_uuid(), 'source', %(source)s::text,
        'type', %(event_type)s::text,
        'time', identity.rfc3339(clock_timestamp()), 'datacontenttype', 'application/json',
        'tenantid', %(tenant_text)s::text, 'subject', contact->>'id',
        'data', jsonb_build_object('created', inserted, 'contact', contact))
    FROM changed ORDER BY ord
), audit AS (
    INSERT INTO identity.audit_log (tenant_id, actor, action, resource, contact_id, details)
    SELECT %(tenant)s, %(actor)s,
           CASE WHEN inserted THEN 'contact.created' ELSE 'contact.updated' END,
           'contact/' || (contact->>'id'), (contact->>'id')::uuid,
           jsonb_build_object('fields', (SELECT jsonb_agg(f ORDER BY f) FROM unnest(present) AS f))
    FROM changed ORDER BY ord
)
SELECT ord, inserted, CASE WHEN %(with_contacts)s THEN contact END AS contact FROM changed
"""


def upsert_batch(uow: UnitOfWork, tenant_id: str, actor: str, rows: list[dict[str, Any]], *,
                 event_type: str, source: str, with_contacts: bool) -> list[dict[str, Any]]:
    """Returns (ord, inserted, contact) per row written; `contact` only when asked for, since a
    bulk import does not answer with the contacts."""
    return uow.execute(UPSERT_BATCH, {
        "tenant": tenant_id, "tenant_text": tenant_id, "actor": actor, "rows": Jsonb(rows), "event_type": event_type,
        "source": source, "with_contacts": with_contacts,
    }).fetchall()


def get(uow: UnitOfWork, tenant_id: str, contact_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    query = sql.SQL("SELECT {} FROM identity.contacts WHERE tenant_id = %s AND id = %s {}").format(
        COLUMNS, sql.SQL("FOR UPDATE" if lock else "")
    )
    return uow.execute(query, (tenant_id, contact_id)).fetchone()


def update(uow: UnitOfWork, tenant_id: str, contact_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    """Sets the given writable fields; `attributes` merge key by key (a null value removes one)."""
    params: dict[str, Any] = {"tenant": tenant_id, "id": contact_id}
    for name in WRITABLE:
        params[name] = Jsonb(changes[name]) if name == "attributes" and name in changes else changes.get(name)
        params[f"set_{name}"] = name in changes
    params["suppressed"] = changes.get("suppressed", False)
    return uow.execute(
        sql.SQL("""
        UPDATE identity.contacts SET
            crm_system = CASE WHEN %(set_crm_system)s THEN %(crm_system)s ELSE crm_system END,
            crm_id     = CASE WHEN %(set_crm_id)s THEN %(crm_id)s ELSE crm_id END,
            email      = CASE WHEN %(set_email)s THEN %(email)s ELSE email END,
            phone      = CASE WHEN %(set_phone)s THEN %(phone)s ELSE phone END,
            first_name = CASE WHEN %(set_first_name)s THEN %(first_name)s ELSE first_name END,
            last_name  = CASE WHEN %(set_last_name)s THEN %(last_name)s ELSE last_name END,
            locale     = CASE WHEN %(set_locale)s THEN %(locale)s ELSE locale END,
            timezone   = CASE WHEN %(set_timezone)s THEN %(timezone)s ELSE timezone END,
            attributes = CASE WHEN %(set_attributes)s
                         THEN jsonb_strip_nulls(attributes || %(attributes)s) ELSE attributes END,
            suppressed = suppressed OR %(suppressed)s,
            updated_at = now()
        WHERE tenant_id = %(tenant)s AND id = %(id)s
        RETURNING {}
        """).format(COLUMNS),
        params,
    ).fetchone()


def find(uow: UnitOfWork, tenant_id: str, *, email: str | None, crm_system: str | None,
         crm_id: str | None, after: str | None, limit: int) -> list[dict[str, Any]]:
    return uow.execute(
        sql.SQL("""
        SELECT {} FROM identity.contacts
        WHERE tenant_id = %(tenant)s
          AND (%(email)s::text IS NULL OR email = %(email)s)
          AND (%(crm_system)s::text IS NULL OR crm_system = %(crm_system)s)
          AND (%(crm_id)s::text IS NULL OR crm_id = %(crm_id)s)
          AND (%(after)s::uuid IS NULL OR id > %(after)s)
        ORDER BY id LIMIT %(limit)s
        """).format(COLUMNS),
        {"tenant": tenant_id, "email": email, "crm_system": crm_system, "crm_id": crm_id,
         "after": after, "limit": limit},
    ).fetchall()


def delete(uow: UnitOfWork, tenant_id: str, contact_id: str) -> None:
    uow.execute("DELETE FROM identity.contacts WHERE tenant_id = %s AND id = %s", (tenant_id, contact_id))


def fill_blanks_from(uow: UnitOfWork, tenant_id: str, survivor_id: str, duplicate_id: str) -> dict[str, Any]:
    """A merge keeps the survivor's values and takes the duplicate's where the survivor has none."""
    return uow.execute(
        sql.SQL("""
        UPDATE identity.contacts s SET
            email = COALESCE(s.email, d.email), phone = COALESCE(s.phone, d.phone),
            first_name = COALESCE(s.first_name, d.first_name),
            last_name = COALESCE(s.last_name, d.last_name),
            locale = COALESCE(s.locale, d.locale), timezone = COALESCE(s.timezone, d.timezone),
            attributes = d.attributes || s.attributes,
            suppressed = s.suppressed OR d.suppressed, updated_at = now()
        FROM identity.contacts d
        WHERE s.tenant_id = %(tenant)s AND s.id = %(survivor)s
          AND d.tenant_id = %(tenant)s AND d.id = %(duplicate)s
        RETURNING {}
        """).format(sql.SQL(", ").join(sql.Identifier("s", name) for name in COLUMN_NAMES)),
        {"tenant": tenant_id, "survivor": survivor_id, "duplicate": duplicate_id},
    ).fetchone()


def record_merge(uow: UnitOfWork, tenant_id: str, survivor_id: str, duplicate_id: str) -> None:
    # Earlier merges into the duplicate now point at the survivor, so lookups stay one level deep.
    uow.execute(
        "UPDATE identity.contact_merges SET survivor_id = %s WHERE tenant_id = %s AND survivor_id = %s",
        (survivor_id, tenant_id, duplicate_id),
    )
    uow.execute(
        "INSERT INTO identity.contact_merges (tenant_id, duplicate_id, survivor_id) VALUES (%s, %s, %s)",
        (tenant_id, duplicate_id, survivor_id),
    )


def keep_merged_identifiers(uow: UnitOfWork, tenant_id: str, survivor_id: str, duplicate_id: str,
                            pairs: list[tuple[str, str]]) -> None:
    """The duplicate's identifier hashes, and those it had kept from earlier merges, now belong
    to the survivor."""
    uow.execute(
        "UPDATE identity.merged_identifiers SET contact_id = %s WHERE tenant_id = %s AND contact_id = %s",
        (survivor_id, tenant_id, duplicate_id),
    )
    uow.execute(
        "INSERT INTO identity.merged_identifiers (tenant_id, contact_id, kind, identifier_hash)"
        " SELECT %s, %s, kind, h FROM unnest(%s::text[], %s::text[]) AS q(kind, h) ON CONFLICT DO NOTHING",
        (tenant_id, survivor_id, [k for k, _ in pairs], [h for _, h in pairs]),
    )


def take_merged_identifiers(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[tuple[str, str]]:
    """Removes and returns the identifier hashes of the duplicates merged into the contact."""
    rows = uow.execute(
        "DELETE FROM identity.merged_identifiers WHERE tenant_id = %s AND contact_id = %s"
        " RETURNING kind, identifier_hash",
        (tenant_id, contact_id),
    ).fetchall()
    return [(r["kind"], r["identifier_hash"]) for r in rows]


def merged_ids(uow: UnitOfWork, tenant_id: str, contact_id: str) -> list[str]:
    """The contact's own id and those of the duplicates merged into it: the keys of its consent
    history in the ledger."""
    rows = uow.execute(
        "SELECT duplicate_id FROM identity.contact_merges WHERE tenant_id = %s AND survivor_id = %s",
        (tenant_id, contact_id),
    ).fetchall()
    return [contact_id, *(str(r["duplicate_id"]) for r in rows)]


def has_suppressions(uow: UnitOfWork, tenant_id: str) -> bool:
    return uow.execute(
        "SELECT EXISTS (SELECT 1 FROM identity.suppressions WHERE tenant_id = %s) AS any", (tenant_id,)
    ).fetchone()["any"]


def suppressed_hashes(uow: UnitOfWork, tenant_id: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (kind, hash) pairs are on the tenant's suppression list."""
    if not pairs:
        return set()
    rows = uow.execute(
        "SELECT s.kind, s.identifier_hash FROM identity.suppressions s"
        " JOIN unnest(%s::text[], %s::text[]) AS q(kind, h)"
        "   ON s.kind = q.kind AND s.identifier_hash = q.h"
        " WHERE s.tenant_id = %s",
        ([k for k, _ in pairs], [h for _, h in pairs], tenant_id),
    ).fetchall()
    return {(r["kind"], r["identifier_hash"]) for r in rows}


def add_suppressions(uow: UnitOfWork, tenant_id: str, pairs: list[tuple[str, str]]) -> None:
    uow.execute(
        "INSERT INTO identity.suppressions (tenant_id, kind, identifier_hash)"
        " SELECT %s, kind, h FROM unnest(%s::text[], %s::text[]) AS q(kind, h)"
        " ON CONFLICT DO NOTHING",
        (tenant_id, [k for k, _ in pairs], [h for _, h in pairs]),
    )
