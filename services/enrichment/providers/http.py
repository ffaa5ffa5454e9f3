"""What every provider adapter shares: settings, typed errors, the normalized result, and one
careful way of calling a provider over HTTP.

Each call goes through, in order:

- a circuit breaker per provider (closed / open / half-open). It lives in the process: every
  replica trips on its own. That is the right scope for a breaker, since it protects this
  process from waiting on a provider it cannot currently reach; sharing it would let one
  replica's bad network path stop the others.
- a token-bucket rate limit per (provider, tenant), so one tenant's burst cannot spend the
  request budget of another's credentials. The bucket sits behind the `RateLimiter` protocol
  (shared.ratelimit): the worker shares its buckets with every replica through PostgreSQL
  (`PostgresRateLimiter`), since a provider counts calls per credential whichever process
  makes them; `LocalRateLimiter` keeps them in the process (tests, one-off scripts).
- `requests` with a connect and a read timeout, retrying connection errors, timeouts and 5xx
  with exponential backoff and full jitter, and honouring 429 with `Retry-After` or the
  provider's reset header (X sends `x-rate-limit-reset`, epoch seconds). A wait longer than
  `max_wait` is not slept through: the call raises `RateLimited(reset_at)` so the job can be
  rescheduled instead of holding a worker.

Time comes from an injectable `Clock`, so tests run with a fake one and never really sleep.
"""

from __future__ import annotations

import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol

import pycountry
import requests

from shared.ratelimit import LocalRateLimiter, RateLimiter
from shared.settings import SettingsError, env_number

# ---------------------------------------------------------------------------------------------
# Errors: what the enrichment job records per provider. `code` is the value it reports.


class ProviderError(Exception):
    code = "provider_error"

    def __init__(self, network: str, detail: str = ""):
        super().__init__(f"{network}: {detail or self.code}")
        self.network = network
        self.detail = detail or self.code


class NotConfigured(ProviderError):
    """The provider has no credentials (neither the platform's nor the tenant's): report, skip."""

    code = "not_configured"


class NotFound(ProviderError):
    """The provider knows no such person or account: record it, do not retry."""

    code = "not_found"


class BadCredentials(ProviderError):
    """401/403: the token is wrong, expired or lacks the permission. Retrying will not help."""

    code = "bad_credentials"


class RateLimited(ProviderError):
    """The provider (or our own budget for it) refuses calls until `reset_at`."""

    code = "rate_limited"

    def __init__(self, network: str, reset_at: datetime, detail: str = ""):
        super().__init__(network, detail or f"rate limited until {reset_at.isoformat()}")
        self.reset_at = reset_at


class ProviderUnavailable(ProviderError):
    """The breaker is open, or every retry failed: try the job again later."""

    code = "unavailable"


# ---------------------------------------------------------------------------------------------
# Time


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock epoch seconds (reset headers are epoch seconds)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class ProviderConfig:
    """How to reach one provider. Built from the environment by `from_env`; the platform's
    credentials here are only the default, a tenant may bring its own to each call."""

    network: str
    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)  # never in logs
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    rate_per_second: float = 1.0
    burst: int = 5
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_wait: float = 30.0  # the longest we sleep for a rate limit before raising RateLimited
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0

    @classmethod
    def from_env(
        cls,
        network: str,
        *,
        prefix: str,
        base_url_env: str,
        default_base_url: str,
        credential_env: Mapping[str, str],
        env: Mapping[str, str] | None = None,
        **defaults: Any,
    ) -> ProviderConfig:
        """Read `<base_url_env>`, the credential variables, and the tunables
        `<prefix>_CONNECT_TIMEOUT`, `_READ_TIMEOUT`, `_RATE_PER_SECOND`, `_BURST`, `_MAX_ATTEMPTS`,
        `_MAX_WAIT`, `_BREAKER_FAILURES`, `_BREAKER_COOLDOWN`. A bad value names its variable."""
        env = os.environ if env is None else env
        base_url = (env.get(base_url_env) or default_base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise SettingsError(f"{base_url_env}={base_url!r} must start with http:// or https://")
        base = cls(network=network, base_url=base_url, **defaults)

        def num(suffix: str, attr: str, low: float, high: float) -> float:
            return env_number(env, f"{prefix}_{suffix}", getattr(base, attr), low, high, float)

        return cls(
            network=network,
            base_url=base_url,
            credentials={key: env[var] for key, var in credential_env.items() if env.get(var)},
            connect_timeout=num("CONNECT_TIMEOUT", "connect_timeout", 0.1, 60),
            read_timeout=num("READ_TIMEOUT", "read_timeout", 0.1, 300),
            rate_per_second=num("RATE_PER_SECOND", "rate_per_second", 0.001, 1000),
            burst=int(num("BURST", "burst", 1, 10000)),
            max_attempts=int(num("MAX_ATTEMPTS", "max_attempts", 1, 20)),
            backoff_base=base.backoff_base,
            backoff_cap=base.backoff_cap,
            max_wait=num("MAX_WAIT", "max_wait", 0, 3600),
            breaker_failures=int(num("BREAKER_FAILURES", "breaker_failures", 1, 1000)),
            breaker_cooldown=num("BREAKER_COOLDOWN", "breaker_cooldown", 0.1, 3600),
        )


# ---------------------------------------------------------------------------------------------
# The normalized result


@dataclass(frozen=True)
class Sourced:
    """One field's value and where it came from."""

    value: Any
    network: str
    fetched_at: datetime


@dataclass(frozen=True)
class Subject:
    """Who to look up: a handle per network and/or contact points for the person vendor."""

    handles: Mapping[str, str] = field(default_factory=dict)
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class ProfileData:
    """What one provider said about one person, normalized. Every field comes from `network` at
    `fetched_at`; `sourced()` hands them out with that provenance attached, so merged profiles
    can say per field where each value came from. Counts are totals as the provider reports them."""

    network: str
    fetched_at: datetime
    external_id: str | None = None
    handle: str | None = None
    name: str | None = None
    bio: str | None = None
    location: str | None = None  # free text as the person wrote it
    city: str | None = None
    country: str | None = None
    followers: int | None = None
    following: int | None = None
    posts: int | None = None
    listed: int | None = None
    account_created_at: datetime | None = None
    category: str | None = None
    age_range: str | None = None  # e.g. "30-39"
    title: str | None = None
    organization: str | None = None
    interests: tuple[str, ...] = ()

    _META: ClassVar[frozenset[str]] = frozenset({"network", "fetched_at"})

    def sourced(self) -> dict[str, Sourced]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self._META or value is None or value == ():
                continue
            out[f.name] = Sourced(value, self.network, self.fetched_at)
        return out


# ---------------------------------------------------------------------------------------------
# Circuit breaker


class CircuitBreaker:
    """Closed: calls pass, consecutive failures are counted. After `failures` of them it opens:
    calls are refused without touching the network. After `cooldown` seconds it is half-open: one
    trial call passes; its success closes the breaker, its failure opens it again. A trial that
    never reports back (its caller died) is given up after another `cooldown`, so the breaker
    cannot stay stuck half-open. Every failed attempt counts, retries included, so a provider
    that is down trips the breaker within a call or two. Per process (see the module docstring)."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures: int, cooldown: float, clock: Clock):
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._count = 0
        self._opened_at = 0.0
        self._trial_out = False
        self._trial_at = 0.0

    @property
    def state(self) -> str:
        with self._lock:
            self._advance()
            return self._state

    def _advance(self) -> None:
        if self._state == self.OPEN and self.clock.monotonic() - self._opened_at >= self.cooldown:
            self._state, self._trial_out = self.HALF_OPEN, False

    def allow(self) -> bool:
        with self._lock:
            self._advance()
            if self._state == self.CLOSED:
                return True
            now = self.clock.monotonic()
            if self._state == self.HALF_OPEN and (not self._trial_out or now - self._trial_at >= self.cooldown):
                self._trial_out, self._trial_at = True, now
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._state, self._count, self._trial_out = self.CLOSED, 0, False

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._state == self.HALF_OPEN or self._count >= self.failures:
                self._state, self._opened_at, self._trial_out = self.OPEN, self.clock.monotonic(), False


# ---------------------------------------------------------------------------------------------
# Rate limiting


# ---------------------------------------------------------------------------------------------
# The call itself


def retry_after(response: requests.Response, now: float) -> float | None:
    """Epoch seconds at which `Retry-After` (seconds or an HTTP date) lets us call again, or None."""
    raw = response.headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return now + float(raw)
    if raw:
        try:
            return parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError):
            return None
    return None


# classify() answers one of these for a response that is not plainly OK or 5xx.
OK, RETRY_LATER = "ok", "retry_later"
Classifier = Callable[[requests.Response], "str | ProviderError"]
ResetAt = Callable[[requests.Response, float], "float | None"]  # (response, now) -> epoch seconds


class HttpClient:
    """One provider's session, breaker and limiter. Adapters call `send`; it returns the
    response for the adapter to map, or raises a ProviderError. Breaker and limiter are
    thread-safe; the `requests.Session` is meant for one worker thread at a time."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        rng: random.Random | None = None,
        reset_at: ResetAt = retry_after,
    ):
        self.config = config
        self.clock = clock or SystemClock()
        self.limiter = limiter or LocalRateLimiter(self.clock)
        self.session = session or requests.Session()
        self.rng = rng or random.Random()
        self.reset_at = reset_at
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown, self.clock)

    def _backoff(self, attempt: int) -> float:
        # Full jitter: replicas retrying after the same outage spread out instead of stampeding.
        return self.rng.uniform(0, min(self.config.backoff_cap, self.config.backoff_base * 2 ** (attempt - 1)))

    def _throttle(self, tenant: str | None) -> None:
        cfg = self.config
        key = f"{cfg.network}:{tenant or '-'}"
        reservation = self.limiter.reserve(key, cfg.rate_per_second, cfg.burst, cfg.max_wait)
        if not reservation.granted:
            raise RateLimited(cfg.network, _utc(self.clock.time() + reservation.wait), "our own budget is spent")
        if reservation.wait > 0:
            self.clock.sleep(reservation.wait)

    def send(
        self,
        method: str,
        path: str,
        *,
        tenant: str | None,
        classify: Classifier,
        **kwargs: Any,
    ) -> requests.Response:
        cfg, network = self.config, self.config.network
        url = cfg.base_url + path
        last = "no attempt made"
        for attempt in range(1, cfg.max_attempts + 1):
            # Throttle first: a refusal here must not take the breaker's half-open trial.
            self._throttle(tenant)
            if not self.breaker.allow():
                raise ProviderUnavailable(network, f"circuit open after repeated failures ({last})")
            try:
                response = self.session.request(
                    method, url, timeout=(cfg.connect_timeout, cfg.read_timeout), **kwargs
                )
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                self.breaker.failure()
                last = f"{type(exc).__name__}"
                if attempt < cfg.max_attempts:
                    self.clock.sleep(self._backoff(attempt))
                continue
            if response.status_code >= 500:
                self.breaker.failure()
                last = f"HTTP {response.status_code}"
                if attempt < cfg.max_attempts:
                    self.clock.sleep(self._backoff(attempt))
                continue
            # The provider answered: it is up, whatever it said.
            self.breaker.success()
            outcome = RETRY_LATER if response.status_code == 429 else classify(response)
            if isinstance(outcome, ProviderError):
                raise outcome
            if outcome == OK:
                return response
            now = self.clock.time()
            reset = self.reset_at(response, now)
            wait = self._backoff(attempt) if reset is None else max(0.0, reset - now)
            last = f"HTTP {response.status_code} rate limited"
            if wait > cfg.max_wait or attempt == cfg.max_attempts:
                raise RateLimited(network, _utc(now + wait))
            self.clock.sleep(wait)
        raise ProviderUnavailable(network, f"{cfg.max_attempts} attempts failed, last: {last}")


def default_classify(network: str) -> Classifier:
    """2xx is OK, 401/403 bad credentials, 404 not found; anything else is a provider error
    that retrying will not fix (a bug on our side: a malformed request)."""

    def classify(response: requests.Response) -> str | ProviderError:
        status = response.status_code
        if 200 <= status < 300:
            return OK
        if status in (401, 403):
            return BadCredentials(network, f"HTTP {status}")
        if status == 404:
            return NotFound(network)
        return ProviderError(network, f"HTTP {status}: {response.text[:200]}")

    return classify


# ---------------------------------------------------------------------------------------------
# The adapter base


class Adapter(ABC):
    """One provider. Subclasses set the class attributes and implement `applies` and `fetch`;
    the registry (`services.enrichment.providers`) finds them by module, so adding a network is
    adding one module."""

    network: ClassVar[str]
    env_prefix: ClassVar[str]
    base_url_env: ClassVar[str]
    default_base_url: ClassVar[str]
    credential_env: ClassVar[Mapping[str, str]]  # credential key -> environment variable

    def __init__(self, config: ProviderConfig, **client_options: Any):
        self.config = config
        self.http = HttpClient(config, reset_at=self.reset_at, **client_options)

    def reset_at(self, response: requests.Response, now: float) -> float | None:
        """When a rate-limited provider lets us back in; providers with their own header override."""
        return retry_after(response, now)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **client_options: Any) -> Adapter:
        config = ProviderConfig.from_env(
            cls.network,
            prefix=cls.env_prefix,
            base_url_env=cls.base_url_env,
            default_base_url=cls.default_base_url,
            credential_env=cls.credential_env,
            env=env,
        )
        return cls(config, **client_options)

    def credentials(self, override: Mapping[str, str] | None) -> Mapping[str, str]:
        """The tenant's credentials if it brought them, else the platform's; all or nothing."""
        creds = override if override is not None else self.config.credentials
        missing = [var for key, var in self.credential_env.items() if not creds.get(key)]
        if missing:
            raise NotConfigured(self.network, f"no credentials: set {', '.join(missing)} or the tenant's own")
        return creds

    @classmethod
    def has_platform_credentials(cls, env: Mapping[str, str] | None = None) -> bool:
        """Whether the environment sets every credential variable (as `from_env` reads them), so a
        tenant without credentials of its own can still call this provider."""
        env = os.environ if env is None else env
        return all(env.get(var) for var in cls.credential_env.values())

    def body(self, response: requests.Response) -> dict[str, Any]:
        """The JSON answer; anything else from a 2xx is the provider misbehaving, not our crash."""
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(self.network, f"HTTP {response.status_code} answer is not JSON") from None
        if not isinstance(body, dict):
            raise ProviderError(self.network, "answer is not a JSON object")
        return body

    def now(self) -> datetime:
        return _utc(self.http.clock.time())

    def applies(self, subject: Subject) -> bool:
        """Whether this provider can look the subject up at all: by default, when the subject has
        a handle on this provider's network."""
        return bool(subject.handles.get(self.network))

    @abstractmethod
    def fetch(
        self, subject: Subject, *, tenant: str | None = None, credentials: Mapping[str, str] | None = None
    ) -> ProfileData:
        """The provider's answer about the subject, or a ProviderError saying why not."""


def iso_country(name: str | None) -> str | None:
    """A country as the contract has it (ISO 3166-1 alpha-2) from the name a provider gives
    ("United States" -> "US"); None when the name is not one pycountry knows."""
    if not name:
        return None
    try:
        return pycountry.countries.lookup(name.strip()).alpha_2
    except LookupError:
        return None
