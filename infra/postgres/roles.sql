-- Liaison's PostgreSQL roles, least privilege (docs/deployment.md, "Database roles").
--
--   liaison_owner       owns the schemas and everything in them; the only role that runs
--                       migrations (python -m shared.migrate, the migrate Job). Not a superuser.
--   liaison_identity    identity's web and worker processes
--   liaison_enrichment  enrichment's
--   liaison_campaigns   campaigns' (web, worker, channel workers)
--   liaison_webhooks    webhooks'
--   (the console keeps no data and has no role.)
--
-- A service role may use its own schema only, with SELECT, INSERT, UPDATE and DELETE on its
-- tables (no TRUNCATE, no DDL, no other schema). Tables a later migration creates get the same
-- grants through default privileges, because the owner creates them. The exceptions that name
-- a table (the consent ledger: INSERT and SELECT only) are in grants.sql, which the owner runs
-- after the migrations, since the tables exist only then.
--
-- Run in Liaison's database as a superuser (or the database owner with CREATEROLE), before the
-- first migration and again whenever a service is added; it is idempotent:
--
--     psql -v ON_ERROR_STOP=1 -d liaison -f infra/postgres/roles.sql
--
-- No passwords here: set them apart (ALTER ROLE liaison_identity PASSWORD '...'), or use
-- client certificates; pg_hba.conf should allow these roles with scram-sha-256 or cert only.

-- Roles (CREATE ROLE has no IF NOT EXISTS).
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['liaison_owner', 'liaison_identity', 'liaison_enrichment',
                                     'liaison_campaigns', 'liaison_webhooks'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        END IF;
        -- Whatever they were before: plain login roles.
        EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                       role_name);
    END LOOP;
END $$;

-- The database: nobody connects or creates temporary tables by default; the owner may create
-- schemas (a new service's); campaigns' launch needs a temporary table (ON COMMIT DROP).
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO liaison_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO liaison_identity, liaison_enrichment, liaison_campaigns, '
                   'liaison_webhooks', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO liaison_campaigns', current_database());
END $$;
-- PostgreSQL < 15 lets every role create objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The schemas, owned by the owner (a schema created earlier by another role is handed over; its
-- tables keep their owner: see docs/deployment.md for REASSIGN OWNED on an existing database).
CREATE SCHEMA IF NOT EXISTS identity AUTHORIZATION liaison_owner;
CREATE SCHEMA IF NOT EXISTS enrichment AUTHORIZATION liaison_owner;
CREATE SCHEMA IF NOT EXISTS campaigns AUTHORIZATION liaison_owner;
CREATE SCHEMA IF NOT EXISTS webhooks AUTHORIZATION liaison_owner;
ALTER SCHEMA identity OWNER TO liaison_owner;
ALTER SCHEMA enrichment OWNER TO liaison_owner;
ALTER SCHEMA campaigns OWNER TO liaison_owner;
ALTER SCHEMA webhooks OWNER TO liaison_owner;

-- Functions the owner creates are not callable by every role, only by their service's.
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- identity
GRANT USAGE ON SCHEMA identity TO liaison_identity;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA identity
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO liaison_identity;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA identity
    GRANT USAGE, SELECT ON SEQUENCES TO liaison_identity;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA identity
    GRANT EXECUTE ON FUNCTIONS TO liaison_identity;

-- enrichment
GRANT USAGE ON SCHEMA enrichment TO liaison_enrichment;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA enrichment
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO liaison_enrichment;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA enrichment
    GRANT USAGE, SELECT ON SEQUENCES TO liaison_enrichment;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA enrichment
    GRANT EXECUTE ON FUNCTIONS TO liaison_enrichment;

-- campaigns
GRANT USAGE ON SCHEMA campaigns TO liaison_campaigns;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA campaigns
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO liaison_campaigns;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA campaigns
    GRANT USAGE, SELECT ON SEQUENCES TO liaison_campaigns;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA campaigns
    GRANT EXECUTE ON FUNCTIONS TO liaison_campaigns;

-- webhooks
GRANT USAGE ON SCHEMA webhooks TO liaison_webhooks;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA webhooks
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO liaison_webhooks;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA webhooks
    GRANT USAGE, SELECT ON SEQUENCES TO liaison_webhooks;
ALTER DEFAULT PRIVILEGES FOR ROLE liaison_owner IN SCHEMA webhooks
    GRANT EXECUTE ON FUNCTIONS TO liaison_webhooks;

-- A database migrated before this file ran: the same grants on what exists already.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA identity TO liaison_identity;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA identity TO liaison_identity;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA identity TO liaison_identity;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA enrichment TO liaison_enrichment;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA enrichment TO liaison_enrichment;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA enrichment TO liaison_enrichment;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA campaigns TO liaison_campaigns;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA campaigns TO liaison_campaigns;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA campaigns TO liaison_campaigns;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA webhooks TO liaison_webhooks;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA webhooks TO liaison_webhooks;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO liaison_webhooks;
