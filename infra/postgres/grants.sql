-- Privileges that name tables, run by the owner (liaison_owner) after the migrations, every
-- time (idempotent): the migrate Job does it with
--
--     python -m shared.migrate services.identity ... --after infra/postgres/grants.sql
--
-- The default privileges of roles.sql give a service SELECT, INSERT, UPDATE and DELETE on its
-- tables; the append-only ones get less here. Their triggers refuse the change whoever asks
-- (the first lock); these privileges are the second, and the first to show in an audit of grants.

-- The GDPR consent ledger: a consent is recorded and read, never rewritten (a correction is a
-- new record), so identity may INSERT and SELECT it, nothing more.
REVOKE UPDATE, DELETE, TRUNCATE ON identity.consent_records FROM liaison_identity;
-- Consent evidence is deleted by the erasure flow, never updated.
REVOKE UPDATE, TRUNCATE ON identity.consent_evidence FROM liaison_identity;
-- The audit trail: entries are never deleted, and sealing sets only their place in the chain.
REVOKE UPDATE, DELETE, TRUNCATE ON identity.audit_log FROM liaison_identity;
GRANT UPDATE (seq, prev_hash, hash) ON identity.audit_log TO liaison_identity;
-- A chain head only moves forward.
REVOKE DELETE, TRUNCATE ON identity.audit_chain_heads FROM liaison_identity;
