"""The bare Flask endpoint identity's resolve is measured against: one indexed SELECT on
identity.identities through the same pool class with the same settings (shared.db.Database:
psycopg_pool, dict rows, its checkout check, DB_POOL_MIN/MAX) in autocommit, served by the same
gunicorn command line (the project's gunicorn.conf.py). No auth, no marshmallow, no metrics, no
problem+json: what is left is the price of Flask, the pool and the SELECT.

    BENCH_TENANT_ID=<uuid> DATABASE_URL=... gunicorn 'bench.baseline_app:create_app()'
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

from shared.db import Database
from shared.settings import Settings

SELECT = ("SELECT id, contact_id FROM identity.identities"
          " WHERE tenant_id = %s AND network = %s AND handle = %s")


def create_app() -> Flask:
    settings = Settings.from_env()
    tenant_id = os.environ["BENCH_TENANT_ID"]
    db = Database(settings.database_url, min_size=settings.db_pool_min,
                  max_size=settings.db_pool_max, name="bench-bare").open()
    app = Flask("bench-bare")

    @app.get("/readyz")
    def readyz():
        ready = db.ping()
        return {"status": "ready" if ready else "unavailable"}, 200 if ready else 503

    @app.get("/resolve")
    def resolve():
        # The least a pooled SELECT costs: one statement in autocommit (no BEGIN/COMMIT round
        # trips), on a connection of the same pool, with whatever its checkout check costs.
        with db.pool.connection() as conn:
            conn.autocommit = True
            try:
                row = conn.execute(SELECT, (tenant_id, request.args.get("network", ""),
                                            request.args.get("handle", ""))).fetchone()
            finally:
                conn.autocommit = False
        if row is None:
            return {"title": "Not Found"}, 404
        return jsonify(contact_id=str(row["contact_id"]), identity_id=str(row["id"]))

    return app
