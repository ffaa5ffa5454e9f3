"""Migrations: applied once, in order, even when several processes start at the same moment."""

import threading
import uuid

import psycopg
import pytest
from psycopg import sql

from shared.migrate import PLUMBING_DIR, MigrationError, migrate


def _schemas(settings, name):
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(sql.SQL("SELECT version FROM {}.schema_migrations ORDER BY version")
                            .format(sql.Identifier(name))).fetchall()


def test_processes_starting_together_apply_each_migration_once(settings, tmp_path):
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    (tmp_path / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    results, failures = [], []

    def start():
        try:
            results.append(migrate(settings.database_url, schema, tmp_path))
        except Exception as error:  # noqa: BLE001 - the test reports any failure of a starter
            failures.append(error)

    starters = [threading.Thread(target=start) for _ in range(4)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    assert failures == []
    applied = [versions for versions in results if versions]
    assert len(applied) == 1  # one starter applied everything, the others found it done
    assert applied[0][-2:] == ["0001_things", "0002_more"]
    recorded = [r[0] for r in _schemas(settings, schema)]
    plumbing = sorted(f"plumbing/{path.stem}" for path in PLUMBING_DIR.glob("*.sql"))
    assert plumbing and sorted(recorded) == ["0001_things", "0002_more", *plumbing]
    assert migrate(settings.database_url, schema, tmp_path) == []


def test_an_applied_migration_that_was_edited_stops_the_start(settings, tmp_path):
    migration = tmp_path / "0001_things.sql"
    migration.write_text("CREATE TABLE things (id int);")
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    migrate(settings.database_url, schema, tmp_path)
    migration.write_text("CREATE TABLE things (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(settings.database_url, schema, tmp_path)
