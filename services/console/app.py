"""console's app factory: `gunicorn 'services.console.app:create_app()'`.

The web console for people: campaign managers and compliance officers sign in with their API
key and use the three services' APIs through it (a backend-for-frontend). It has no database,
no migrations and no worker; it is ready when identity, which checks every key, answers."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, render_template, request
from werkzeug.exceptions import HTTPException

from services.console import views
from services.console.backend import Backend
from shared import logging as json_logging
from shared.metrics import render
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.web import track_requests

log = logging.getLogger(__name__)

SESSION_HOURS = 8
# Pages use only the console's own script and style; nothing may frame them.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env(stores=False)  # it keeps nothing: no database, no broker
    json_logging.configure("console", settings.log_level)
    app = Flask(__name__, template_folder="templates", static_folder="static", static_url_path="/static")
    secure = urlsplit(settings.console_url).scheme == "https"
    app.config.update(
        # Its own signing key, derived: a session cookie must not be a tracking token's key's oracle.
        SECRET_KEY=hashlib.sha256(b"liaison-console-session:" + settings.secret_key.encode()).hexdigest(),
        SESSION_COOKIE_NAME="liaison_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.jinja_env.autoescape = True
    backend = Backend(settings)
    app.extensions["console"] = views.Console(settings, backend, SecretBox(settings.secret_key, b"liaison-console-key"))
    app.register_blueprint(views.blp)

    track_requests(app, "console")

    @app.after_request
    def _secure_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")  # pages hold personal data
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        messages = {404: "There is no such page.", 405: "This page does not take that kind of request.",
                    413: "That is more than the console takes in one form."}
        return render_template("problem.html", status=code, title=error.name,
                               detail=messages.get(code, error.description or error.name)), code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[str, int]:
        log.exception("unhandled error", extra={"path": request.path})
        return render_template("problem.html", status=500, title="Something went wrong",
                               detail="The console could not show this page. The error is logged with "
                                      f"reference {g.get('request_id', '')}."), 500

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        # identity checks every key: without it nobody can sign in or be served.
        checks = {"identity": backend.alive("identity")}
        ready = all(checks.values())
        return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render()
        return Response(body, content_type=content_type)

    return app
