"""Errors that use cases raise and every service answers as RFC 9457 problem details.

This module knows nothing of HTTP frameworks: domain code raises these, and the web layer
(`shared.web`) turns them into `application/problem+json` responses."""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_BASE = "urn:liaison:problem:"


class Problem(Exception):
    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(self, detail: str = "", **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"

    @classmethod
    def of(cls, resource: str, identifier: object) -> NotFound:
        return cls(f"{resource} {identifier} does not exist")


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class ValidationFailed(Problem):
    """422 with `errors: {field: [messages]}`."""

    status, title, slug = 422, "Unprocessable Content", "validation"

    def __init__(self, errors: dict[str, Any], detail: str = "The request has invalid fields."):
        super().__init__(detail, errors=errors)


class Unavailable(Problem):
    status, title, slug = 503, "Service Unavailable", "unavailable"


class UpstreamFailed(Problem):
    status, title, slug = 502, "Bad Gateway", "upstream"
