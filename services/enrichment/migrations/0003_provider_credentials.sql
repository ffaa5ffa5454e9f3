-- A tenant's own credentials for a provider (its X bearer token, FullContact key, Instagram or
-- Facebook access token and account id), used for its jobs instead of the platform's.
-- `secret` is the JSON of the credential fields sealed with AES-GCM (shared.secrets, a key
-- derived from LIAISON_SECRET_KEY, the tenant and network as associated data): these are live
-- keys to other companies' accounts, so a database dump or backup must not hand them out, and a
-- row copied to another tenant or network does not open there. `key_hint` (the last characters
-- of the first field) lets people tell which key is set without reading it.
CREATE TABLE provider_credentials (
    tenant_id  uuid NOT NULL,
    network    text NOT NULL,
    secret     bytea NOT NULL,
    key_hint   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, network)
);
