"""Settings read from the environment once, validated at start with a clear message."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it and says what is expected."""


def env_number(env: Mapping[str, str], name: str, default: Any, low: float, high: float, kind: type = int) -> Any:
    """The number in `name`, or `default` when unset; a malformed or out-of-range value raises
    SettingsError naming the variable. Services read their own tunables with it too."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {'whole number' if kind is int else 'number'}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is out of range ({low}..{high})")
    return value


def _url(env: dict[str, str], name: str, schemes: tuple[str, ...], default: str = "") -> str:
    raw = env.get(name, default) or default
    if not raw:
        return ""
    scheme = urlparse(raw).scheme
    if scheme not in schemes:
        raise SettingsError(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}")
    return raw


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    admin_key: str
    secret_key: str
    identity_url: str = "http://127.0.0.1:8001"
    enrichment_url: str = "http://127.0.0.1:8002"
    campaigns_url: str = "http://127.0.0.1:8003"
    webhooks_url: str = "http://127.0.0.1:8004"
    console_url: str = "http://127.0.0.1:8005"
    db_pool_min: int = 1
    db_pool_max: int = 10
    key_cache_seconds: float = 2.0
    bus_prefix: str = ""
    bus_queue_expires: float | None = None
    bus_queue_type: str = "classic"
    consumer_max_attempts: int = 5
    outbox_batch: int = 1000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, stores: bool = True) -> Settings:
        """`stores=False` for a service that keeps nothing (the console): DATABASE_URL and
        BROKER_URL are then neither required nor read, and database_url/broker_url are empty."""
        env = dict(os.environ if env is None else env)
        database_url = broker_url = ""
        if stores:
            database_url = _url(env, "DATABASE_URL", ("postgresql", "postgres"))
            if not database_url:
                raise SettingsError(
                    "DATABASE_URL is not set (postgresql://user@host:port/db); "
                    "`make run` starts an embedded PostgreSQL and sets it for you"
                )
            broker_url = _url(env, "BROKER_URL", ("amqp", "pyamqp", "redis", "redis+socket", "memory"))
            if not broker_url:
                raise SettingsError("BROKER_URL is not set (amqp://user:pass@host:5672//)")
        admin_key = env.get("LIAISON_ADMIN_KEY", "")
        if admin_key and len(admin_key) < 16:
            raise SettingsError("LIAISON_ADMIN_KEY must be at least 16 characters")
        secret_key = env.get("LIAISON_SECRET_KEY", "")
        if len(secret_key) < 16:
            raise SettingsError(
                "LIAISON_SECRET_KEY must be set to at least 16 random characters: it signs "
                "tracking tokens and salts the erasure hashes"
            )
        # quorum: replicated queues on a RabbitMQ cluster (infra/); classic for one broker.
        bus_queue_type = env.get("BUS_QUEUE_TYPE", "classic") or "classic"
        if bus_queue_type not in {"classic", "quorum"}:
            raise SettingsError(f"BUS_QUEUE_TYPE={bus_queue_type!r} is not one of classic, quorum")
        log_level = env.get("LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"LOG_LEVEL={log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        return cls(
            database_url=database_url,
            broker_url=broker_url,
            admin_key=admin_key,
            secret_key=secret_key,
            identity_url=_url(env, "IDENTITY_URL", ("http", "https"), cls.identity_url),
            enrichment_url=_url(env, "ENRICHMENT_URL", ("http", "https"), cls.enrichment_url),
            campaigns_url=_url(env, "CAMPAIGNS_URL", ("http", "https"), cls.campaigns_url),
            webhooks_url=_url(env, "WEBHOOKS_URL", ("http", "https"), cls.webhooks_url),
            console_url=_url(env, "CONSOLE_URL", ("http", "https"), cls.console_url),
            db_pool_min=env_number(env, "DB_POOL_MIN", 1, 0, 100),
            db_pool_max=env_number(env, "DB_POOL_MAX", 10, 1, 500),
            key_cache_seconds=env_number(env, "KEY_CACHE_SECONDS", 2.0, 0.0, 5.0, float),
            bus_prefix=env.get("BUS_PREFIX", ""),
            bus_queue_expires=env_number(env, "BUS_QUEUE_EXPIRES", None, 1.0, 30 * 86400.0, float),
            bus_queue_type=bus_queue_type,
            consumer_max_attempts=env_number(env, "CONSUMER_MAX_ATTEMPTS", 5, 1, 100),
            outbox_batch=env_number(env, "OUTBOX_BATCH", 1000, 1, 10000),
            log_level=log_level,
        )
