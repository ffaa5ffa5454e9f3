"""campaigns' app factory: `gunicorn 'services.campaigns.app:create_app()'`."""

from __future__ import annotations

from functools import partial

from flask import Flask

from services.campaigns import SCHEMA
from services.campaigns.api import blueprints
from services.campaigns.worker import MIGRATIONS
from shared import logging as json_logging
from shared.auth import AdminAwareVerifier, CachedVerifier, RemoteVerifier
from shared.db import Database
from shared.migrate import migrate
from shared.outbox import outbox_lag
from shared.settings import Settings
from shared.web import Service, create_service_app

DESCRIPTION = """Turns what identity and enrichment know into action: dynamic segments,
cross-channel offers by email, SMS and social DM, event triggers, tracking, conversions and ROI."""


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    json_logging.configure("campaigns", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=settings.db_pool_min,
                  max_size=settings.db_pool_max, name="campaigns").open()
    # identity owns the keys: it is asked, and its answer kept for KEY_CACHE_SECONDS.
    verifier = AdminAwareVerifier(
        settings.admin_key,
        CachedVerifier(RemoteVerifier(settings.identity_url), settings.key_cache_seconds),
    )
    service = Service("campaigns", SCHEMA, settings, db, verifier,
                      outbox_lag=partial(outbox_lag, db, [SCHEMA]))
    return create_service_app(service, blueprints(), title="Liaison campaigns", description=DESCRIPTION)
