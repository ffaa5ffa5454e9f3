-- A contact as the API and its events show it, built by the database, so that a bulk upsert can
-- write 10,000 contact.upserted events and audit entries in the statement that changes the rows
-- instead of sending every row back to Python and the events in again (half a bulk import's CPU).
-- services/identity/contacts.view() is the same document for rows read one at a time; a test
-- holds the two equal.

-- As shared.events.rfc3339 writes it (Python's isoformat): microseconds unless there are none.
CREATE FUNCTION rfc3339(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN date_trunc('second', t) = t
                THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
$$;

CREATE FUNCTION contact_json(c contacts) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id', c.id,
        'crm_ref', jsonb_build_object('system', c.crm_system, 'id', c.crm_id),
        'email', c.email,
        'phone', c.phone,
        'first_name', c.first_name,
        'last_name', c.last_name,
        'locale', c.locale,
        'timezone', c.timezone,
        'attributes', c.attributes,
        'suppressed', c.suppressed,
        'created_at', identity.rfc3339(c.created_at),
        'updated_at', identity.rfc3339(c.updated_at))
$$;
