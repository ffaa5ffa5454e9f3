-- The GDPR consent ledger and the evidence behind each record.
--
-- The ledger is append-only, and the database itself enforces it: a trigger refuses every
-- UPDATE, DELETE and TRUNCATE, whoever issues it, so a past consent can never be rewritten.
-- A correction is a new record. It holds no personal data of its own: the evidence a record was
-- captured with (the browser's IP address and user agent, the proof) lives in consent_evidence,
-- which the erasure flow deletes; the ledger keeps an HMAC of that evidence under the tenant's
-- erasure salt, so the controller can still prove a past consent with its own copy of the proof.
--
-- No foreign key to contacts: the ledger outlives them. A merged duplicate's records stay under
-- its id and are read as the survivor's through contact_merges; an erased contact's records stay
-- as proof of what was consented to.

CREATE TABLE consent_records (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    contact_id     uuid NOT NULL,  -- the contact the record was captured for
    purpose        text NOT NULL CHECK (purpose IN ('email_marketing', 'sms_marketing',
                       'social_dm_marketing', 'profile_enrichment', 'geolocation')),
    status         text NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    legal_basis    text NOT NULL CHECK (legal_basis IN ('consent', 'legitimate_interest', 'contract')),
    source_system  text NOT NULL,
    source_form    text,
    notice_version text NOT NULL,
    captured_at    timestamptz NOT NULL,
    expires_at     timestamptz CHECK (expires_at > captured_at),
    -- clock_timestamp(), not now(): two records written in one transaction keep their order.
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- HMAC-SHA256 (tenant's erasure salt) of the evidence; null when none was given.
    evidence_hash  text,
    PRIMARY KEY (tenant_id, id)
);
-- A contact's history and "the latest record per purpose" (latest captured_at, then recorded).
CREATE INDEX consent_records_contact
    ON consent_records (tenant_id, contact_id, purpose, captured_at, recorded_at);
-- The compliance listing and CSV export: keyset pagination over (captured_at, id).
CREATE INDEX consent_records_captured ON consent_records (tenant_id, captured_at, id);

CREATE FUNCTION consent_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the consent ledger is append-only: % is not allowed on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Record a new consent (for example a withdrawal) instead of changing one.';
END $$;
-- Statement-level, so even an UPDATE or DELETE that matches no row is refused.
CREATE TRIGGER consent_records_no_update_or_delete
    BEFORE UPDATE OR DELETE ON consent_records
    FOR EACH STATEMENT EXECUTE FUNCTION consent_records_append_only();
CREATE TRIGGER consent_records_no_truncate
    BEFORE TRUNCATE ON consent_records
    FOR EACH STATEMENT EXECUTE FUNCTION consent_records_append_only();

-- Personal data a record was captured with. Deleted by the erasure flow; never updated.
CREATE TABLE consent_evidence (
    tenant_id  uuid NOT NULL,
    record_id  uuid NOT NULL,
    ip         inet,
    user_agent text,
    proof      jsonb,  -- a string or an object, as the CRM sent it
    PRIMARY KEY (tenant_id, record_id),
    FOREIGN KEY (tenant_id, record_id) REFERENCES consent_records
);
