-- Enrichment jobs: one request to gather a contact's profile from the providers. `providers`
-- is what each provider answered: [{"network", "status", "error"?}].
CREATE TABLE enrichment_jobs (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    contact_id  uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'skipped', 'failed')),
    reason      text,
    providers   jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX enrichment_jobs_contact ON enrichment_jobs (tenant_id, contact_id, created_at);
