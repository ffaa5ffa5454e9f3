-- enrichment's own copy of what it needs from identity, kept up to date from identity's events
-- (consent.recorded, handle.linked/unlinked, contact.merged), and the tables the enrichment jobs
-- and the social listening feed fill. No foreign keys to identity: services share no tables.

-- Each contact's current consent state per purpose, as identity's consent.recorded says it is
-- after each record (`current`). `status` is granted, withdrawn or expired (as of the record).
CREATE TABLE contact_consents (
    tenant_id   uuid NOT NULL,
    contact_id  uuid NOT NULL,
    purpose     text NOT NULL,
    status      text NOT NULL CHECK (status IN ('granted', 'withdrawn', 'expired', 'none')),
    record_id   uuid,          -- identity's deciding ledger record
    captured_at timestamptz,   -- of that record: a late event about an older one is ignored
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id, purpose)
);

-- The handles linked to contacts, so the feed resolves a handle without asking identity.
CREATE TABLE contact_handles (
    tenant_id   uuid NOT NULL,
    network     text NOT NULL,
    handle      text NOT NULL,  -- normalised by identity
    contact_id  uuid NOT NULL,
    identity_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, network, handle)
);
CREATE INDEX contact_handles_contact ON contact_handles (tenant_id, contact_id);

-- What enrichment gathered about a contact; each part says where it came from (`sources`).
CREATE TABLE profiles (
    tenant_id    uuid NOT NULL,
    contact_id   uuid NOT NULL,
    demographics jsonb,
    influence    jsonb,
    engagement   jsonb,
    last_checkin jsonb,
    sources      jsonb NOT NULL DEFAULT '[]',
    enriched_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id)
);

-- The social listening feed. contact_id is null for a handle no contact has yet (a prospect);
-- a later link of the handle fills it in, carrying the history over.
CREATE TABLE social_events (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    type          text NOT NULL CHECK (type IN ('mention', 'checkin', 'follow')),
    network       text NOT NULL,
    handle        text NOT NULL,
    contact_id    uuid,
    occurred_at   timestamptz NOT NULL,
    text          text,
    sentiment     numeric,
    label         text,
    language      text,
    place_name    text,
    lat           double precision,
    lon           double precision,
    brand_account text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX social_events_contact ON social_events (tenant_id, contact_id, occurred_at);
CREATE INDEX social_events_handle ON social_events (tenant_id, network, handle);
