"""FullContact Person Enrich (API v3): demographics for a person from an email, phone or profile.

    POST /v3/person.enrich
    Authorization: Bearer <api key>
    {"email": "..."} | {"phone": "+1..."} | {"profiles": [{"service": "twitter", "username": "..."}]}

https://docs.fullcontact.com/docs/multi-field-request . The answer is a Person Summary
(`fullName`, `ageRange`, `location`, `title`, `organization`, `bio`, ...) and, with the Insights
Bundles the account holds, a `details` object (`age.range`, `locations[]` with `city` and
`country`, `employment[]`, `interests[]`). 404 means no match. Rate-limited answers are 429 with
`X-Rate-Limit-Reset`: seconds until the window resets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from services.enrichment.providers.http import (
    Adapter,
    NotFound,
    ProfileData,
    Subject,
    default_classify,
    retry_after,
)

# Networks whose usernames FullContact takes as `profiles` input (it takes none from Facebook
# or Instagram).
PROFILE_SERVICES = {"x": "twitter", "linkedin": "linkedin"}


class FullContactAdapter(Adapter):
    network = "fullcontact"
    env_prefix = "FULLCONTACT"
    base_url_env = "FULLCONTACT_BASE_URL"
    default_base_url = "https://api.fullcontact.com"
    credential_env = {"api_key": "FULLCONTACT_API_KEY"}

    def reset_at(self, response: requests.Response, now: float) -> float | None:
        reset = response.headers.get("X-Rate-Limit-Reset", "").strip()
        return now + float(reset) if reset.isdigit() else retry_after(response, now)

    def query(self, subject: Subject) -> dict[str, Any]:
        if subject.email:
            return {"email": subject.email}
        if subject.phone:
            return {"phone": subject.phone}
        profiles = [
            {"service": service, "username": subject.handles[network].lstrip("@")}
            for network, service in PROFILE_SERVICES.items()
            if subject.handles.get(network)
        ]
        return {"profiles": profiles} if profiles else {}

    def applies(self, subject: Subject) -> bool:
        return bool(self.query(subject))

    def fetch(
        self, subject: Subject, *, tenant: str | None = None, credentials: Mapping[str, str] | None = None
    ) -> ProfileData:
        creds = self.credentials(credentials)
        query = self.query(subject)
        if not query:
            raise NotFound(self.network, "no email, phone or supported profile to match on")
        response = self.http.send(
            "POST",
            "/v3/person.enrich",
            tenant=tenant,
            classify=default_classify(self.network),
            json=query,
            headers={"Authorization": f"Bearer {creds['api_key']}"},
        )
        if response.status_code != 200:  # 202: queued for a webhook we did not ask for
            raise NotFound(self.network, f"no immediate match (HTTP {response.status_code})")
        return self.parse(self.body(response))

    def parse(self, person: dict[str, Any]) -> ProfileData:
        details = person.get("details") or {}
        age = details.get("age") or (details.get("demographics") or {}).get("age") or {}
        places = details.get("locations") or []
        place = places[0] if places else {}
        jobs = details.get("employment") or []
        job = next((j for j in jobs if j.get("current")), jobs[0] if jobs else {})
        interests = tuple(i["name"] for i in details.get("interests") or [] if i.get("name"))
        return ProfileData(
            network=self.network,
            fetched_at=self.now(),
            name=person.get("fullName"),
            bio=person.get("bio") or None,
            location=person.get("location") or place.get("formatted"),
            city=place.get("city"),
            country=(place.get("countryCode") or "").upper() or None,  # ISO 3166-1 alpha-2, as the contract says
            age_range=person.get("ageRange") or age.get("range"),
            title=person.get("title") or job.get("title"),
            organization=person.get("organization") or job.get("name"),
            interests=interests,
        )


ADAPTER = FullContactAdapter
