"""enrichment's app factory: `gunicorn 'services.enrichment.app:create_app()'`."""

from __future__ import annotations

from flask import Flask

from services.enrichment import SCHEMA
from services.enrichment.api import blueprints
from services.enrichment.worker import MIGRATIONS
from shared.settings import Settings
from shared.web import create_keyed_by_identity_app

DESCRIPTION = """Enriches contacts, where consent allows, with profile data, influence, engagement
with the brand and geolocation, from social-network APIs and a social listening feed."""


def create_app(settings: Settings | None = None) -> Flask:
    return create_keyed_by_identity_app("enrichment", SCHEMA, MIGRATIONS, blueprints(), settings or Settings.from_env(),
                                        description=DESCRIPTION)
