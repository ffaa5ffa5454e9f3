-- The right to erasure (requests and their progress in every service) and what makes the audit
-- trail tamper-evident: an append-only guard and the head of each tenant's hash chain.

CREATE TABLE erasures (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    contact_id   uuid NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed')),
    -- Per taking-part service: "pending" or "completed", e.g. {"identity": "completed", ...}.
    services     jsonb NOT NULL,
    completed_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX erasures_contact ON erasures (tenant_id, contact_id, id);

-- The last sealed entry of each tenant's chain. Sealing reads it instead of searching the log, and
-- verification compares the log against it, so that dropping the newest entries (which leaves no
-- gap behind) is detected too.
CREATE TABLE audit_chain_heads (
    tenant_id uuid PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      text NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only: a sealed entry never changes, no entry is ever deleted, and sealing may only set
-- an unsealed entry's seq, prev_hash and hash. (A superuser can still disable the trigger; the
-- hash chain is what detects that.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'the audit trail is append-only: % is refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.seq IS NOT NULL THEN
        RAISE EXCEPTION 'audit entry % is sealed and cannot change', OLD.seq
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.tenant_id, NEW.id, NEW.at, NEW.actor, NEW.action, NEW.resource, NEW.contact_id,
        NEW.details) IS DISTINCT FROM (OLD.tenant_id, OLD.id, OLD.at, OLD.actor, OLD.action,
        OLD.resource, OLD.contact_id, OLD.details) THEN
        RAISE EXCEPTION 'sealing may only set seq, prev_hash and hash of an audit entry'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- A chain head only moves forward.
CREATE FUNCTION audit_chain_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'an audit chain head only moves forward' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE OR DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward();
