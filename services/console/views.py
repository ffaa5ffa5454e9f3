"""The console's pages. Each one asks the services' APIs with the signed-in person's key and
renders what they answer; nothing is stored here but the session cookie (the key sealed with
AES-GCM, its scopes, a CSRF token)."""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)

from services.console import charts
from services.console.backend import ApiError, Backend, stream_body
from services.console.rules import FIELDS, HINTS, OPS, PURPOSES, rows_from_rules, rules_from_rows
from shared.secrets import SecretBox, SecretUnreadable
from shared.settings import Settings

log = logging.getLogger(__name__)

blp = Blueprint("console", __name__)

CHANNELS = ("email", "sms", "social_dm")
CAMPAIGN_STATUSES = ("draft", "scheduled", "launching", "running", "completed", "cancelled")
CANCELLABLE = ("draft", "scheduled", "launching", "running")
CONSOLE_SCOPES = ("marketing", "compliance")
PAGE = 20
KEY_CONTEXT = b"console-session"


@dataclass
class Console:
    settings: Settings
    backend: Backend
    box: SecretBox


class SignInNeeded(Exception):
    """No key in the session, or the services no longer accept it."""


def console() -> Console:
    return current_app.extensions["console"]


# -- session, key, CSRF ------------------------------------------------------------------------
def _key() -> str:
    sealed = session.get("key")
    if not sealed:
        raise SignInNeeded("Sign in to continue.")
    try:
        return console().box.open(base64.b64decode(sealed), KEY_CONTEXT).decode()
    except (SecretUnreadable, ValueError):
        session.clear()  # sealed under another secret key (rotated): sign in again
        raise SignInNeeded("Your session has expired; sign in again.") from None


def scopes() -> set[str]:
    return set(session.get("scopes") or ())


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


@blp.before_app_request
def _check_csrf() -> None:
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="This form has expired (or came from another site). Reload the page and try again.")


PURPOSE_LABELS = {"email_marketing": "Email marketing", "sms_marketing": "SMS marketing",
                  "social_dm_marketing": "Social DM marketing", "profile_enrichment": "Profile enrichment",
                  "geolocation": "Geolocation"}
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "social_dm": "Social DM"}


@blp.app_template_filter("when")
def _when(value: Any) -> str:
    """2026-11-23T18:20:37.869889Z → 2026-11-23 18:20:37 UTC (the APIs' times are all UTC)."""
    if not value:
        return "—"
    text = str(value)
    return text.replace("T", " ")[:19] + " UTC" if "T" in text else text


@blp.app_template_filter("purpose")
def _purpose(value: str) -> str:
    return PURPOSE_LABELS.get(value, value.replace("_", " "))


@blp.app_template_filter("channel")
def _channel(value: str) -> str:
    return CHANNEL_LABELS.get(value, value.replace("_", " "))


@blp.app_template_filter("brief")
def _brief(value: Any, length: int = 16) -> str:
    """A long identifier or hash cut to its first characters (the whole one is in a title)."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= length else text[:length] + "…"


@blp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "scopes": scopes(), "signed_in": bool(session.get("key")),
            "key_name": session.get("key_id", "")}


def api(service: str, method: str, path: str, **options: Any) -> Any:
    """The JSON answer of a service's API, called with the signed-in person's key."""
    return _call(console().backend.json, service, method, path, **options)


def api_stream(service: str, path: str, **options: Any) -> Any:
    return _call(console().backend.request, service, "GET", path, stream=True, **options)


def _call(how: Callable[..., Any], service: str, method: str, path: str, **options: Any) -> Any:
    try:
        return how(service, method, path, _key(), request_id=g.get("request_id", ""), **options)
    except ApiError as error:
        if error.status == 401:
            session.clear()
            raise SignInNeeded("Your API key is no longer accepted (revoked?); sign in with a valid one.") from None
        raise


def needs(*wanted: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The page needs the session's key to hold one of `wanted` scopes."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _key()
            if not scopes() & set(wanted):
                return render_template("problem.html", status=403, title="Not for this key",
                                       detail=f"This page needs a key with the {' or '.join(wanted)} scope; "
                                              f"yours has {', '.join(sorted(scopes())) or 'none'}."), 403
            return view(*args, **kwargs)

        return wrapper

    return decorator


@blp.app_errorhandler(SignInNeeded)
def _sign_in_needed(error: SignInNeeded) -> Response:
    if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
        return Response('{"error": "sign in again"}', status=401, mimetype="application/json")
    flash(str(error), "error")
    target = request.full_path if request.method == "GET" else ""
    return redirect(url_for("console.sign_in", next=target.rstrip("?") or None))


@blp.app_errorhandler(ApiError)
def _api_error(error: ApiError) -> tuple[Any, int]:
    # A service's 5xx or silence is the console's upstream failing: 502/503, never a 500 page.
    status = error.status if error.status < 500 or error.status == 503 else 502
    if request.path.endswith(".json"):
        return jsonify({"title": error.title, "detail": error.detail, "errors": error.errors}), status
    friendly = {403: "Your key is not allowed to do this.", 404: "It does not exist (or not in your tenant)."}
    return render_template("problem.html", status=status, title=error.title, detail=error.detail,
                           hint=friendly.get(error.status), errors=flat_errors(error.errors)), status


def flat_errors(errors: Any, prefix: str = "") -> list[str]:
    """{"content": {"email": {"subject": ["Missing"]}}} → ["content.email.subject: Missing"]."""
    if isinstance(errors, dict):
        out: list[str] = []
        for name, inner in errors.items():
            out.extend(flat_errors(inner, f"{prefix}.{name}" if prefix else str(name)))
        return out
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [f"{prefix}: {' '.join(errors)}" if prefix else " ".join(errors)]
    if isinstance(errors, list):
        return [line for e in errors for line in flat_errors(e, prefix)]
    return [f"{prefix}: {errors}" if prefix else str(errors)]


def _safe_next(target: str | None) -> str | None:
    """Only a path of this site: never an open redirect."""
    # Browsers read "/\\host" as "//host": a backslash is refused as well.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or urlsplit(target).netloc:
        return None
    return target


# -- sign-in -----------------------------------------------------------------------------------
@blp.get("/")
def home() -> Response:
    if not session.get("key"):
        return redirect(url_for("console.sign_in"))
    return redirect(url_for("console.campaigns" if "marketing" in scopes() else "console.contacts"))


@blp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if request.method == "GET":
        return render_template("sign_in.html", next=_safe_next(request.args.get("next")))
    key = request.form.get("api_key", "").strip()
    target = _safe_next(request.form.get("next"))
    error = None
    if not key:
        error = "Paste your API key."
    else:
        try:
            who = console().backend.json("identity", "GET", "/v1/api-keys/current", key,
                                         request_id=g.get("request_id", ""))
        except ApiError as failed:
            if failed.status == 401:
                error = "This API key is unknown or revoked."
            elif failed.status == 403:
                error = "The admin key manages tenants and keys only: sign in with a marketing or compliance key."
            else:
                error = f"{failed.title}: {failed.detail}"
        else:
            granted = set(who.get("scopes") or ()) & set(CONSOLE_SCOPES)
            if not granted:
                error = "This key has neither the marketing nor the compliance scope the console needs."
            else:
                session.clear()  # a new session for a new person: no fixation
                session.permanent = True
                session["key"] = base64.b64encode(console().box.seal(key.encode(), KEY_CONTEXT)).decode()
                session["scopes"] = sorted(who.get("scopes") or ())
                session["key_id"] = str(who.get("id", ""))
                session["tenant_id"] = str(who.get("tenant_id", ""))
                csrf_token()
                return redirect(target or url_for("console.home"))
    return render_template("sign_in.html", error=error, next=target), 401 if key else 422


@blp.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("console.sign_in"))


# -- campaigns ---------------------------------------------------------------------------------
def _sent(report: dict[str, Any]) -> int:
    return sum(int(c.get("sent") or 0) for c in (report.get("by_channel") or {}).values())


def _segment_names() -> dict[str, str]:
    listing = api("campaigns", "GET", "/v1/segments", params={"limit": 200})
    return {s["id"]: s["name"] for s in listing["items"]}


@blp.get("/campaigns")
@needs("marketing", "compliance")
def campaigns() -> str:
    status = request.args.get("status") or None
    params: dict[str, Any] = {"limit": PAGE}
    if status in CAMPAIGN_STATUSES:
        params["status"] = status
    if request.args.get("cursor"):
        params["cursor"] = request.args["cursor"]
    listing = api("campaigns", "GET", "/v1/campaigns", params=params)
    names = _segment_names()
    rows = []
    by_segment: dict[str, dict[str, float]] = {}
    for campaign in listing["items"]:
        report = api("campaigns", "GET", f"/v1/campaigns/{campaign['id']}/report")
        rows.append({"campaign": campaign, "report": report, "sent": _sent(report)})
        totals = by_segment.setdefault(campaign["segment_id"], {"revenue": 0.0, "cost": 0.0})
        totals["revenue"] += float(report.get("revenue") or 0)
        totals["cost"] += float(report.get("cost") or 0)
    roi_items = []
    for segment_id, totals in by_segment.items():
        roi = (totals["revenue"] - totals["cost"]) / totals["cost"] if totals["cost"] else None
        label = names.get(segment_id, segment_id[:8])
        roi_items.append((label, roi, f"{roi:.0%}" if roi is not None else "no cost recorded"))
    roi_chart = charts.bars(roi_items, "ROI per segment: (revenue - cost) / cost of its campaigns on this page")
    return render_template("campaigns.html", rows=rows, names=names, roi_chart=roi_chart, status=status,
                           statuses=CAMPAIGN_STATUSES, next_cursor=listing.get("next_cursor"))


@blp.get("/campaigns/<uuid:campaign_id>")
@needs("marketing", "compliance")
def campaign(campaign_id: uuid.UUID) -> str:
    found = api("campaigns", "GET", f"/v1/campaigns/{campaign_id}")
    report = api("campaigns", "GET", f"/v1/campaigns/{campaign_id}/report")
    timeline = api("campaigns", "GET", f"/v1/campaigns/{campaign_id}/timeline")
    try:
        segment = api("campaigns", "GET", f"/v1/segments/{found['segment_id']}")
        analytics = api("campaigns", "GET", f"/v1/segments/{found['segment_id']}/analytics")
    except ApiError as error:
        if error.status != 404:
            raise
        segment, analytics = None, None  # the segment was deleted since
    return render_template(
        "campaign.html", campaign=found, report=report, sent=_sent(report), segment=segment, analytics=analytics,
        funnel=charts.funnel(report.get("by_channel") or {}, CHANNEL_LABELS),
        timeline_chart=charts.lines(_with_a_start(timeline), charts.SERIES_COLOURS,
                                    f"Results per {timeline['bucket']}: sent, opened, clicked, converted"),
        bucket=timeline["bucket"], can_launch=found["status"] in ("draft", "scheduled"),
        can_cancel=found["status"] in CANCELLABLE)


def _with_a_start(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    """The series with the empty period before its first one when it has a single period: a
    line needs two points, and nothing happened before the first send."""
    items = timeline["items"]
    if len(items) != 1:
        return items
    step = timedelta(days=1) if timeline["bucket"] == "day" else timedelta(hours=1)
    first = datetime.fromisoformat(items[0]["at"].replace("Z", "+00:00"))
    before = (first - step).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"at": before, **dict.fromkeys(charts.SERIES_COLOURS, 0)}, *items]


@blp.post("/campaigns/<uuid:campaign_id>/launch")
@needs("marketing")
def launch(campaign_id: uuid.UUID) -> Response:
    return _campaign_action(campaign_id, "launch", "Launched: the audience is being built and sent to.")


@blp.post("/campaigns/<uuid:campaign_id>/cancel")
@needs("marketing")
def cancel(campaign_id: uuid.UUID) -> Response:
    return _campaign_action(campaign_id, "cancel", "Cancelled: nothing more will be sent.")


def _campaign_action(campaign_id: uuid.UUID, action: str, done: str) -> Response:
    try:
        answer = api("campaigns", "POST", f"/v1/campaigns/{campaign_id}/{action}")
    except ApiError as error:
        if error.status not in (403, 409, 422):
            raise
        flash(f"{error.title}: {error.detail}", "error")
    else:
        if action == "launch" and answer.get("status") == "scheduled":
            done = f"Scheduled for {answer.get('schedule_at')}."
        flash(done, "info")
    return redirect(url_for("console.campaign", campaign_id=campaign_id))


@blp.get("/campaigns/<uuid:campaign_id>/report.csv")
@needs("marketing", "compliance")
def report_csv(campaign_id: uuid.UUID) -> Response:
    upstream = api_stream("campaigns", f"/v1/campaigns/{campaign_id}/report", accept="text/csv")
    return _download(upstream, f"campaign-{campaign_id}-report.csv")


def _download(upstream: Any, filename: str) -> Response:
    response = Response(stream_with_context(stream_body(upstream)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route("/campaigns/new", methods=["GET", "POST"])
@needs("marketing")
def new_campaign() -> Any:
    segments = api("campaigns", "GET", "/v1/segments", params={"limit": 200})["items"]
    form = request.form if request.method == "POST" else {
        "segment_id": request.args.get("segment_id", ""), "channel_1": "email", "strategy": "first_eligible"}
    errors: list[str] = []
    if request.method == "POST":
        body, errors = _campaign_body(request.form)
        if not errors:
            try:
                created = api("campaigns", "POST", "/v1/campaigns", json=body)
            except ApiError as error:
                if error.status != 422:
                    raise
                errors = flat_errors(error.errors) or [error.detail]
            else:
                flash(f"Campaign “{created['name']}” created as a draft.", "info")
                return redirect(url_for("console.campaign", campaign_id=created["id"]))
    return render_template("campaign_new.html", segments=segments, form=form, errors=errors, channels=CHANNELS), \
        422 if errors else 200


def _campaign_body(form: Any) -> tuple[dict[str, Any], list[str]]:
    errors: list[str] = []
    channels: list[str] = []
    for place in ("channel_1", "channel_2", "channel_3"):
        channel = form.get(place, "")
        if channel in CHANNELS and channel not in channels:
            channels.append(channel)
    if not channels:
        errors.append("channels: choose at least one channel.")
    content: dict[str, Any] = {}
    if "email" in channels:
        content["email"] = {"subject": form.get("email_subject", ""), "body": form.get("email_body", "")}
    if "sms" in channels:
        content["sms"] = {"body": form.get("sms_body", "")}
    if "social_dm" in channels:
        content["social_dm"] = {"body": form.get("social_dm_body", "")}
    if form.get("web_title") or form.get("web_body"):
        content["web"] = {"title": form.get("web_title", ""), "body": form.get("web_body", "")}
    body: dict[str, Any] = {"name": form.get("name", ""), "segment_id": form.get("segment_id", ""),
                            "channels": channels, "strategy": form.get("strategy") or "first_eligible",
                            "content": content}
    if form.get("schedule_at"):
        # <input type="datetime-local"> gives 2026-05-01T09:30, read as UTC (the page says so).
        body["schedule_at"] = form["schedule_at"] + (":00Z" if len(form["schedule_at"]) == 16 else "Z")
    costs = {}
    for channel in channels:
        raw = form.get(f"cost_{channel}", "").strip()
        if raw:
            try:
                costs[channel] = float(raw)
            except ValueError:
                errors.append(f"cost_per_message.{channel}: a number, e.g. 0.05.")
    if costs:
        body["cost_per_message"] = costs
    return body, errors


# -- segments ----------------------------------------------------------------------------------
@blp.get("/segments")
@needs("marketing", "compliance")
def segments() -> str:
    params: dict[str, Any] = {"limit": PAGE}
    if request.args.get("cursor"):
        params["cursor"] = request.args["cursor"]
    listing = api("campaigns", "GET", "/v1/segments", params=params)
    analytics = _analytics([s["id"] for s in listing["items"]])
    shown = [s for s in listing["items"] if s["id"] in analytics]
    sizes = charts.bars([(s["name"], analytics[s["id"]]["size"], f"{analytics[s['id']]['size']:,} contacts")
                         for s in shown], "Segment sizes now")
    return render_template("segments.html", segments=shown, analytics=analytics, sizes=sizes,
                           next_cursor=listing.get("next_cursor"))


def _analytics(ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each segment's analytics, in one call; one at a time when a segment was deleted in between
    (compare answers 404 for the whole list), leaving the deleted one out."""
    if not ids:
        return {}
    try:
        compared = api("campaigns", "GET", "/v1/segments/compare", params={"ids": ",".join(ids)})["items"]
    except ApiError as error:
        if error.status != 404:
            raise
        compared = []
        for segment_id in ids:
            try:
                compared.append(api("campaigns", "GET", f"/v1/segments/{segment_id}/analytics"))
            except ApiError as missing:
                if missing.status != 404:
                    raise
    return {a["segment_id"]: a for a in compared}


@blp.route("/segments/new", methods=["GET", "POST"])
@needs("marketing")
def new_segment() -> Any:
    match, rows, name, errors = "all", [{"field": "", "op": "eq", "value": ""}], "", []
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        rules = _builder_rules()
        match, rows = rows_from_rules(rules)
        try:
            created = api("campaigns", "POST", "/v1/segments", json={"name": name, "rules": rules})
        except ApiError as error:
            if error.status != 422:
                raise
            errors = flat_errors(error.errors) or [error.detail]
        else:
            flash(f"Segment “{created['name']}” saved.", "info")
            return redirect(url_for("console.segments"))
    return render_template("segment_new.html", match=match, rows=rows or [{"field": "", "op": "eq", "value": ""}],
                           name=name, errors=errors, fields=FIELDS, ops=OPS, hints=HINTS), 422 if errors else 200


def _builder_rules() -> dict[str, Any]:
    return rules_from_rows(request.form.get("match", "all"), request.form.getlist("field"),
                           request.form.getlist("op"), request.form.getlist("value"))


@blp.post("/segments/count.json")
@needs("marketing")
def segment_count() -> Any:
    """The live count: the builder's rules as they are, evaluated by campaigns without saving them."""
    rules = _builder_rules()
    try:
        preview = api("campaigns", "POST", "/v1/segments/preview", json={"rules": rules})
    except ApiError as error:
        if error.status != 422:
            raise
        return jsonify({"count": None, "errors": flat_errors(error.errors) or [error.detail]}), 422
    return jsonify({"count": preview["count"], "rules": rules})


# -- compliance: contacts, consents, erasures, audit, exports ------------------------------------
@blp.get("/contacts")
@needs("compliance")
def contacts() -> Any:
    query = request.args.get("q", "").strip()
    found: list[dict[str, Any]] | None = None
    problem = None
    if query:
        params: dict[str, Any] = {"limit": 50}
        if "@" in query:
            params["email"] = query
        elif ":" in query:
            params["crm_system"], params["crm_id"] = (part.strip() for part in query.split(":", 1))
        else:
            try:
                return redirect(url_for("console.contact", contact_id=uuid.UUID(query)))
            except ValueError:
                problem = ("Type an email address, a CRM reference as system:id (e.g. salesforce:0031x),"
                           " or a contact id.")
        if problem is None:
            try:
                found = api("identity", "GET", "/v1/contacts", params=params)["items"]
            except ApiError as error:
                if error.status != 422:
                    raise
                problem = " ".join(flat_errors(error.errors)) or error.detail
    return render_template("contacts.html", query=query, found=found, problem=problem), 422 if problem else 200


@blp.get("/contacts/<uuid:contact_id>")
@needs("compliance")
def contact(contact_id: uuid.UUID) -> str:
    person = api("identity", "GET", f"/v1/contacts/{contact_id}")
    identities = api("identity", "GET", f"/v1/contacts/{contact_id}/identities")
    consents = api("identity", "GET", f"/v1/contacts/{contact_id}/consents")
    history: dict[str, list[dict[str, Any]]] = {purpose: [] for purpose in PURPOSES}
    for record in reversed(consents.get("history") or []):  # newest first on the page
        history.setdefault(record["purpose"], []).append(record)
    erasures = api("identity", "GET", "/v1/erasures", params={"contact_id": str(contact_id), "limit": 5})["items"]
    return render_template("contact.html", person=person, identities=identities["items"],
                           current=consents.get("current") or {}, history=history, erasures=erasures)


@blp.get("/contacts/<uuid:contact_id>/consents/<uuid:record_id>/receipt")
@needs("compliance")
def receipt(contact_id: uuid.UUID, record_id: uuid.UUID) -> str:
    found = api("identity", "GET", f"/v1/consents/{record_id}/receipt")
    return render_template("receipt.html", contact_id=contact_id, record_id=record_id, receipt=found)


@blp.post("/contacts/<uuid:contact_id>/erase")
@needs("compliance")
def erase(contact_id: uuid.UUID) -> Response:
    accepted = api("identity", "DELETE", f"/v1/contacts/{contact_id}")
    flash("Erasure requested: identity erased at once; the other services confirm below.", "info")
    return redirect(url_for("console.erasure", erasure_id=accepted["erasure_id"]))


@blp.get("/erasures")
@needs("compliance")
def erasures() -> str:
    params: dict[str, Any] = {"limit": PAGE}
    if request.args.get("cursor"):
        params["cursor"] = request.args["cursor"]
    listing = api("identity", "GET", "/v1/erasures", params=params)
    return render_template("erasures.html", erasures=listing["items"], next_cursor=listing.get("next_cursor"))


@blp.get("/erasures/<uuid:erasure_id>")
@needs("compliance")
def erasure(erasure_id: uuid.UUID) -> str:
    found = api("identity", "GET", f"/v1/erasures/{erasure_id}")
    return render_template("erasure.html", erasure=found)


@blp.get("/erasures/<uuid:erasure_id>.json")
@needs("compliance")
def erasure_json(erasure_id: uuid.UUID) -> Response:
    """What the erasure page polls until every service has confirmed."""
    return jsonify(api("identity", "GET", f"/v1/erasures/{erasure_id}"))


@blp.get("/audit")
@needs("compliance")
def audit() -> Any:
    params: dict[str, Any] = {"limit": request.args.get("limit", 50, type=int)}
    for name in ("contact_id", "cursor", "from", "to"):
        if request.args.get(name):
            params[name] = request.args[name]
    verification = api("identity", "GET", "/v1/audit/verify")
    try:
        entries = api("identity", "GET", "/v1/audit", params=params)
    except ApiError as error:
        if error.status != 422:
            raise
        flash(" ".join(flat_errors(error.errors)) or error.detail, "error")
        entries = {"items": [], "next_cursor": None}
    return render_template("audit.html", verification=verification, entries=entries["items"],
                           next_cursor=entries.get("next_cursor"), filters=request.args)


@blp.get("/exports")
@needs("compliance", "marketing")
def exports() -> str:
    recent = api("campaigns", "GET", "/v1/campaigns", params={"limit": 50})["items"]
    return render_template("exports.html", purposes=PURPOSES, campaigns=recent)


@blp.get("/exports/consents.csv")
@needs("compliance")
def consents_csv() -> Response:
    params = {name: request.args[name] for name in ("purpose", "status", "from", "to") if request.args.get(name)}
    upstream = api_stream("identity", "/v1/consents", params=params, accept="text/csv")
    return _download(upstream, "consents.csv")
