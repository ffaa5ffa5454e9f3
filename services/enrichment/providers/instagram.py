"""Instagram Graph API: business discovery.

    GET /{ig-user-id}?fields=business_discovery.username(<handle>){id,username,name,biography,
        followers_count,follows_count,media_count}&access_token=<token>

https://developers.facebook.com/docs/instagram-api/reference/ig-user/business_discovery . The call
is made on our own Instagram business account (`INSTAGRAM_BUSINESS_ACCOUNT_ID`) and reads the
public fields of another business or creator account; personal accounts cannot be read (the
answer is error code 110, subcode 2207013, recorded as not found). Errors and throttling are the
Graph API's, handled as in the Facebook adapter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

import requests

from services.enrichment.providers.facebook import graph_classify, graph_reset_at
from services.enrichment.providers.http import Adapter, NotFound, ProfileData, Subject

USER_FIELDS = "id,username,name,biography,followers_count,follows_count,media_count"
# Instagram usernames: letters, digits, '.' and '_'; anything else would break the field expansion.
USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")


class InstagramAdapter(Adapter):
    network = "instagram"
    env_prefix = "INSTAGRAM"
    base_url_env = "INSTAGRAM_GRAPH_BASE_URL"
    default_base_url = "https://graph.facebook.com/v19.0"
    credential_env = {"access_token": "INSTAGRAM_ACCESS_TOKEN", "business_account_id": "INSTAGRAM_BUSINESS_ACCOUNT_ID"}

    def reset_at(self, response: requests.Response, now: float) -> float | None:
        return graph_reset_at(response, now)

    def fetch(
        self, subject: Subject, *, tenant: str | None = None, credentials: Mapping[str, str] | None = None
    ) -> ProfileData:
        creds = self.credentials(credentials)
        username = subject.handles.get(self.network, "").lstrip("@")
        if not USERNAME.match(username):
            raise NotFound(self.network, f"{username!r} is not an Instagram username")
        response = self.http.send(
            "GET",
            f"/{quote(creds['business_account_id'], safe='')}",
            tenant=tenant,
            classify=graph_classify(self.network),
            params={
                "fields": f"business_discovery.username({username}){{{USER_FIELDS}}}",
                "access_token": creds["access_token"],
            },
        )
        found = self.body(response).get("business_discovery")
        if not found:
            raise NotFound(self.network, f"no business or creator account {username!r}")
        return ProfileData(
            network=self.network,
            fetched_at=self.now(),
            external_id=found.get("id"),
            handle=found.get("username") or username,
            name=found.get("name"),
            bio=found.get("biography") or None,
            followers=found.get("followers_count"),
            following=found.get("follows_count"),
            posts=found.get("media_count"),
        )


ADAPTER = InstagramAdapter
