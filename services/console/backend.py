"""The console's way to the three services' REST APIs: one pooled `requests` session, timeouts,
the signed-in person's key on every call, and every failure turned into an ApiError carrying the
problem's title and detail (or a plain sentence when a service does not answer)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from shared.settings import Settings

# (connect, read) seconds: a local service connects at once; a report over a big campaign or an
# audit check over a long chain may take a few seconds to compute.
TIMEOUT = (3.05, 30.0)
SERVICES = ("identity", "enrichment", "campaigns")


@dataclass
class ApiError(Exception):
    """A call that did not succeed, in words a person can act on."""

    status: int
    title: str
    detail: str
    errors: dict[str, Any] = field(default_factory=dict)
    service: str = ""

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def problem_of(response: requests.Response, service: str) -> ApiError:
    """The problem+json body of a failed answer, or a generic one when it has none."""
    body: Any = None
    if "json" in response.headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    if not isinstance(body, dict):
        body = {}
    errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
    return ApiError(
        status=response.status_code,
        title=str(body.get("title") or response.reason or "Error"),
        detail=str(body.get("detail") or f"{service} answered {response.status_code}."),
        errors=errors,
        service=service,
    )


class Backend:
    """Calls a service's API with a key. `settings` names the services' base URLs."""

    def __init__(self, settings: Settings, pool_size: int = 32):
        self.urls = {"identity": settings.identity_url, "enrichment": settings.enrichment_url,
                     "campaigns": settings.campaigns_url}
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=len(SERVICES), pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def request(self, service: str, method: str, path: str, key: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, accept: str = "application/json", stream: bool = False,
                request_id: str = "") -> requests.Response:
        """The service's answer when it is a success (2xx); an ApiError otherwise."""
        headers = {"Authorization": f"Bearer {key}", "Accept": accept}
        if request_id:
            headers["X-Request-Id"] = request_id
        url = self.urls[service].rstrip("/") + path
        try:
            response = self.session.request(method, url, params=params, json=json, headers=headers,
                                            timeout=TIMEOUT, stream=stream)
        except requests.RequestException:
            raise ApiError(503, "Service unavailable",
                           f"The {service} service did not answer. Try again in a moment.", service=service) from None
        if response.status_code >= 400:
            try:
                raise problem_of(response, service)
            finally:
                response.close()
        return response

    def json(self, service: str, method: str, path: str, key: str, **options: Any) -> Any:
        response = self.request(service, method, path, key, **options)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(502, "Unexpected answer", f"The {service} service did not answer with JSON.",
                           service=service) from None

    def alive(self, service: str) -> bool:
        """The service answers its health check (no key needed)."""
        try:
            response = self.session.get(self.urls[service].rstrip("/") + "/healthz", timeout=(1.0, 2.0))
        except requests.RequestException:
            return False
        return response.status_code == 200


def stream_body(response: requests.Response, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The body as it arrives (a CSV export of a million records is never held in memory); the
    connection goes back to the pool when the download ends or the browser hangs up."""
    try:
        yield from response.iter_content(chunk)
    finally:
        response.close()
