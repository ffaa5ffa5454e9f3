"""Numbered `.sql` migrations per service schema, applied at start under an advisory lock so
that processes starting together do not collide.

Each service owns a schema. The plumbing tables every service needs (outbox, handled events,
idempotency keys) come from `shared/migrations/` and are applied into each service schema first;
then the service's own `migrations/NNNN_name.sql` files, in order. A migration runs with
`search_path` set to the schema, so its unqualified names land there.

Every service process calls `migrate()` at start. When nothing is pending it only reads
`schema_migrations` (no lock, no CREATE), so a service can run under a role that may not create
anything (infra/postgres/roles.sql); when something is pending and the role may not apply it, the
error names the command to run as the schema owner. That command, for an operator or a Kubernetes
Job (infra/k8s/base/migrate-job.yaml):

    python -m shared.migrate services.identity services.enrichment services.campaigns services.webhooks \
        [--after infra/postgres/grants.sql] [--check]

It takes the services' packages by name (each gives SCHEMA and a migrations/ folder beside it),
so shared/ imports no service of its own accord. `--after` runs SQL files once every schema is up
to date (the privileges that name tables, such as the consent ledger's); `--check` applies
nothing and exits 1 if anything is pending."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import re
import sys
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


def _applied(conn: psycopg.Connection, schema: str) -> dict[str, str] | None:
    """version -> checksum of what `schema` has applied, or None if it has no migrations table."""
    table = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_migrations",)).fetchone()
    if table is None or table[0] is None:
        return None
    rows = conn.execute(
        sql.SQL("SELECT version, checksum FROM {}.schema_migrations").format(sql.Identifier(schema))
    ).fetchall()
    return dict(rows)


def _changed(schema: str, migrations: list[Migration], done: dict[str, str]) -> None:
    for migration in migrations:
        if migration.version in done and done[migration.version] != migration.checksum:
            raise MigrationError(
                f"{schema}: migration {migration.version} was changed after it was "
                "applied; add a new migration instead"
            )


def pending_migrations(url: str, schema: str, service_dir: Path) -> list[str]:
    """The versions `schema` has not applied yet, read without writing anything."""
    migrations = discover(PLUMBING_DIR, "plumbing/") + discover(service_dir, "")
    with psycopg.connect(url, autocommit=True) as conn:
        done = _applied(conn, schema) or {}
    _changed(schema, migrations, done)
    return [m.version for m in migrations if m.version not in done]


def migrate(url: str, schema: str, service_dir: Path) -> list[str]:
    """Brings `schema` up to date; returns the versions it applied."""
    pending = discover(PLUMBING_DIR, "plumbing/") + discover(service_dir, "")
    # Up to date already (every start but the first after a release): a read, nothing more, so
    # that a role without CREATE starts too.
    if not pending_migrations(url, schema, service_dir):
        return []
    try:
        return _apply(url, schema, pending)
    except psycopg.errors.InsufficientPrivilege as exc:
        waiting = pending_migrations(url, schema, service_dir)
        if not waiting:  # another process applied them meanwhile
            return []
        raise MigrationError(
            f"{schema}: {len(waiting)} migration(s) pending ({', '.join(waiting)}) and this role may not "
            f"apply them ({exc.diag.message_primary}). Run the migrations as the schema owner first: "
            f"python -m shared.migrate services.<service> (docs/deployment.md)"
        ) from exc


def _apply(url: str, schema: str, pending: list[Migration]) -> list[str]:
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
            _changed(schema, pending, done)
            conn.execute(
                sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
            )
            for migration in pending:
                if migration.version in done:
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


def service_migrations(package_name: str) -> tuple[str, Path] | None:
    """(schema, migrations folder) of a service package such as `services.identity`, or None
    for a service that keeps nothing of its own (SCHEMA = None)."""
    package = importlib.import_module(package_name)
    schema = getattr(package, "SCHEMA", None)
    if schema is None:
        return None
    return schema, Path(package.__file__).parent / "migrations"


def run_sql_file(url: str, path: Path) -> None:
    with psycopg.connect(url, autocommit=False) as conn, conn.transaction():
        conn.execute(path.read_text(encoding="utf-8").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.migrate",
        description="Apply the migrations of the named services (run as the schema owner), with DATABASE_URL.")
    parser.add_argument("packages", nargs="+", metavar="PACKAGE", help="a service package, e.g. services.identity")
    parser.add_argument("--after", action="append", type=Path, default=[], metavar="FILE.sql",
                        help="SQL to run once every schema is up to date (repeatable)")
    parser.add_argument("--check", action="store_true", help="apply nothing; exit 1 if anything is pending")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    late = 0
    try:
        for package_name in args.packages:
            found = service_migrations(package_name)
            if found is None:
                print(f"{package_name}: keeps no schema of its own")
                continue
            schema, folder = found
            if args.check:
                waiting = pending_migrations(url, schema, folder)
                late += len(waiting)
                print(f"{schema}: " + (f"pending {', '.join(waiting)}" if waiting else "up to date"))
            else:
                applied = migrate(url, schema, folder)
                print(f"{schema}: up to date" + (f" ({len(applied)} applied)" if applied else ""))
        if not args.check:
            for path in args.after:
                run_sql_file(url, path)
                print(f"ran {path}")
    except (MigrationError, psycopg.Error, ModuleNotFoundError) as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
