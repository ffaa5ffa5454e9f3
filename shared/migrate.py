"""Numbered `.sql` migrations per service schema, applied at start under an advisory lock so
that processes starting together do not collide.

Each service owns a schema. The plumbing tables every service needs (outbox, handled events,
idempotency keys) come from `shared/migrations/` and are applied into each service schema first;
then the service's own `migrations/NNNN_name.sql` files, in order. A migration runs with
`search_path` set to the schema, so its unqualified names land there."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

PLUMBING_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path, prefix: str) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not _NAME.match(path.name):
            raise MigrationError(f"{path}: migration files are named NNNN_snake_case.sql")
        found.append(Migration(f"{prefix}{path.stem}", path))
    return found


def migrate(url: str, schema: str, service_dir: Path) -> list[str]:
    """Brings `schema` up to date; returns the versions it applied."""
    pending = discover(PLUMBING_DIR, "plumbing/") + discover(service_dir, "")
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=False) as conn:
        with conn.transaction():
            # A transaction-level lock: released on commit or rollback, never leaked.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"migrate:{schema}",)
            )
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                    " version text PRIMARY KEY, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(schema))
            )
            rows = conn.execute(
                sql.SQL("SELECT version, checksum FROM {}.schema_migrations").format(
                    sql.Identifier(schema)
                )
            ).fetchall()
            done = dict(rows)
            conn.execute(
                sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
            )
            for migration in pending:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{schema}: migration {migration.version} was changed after it was "
                            "applied; add a new migration instead"
                        )
                    continue
                log.info("applying migration", extra={"schema": schema, "version": migration.version})
                conn.execute(migration.text.encode())
                conn.execute(
                    sql.SQL("INSERT INTO {}.schema_migrations (version, checksum) VALUES (%s, %s)")
                    .format(sql.Identifier(schema)),
                    (migration.version, migration.checksum),
                )
                applied_now.append(migration.version)
    return applied_now
