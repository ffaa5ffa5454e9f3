"""Fixtures of the fault tests: a fresh database and bus prefix per test, and the stack of
tests/faults/stack.py started on them, with a tenant and a launch-sized audience."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql

from tests.conftest import _server_urls, _with_database
from tests.faults.stack import ROOT, Stack, free_port, gunicorn, module

# Recipients of each launch: 100,000 in CI (CI=true, as .ci/run sets it), about ten minutes for the
# directory on two cores; 10,000 in a developer's `make test`, the same faults at a tenth of the
# wait. FAULT_RECIPIENTS sets it either way.
RECIPIENTS = int(os.environ.get("FAULT_RECIPIENTS") or (100_000 if os.environ.get("CI") == "true" else 10_000))


@pytest.fixture()
def database_url() -> Iterator[str]:
    server_url, _ = _server_urls()
    name = f"liaison_faults_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture()
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """identity and campaigns (web and worker), two email channel workers, the sandbox and its
    SMTP sink, as separate processes; ready when the fixture yields."""
    _, broker_url = _server_urls()
    ports = {name: free_port() for name in ("identity", "campaigns", "sandbox", "smtp")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "BUS_PREFIX": f"faults-{uuid.uuid4().hex[:8]}.",
        "BUS_QUEUE_EXPIRES": "600",  # RabbitMQ drops this test's queues once they are unused
        "LIAISON_ADMIN_KEY": "admin-" + secrets.token_urlsafe(24),
        "LIAISON_SECRET_KEY": secrets.token_urlsafe(32),
        "IDENTITY_URL": urls["identity"],
        "CAMPAIGNS_URL": urls["campaigns"],
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports["smtp"]),
        "SANDBOX_SMTP_PORT": str(ports["smtp"]),
        "SANDBOX_STORE": str(tmp_path / "outbox.sqlite3"),
        "SANDBOX_SMS_CALLBACK_DELAY": "off",
        "LOG_LEVEL": "WARNING",
        "CONSUMER_MAX_ATTEMPTS": "3",  # a poison message reaches the dead letters in seconds
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    (tmp_path / "metrics").mkdir()
    stack = Stack(env, tmp_path / "logs")
    stack.add("identity", gunicorn("services.identity.app:create_app()", ports["identity"]), urls["identity"])
    stack.add("campaigns", gunicorn("services.campaigns.app:create_app()", ports["campaigns"]), urls["campaigns"])
    stack.add("sandbox", gunicorn("sandbox.app:create_app()", ports["sandbox"], workers=1), urls["sandbox"])
    stack.add("smtp", module("sandbox.smtp"))
    stack.add("identity-worker", module("services.identity.worker"))
    stack.add("campaigns-worker", module("services.campaigns.worker"))
    for n in (1, 2):
        stack.add(f"email-{n}", module("services.campaigns.channel_worker", "--channels", "email"))
    # identity first: the others ask it for API keys and it creates the bus exchange.
    stack.start("identity", "identity-worker", "sandbox", "smtp")
    stack.wait_ready()
    stack.start("campaigns", "campaigns-worker", "email-1", "email-2")
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture()
def tenant(stack: Stack) -> tuple[str, dict[str, str]]:
    """A tenant of the stack and the headers of its crm + marketing key."""
    admin = {"Authorization": f"Bearer {stack.env['LIAISON_ADMIN_KEY']}"}
    response = requests.post(stack.url("identity") + "/v1/tenants", json={"name": "Faults"}, headers=admin,
                             timeout=10)
    assert response.status_code == 201, response.text
    tenant_id = response.json()["id"]
    response = requests.post(stack.url("identity") + f"/v1/tenants/{tenant_id}/api-keys",
                             json={"name": "faults", "scopes": ["crm", "marketing"]}, headers=admin, timeout=10)
    assert response.status_code == 201, response.text
    return tenant_id, {"Authorization": f"Bearer {response.json()['key']}"}
