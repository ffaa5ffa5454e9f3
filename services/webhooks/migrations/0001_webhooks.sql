-- Endpoints of the tenants' CRMs and the deliveries of events to them. Every table carries
-- tenant_id and every key starts with it, so the tables can be distributed by tenant.

-- UUIDs whose first 48 bits are `at` in milliseconds (as shared.ids.new_id): deliveries are made
-- by INSERT ... SELECT, in SQL, and must still sort by creation like every other id.
CREATE FUNCTION time_ordered_id(at timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(overlay(uuid_send(gen_random_uuid())
                          PLACING substring(int8send((extract(epoch FROM at) * 1000)::bigint) FROM 3)
                          FROM 1 FOR 6), 'hex')::uuid
$$;

CREATE TABLE endpoints (
    tenant_id          uuid NOT NULL,
    id                 uuid NOT NULL,
    url                text NOT NULL,
    description        text NOT NULL DEFAULT '',
    -- Event types and patterns ("liaison.identity.*", "*"): matched with && against the patterns
    -- that cover an event's type, computed once per event (services.webhooks.events).
    event_types        text[] NOT NULL,
    enabled            boolean NOT NULL DEFAULT true,
    disabled_reason    text,
    -- The signing secret, sealed (shared.secrets, AES-GCM): it must be read back to sign.
    secret             bytea NOT NULL,
    -- After a rotation, the old secret still signs (a second v1=) until previous_secret_until.
    previous_secret    bytea,
    previous_secret_until timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE deliveries (
    tenant_id        uuid NOT NULL,
    id               uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    subject          text,            -- the contact the event is about, for erasure
    payload          text,            -- the body sent (the CloudEvent as JSON); NULL once erased
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    give_up_at       timestamptz NOT NULL,  -- retries stop here (a day after creation; now, on replay)
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    -- One delivery per endpoint and event: a redelivered event adds nothing.
    UNIQUE (tenant_id, endpoint_id, event_id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES endpoints ON DELETE CASCADE
);
-- The dispatcher's claim: due pending deliveries, oldest first, across tenants.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_of_endpoint ON deliveries (tenant_id, endpoint_id, id);
CREATE INDEX deliveries_of_subject ON deliveries (tenant_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX deliveries_age ON deliveries (created_at);

-- Each attempt of a delivery: when, what the receiver answered (or why there was no answer).
CREATE TABLE attempts (
    tenant_id   uuid NOT NULL,
    delivery_id uuid NOT NULL,
    number      integer NOT NULL,
    at          timestamptz NOT NULL,
    status_code integer,
    error       text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id, number),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES deliveries ON DELETE CASCADE
);
