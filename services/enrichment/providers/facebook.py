"""Facebook Graph API: a Page's public fields.

    GET /{page-id-or-username}?fields=id,name,username,fan_count,followers_count,location,about,category
        &access_token=<token>

https://developers.facebook.com/docs/graph-api/reference/page/ . The Graph API does not let an app
read a person's profile by username, so the handle names a Page (creators and public figures
have one); reading public Pages needs the "Page Public Metadata Access" feature on the app.

Graph errors are an `error` object (`message`, `type`, `code`, `error_subcode`, `fbtrace_id`),
often with HTTP 400 whatever the cause, so the `code` decides (see `graph_classify`, which the
Instagram adapter shares, Instagram's API being the same Graph API).
Throttling (codes 4, 17, 32, 613, 80001-80014) says when it lifts in the usage headers'
`estimated_time_to_regain_access`, in minutes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote

import requests

from services.enrichment.providers.http import (
    OK,
    RETRY_LATER,
    Adapter,
    BadCredentials,
    Classifier,
    NotFound,
    ProfileData,
    ProviderError,
    Subject,
    iso_country,
    retry_after,
)

PAGE_FIELDS = "id,name,username,fan_count,followers_count,location,about,category"

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613}) | frozenset(range(80001, 80015))
# 190: token invalid or expired; 10 and 200-299: the permission is missing.
CREDENTIAL_CODES = frozenset({190, 10}) | frozenset(range(200, 300))
# 803: "Some of the aliases you requested do not exist"; (100, 33): no object with this id;
# (110, 2207013): business discovery found no such business or creator account.
NOT_FOUND = frozenset({(803, None), (100, 33), (110, 2207013)})
USAGE_HEADERS = ("x-business-use-case-usage", "x-app-usage", "x-ad-account-usage")


def graph_classify(network: str) -> Classifier:
    """Graph errors by their `code`, since the HTTP status is 400 for most of them."""

    def classify(response: requests.Response) -> str | ProviderError:
        status = response.status_code
        if 200 <= status < 300:
            return OK
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code, subcode = error.get("code"), error.get("error_subcode")
        message = error.get("message") or f"HTTP {status}"
        if code in RATE_LIMIT_CODES:
            return RETRY_LATER
        if code in CREDENTIAL_CODES or (not code and status in (401, 403)):
            return BadCredentials(network, message)
        if (code, subcode) in NOT_FOUND or (code, None) in NOT_FOUND or status == 404:
            return NotFound(network, message)
        return ProviderError(network, message)

    return classify


def graph_reset_at(response: requests.Response, now: float) -> float | None:
    """The longest `estimated_time_to_regain_access` (minutes) in any usage header."""
    minutes = []
    for name in USAGE_HEADERS:
        raw = response.headers.get(name)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(usage, dict):
            continue
        # x-business-use-case-usage maps a business id to a list of usages; the others are flat.
        entries = [usage] + [e for group in usage.values() if isinstance(group, list) for e in group]
        for entry in entries:
            value = entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
            if isinstance(value, int | float):
                minutes.append(value)
    if minutes and max(minutes) > 0:
        return now + 60.0 * max(minutes)
    return retry_after(response, now)


class FacebookAdapter(Adapter):
    network = "facebook"
    env_prefix = "FACEBOOK"
    base_url_env = "FACEBOOK_GRAPH_BASE_URL"
    default_base_url = "https://graph.facebook.com/v19.0"
    credential_env = {"access_token": "FACEBOOK_ACCESS_TOKEN"}

    def reset_at(self, response: requests.Response, now: float) -> float | None:
        return graph_reset_at(response, now)

    def fetch(
        self, subject: Subject, *, tenant: str | None = None, credentials: Mapping[str, str] | None = None
    ) -> ProfileData:
        creds = self.credentials(credentials)
        page = subject.handles.get(self.network, "")
        if not page:
            raise NotFound(self.network, "no Facebook page to look up")
        response = self.http.send(
            "GET",
            f"/{quote(page, safe='')}",
            tenant=tenant,
            classify=graph_classify(self.network),
            params={"fields": PAGE_FIELDS, "access_token": creds["access_token"]},
        )
        body = self.body(response)
        location = body.get("location") or {}
        return ProfileData(
            network=self.network,
            fetched_at=self.now(),
            external_id=body.get("id"),
            handle=body.get("username") or page,
            name=body.get("name"),
            bio=body.get("about") or None,
            city=location.get("city"),
            country=iso_country(location.get("country")),
            # followers_count is who follows the Page; fan_count, who likes it (older Pages).
            followers=body.get("followers_count", body.get("fan_count")),
            category=body.get("category"),
        )


ADAPTER = FacebookAdapter
