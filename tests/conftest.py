"""Fixtures every level of test shares: a fresh database per test run on the real PostgreSQL
(`DATABASE_URL`, or the embedded one when unset), the real broker (`BROKER_URL`, or the embedded
one), with queues prefixed so that runs never see each other's messages."""

from __future__ import annotations

import importlib
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _server_urls() -> tuple[str, str]:
    database_url = os.environ.get("DATABASE_URL")
    broker_url = os.environ.get("BROKER_URL")
    if not database_url or not broker_url:
        from shared import embedded

        var = ROOT / "var" / "test"
        database_url = database_url or embedded.start_postgres(var / "postgres")
        broker_url = broker_url or embedded.start_broker(var / "broker")
    return database_url, broker_url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    server_url, broker_url = _server_urls()
    run = uuid.uuid4().hex[:10]
    name = f"liaison_test_{run}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {
        "DATABASE_URL": _with_database(server_url, name),
        "BROKER_URL": broker_url,
        "LIAISON_ADMIN_KEY": "admin-" + secrets.token_urlsafe(24),
        "LIAISON_SECRET_KEY": secrets.token_urlsafe(32),
        "BUS_PREFIX": f"test-{run}.",
        "BUS_QUEUE_EXPIRES": "600",  # RabbitMQ removes this run's queues once they are unused
        "KEY_CACHE_SECONDS": "2",
        "CONSUMER_MAX_ATTEMPTS": "3",
        "DB_POOL_MAX": "8",
    }
    yield Settings.from_env(env)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def identity_app(settings: Settings):
    from services.identity.app import create_app

    app = create_app(settings)
    yield app
    app.extensions["liaison"].db.close()


@pytest.fixture()
def identity(identity_app):
    return identity_app.test_client()


@pytest.fixture(scope="session")
def identity_url(identity_app) -> Iterator[str]:
    """identity served over real HTTP, for the services that ask it (API keys, exports)."""
    from tests.serving import served

    with served(identity_app) as url:
        yield url


def _app_asking_identity(service: str, settings: Settings, identity_url: str) -> Iterator[Any]:
    """A service's app (`services.<service>.app`) for the session, asking identity over real HTTP
    (API keys, exports)."""
    from dataclasses import replace

    create_app = importlib.import_module(f"services.{service}.app").create_app
    app = create_app(replace(settings, identity_url=identity_url))
    yield app
    app.extensions["liaison"].db.close()


@pytest.fixture(scope="session")
def enrichment_app(settings: Settings, identity_url: str):
    yield from _app_asking_identity("enrichment", settings, identity_url)


@pytest.fixture()
def enrichment(enrichment_app):
    return enrichment_app.test_client()


@pytest.fixture(scope="session")
def campaigns_app(settings: Settings, identity_url: str):
    yield from _app_asking_identity("campaigns", settings, identity_url)


@pytest.fixture()
def campaigns(campaigns_app):
    return campaigns_app.test_client()


@pytest.fixture(scope="session")
def webhooks_app(settings: Settings, identity_url: str):
    yield from _app_asking_identity("webhooks", settings, identity_url)


@pytest.fixture()
def webhooks(webhooks_app):
    return webhooks_app.test_client()


@pytest.fixture(scope="session")
def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.admin_key}"}


@dataclass
class Tenant:
    id: str
    keys: dict[str, dict]

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]['key']}"}

    @property
    def crm(self) -> dict[str, str]:
        return self.headers("crm")

    @property
    def marketing(self) -> dict[str, str]:
        return self.headers("marketing")

    @property
    def compliance(self) -> dict[str, str]:
        return self.headers("compliance")


def make_tenant(client, admin: dict[str, str], name: str = "Acme") -> Tenant:
    response = client.post("/v1/tenants", json={"name": name}, headers=admin)
    assert response.status_code == 201, response.json
    tenant_id = response.json["id"]
    keys = {}
    for scope in ("crm", "marketing", "compliance"):
        key = client.post(f"/v1/tenants/{tenant_id}/api-keys",
                          json={"name": scope, "scopes": [scope]}, headers=admin)
        assert key.status_code == 201, key.json
        keys[scope] = key.json
    return Tenant(tenant_id, keys)


@pytest.fixture()
def tenant(identity, admin) -> Tenant:
    return make_tenant(identity, admin)


@pytest.fixture()
def other_tenant(identity, admin) -> Tenant:
    return make_tenant(identity, admin, "Globex")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault tests last: they take minutes, restart the broker and PostgreSQL, and every
    quicker test should have spoken by then."""
    items.sort(key=lambda item: "/tests/faults/" in str(item.path))

