"""CloudEvents 1.0 envelopes: the one shape every event on the bus has (CONTRACT section 5)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CloudEvent:
    type: str
    source: str
    tenant_id: str
    data: dict[str, Any]
    subject: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utcnow)

    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": rfc3339(self.time),
            "datacontenttype": "application/json",
            "tenantid": self.tenant_id,
            "data": self.data,
        }
        if self.subject is not None:
            envelope["subject"] = self.subject
        return envelope


REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "tenantid")


def parse_envelope(body: Any) -> dict[str, Any]:
    """Checks a received envelope; raises ValueError for anything that is not a CloudEvent 1.0."""
    if not isinstance(body, dict):
        raise ValueError("event body is not a JSON object")
    missing = [name for name in REQUIRED_ATTRIBUTES if not body.get(name)]
    if missing:
        raise ValueError(f"event lacks {', '.join(missing)}")
    if body["specversion"] != "1.0":
        raise ValueError(f"unsupported specversion {body['specversion']!r}")
    return body
