-- Plumbing every service schema has. Applied with search_path set to the service's schema.

-- Transactional outbox: events are written here in the same transaction as the change they
-- describe; the relay publishes them and deletes them once the broker has confirmed.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id   uuid NOT NULL,
    routing_key text NOT NULL,
    envelope    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX outbox_order ON outbox (id);

-- Wake the relay as soon as a transaction that wrote events commits (NOTIFY is delivered on
-- commit, and identical notifications in one transaction fold into one).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('liaison_outbox', TG_TABLE_SCHEMA);
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Events a consumer has handled, so that a redelivered event changes nothing twice.
CREATE TABLE handled_events (
    tenant_id  uuid NOT NULL,
    consumer   text NOT NULL,
    event_id   text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consumer, event_id)
);

-- Idempotency-Key: the first response to a creating POST, replayed for repeats.
CREATE TABLE idempotency_keys (
    tenant_id     uuid NOT NULL,
    key           text NOT NULL,
    method        text NOT NULL,
    path          text NOT NULL,
    request_hash  text NOT NULL,
    status        integer,
    response_body bytea,
    response_type text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key, method, path)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
