"""X (Twitter) API v2: user lookup by username.

    GET /2/users/by/username/:username?user.fields=public_metrics,description,location,created_at
    Authorization: Bearer <app bearer token>

https://docs.x.com/x-api/users/user-lookup-by-username (API v2). A username X does not know is not
a 404: the answer is 200 with an `errors` array (`title` "Not Found Error", `type`
.../problems/resource-not-found) and no `data`. Rate limits come back as 429 with
`x-rate-limit-reset`, the epoch second at which the window resets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote

import requests

from services.enrichment.providers.http import (
    OK,
    Adapter,
    NotFound,
    ProfileData,
    ProviderError,
    Subject,
    default_classify,
    retry_after,
)

USER_FIELDS = "public_metrics,description,location,created_at"
# X usernames: letters, digits and '_', at most 15; X answers anything else with a 400.
USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")


class XAdapter(Adapter):
    network = "x"
    env_prefix = "X_API"
    base_url_env = "X_API_BASE_URL"
    default_base_url = "https://api.x.com"
    credential_env = {"bearer_token": "X_API_BEARER_TOKEN"}

    def reset_at(self, response: requests.Response, now: float) -> float | None:
        reset = response.headers.get("x-rate-limit-reset", "").strip()
        return float(reset) if reset.isdigit() else retry_after(response, now)

    def fetch(
        self, subject: Subject, *, tenant: str | None = None, credentials: Mapping[str, str] | None = None
    ) -> ProfileData:
        creds = self.credentials(credentials)
        username = subject.handles.get(self.network, "").lstrip("@")
        if not USERNAME.match(username):
            raise NotFound(self.network, f"{username!r} is not an X username")
        classify = default_classify(self.network)

        def classify_x(response: requests.Response) -> str | ProviderError:
            outcome = classify(response)
            if outcome == OK and "data" not in self.body(response):
                return NotFound(self.network, _error_detail(self.body(response)))
            return outcome

        response = self.http.send(
            "GET",
            f"/2/users/by/username/{quote(username, safe='')}",
            tenant=tenant,
            classify=classify_x,
            params={"user.fields": USER_FIELDS},
            headers={"Authorization": f"Bearer {creds['bearer_token']}"},
        )
        user = self.body(response)["data"]
        metrics = user.get("public_metrics") or {}
        created = user.get("created_at")
        return ProfileData(
            network=self.network,
            fetched_at=self.now(),
            external_id=user.get("id"),
            handle=user.get("username"),
            name=user.get("name"),
            bio=user.get("description") or None,
            location=user.get("location") or None,
            followers=metrics.get("followers_count"),
            following=metrics.get("following_count"),
            posts=metrics.get("tweet_count"),
            listed=metrics.get("listed_count"),
            account_created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        )


def _error_detail(body: dict) -> str:
    errors = body.get("errors") or [{}]
    return errors[0].get("detail") or errors[0].get("title") or "no such user"


ADAPTER = XAdapter
