-- Ids written by set-based statements (a launch writes a delivery per recipient in one INSERT):
-- time-ordered like the application's uuid7 (shared.ids), so a million new rows land at the
-- right edge of the primary key's index instead of all over it. RFC 9562 UUIDv7: 48 bits of Unix
-- milliseconds, then random bits, with the version and variant set.
CREATE FUNCTION uuid7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- Deliveries waiting in a campaign's queue, for the dispatcher's stream, the completion check and
-- the report.
CREATE INDEX deliveries_open ON deliveries (tenant_id, campaign_id) WHERE status IN ('queued', 'sending', 'deferred');
