"""campaigns' app factory: `gunicorn 'services.campaigns.app:create_app()'`."""

from __future__ import annotations

from flask import Flask

from services.campaigns import SCHEMA
from services.campaigns.api import blueprints
from services.campaigns.worker import MIGRATIONS
from shared.settings import Settings
from shared.web import create_keyed_by_identity_app

DESCRIPTION = """Turns what identity and enrichment know into action: dynamic segments,
cross-channel offers by email, SMS and social DM, event triggers, tracking, conversions and ROI."""


def create_app(settings: Settings | None = None) -> Flask:
    return create_keyed_by_identity_app("campaigns", SCHEMA, MIGRATIONS, blueprints(), settings or Settings.from_env(),
                                        description=DESCRIPTION)
