"""The HTTP plumbing every service shares: the app factory, problem+json for every error,
bearer-key auth with scopes, Idempotency-Key, cursor pagination, request ids, health and
metrics endpoints. Routes and schemas stay in each service's `api/` package."""

from __future__ import annotations

import base64
import hashlib
import http
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial, wraps
from pathlib import Path
from typing import Any

import flask_smorest
import marshmallow as ma
import orjson
import psycopg
from flask import Flask, Response, current_app, g, request, send_from_directory
from flask_smorest import Api
from flask_smorest.utils import load_info_from_docstring, prepare_response
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError
from psycopg import sql
from psycopg_pool import PoolTimeout
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException

from shared import errors
from shared import logging as json_logging
from shared.auth import AdminAwareVerifier, CachedVerifier, KeyVerifier, Principal, RemoteVerifier
from shared.db import Database, UnitOfWork
from shared.logging import request_id
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, render
from shared.migrate import migrate
from shared.outbox import outbox_lag
from shared.settings import Settings

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
NO_TENANT = "00000000-0000-0000-0000-000000000000"  # the admin key's records (tenants, keys)
BEARER = [{"bearerAuth": []}]


@dataclass
class Service:
    """What a service's routes need, wired once by its app factory."""

    name: str
    schema: str
    settings: Settings
    db: Database
    verifier: KeyVerifier
    outbox_lag: Callable[[], dict[str, dict[str, float]]] | None = None


def service() -> Service:
    return current_app.extensions["liaison"]


# -- problem+json ------------------------------------------------------------------------------
def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, default=str), status=body["status"], mimetype=PROBLEM_JSON
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details (documentation of every error answer)."""

    class Meta:
        # RFC 9457 lets a problem type add members (a 409 on a campaign says `status_now`): the
        # document must not promise clients that these five are all they will ever see.
        unknown = ma.INCLUDE

    type = ma.fields.String(metadata={"description": "URI naming the kind of problem"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "Validation errors: {field: [messages]}"})


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    """webargs reports {location: {field: [msgs]}}; the contract wants {field: [msgs]}."""
    if not isinstance(messages, dict):
        return {"_request": messages}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


class ProblemApi(Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """Documents every error answer as `application/problem+json`, which is what it is."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        code = error.code or 500
        if code == 400 and messages:
            # webargs says the body is not JSON at all.
            body = errors.BadRequest("The request body is not valid JSON.").body()
        elif code == 422 and messages is not None:
            body = errors.ValidationFailed(_flatten_webargs(messages)).body()
        else:
            body = {
                "type": "about:blank",
                "title": error.name,
                "status": code,
                "detail": data.get("message") or error.description or error.name,
            }
        headers = dict(data.get("headers") or {})
        if code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return problem_response(body, headers)


def _handle_problem(problem: errors.Problem) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return problem_response(problem.body(), headers)


def _handle_unstorable_value(error: psycopg.errors.DataError) -> Response:
    """PostgreSQL refused a value the request carried (a NUL character, a date or number out of
    its range): the client's input, not a server fault. The transaction rolled back."""
    log.info("database refused a request value", extra={"path": request.path, "error": str(error)})
    return problem_response(
        errors.ValidationFailed(
            {"_request": [f"A value cannot be stored: {error.diag.message_primary or 'invalid value'}."]},
            detail="The request carries a value the database cannot store (e.g. a NUL character).",
        ).body()
    )


def _handle_database_away(error: psycopg.OperationalError | PoolTimeout) -> Response:
    """PostgreSQL is restarting or out of connections: a 503 the client may retry, not a 500.
    Nothing was changed: the transaction did not commit."""
    log.warning("database unavailable", extra={"path": request.path, "error": str(error)})
    return problem_response(
        errors.Unavailable("The database is not answering right now; retry in a few seconds.").body(),
        {"Retry-After": "2"},
    )


def _handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.path})
    return problem_response(
        {"type": "about:blank", "title": "Internal Server Error", "status": 500,
         "detail": "The server failed to answer; the error is logged with this request's id."}
    )


# -- request bodies ----------------------------------------------------------------------------
# Levels of nesting an accepted body keeps free: events and envelopes wrap request values (a
# contact's attributes in a contact.upserted event) and must still be writable by orjson.
JSON_DEPTH_HEADROOM = 64
# Numbers strictly between these: orjson writes integers of 64 bits at most, and jsonb gives a
# stored 1e20 back as the integer 100000000000000000000, which orjson could then not write.
NUMBER_RANGE = (-(2**63), 2**64)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_POSITIVE_EXPONENT = re.compile(rb"0[eE]\+?0")


def _may_hold_big_numbers(body: bytes) -> bool:
    """A cheap look at the raw body (a few ms for a 10,000-row bulk import): a number out of
    NUMBER_RANGE has 19 digits in a row or a positive exponent; one inside a string may match too."""
    digits = body.translate(_DIGITS_AS_ZERO)
    return b"0" * 19 in digits or _POSITIVE_EXPONENT.search(digits) is not None


def _numbers_out_of_range(data: Any, limit: int = 20) -> list[str]:
    """The paths (`contacts.3.attributes.score`) of the numbers out of NUMBER_RANGE."""
    low, high = NUMBER_RANGE
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack and len(found) < limit:
        value, path = stack.pop()
        if isinstance(value, dict):
            stack.extend((item, f"{path}.{key}" if path else key) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{index}" if path else str(index)) for index, item in enumerate(value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not low < value < high:
            found.append(path or "_request")
    return sorted(found)


class RequestJsonParser(FlaskParser):
    """Reads JSON request bodies with orjson, the encoder of every jsonb parameter and bus
    message: a body it could not write back is refused here as the client's error, instead of
    a 500 when the value is stored, published or later changed. Lone surrogates, NaN and
    Infinity are not valid JSON (400); a number out of NUMBER_RANGE, or a body nested too deep
    for orjson with JSON_DEPTH_HEADROOM levels to spare, is a 422. orjson also reads a bulk
    import twice as fast as the json module."""

    def _raw_load_json(self, req: Any) -> Any:
        if not is_json_request(req):
            return ma.missing
        body = req.get_data(cache=True)
        if not body:
            return ma.missing  # as webargs: no body is no JSON arguments
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # webargs takes a JSONDecodeError with an empty document for an empty body.
            raise json.JSONDecodeError(str(exc), "<request body>", 0) from None
        if _may_hold_big_numbers(body) and (paths := _numbers_out_of_range(data)):
            raise ma.ValidationError({path: ["A number must be between -2^63 and 2^64; send larger ones as text."]
                                      for path in paths})
        wrapped = data
        for _ in range(JSON_DEPTH_HEADROOM):
            wrapped = [wrapped]
        try:
            orjson.dumps(wrapped)
        except TypeError:
            raise ma.ValidationError({"_request": ["The JSON body is nested too deeply."]}) from None
        return data


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint reading bodies with RequestJsonParser: every service's routes
    are declared on one of these."""

    ARGUMENTS_PARSER = RequestJsonParser()


# -- auth --------------------------------------------------------------------------------------
def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise errors.Unauthorized("Send your API key as `Authorization: Bearer <key>`.")
        principal = service().verifier.verify(key.strip())
        if principal is None:
            raise errors.Unauthorized("The API key is unknown or revoked.")
        g.principal = principal
    return principal


def requires(*scopes: str, admin: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Lets the call through when its key has one of `scopes` (or is the admin key, for the
    tenant and key management that only the admin key may do)."""

    wanted = set(scopes)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if admin:
                if not principal.is_admin:
                    raise errors.Forbidden("Only the admin key manages tenants and keys.")
            elif principal.is_admin:
                raise errors.Forbidden("The admin key may only manage tenants and keys.")
            elif not wanted & principal.scopes:
                raise errors.Forbidden(
                    f"This key lacks the scope for this call (needs one of: {', '.join(sorted(wanted))})."
                )
            return view(*args, **kwargs)

        doc = getattr(wrapper, "_apidoc", {})
        manual = doc.setdefault("manual_doc", {})
        manual["security"] = BEARER
        manual.setdefault("responses", {}).update({
            "401": "UNAUTHORIZED",
            "403": "FORBIDDEN",
        })
        # A manual description replaces the docstring's in flask-smorest: start from the latter.
        manual.setdefault("description", load_info_from_docstring(view.__doc__ or "").get("description", ""))
        needs = "the admin key" if admin else "a key with scope " + " or ".join(f"`{s}`" for s in sorted(wanted))
        manual["description"] = (manual["description"] + f"\n\nRequires {needs}.").strip()
        wrapper._apidoc = doc  # type: ignore[attr-defined]
        return wrapper

    return decorator


def tenant_id() -> str:
    principal = current_principal()
    return principal.tenant_id or NO_TENANT


# -- units of work and idempotency -------------------------------------------------------------
@contextmanager
def unit_of_work(*, read_only: bool = False) -> Iterator[UnitOfWork]:
    """The request's transaction: the one the Idempotency-Key check opened, or a new one.
    `read_only` is for a view that only reads, one statement at a time: no transaction at all,
    which spares two round trips to the database on the hottest paths."""
    uow = g.get("uow")
    if uow is not None:
        yield uow
        return
    db = service().db
    with db.read() if read_only else db.transaction() as uow:
        yield uow


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Idempotency-Key on a creating POST: the first response is stored in the transaction of the
    change it reports, so a repeat (same key and body) gets the same answer and creates nothing,
    even when the first attempt's client never saw the response."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return view(*args, **kwargs)
        if not 1 <= len(key) <= 255:
            raise errors.ValidationFailed({"Idempotency-Key": ["Must be 1 to 255 characters."]})
        svc = service()
        tenant = tenant_id()
        digest = hashlib.sha256(request.get_data()).hexdigest()
        table = sql.Identifier(svc.schema, "idempotency_keys")
        with svc.db.transaction() as uow:
            claimed = uow.execute(
                sql.SQL(
                    "INSERT INTO {} (tenant_id, key, method, path, request_hash)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
                ).format(table),
                (tenant, key, request.method, request.path, digest),
            ).fetchone()
            if not claimed:
                first = uow.execute(
                    sql.SQL(
                        "SELECT request_hash, status, response_body, response_type FROM {}"
                        " WHERE tenant_id = %s AND key = %s AND method = %s AND path = %s"
                    ).format(table),
                    (tenant, key, request.method, request.path),
                ).fetchone()
                if first["request_hash"] != digest:
                    raise errors.ValidationFailed(
                        {"Idempotency-Key": ["This key was already used with a different body."]},
                        detail="An Idempotency-Key may be reused only for the same request.",
                    )
                replay = Response(bytes(first["response_body"]), status=first["status"],
                                  mimetype=first["response_type"])
                replay.headers["Idempotent-Replayed"] = "true"
                return replay
            g.uow = uow
            try:
                response = current_app.make_response(view(*args, **kwargs))
            finally:
                g.pop("uow", None)
            uow.execute(
                sql.SQL(
                    "UPDATE {} SET status = %s, response_body = %s, response_type = %s"
                    " WHERE tenant_id = %s AND key = %s AND method = %s AND path = %s"
                ).format(table),
                (response.status_code, response.get_data(), response.mimetype,
                 tenant, key, request.method, request.path),
            )
        return response

    doc = getattr(wrapper, "_apidoc", {})
    doc.setdefault("manual_doc", {}).setdefault("parameters", []).append(
        {"in": "header", "name": "Idempotency-Key", "required": False,
         "schema": {"type": "string", "minLength": 1, "maxLength": 255},
         "description": "Repeat a create safely: for 24 hours, the same key and body return the first "
                        "response and create nothing."}
    )
    wrapper._apidoc = doc  # type: ignore[attr-defined]
    return wrapper


# -- pagination --------------------------------------------------------------------------------
class PageArgs(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, 1000))
    cursor = ma.fields.String(load_default=None)


def page_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    """The contract's list envelope, `{"items": [item, ...], "next_cursor"}`, as a schema class
    named `name` (the name the OpenAPI document gives it)."""
    return type(name, (ma.Schema,), {
        "items": ma.fields.List(ma.fields.Nested(item)),
        "next_cursor": ma.fields.String(
            allow_none=True, metadata={"description": "Pass as ?cursor= for the next page; null on the last"}
        ),
    })


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[str] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != arity or not all(isinstance(v, str) for v in values):
        raise errors.ValidationFailed({"cursor": ["Not a cursor this API gave out."]})
    return values


def page(items: list[dict[str, Any]], limit: int, cursor_of: Callable[[dict[str, Any]], tuple]) -> dict[str, Any]:
    """`items` holds up to limit + 1 rows; the extra one only says there is a next page."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(*cursor_of(items[-1])) if more else None}


# -- the app factory ---------------------------------------------------------------------------
def create_keyed_by_identity_app(name: str, schema: str, migrations: Path, blueprints: list[Any],
                                 settings: Settings, *, description: str) -> Flask:
    """The app of a service whose API keys identity owns (enrichment, campaigns): logging, its
    schema migrated, its pool, keys checked with identity's GET /v1/api-keys/current and the
    answer kept for KEY_CACHE_SECONDS, health and outbox lag, then create_service_app."""
    json_logging.configure(name, settings.log_level)
    migrate(settings.database_url, schema, migrations)
    db = Database(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                  name=name).open()
    verifier = AdminAwareVerifier(
        settings.admin_key, CachedVerifier(RemoteVerifier(settings.identity_url), settings.key_cache_seconds))
    svc = Service(name, schema, settings, db, verifier, outbox_lag=partial(outbox_lag, db, [schema]))
    return create_service_app(svc, blueprints, title=f"Liaison {name}", description=description)


def create_service_app(
    svc: Service,
    blueprints: list[Any],
    *,
    title: str,
    description: str,
) -> Flask:
    app = Flask(svc.name)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            },
        },
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
    )
    app.extensions["liaison"] = svc
    api = ProblemApi(app)
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.register_error_handler(errors.Problem, _handle_problem)
    app.register_error_handler(psycopg.errors.DataError, _handle_unstorable_value)
    app.register_error_handler(psycopg.OperationalError, _handle_database_away)
    app.register_error_handler(PoolTimeout, _handle_database_away)
    app.register_error_handler(Exception, _handle_unexpected)

    track_requests(app, svc.name)

    @app.get("/docs/assets/<path:filename>")
    def docs_assets(filename: str) -> Response:
        """Swagger UI's scripts and styles, served from the installed package: /docs works on a
        machine (or behind a firewall) that cannot reach a CDN."""
        return send_from_directory(swagger_ui_path, filename, max_age=86400)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        checks = {"database": svc.db.ping(), "broker": broker_reachable(svc.settings.broker_url)}
        ready = all(checks.values())
        return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render(svc.outbox_lag)
        return Response(body, content_type=content_type)

    return app


def track_requests(app: Flask, service_name: str) -> None:
    """Each request carries an id (the caller's X-Request-Id, or a new one) into the logs and back
    in the response, and is counted and timed in the request metrics, by route."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if 0 < len(incoming) <= 200 else uuid.uuid4().hex
        g.started = time.perf_counter()
        request_id.set(g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        count, latency = _request_metrics(service_name, request.method, endpoint, response.status_code)
        count.inc()
        latency.observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response


@lru_cache(maxsize=4096)
def _request_metrics(service_name: str, method: str, endpoint: str, status: int) -> tuple[Any, Any]:
    """The labelled children of the request metrics, looked up once per kind of request."""
    return (HTTP_REQUESTS.labels(service_name, method, endpoint, status),
            HTTP_LATENCY.labels(service_name, method, endpoint))


def broker_reachable(broker_url: str) -> bool:
    try:
        with Connection(broker_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=0, timeout=2)
        return True
    except (BrokerError, OSError) as exc:
        log.warning("broker unreachable", extra={"error": str(exc)})
        return False
