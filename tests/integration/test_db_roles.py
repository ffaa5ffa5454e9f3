"""The least-privilege PostgreSQL roles of infra/postgres/, on the real server: a service starts and
works under its own role, and that role can do no more than its job (the identity role may append
to the consent ledger and read it, never rewrite it; no role reaches another service's schema).

Roles are cluster-wide: this run's are named after it (lr<run>_owner, ...) and dropped at the end,
with the database they were granted on."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from services.campaigns.worker import MIGRATIONS as CAMPAIGNS_MIGRATIONS
from services.identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
from shared.migrate import MigrationError, migrate
from shared.migrate import main as migrate_command
from tests.conftest import make_tenant
from tests.integration.test_consents import consent, make_contact

ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = ROOT / "infra" / "postgres" / "roles.sql"
GRANTS_SQL = ROOT / "infra" / "postgres" / "grants.sql"
_ROLE = re.compile(r"\bliaison_(owner|identity|enrichment|campaigns|webhooks)\b")


def _url(server_url: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(server_url)
    netloc = parts.netloc if user is None else f"{user}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + database))


class Cluster:
    """A database of its own with this run's roles, and a URL per role (trust authentication)."""

    def __init__(self, server_url: str, run: str):
        self.server_url = server_url
        self.database = f"liaison_roles_{run}"
        self.prefix = f"lr{run}_"
        self.grants = Path()

    def role(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def url(self, role: str | None = None) -> str:
        return _url(self.server_url, self.database, None if role is None else self.role(role))

    def sql_file(self, path: Path) -> str:
        """The file's text with this run's role names instead of liaison_*."""
        return _ROLE.sub(lambda m: self.role(m.group(1)), path.read_text("utf-8"))

    def run_as_admin(self, path: Path) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(self.sql_file(path).encode())


@pytest.fixture(scope="module")
def cluster(settings, tmp_path_factory) -> Iterator[Cluster]:
    run = uuid.uuid4().hex[:8]
    cluster = Cluster(settings.database_url, run)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(cluster.database)))
    try:
        cluster.run_as_admin(ROLES_SQL)
        cluster.run_as_admin(ROLES_SQL)  # idempotent: a second run changes nothing and fails nothing
        folder = tmp_path_factory.mktemp("grants")
        cluster.grants = folder / "grants.sql"
        cluster.grants.write_text(cluster.sql_file(GRANTS_SQL))
        yield cluster
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(cluster.database)))
            for name in ("identity", "enrichment", "campaigns", "webhooks", "owner"):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(cluster.role(name))))


@pytest.fixture(scope="module")
def migrated(cluster: Cluster) -> Cluster:
    """Before the owner migrates, a service under its own role cannot start and says why; then
    the operator's command (as the migrate Job runs it) brings every schema up to date."""
    with pytest.raises(MigrationError, match=r"python -m shared\.migrate") as refused:
        migrate(cluster.url("identity"), "identity", IDENTITY_MIGRATIONS)
    assert "pending" in str(refused.value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", cluster.url("owner"))
        assert migrate_command(["services.identity", "services.campaigns", "--after", str(cluster.grants)]) == 0
        assert migrate_command(["services.identity", "services.campaigns", "--check"]) == 0
    return cluster


@pytest.fixture(scope="module")
def identity_as_role(migrated: Cluster, settings):
    from services.identity.app import create_app

    app = create_app(replace(settings, database_url=migrated.url("identity")))
    yield app.test_client()
    app.extensions["liaison"].db.close()


def _as(cluster: Cluster, role: str, statement: str) -> None:
    with psycopg.connect(cluster.url(role)) as conn:
        conn.execute(statement)


def test_the_identity_service_works_under_its_own_role(identity_as_role, migrated, settings):
    identity = identity_as_role
    with identity.application.extensions["liaison"].db.read() as uow:
        assert uow.execute("SELECT current_user AS role").fetchone()["role"] == migrated.role("identity")
    admin = {"Authorization": f"Bearer {settings.admin_key}"}
    tenant = make_tenant(identity, admin)
    contact_id = make_contact(identity, tenant)
    recorded = identity.post(f"/v1/contacts/{contact_id}/consents", json=consent(), headers=tenant.crm)
    assert recorded.status_code == 201, recorded.json
    withdrawn = identity.post(f"/v1/contacts/{contact_id}/consents", json=consent(status="withdrawn"),
                              headers=tenant.crm)
    assert withdrawn.status_code == 201, withdrawn.json
    history = identity.get(f"/v1/contacts/{contact_id}/consents", headers=tenant.compliance)
    assert history.status_code == 200
    assert history.json["current"]["email_marketing"]["status"] == "withdrawn"
    # Sealing the audit trail updates only seq/prev_hash/hash, the columns the role may update.
    verified = identity.get("/v1/audit/verify", headers=tenant.compliance)
    assert verified.status_code == 200 and verified.json["valid"] is True and verified.json["entries"] >= 3
    erasure = identity.delete(f"/v1/contacts/{contact_id}", headers=tenant.crm)
    assert erasure.status_code == 202, erasure.json
    state = identity.get(erasure.headers["Location"], headers=tenant.compliance)
    assert state.status_code == 200 and state.json["contact_id"] == contact_id


def test_the_identity_role_cannot_rewrite_the_consent_ledger(identity_as_role, migrated):
    # Refused by privilege, before the append-only trigger is even reached.
    for statement in ("UPDATE identity.consent_records SET status = 'granted'",
                      "DELETE FROM identity.consent_records",
                      "TRUNCATE identity.consent_records",
                      "DELETE FROM identity.audit_log",
                      "UPDATE identity.audit_log SET actor = 'someone else'"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(migrated, "identity", statement)
    with psycopg.connect(migrated.url("identity")) as conn:
        assert conn.execute("SELECT count(*) FROM identity.consent_records").fetchone()[0] >= 0


def test_the_identity_role_stays_in_its_own_schema(migrated):
    for statement in ("SELECT count(*) FROM campaigns.deliveries",
                      "CREATE TABLE identity.extra (id int)",
                      "CREATE SCHEMA mine",
                      "CREATE TEMP TABLE scratch (id int)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(migrated, "identity", statement)


def test_the_campaigns_role_can_launch_and_cannot_touch_identity(migrated):
    # What a launch does: a temporary table of members, then rows written from it.
    with psycopg.connect(migrated.url("campaigns")) as conn, conn.transaction():
        conn.execute("CREATE TEMP TABLE launch_members (contact_id uuid PRIMARY KEY) ON COMMIT DROP")
        conn.execute("INSERT INTO launch_members SELECT gen_random_uuid() FROM generate_series(1, 3)")
        written = conn.execute(
            "INSERT INTO campaigns.outbox (tenant_id, routing_key, envelope)"
            " SELECT gen_random_uuid(), 'liaison.campaigns.test', jsonb_build_object('contact', contact_id)"
            " FROM launch_members RETURNING id").fetchall()
        assert len(written) == 3
        conn.execute("DELETE FROM campaigns.outbox WHERE routing_key = 'liaison.campaigns.test'")
    for statement in ("SELECT count(*) FROM identity.contacts",
                      "INSERT INTO identity.consent_records (tenant_id) VALUES (gen_random_uuid())",
                      "DROP TABLE campaigns.outbox"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(migrated, "campaigns", statement)
    # The migrations were the owner's; nothing is left for a service role to apply.
    assert migrate(migrated.url("campaigns"), "campaigns", CAMPAIGNS_MIGRATIONS) == []
