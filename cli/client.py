"""The services' REST APIs as the command line sees them: one `requests` session, the key in the
Authorization header, problem+json answers turned into `ApiError`, transport failures into
`Unreachable`, so that every command reports them the same way and with the same exit code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from cli.exits import API_ERROR, UNREACHABLE

# 502/503/504 mean the service (or the proxy before it) cannot answer now: like a refused
# connection, a reason to try again later rather than a verdict on the request.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
CONNECT_TIMEOUT = 5.0


class CliError(Exception):
    """An expected failure: reported in a sentence or two, never with a traceback."""

    exit_code = API_ERROR

    def __init__(self, message: str, *, exit_code: int | None = None, document: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        self.document = document or {"title": message}


class ApiError(CliError):
    """The service answered with an error (a problem+json document when it is one of ours)."""

    def __init__(self, status: int, problem: dict[str, Any], url: str):
        self.status = status
        self.problem = problem
        self.url = url
        title = problem.get("title") or f"HTTP {status}"
        detail = problem.get("detail")
        super().__init__(f"{title} ({status})" + (f": {detail}" if detail else ""),
                         exit_code=UNREACHABLE if status in UNAVAILABLE_STATUSES else API_ERROR,
                         document={"status": status, **problem})

    @property
    def field_errors(self) -> dict[str, Any]:
        errors = self.problem.get("errors")
        return errors if isinstance(errors, dict) else {}


class Unreachable(CliError):
    exit_code = UNREACHABLE


@dataclass
class Services:
    """Where the services are and which keys to present."""

    identity_url: str
    enrichment_url: str
    campaigns_url: str
    key: str | None = None
    admin_key: str | None = None
    read_timeout: float = 300.0
    _session: requests.Session | None = field(default=None, repr=False)

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = "liaison-cli"
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def base(self, service: str) -> str:
        return {"identity": self.identity_url, "enrichment": self.enrichment_url,
                "campaigns": self.campaigns_url}[service].rstrip("/")

    def _auth(self, admin: bool) -> dict[str, str]:
        if admin:
            if not self.admin_key:
                raise CliError("This command needs the admin key: set LIAISON_ADMIN_KEY.")
            return {"Authorization": f"Bearer {self.admin_key}"}
        if not self.key:
            raise CliError("This command needs a tenant's API key: set LIAISON_API_KEY or pass --key.")
        return {"Authorization": f"Bearer {self.key}"}

    def send(self, service: str, method: str, path: str, *, admin: bool = False, auth: bool = True, json: Any = None,
             data: bytes | None = None, params: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, stream: bool = False) -> requests.Response:
        """The response when it is a success (2xx); otherwise ApiError or Unreachable."""
        url = self.base(service) + path
        all_headers = {"Accept": "application/json", **(self._auth(admin) if auth else {}), **(headers or {})}
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        try:
            response = self.session.request(method, url, json=json, data=data, params=params, headers=all_headers,
                                            timeout=(CONNECT_TIMEOUT, self.read_timeout), stream=stream)
        except requests.ConnectionError as exc:
            raise Unreachable(f"Cannot reach {service} at {self.base(service)}: {_reason(exc)}") from None
        except requests.Timeout:
            raise Unreachable(f"{service} at {self.base(service)} did not answer in time") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem(response), url)
        return response

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body of a success, or None for 204."""
        response = self.send(service, method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{service} answered {method} {path} with something that is not JSON") from None

    @contextmanager
    def stream(self, service: str, path: str, **kwargs: Any) -> Iterator[requests.Response]:
        response = self.send(service, "GET", path, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()


def _problem(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    text = response.text.strip()
    return {"title": response.reason or f"HTTP {response.status_code}", "detail": text[:300] if text else None}


def _reason(exc: requests.ConnectionError) -> str:
    # requests nests the socket error a few levels down; its last line is the readable part.
    text = str(exc.args[0]) if exc.args else str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.rsplit(":", 1)[-1].strip(" )'\"") or "connection failed"
