"""The enrichment providers' endpoints, as the adapters in services/enrichment/providers/ call them.

    GET  /2/users/by/username/<username>?user.fields=...              X API v2 user lookup
    GET  [/v19.0]/<ig-user-id>?fields=business_discovery.username(<h>){...}&access_token=...
                                                                      Instagram business discovery
    GET  [/v19.0]/<page>?fields=id,name,...&access_token=...          Facebook Page
    POST /v3/person.enrich  {"email"} | {"phone"} | {"profiles": [...]}  FullContact Person Enrich

Shapes, status codes and error bodies are the providers' own (see each adapter's docstring and
tests/unit/test_providers.py, whose payloads come from the providers' documentation), including
their not-found answers for handles starting with `unknown` and their refusals of a missing
token or one starting with `invalid` / `expired`. Only the fields asked for are returned, as the
real APIs do.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.synthetic import account_id, audience, is_unknown, persona

bp = Blueprint("providers", __name__)

REFUSED_TOKEN_PREFIXES = ("invalid", "expired")
GRAPH_VERSION = re.compile(r"^v\d+\.\d+$")


def _refused(token: str | None) -> bool:
    return not token or not token.strip() or token.strip().lower().startswith(REFUSED_TOKEN_PREFIXES)


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _json(body: Any, status: int = 200, **headers: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


# ---------------------------------------------------------------------------------------------
# X API v2 (https://docs.x.com/x-api/users/user-lookup-by-username)

X_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")
X_FIELDS = frozenset({"created_at", "description", "location", "public_metrics", "verified", "protected", "url"})
X_WINDOW = 15 * 60  # X counts its limits in 15-minute windows
X_LIMIT = 900


def _x_rate_headers() -> dict[str, str]:
    # The sandbox never throttles: the headers are there so clients that read them see X's shape.
    reset = (int(time.time()) // X_WINDOW + 1) * X_WINDOW
    return {"x-rate-limit-limit": str(X_LIMIT), "x-rate-limit-remaining": str(X_LIMIT - 1),
            "x-rate-limit-reset": str(reset)}


def x_user(username: str, fields: frozenset[str] = X_FIELDS) -> dict[str, Any]:
    """The `data` object X answers for a username, with the `user.fields` asked for."""
    person, counts = persona("x", username), audience("x", username)
    user: dict[str, Any] = {"id": account_id("x", username, 19), "name": person.name, "username": username}
    extra = {
        "created_at": counts.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "description": person.bio,
        "location": f"{person.place.city}, {person.place.country}",
        "public_metrics": {
            "followers_count": counts.followers,
            "following_count": counts.following,
            "tweet_count": counts.posts,
            "listed_count": counts.listed,
            "like_count": counts.likes,
        },
        "verified": False,
        "protected": False,
        "url": "",
    }
    user.update({name: value for name, value in extra.items() if name in fields})
    return user


@bp.get("/2/users/by/username/<username>")
def x_user_by_username(username: str) -> Response:
    if _refused(_bearer()):
        return _json({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
                     401)
    headers = _x_rate_headers()
    if not X_USERNAME.match(username):
        # X checks the path parameter's pattern before looking anyone up: 400, invalid-request.
        return _json({
            "errors": [{
                "parameters": {"username": [username]},
                "message": f"The `username` query parameter value [{username}] does not match ^[A-Za-z0-9_]{{1,15}}$",
            }],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        }, 400, **headers)
    if is_unknown(username):
        # X's not found is a 200 with `errors` and no `data`.
        return _json({"errors": [{
            "value": username,
            "detail": f"Could not find user with username: [{username}].",
            "title": "Not Found Error",
            "resource_type": "user",
            "parameter": "username",
            "resource_id": username,
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }]}, 200, **headers)
    fields = frozenset(f for f in request.args.get("user.fields", "").split(",") if f)
    return _json({"data": x_user(username, fields)}, 200, **headers)


# ---------------------------------------------------------------------------------------------
# The Graph API: Instagram business discovery and Facebook Pages
# (https://developers.facebook.com/docs/graph-api/guides/error-handling)

BUSINESS_DISCOVERY = re.compile(r"business_discovery\.username\(([^)]*)\)(?:\{([^}]*)\})?")
IG_USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")
FB_PAGE = re.compile(r"^[A-Za-z0-9.]{1,50}$")


def _graph_error(status: int, message: str, code: int, subcode: int | None = None, **more: Any) -> Response:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(more)
    error["fbtrace_id"] = "SandboxTrace" + account_id("trace", message, 10)
    return _json({"error": error}, status)


def _fields(raw: str) -> list[str]:
    return [f.strip() for f in raw.split(",") if f.strip()]


def _unknown_field(node: str, field: str) -> Response:
    return _graph_error(400, f"(#100) Tried accessing nonexisting field ({field}) on node type ({node})", 100)


def ig_business(username: str) -> dict[str, Any]:
    """Every field business discovery can give about an Instagram business or creator account."""
    person, counts = persona("instagram", username), audience("instagram", username)
    return {
        "id": account_id("instagram", username, 17, prefix="178414"),
        "ig_id": int(account_id("instagram-legacy", username, 10)),
        "username": username.lower(),
        "name": person.name,
        "biography": person.bio,
        "followers_count": counts.followers,
        "follows_count": counts.following,
        "media_count": counts.posts,
        "website": f"https://{person.organization_domain}",
        "profile_picture_url": f"https://sandbox.invalid/instagram/{username.lower()}.jpg",
    }


def facebook_page(page: str) -> dict[str, Any]:
    """Every field the Page lookup can give about a Page."""
    person, counts = persona("facebook", page), audience("facebook", page)
    place = person.place
    return {
        "id": account_id("facebook", page, 15),
        "name": person.name,
        "username": page,
        # Older Pages count likes (fans); followers_count is who follows the Page now.
        "fan_count": int(counts.followers * 0.93),
        "followers_count": counts.followers,
        "location": {
            "city": place.city,
            "country": place.country,
            "latitude": place.latitude,
            "longitude": place.longitude,
        },
        "about": person.bio,
        "category": person.page_category,
        "link": f"https://www.facebook.com/{page}",
    }


@bp.get("/<version>/<node>")
def graph_versioned(version: str, node: str) -> Response:
    if not GRAPH_VERSION.match(version):
        return _graph_error(400, "Unknown path components: /" + node, 2500)
    return graph_node(node)


@bp.get("/<node>")
def graph_node(node: str) -> Response:
    token = request.args.get("access_token")
    if _refused(token):
        if token and token.strip().lower().startswith("expired"):
            return _graph_error(400, "Error validating access token: Session has expired.", 190, 463)
        return _graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
    fields = request.args.get("fields", "")
    discovery = BUSINESS_DISCOVERY.search(fields)
    if discovery:
        return _business_discovery(node, discovery.group(1), _fields(discovery.group(2) or ""))
    return _page(node, _fields(fields))


def _business_discovery(ig_user_id: str, username: str, fields: list[str]) -> Response:
    if not IG_USERNAME.match(username) or is_unknown(username):
        # Also what a personal (non-business) account gets: it cannot be discovered.
        return _graph_error(400, "Invalid user id", 110, 2207013, is_transient=False,
                            error_user_title="Cannot find User",
                            error_user_msg=f"The user with username: {username} cannot be found.")
    account = ig_business(username)
    wanted = fields or ["id"]
    for field in wanted:
        if field not in account:
            return _unknown_field("IGUser", field)
    return _json({"business_discovery": {f: account[f] for f in wanted}, "id": ig_user_id})


def _page(page: str, fields: list[str]) -> Response:
    if not FB_PAGE.match(page) or is_unknown(page):
        return _graph_error(404, f"(#803) Some of the aliases you requested do not exist: {page}", 803)
    found = facebook_page(page)
    wanted = fields or ["name", "id"]  # the Graph API's default fields for a Page
    for field in wanted:
        if field not in found:
            return _unknown_field("Page", field)
    return _json({f: found[f] for f in wanted} | {"id": found["id"]})


# ---------------------------------------------------------------------------------------------
# FullContact Person Enrich (https://docs.fullcontact.com/docs/multi-field-request)

FULLCONTACT_SERVICES = {"twitter": "x"}  # FullContact's service name -> the network our personas use


def _person_key(query: dict[str, Any]) -> tuple[str, str] | None:
    """Which persona a query is about: an X username is the X account's person."""
    if isinstance(query.get("email"), str) and query["email"].strip():
        return "email", query["email"].strip().lower()
    if isinstance(query.get("phone"), str) and query["phone"].strip():
        return "phone", "".join(c for c in query["phone"] if c.isdigit())
    for profile in query.get("profiles") or []:
        if isinstance(profile, dict) and profile.get("username"):
            service = str(profile.get("service") or "").lower()
            return FULLCONTACT_SERVICES.get(service, service), str(profile["username"]).lstrip("@")
    return None


def fullcontact_person(network: str, key: str) -> dict[str, Any]:
    """A Person Summary with the Insights Bundles' `details`."""
    person = persona(network, key)
    place = person.place
    details: dict[str, Any] = {
        "name": {"given": person.first_name, "family": person.last_name, "full": person.name},
        "age": {"range": person.age_range, "value": person.age},
        "emails": [],
        "phones": [],
        "profiles": {},
        "locations": [{
            "city": place.city,
            "region": place.region,
            "regionCode": place.region_code,
            "country": place.country,
            "countryCode": place.country_code,
            "formatted": place.formatted,
        }],
        "employment": [{"name": person.organization, "domain": person.organization_domain, "current": True,
                        "title": person.title}],
        "interests": [{"name": name, "id": str(100 + i), "affinity": "HIGH" if i < 2 else "MEDIUM", "parentIds": []}
                      for i, name in enumerate(person.interests)],
    }
    summary: dict[str, Any] = {
        "fullName": person.name,
        "ageRange": person.age_range,
        "location": place.formatted,
        "title": person.title,
        "organization": person.organization,
        "bio": person.bio,
        "details": details,
        "updated": "2026-01-15",
    }
    if network == "x":
        summary["twitter"] = f"https://twitter.com/{key}"
        details["profiles"]["twitter"] = {"username": key, "url": summary["twitter"], "service": "twitter"}
    return summary


@bp.post("/v3/person.enrich")
def fullcontact_enrich() -> Response:
    if _refused(_bearer()):
        return _json({"status": 401, "message": "401: Invalid access token"}, 401)
    query = request.get_json(silent=True)
    key = _person_key(query) if isinstance(query, dict) else None
    if key is None:
        return _json({"status": 400, "message": "At least one query parameter (email, phone, profiles, ...) "
                                                "is required"}, 400)
    network, value = key
    local_part = value.partition("@")[0] if network == "email" else value
    if is_unknown(local_part):
        return _json({"status": 404, "message": "Profile not found"}, 404)
    return _json(fullcontact_person(network, value))
