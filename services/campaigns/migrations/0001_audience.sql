-- campaigns' audience: what it needs to know about each contact to segment and to send, kept
-- from identity's events (contact.upserted, consent.recorded, handle.linked/unlinked,
-- contact.merged, erasure) and enrichment's (profile.updated). No foreign keys to the other
-- services: they share no tables. Rows may arrive in any order, so every part carries the
-- version it was written from and an older event never overwrites a newer state.
CREATE TABLE audience (
    tenant_id        uuid NOT NULL,
    contact_id       uuid NOT NULL,
    -- from identity's contact.upserted; contact_version is the contact's updated_at there. A row
    -- with no contact_version holds only profile data of a contact identity has not told us of yet.
    contact_version  timestamptz,
    email            text,
    phone            text,
    first_name       text,
    last_name        text,
    locale           text,
    timezone         text,
    attributes       jsonb NOT NULL DEFAULT '{}',
    suppressed       boolean NOT NULL DEFAULT false,
    birth_date       date,          -- attributes.birth_date: an exact age that moves with birthdays
    last_purchase_at timestamptz,   -- attributes.last_purchase_at, or a later recorded conversion
    -- from enrichment's profile.updated, each section with the time of its change
    age_min          smallint,      -- the profile's age range ("30-39"), used when there is no birth date
    age_max          smallint,
    city             text,
    country          text,
    profession       text,
    interests        text[] NOT NULL DEFAULT '{}',  -- case-folded
    demographics_at  timestamptz,
    influence_tier   text,
    influence_score  real,
    influence_at     timestamptz,
    sentiment        real,
    satisfaction     real,
    engagement_at    timestamptz,
    last_checkin_at    timestamptz,
    last_checkin_place text,
    last_checkin_lat   double precision,
    last_checkin_lon   double precision,
    geolocation_at   timestamptz,
    PRIMARY KEY (tenant_id, contact_id)
);

-- Each contact's current consent per purpose, as identity's consent.recorded says it is after
-- each record. `expires_at` is compared with the time of the question: a grant that ran out is
-- not a grant, event or not.
CREATE TABLE audience_consents (
    tenant_id   uuid NOT NULL,
    contact_id  uuid NOT NULL,
    purpose     text NOT NULL,
    status      text NOT NULL CHECK (status IN ('granted', 'withdrawn', 'expired', 'none')),
    record_id   uuid,
    captured_at timestamptz,
    expires_at  timestamptz,
    PRIMARY KEY (tenant_id, contact_id, purpose)
);

-- Linked handles: the addresses of social-network direct messages.
CREATE TABLE audience_handles (
    tenant_id   uuid NOT NULL,
    network     text NOT NULL,
    handle      text NOT NULL,
    contact_id  uuid NOT NULL,
    identity_id uuid NOT NULL,
    network_user_id text,
    PRIMARY KEY (tenant_id, network, handle)
);
CREATE INDEX audience_handles_contact ON audience_handles (tenant_id, contact_id);
