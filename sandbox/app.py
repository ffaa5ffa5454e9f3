"""The sandbox's Flask app: one blueprint per kind of outside service (providers.py for
enrichment; the campaigns' channels can add theirs), plus /healthz and /readyz so `make run`
can wait for it like for the services.

    gunicorn 'sandbox.app:create_app()'
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from flask import Flask, Response, jsonify

from sandbox.channels import bp as channels
from sandbox.providers import bp as providers


def _latency_ms(env: Mapping[str, str]) -> float:
    raw = env.get("SANDBOX_LATENCY_MS", "").strip() or "0"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"SANDBOX_LATENCY_MS={raw!r} is not a number of milliseconds") from None
    if not 0 <= value <= 60_000:
        raise ValueError(f"SANDBOX_LATENCY_MS={value} is out of range (0..60000)")
    return value


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """The sandbox. `SANDBOX_LATENCY_MS` (default 0) is slept before every answer, to see how
    enrichment behaves when providers are slow (a benchmark, a timeout demo)."""
    env = os.environ if env is None else env
    latency = _latency_ms(env) / 1000
    app = Flask("sandbox")
    app.json.sort_keys = False  # keep the providers' field order, easier to compare with their docs
    app.register_blueprint(providers)
    app.register_blueprint(channels)

    if latency:
        @app.before_request
        def slow_down() -> None:
            time.sleep(latency)

    @app.get("/healthz")
    @app.get("/readyz")
    def health() -> Response:
        return jsonify({"status": "ok", "sandbox": True})

    @app.errorhandler(404)
    @app.errorhandler(405)
    def no_such_endpoint(error: Exception) -> tuple[Response, int]:
        code = getattr(error, "code", 404)
        return jsonify({"status": code, "message": "the sandbox has no such endpoint"}), code

    return app
