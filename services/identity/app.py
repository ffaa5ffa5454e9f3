"""identity's app factory: `gunicorn 'services.identity.app:create_app()'`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from flask import Flask

from services.identity import SCHEMA
from services.identity.api import blueprints
from services.identity.tenants import DatabaseKeyVerifier
from shared import logging as json_logging
from shared.auth import AdminAwareVerifier, CachedVerifier
from shared.db import Database
from shared.migrate import migrate
from shared.outbox import outbox_lag
from shared.settings import Settings
from shared.web import Service, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"

DESCRIPTION = """Links social-network handles to CRM contacts, keeps the append-only ledger of
GDPR consent with its proof, answers whether a contact's data may be used for a purpose now,
keeps a hash-chained audit trail, and carries out the rights of access and erasure."""


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    json_logging.configure("identity", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=settings.db_pool_min,
                  max_size=settings.db_pool_max, name="identity").open()
    verifier = AdminAwareVerifier(
        settings.admin_key,
        CachedVerifier(DatabaseKeyVerifier(db), settings.key_cache_seconds),
    )
    service = Service("identity", SCHEMA, settings, db, verifier,
                      outbox_lag=partial(outbox_lag, db, [SCHEMA]))
    return create_service_app(service, blueprints(), title="Liaison identity",
                              description=DESCRIPTION)
