"""enrichment's app factory: `gunicorn 'services.enrichment.app:create_app()'`."""

from __future__ import annotations

from functools import partial

from flask import Flask

from services.enrichment import SCHEMA
from services.enrichment.api import blueprints
from services.enrichment.worker import MIGRATIONS
from shared import logging as json_logging
from shared.auth import AdminAwareVerifier, CachedVerifier, RemoteVerifier
from shared.db import Database
from shared.migrate import migrate
from shared.outbox import outbox_lag
from shared.settings import Settings
from shared.web import Service, create_service_app

DESCRIPTION = """Enriches contacts, where consent allows, with profile data, influence, engagement
with the brand and geolocation, from social-network APIs and a social listening feed."""


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    json_logging.configure("enrichment", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=settings.db_pool_min,
                  max_size=settings.db_pool_max, name="enrichment").open()
    # identity owns the keys: it is asked, and its answer kept for KEY_CACHE_SECONDS.
    verifier = AdminAwareVerifier(
        settings.admin_key,
        CachedVerifier(RemoteVerifier(settings.identity_url), settings.key_cache_seconds),
    )
    service = Service("enrichment", SCHEMA, settings, db, verifier,
                      outbox_lag=partial(outbox_lag, db, [SCHEMA]))
    return create_service_app(service, blueprints(), title="Liaison enrichment", description=DESCRIPTION)
