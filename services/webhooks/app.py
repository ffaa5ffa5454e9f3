"""webhooks' app factory: `gunicorn 'services.webhooks.app:create_app()'`."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response

from services.webhooks import SCHEMA
from services.webhooks.api import blueprints
from services.webhooks.metrics import render_backlog
from services.webhooks.repository.deliveries import pending_lag
from shared.metrics import render
from shared.settings import Settings
from shared.web import create_keyed_by_identity_app

MIGRATIONS = Path(__file__).parent / "migrations"

DESCRIPTION = """Webhooks to the CRM: register endpoints and the event types they want; every matching
event is POSTed to them signed with HMAC-SHA256 (as Stripe signs), retried with backoff for a day,
and listed with its attempts, replayable. Receiver code: docs/webhooks.md."""


def create_app(settings: Settings | None = None) -> Flask:
    app = create_keyed_by_identity_app("webhooks", SCHEMA, MIGRATIONS, blueprints(), settings or Settings.from_env(),
                                       description=DESCRIPTION)
    svc = app.extensions["liaison"]

    def backlog() -> dict[str, float]:
        with svc.db.read() as uow:
            return pending_lag(uow)

    def metrics() -> Response:
        """The platform's metrics, and the deliveries waiting, read now."""
        body, content_type = render(svc.outbox_lag)
        return Response(body + render_backlog(backlog), content_type=content_type)

    app.view_functions["metrics"] = metrics
    return app
