#!/bin/sh
# infra/compose.yaml only, at the database's first start (after 10-roles.sql): one password for
# every Liaison role, from LIAISON_DB_PASSWORD. A production database gives each role its own
# (docs/deployment.md). psql's :'var' quotes the value as a literal.
set -eu
for role in liaison_owner liaison_identity liaison_enrichment liaison_campaigns liaison_webhooks; do
    psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v role="$role" -v password="$LIAISON_DB_PASSWORD" \
        <<'SQL'
ALTER ROLE :"role" PASSWORD :'password';
SQL
done
