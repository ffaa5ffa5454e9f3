"""What every channel adapter shares: the message it is handed, what it answers, its two kinds of
error, and its settings read from the environment.

An adapter sends one message and says how it went:
- `SendResult(provider_message_id, cost)` on success (cost: the provider's price, when it gives one);
- `TransientSendError`: worth trying again (timeouts, connection errors, 429, 5xx, SMTP 4xx);
- `PermanentSendError(reason)`: retrying cannot help (a refused address, bad credentials, a
  channel not configured); the delivery fails with `reason`.

Every message carries its delivery id as the idempotency key: Twilio's
`I-Twilio-Idempotency-Token`, the email's `Message-ID`, and for the DM APIs (which have no
idempotency) a header the sandbox honours. A message sent again after a worker died is the same
message to whoever can recognise it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import requests
import requests.adapters

from shared.settings import SettingsError, env_number

# Sent with every DM request: the DM APIs have no idempotency of their own; the sandbox dedupes on
# it, so a batch sent again after a crash is counted once there.
DELIVERY_HEADER = "X-Liaison-Delivery-Id"


@dataclass(frozen=True)
class OutgoingMessage:
    """One delivery, rendered: exactly what goes to the provider."""

    delivery_id: str
    tenant_id: str
    channel: str
    address: str  # email address, E.164 phone number, or the network's user id for a DM
    content: Mapping[str, Any]  # email: {subject, text, html}; sms / social_dm: {body}
    network: str | None = None  # social_dm: x, facebook or instagram
    unsubscribe_url: str | None = None
    status_callback: str | None = None

    @property
    def idempotency_key(self) -> str:
        return self.delivery_id

    @property
    def text(self) -> str:
        """The body of an SMS or a DM."""
        return str(self.content.get("body") or self.content.get("text") or "")


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    cost: Decimal | None = None


class SendError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def describe(self) -> str:
        """The delivery's `reason`: the code, then the provider's words when there are any."""
        return (f"{self.reason}: {self.detail}" if self.detail else self.reason)[:500]


class TransientSendError(SendError):
    """The provider could not take the message now; the same message may be sent again."""


class PermanentSendError(SendError):
    """The provider refused the message, or it cannot be sent at all: the delivery fails."""


NOT_CONFIGURED = "not_configured"
NO_ADDRESS = "no_address"
INVALID_ADDRESS = "invalid_address"
BAD_CREDENTIALS = "bad_credentials"
REJECTED = "rejected"


class ChannelAdapter(Protocol):
    channel: str
    # Whether the provider recognises a message sent again with the same idempotency key: the
    # sender then claims and records deliveries by the chunk; otherwise one at a time, so that a
    # worker killed mid-chunk repeats at most one message.
    idempotent: bool

    def send(self, message: OutgoingMessage) -> SendResult: ...


@dataclass(frozen=True)
class SandboxedProvider:
    """How scripts/run.py points a provider at the sandbox when the operator left it unset (the
    same attributes as enrichment's adapters, plus fixed values the sandbox needs)."""

    network: str
    base_url_env: str
    default_base_url: str
    credential_env: Mapping[str, str]
    sandbox_values: Mapping[str, str] = field(default_factory=dict)


def env_text(env: Mapping[str, str], name: str, default: str = "") -> str:
    return (env.get(name) or default).strip()


def env_base_url(env: Mapping[str, str], name: str, default: str) -> str:
    url = env_text(env, name, default).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={url!r} must start with http:// or https://")
    return url


def env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env_text(env, name).lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not true or false")


def env_timeout(env: Mapping[str, str], name: str, default: float) -> float:
    return env_number(env, name, default, 0.1, 300.0, float)


def environment(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def pooled_session(connections: int = 64) -> requests.Session:
    """A session keeping up to `connections` connections per host: a channel worker sends from
    several threads at once (services.campaigns.sending.CONCURRENCY), and requests' default of
    10 would close and reopen the others after every message."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def post(session: requests.Session, url: str, timeout: tuple[float, float], **kwargs: Any) -> requests.Response:
    """One POST; a connection error or a timeout is transient (the provider may have the message
    already: the idempotency key makes sending it again safe where the API honours one)."""
    try:
        return session.post(url, timeout=timeout, **kwargs)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientSendError("unavailable", f"{type(exc).__name__}: {exc}") from exc


def json_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is not one (a proxy's HTML error page)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
