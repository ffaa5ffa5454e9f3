-- Tenants and their API keys, contacts, their social identities, merges and the suppression list.
-- Every tenant-owned table's primary and unique keys start with tenant_id (see DESIGN.md).

CREATE TABLE tenants (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    -- Controller details shown on consent receipts: name, contact, email, phone, address, url.
    settings     jsonb NOT NULL DEFAULT '{}',
    -- Salt of the hashes that outlive an erasure (suppression list, pseudonymized ledger).
    erasure_salt bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Looked up by hash across tenants: in a sharded deployment this is a reference table.
CREATE TABLE api_keys (
    tenant_id  uuid NOT NULL REFERENCES tenants,
    id         uuid NOT NULL,
    name       text NOT NULL,
    key_hash   text NOT NULL,
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);

CREATE TABLE contacts (
    tenant_id  uuid NOT NULL,
    id         uuid NOT NULL,
    crm_system text NOT NULL,
    crm_id     text NOT NULL,
    email      text,
    phone      text,
    first_name text,
    last_name  text,
    locale     text,
    timezone   text,
    attributes jsonb NOT NULL DEFAULT '{}',
    suppressed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, crm_system, crm_id)
);
CREATE INDEX contacts_email ON contacts (tenant_id, email);
CREATE INDEX contacts_phone ON contacts (tenant_id, phone);

CREATE TABLE identities (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    contact_id      uuid NOT NULL,
    network         text NOT NULL,
    handle          text NOT NULL,  -- normalized: what resolve matches on
    network_user_id text,
    verified        boolean NOT NULL DEFAULT false,
    source          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, network, handle),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts ON DELETE CASCADE
);
CREATE INDEX identities_contact ON identities (tenant_id, contact_id);

-- A merged duplicate's id stays a key into the append-only consent ledger: its history is read
-- as the survivor's through this table, so the ledger itself never changes.
CREATE TABLE contact_merges (
    tenant_id    uuid NOT NULL,
    duplicate_id uuid NOT NULL,
    survivor_id  uuid NOT NULL,
    merged_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, duplicate_id)
);
CREATE INDEX contact_merges_survivor ON contact_merges (tenant_id, survivor_id);

-- Identifiers of erased contacts, as salted hashes: a re-import of one is flagged suppressed.
CREATE TABLE suppressions (
    tenant_id       uuid NOT NULL,
    kind            text NOT NULL,  -- email, phone, or handle:<network>
    identifier_hash text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, identifier_hash)
);

-- The audit trail. Writers append unsealed entries in their own transaction; sealing gives each
-- entry its place (seq) in the tenant's chain and its hash, in one serialized step per tenant, so
-- that concurrent writers never wait on each other for the chain. Details name what changed,
-- never the personal data itself, so an erasure leaves the trail intact.
CREATE TABLE audit_log (
    tenant_id  uuid NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor      text NOT NULL,
    action     text NOT NULL,
    resource   text NOT NULL,
    contact_id uuid,
    details    jsonb NOT NULL DEFAULT '{}',
    seq        bigint,
    prev_hash  text,
    hash       text,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX audit_log_seq ON audit_log (tenant_id, seq);
CREATE INDEX audit_log_unsealed ON audit_log (tenant_id, id) WHERE seq IS NULL;
CREATE INDEX audit_log_contact ON audit_log (tenant_id, contact_id, seq);
