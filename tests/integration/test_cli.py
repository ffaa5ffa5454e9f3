"""The `liaison` command end to end: the real command (typer's CliRunner, and the installed
script once) against identity and campaigns served over real HTTP, on the real PostgreSQL and
RabbitMQ. What a user sees: the JSON documents on stdout, the files written, the exit codes."""

from __future__ import annotations

import csv
import json
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from kombu import Connection, Queue
from typer.testing import CliRunner

from cli.main import app
from services.campaigns import SCHEMA as CAMPAIGNS
from services.campaigns import campaigns as campaign_use_cases
from services.campaigns.channel_worker import build as channel_consumers
from services.campaigns.channel_worker import tracking_links
from services.campaigns.channels import adapters as channel_adapters
from services.campaigns.templates import render_content
from services.campaigns.worker import handlers as campaigns_handlers
from services.identity import SCHEMA as IDENTITY
from services.identity.worker import handlers as identity_handlers
from shared.bus import Publisher
from shared.consumer import EventConsumer
from shared.events import CloudEvent
from shared.outbox import OutboxRelay
from tests.conftest import ROOT, make_tenant
from tests.integration.test_audit import tampering
from tests.integration.test_campaign_launch import person, segment
from tests.integration.test_erasure import CONSENT
from tests.serving import served


@pytest.fixture(scope="module")
def campaigns_url(campaigns_app) -> Iterator[str]:
    with served(campaigns_app) as url:
        yield url


@pytest.fixture()
def liaison(settings, identity_url, campaigns_url):
    """Runs `liaison ARGS` with the services' URLs and `key` in the environment; checks that no
    expected failure escaped as a traceback."""
    runner = CliRunner()

    def run(*args: str, key: str | None = None, env: dict[str, str] | None = None):
        environment = {"IDENTITY_URL": identity_url, "CAMPAIGNS_URL": campaigns_url,
                       "LIAISON_ADMIN_KEY": settings.admin_key, "LIAISON_API_KEY": key,
                       "BROKER_URL": settings.broker_url, "BUS_PREFIX": settings.bus_prefix,
                       "BUS_QUEUE_EXPIRES": "600", **(env or {})}
        result = runner.invoke(app, list(args), env=environment)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result

    return run


def as_json(result) -> dict:
    return json.loads(result.stdout)


@pytest.fixture()
def tenant_key(identity, admin):
    """A tenant, and one key holding the three scopes for the command line."""
    tenant = make_tenant(identity, admin)
    key = identity.post(f"/v1/tenants/{tenant.id}/api-keys", json={"name": "cli", "scopes": [
        "crm", "marketing", "compliance"]}, headers=admin)
    assert key.status_code == 201, key.json
    return SimpleNamespace(tenant=tenant, key=key.json["key"], id=tenant.id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def all_contacts(identity, tenant, crm_system: str) -> list[dict]:
    items, cursor = [], None
    while True:
        query = f"/v1/contacts?crm_system={crm_system}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = identity.get(query, headers=tenant.crm)
        assert page.status_code == 200, page.json
        items += page.json["items"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            return items


def test_the_installed_command_documents_itself():
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "liaison"), "--help"], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for command in ("tenants", "keys", "contacts", "identities", "campaigns", "consents", "audit", "deadletters"):
        assert command in result.stdout
    assert "Exit codes" in result.stdout and "5 the audit chain is broken" in result.stdout


def test_tenants_and_keys(liaison, identity):
    created = liaison("tenants", "create", "Initech", "--json")
    assert created.exit_code == 0, created.output
    tenant = as_json(created)
    assert tenant["name"] == "Initech" and tenant["id"]

    made = liaison("keys", "create", tenant["id"], "--scope", "crm", "--scope", "compliance", "--name", "connector",
                   "--json")
    assert made.exit_code == 0, made.output
    key = as_json(made)
    assert sorted(key["scopes"]) == ["compliance", "crm"] and key["key"]
    assert liaison("audit", "verify", "--json", key=key["key"]).exit_code == 0

    # Refusals are exit code 1 with the problem shown: a scope that does not exist (422) ...
    refused = liaison("keys", "create", tenant["id"], "--scope", "everything", "--name", "x", "--json")
    assert refused.exit_code == 1
    assert as_json(refused)["error"]["status"] == 422 and "scopes" in refused.stderr
    # ... the tenant's key where the admin key is needed (401 or 403), no admin key at all.
    assert liaison("tenants", "create", "X", env={"LIAISON_ADMIN_KEY": key["key"]}).exit_code == 1
    missing = liaison("tenants", "create", "X", env={"LIAISON_ADMIN_KEY": ""})
    assert missing.exit_code == 1 and "LIAISON_ADMIN_KEY" in missing.stderr

    revoked = liaison("keys", "revoke", key["id"], "--json")
    assert revoked.exit_code == 0 and as_json(revoked) == {"id": key["id"], "revoked": True}
    deadline = time.monotonic() + 6  # a revoked key stops working within seconds (key cache)
    while (answer := liaison("audit", "verify", "--json", key=key["key"])).exit_code == 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert answer.exit_code == 1 and as_json(answer)["error"]["status"] == 401


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


CONTACT_HEADER = ["crm_system", "crm_id", "email", "phone", "first_name", "last_name", "locale", "timezone",
                  "loyalty_tier", "attributes.store"]


def contact_rows(system: str, count: int) -> list[list[str]]:
    return [[system, f"c{i}", f"person{i}@Example.com", f"+336{i:08d}", f"First{i}", f"Last{i}", "fr-FR",
             "Europe/Paris", "gold" if i % 2 else "", "Lyon"] for i in range(count)]


def read_errors(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_contacts_import_reports_each_bad_row_and_lands_the_others(liaison, identity, tenant_key, tmp_path):
    system = f"crm-{secrets.token_hex(3)}"
    rows = contact_rows(system, 3000)
    rows[10][2] = "not-an-email"
    rows[20][3] = "12"
    rows[30][7] = "Mars/Olympus"
    rows[40][1] = ""
    rows[50].append("one cell too many")
    rows[60][1] = rows[61][1]  # the same contact twice in one chunk: the later row wins
    source = write_csv(tmp_path / "contacts.csv", CONTACT_HEADER, rows)

    result = liaison("contacts", "import", str(source), "--chunk-size", "500", "--json", key=tenant_key.key)

    assert result.exit_code == 6, result.output  # finished, with rejected rows
    summary = as_json(result)
    errors_file = tmp_path / "contacts.errors.csv"
    assert summary == {"file": str(source), "rows": 3000, "created": 2994, "updated": 0, "rejected": 6,
                       "chunks": 6, "errors_file": str(errors_file)}
    errors = read_errors(errors_file)
    # The line of the input file (the header is line 1), the row's CRM reference, the API's field errors.
    assert {(e["line"], e["crm_id"], e["field"]) for e in errors} == {
        ("12", "c10", "email"), ("22", "c20", "phone"), ("32", "c30", "timezone"), ("42", "", "crm_ref.id"),
        ("52", "c50", "_"), ("62", "c61", "crm_ref")}
    assert next(e for e in errors if e["line"] == "62")["message"] == "Superseded by line 63 with the same crm_ref."
    assert not (tmp_path / "contacts.csv.checkpoint.json").exists()

    contacts = all_contacts(identity, tenant_key.tenant, system)
    assert len(contacts) == 2994
    one = next(c for c in contacts if c["crm_ref"]["id"] == "c7")
    assert one["email"] == "person7@example.com" and one["timezone"] == "Europe/Paris"
    assert one["attributes"] == {"loyalty_tier": "gold", "store": "Lyon"}
    assert next(c for c in contacts if c["crm_ref"]["id"] == "c8")["attributes"] == {"store": "Lyon"}


class LosesTheThirdChunksAnswer:
    """In front of identity: the third bulk request lands, but its answer is lost (a 502 from a
    proxy, as when the importing machine or the network fails after the commit)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.bulk_requests = 0

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/v1/contacts/bulk":
            self.bulk_requests += 1
            if self.bulk_requests == 3:
                answer = self.wsgi_app(environ, lambda status, headers, exc_info=None: (lambda data: None))
                b"".join(answer)
                getattr(answer, "close", lambda: None)()
                start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
                return [b"upstream connection lost"]
        return self.wsgi_app(environ, start_response)


def test_an_interrupted_import_resumes_and_creates_nothing_twice(liaison, identity, identity_app, tenant_key,
                                                                 tmp_path):
    system = f"crm-{secrets.token_hex(3)}"
    rows = contact_rows(system, 2000)
    rows[5][2] = rows[900][2] = "not-an-email"  # in the first chunk, and in the chunk whose answer is lost
    source = write_csv(tmp_path / "big.csv", CONTACT_HEADER, rows)
    checkpoint = tmp_path / "big.csv.checkpoint.json"

    with served(LosesTheThirdChunksAnswer(identity_app)) as flaky_url:
        stopped = liaison("contacts", "import", str(source), "--chunk-size", "400", "--retries", "0", "--json",
                          key=tenant_key.key, env={"IDENTITY_URL": flaky_url})
    assert stopped.exit_code == 3, stopped.output
    assert "--resume" in stopped.stderr
    assert json.loads(checkpoint.read_text())["chunks_done"] == 2
    assert len(all_contacts(identity, tenant_key.tenant, system)) == 1198  # the lost chunk had landed

    resumed = liaison("contacts", "import", str(source), "--chunk-size", "400", "--resume", "--json",
                      key=tenant_key.key)
    assert resumed.exit_code == 6, resumed.output
    # Chunk 2 went again with its Idempotency-Key: answered from the first attempt ("created"),
    # not upserted again ("updated"). The totals and the errors file cover the whole file.
    assert as_json(resumed) == {
        "file": str(source), "rows": 2000, "created": 1998, "updated": 0, "rejected": 2, "chunks": 5,
        "errors_file": str(tmp_path / "big.errors.csv")}
    assert [(e["line"], e["field"]) for e in read_errors(tmp_path / "big.errors.csv")] == [
        ("7", "email"), ("902", "email")]
    assert len(all_contacts(identity, tenant_key.tenant, system)) == 1998
    assert not checkpoint.exists()

    # A checkpoint belongs to its file: another file cannot resume from it.
    checkpoint.write_text(json.dumps({"file_sha256": "0" * 64, "chunk_size": 400, "options": "x", "chunks_done": 1}))
    other = liaison("contacts", "import", str(source), "--chunk-size", "400", "--resume", key=tenant_key.key)
    assert other.exit_code == 1 and "another file" in other.stderr


def test_identities_import_links_handles_and_reports_conflicts(liaison, identity, tenant_key, tmp_path):
    crm = tenant_key.tenant.crm
    alice = identity.post("/v1/contacts", json={"crm_ref": {"system": "hub", "id": "a1"}}, headers=crm).json["id"]
    bob = identity.post("/v1/contacts", json={"crm_ref": {"system": "hub", "id": "b1"}}, headers=crm).json["id"]
    source = write_csv(tmp_path / "handles.csv", ["crm_system", "crm_id", "contact_id", "network", "handle"], [
        ["hub", "a1", "", "x", "@Alice_CLI"],
        ["hub", "a1", "", "instagram", "https://www.instagram.com/alice.cli/"],
        ["", "", bob, "x", "bob_cli"],
        ["hub", "b1", "", "x", "alice_cli"],       # line 5: Alice's handle, for Bob: a conflict
        ["hub", "zz", "", "x", "nobody_cli"],      # line 6: no such contact
        ["hub", "a1", "", "myspace", "alice"],     # line 7: not a network
        ["hub", "a1", "", "x", "https://x.com/alice_cli"],  # already linked to her
    ])

    result = liaison("identities", "import", str(source), "--json", key=tenant_key.key)

    assert result.exit_code == 6, result.output
    summary = as_json(result)
    assert {k: summary[k] for k in ("rows", "linked", "already_linked", "rejected")} == {
        "rows": 7, "linked": 3, "already_linked": 1, "rejected": 3}
    errors = {e["line"]: e for e in read_errors(tmp_path / "handles.errors.csv")}
    assert sorted(errors) == ["5", "6", "7"]
    assert errors["5"]["field"] == "handle" and alice in errors["5"]["message"]
    assert errors["6"]["field"] == "crm_id" and errors["7"]["field"] == "network"
    resolved = identity.get("/v1/identities/resolve?network=x&handle=alice_cli", headers=crm).json
    assert resolved["contact_id"] == alice


@pytest.fixture()
def campaign_workers(settings, campaigns_app, tmp_path, monkeypatch):
    """campaigns' worker (launches, completion) and its email channel worker sending to the
    sandbox's SMTP sink, run in a thread while the command follows the campaign."""
    from sandbox.channels import Outbox
    from sandbox.smtp import sink

    monkeypatch.setenv("SANDBOX_STORE", str(tmp_path / "outbox.sqlite3"))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    port = free_port()
    smtp = sink(outbox, "127.0.0.1", port)
    smtp.start()
    db = campaigns_app.extensions["liaison"].db
    adapters = channel_adapters({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                                 "CAMPAIGNS_EMAIL_FROM": "Acme <offers@acme.example>"})
    consumers = [EventConsumer.from_settings("campaigns", db, CAMPAIGNS, campaigns_handlers(), settings),
                 *channel_consumers(settings, db, ["email"], adapters, render_content, tracking_links(settings),
                                    backoff=0.0, sleep=lambda _: None)]
    relay = OutboxRelay(db, Publisher.from_settings(settings), [CAMPAIGNS])
    with Connection(settings.broker_url) as connection:
        for consumer in consumers:
            consumer.topology.declare(connection)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            relay.drain()
            for consumer in consumers:
                consumer.drain(idle=0.1)
            with db.transaction() as uow:
                campaign_use_cases.finish_done(uow)

    thread = threading.Thread(target=work, daemon=True)
    yield SimpleNamespace(start=thread.start, sent=lambda: outbox.messages("email"))
    stop.set()
    if thread.is_alive():
        thread.join(timeout=30)
    smtp.stop()
    relay.publisher.close()


@pytest.fixture()
def sql(settings):
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def new_campaign(campaigns, tenant, segment_id: str) -> str:
    response = campaigns.post("/v1/campaigns", json={
        "name": "Winter", "segment_id": segment_id, "channels": ["email"],
        "content": {"email": {"subject": "Hello {{ contact.first_name }}", "body": "20% off this week"}},
    }, headers=tenant.marketing)
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_a_campaign_launched_and_followed_to_completion(liaison, campaigns, tenant_key, sql, campaign_workers):
    tenant = tenant_key.tenant
    for n in range(3):
        person(sql, tenant.id, email=f"fan{n}@example.com", consents=["email_marketing"])
    person(sql, tenant.id, email="nope@example.com")  # no consent: suppressed
    segment_id = segment(campaigns, tenant)
    campaign_id = new_campaign(campaigns, tenant, segment_id)
    campaign_workers.start()

    result = liaison("campaigns", "launch", campaign_id, "--follow", "--interval", "0.2", "--timeout", "60",
                     "--json", key=tenant_key.key)

    assert result.exit_code == 0, result.output
    final = as_json(result)
    assert final["status"] == "completed" and final["outcome"] == "completed"
    assert final["audience"] == 4 and final["reach"] == 3
    assert {k: final["by_channel"]["email"][k] for k in ("queued", "sent", "failed")} == {
        "queued": 0, "sent": 3, "failed": 0}
    assert final["suppressed"]["no_consent"] == 1
    # The sink may also get other tests' leftover dispatches (the campaigns queues are the session's):
    # this campaign's recipients each got one email, the one without consent none.
    received = [json.dumps(m) for m in campaign_workers.sent()]
    assert {n: sum(f"fan{n}@example.com" in m for m in received) for n in range(3)} == {0: 1, 1: 1, 2: 1}
    assert not any("nope@example.com" in m for m in received)

    # Following a campaign that ends cancelled is exit code 7; one still a draft at --timeout, 4.
    cancelled = new_campaign(campaigns, tenant, segment_id)
    assert campaigns.post(f"/v1/campaigns/{cancelled}/cancel", headers=tenant.marketing).status_code == 200
    followed = liaison("campaigns", "follow", cancelled, "--json", key=tenant_key.key)
    assert followed.exit_code == 7 and as_json(followed)["status"] == "cancelled"
    draft = new_campaign(campaigns, tenant, segment_id)
    waited = liaison("campaigns", "follow", draft, "--interval", "0.1", "--timeout", "0.3", "--json",
                     key=tenant_key.key)
    assert waited.exit_code == 4 and as_json(waited)["outcome"] == "timed_out"


def test_consents_export_streams_the_ledger_as_csv(liaison, identity, tenant_key, tmp_path):
    crm = tenant_key.tenant.crm
    contact = identity.post("/v1/contacts", json={"crm_ref": {"system": "hub", "id": "k1"}}, headers=crm).json["id"]
    for purpose, status in (("email_marketing", "granted"), ("sms_marketing", "withdrawn")):
        recorded = identity.post(f"/v1/contacts/{contact}/consents",
                                 json={**CONSENT, "purpose": purpose, "status": status}, headers=crm)
        assert recorded.status_code == 201, recorded.json

    target = tmp_path / "consents.csv"
    result = liaison("consents", "export", "--purpose", "email_marketing", "-o", str(target), "--json",
                     key=tenant_key.key)
    assert result.exit_code == 0, result.output
    assert as_json(result)["records"] == 1
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["contact_id"], r["purpose"], r["status"], r["source_system"]) for r in rows] == [
        (contact, "email_marketing", "granted", "hubspot")]

    to_stdout = liaison("consents", "export", key=tenant_key.key)
    assert to_stdout.exit_code == 0
    lines = to_stdout.stdout.strip().splitlines()
    assert lines[0].startswith("id,contact_id,purpose,status") and len(lines) == 3

    bad = liaison("consents", "export", "--from", "yesterday", "-o", str(tmp_path / "x.csv"), "--json",
                  key=tenant_key.key)
    assert bad.exit_code == 1 and as_json(bad)["error"]["status"] == 422
    assert not (tmp_path / "x.csv").exists()


def test_audit_verify_exit_codes(liaison, identity, tenant_key, settings):
    crm = tenant_key.tenant.crm
    for ref in ("v1", "v2", "v3"):
        assert identity.post("/v1/contacts", json={"crm_ref": {"system": "hub", "id": ref}},
                             headers=crm).status_code == 201
    valid = liaison("audit", "verify", "--json", key=tenant_key.key)
    assert valid.exit_code == 0 and as_json(valid) == {"valid": True, "entries": 3, "first_invalid_seq": None}

    with tampering(settings) as conn:
        conn.execute("UPDATE identity.audit_log SET actor = 'key:someone-else' WHERE tenant_id = %s AND seq = 2",
                     (tenant_key.id,))
    broken = liaison("audit", "verify", "--json", key=tenant_key.key)
    assert broken.exit_code == 5 and as_json(broken)["first_invalid_seq"] == 2
    human = liaison("audit", "verify", key=tenant_key.key)
    assert human.exit_code == 5 and "broken at entry 2" in human.stderr


@pytest.fixture()
def other_services_confirm(settings, identity_app, identity):
    """Stand-ins for the other services (enrichment, campaigns, ...): once an erasure is requested,
    each one it waits for publishes its `erasure.completed` on the real broker, and identity's
    consumer records it."""
    db = identity_app.extensions["liaison"].db
    consumer = EventConsumer.from_settings("identity", db, IDENTITY, identity_handlers(), settings)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    publisher = Publisher.from_settings(settings)
    threads = []

    def confirm(tenant, contact_id: str) -> None:
        def run() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                listed = identity.get(f"/v1/erasures?contact_id={contact_id}", headers=tenant.compliance).json
                if listed["items"]:
                    break
                time.sleep(0.05)
            erasure = listed["items"][0]
            erasure_id = erasure["id"]
            for service in [name for name, status in erasure["services"].items() if status == "pending"]:
                event = CloudEvent(f"liaison.{service}.erasure.completed", f"/liaison/{service}", tenant.id,
                                   {"erasure_id": erasure_id, "service": service})
                publisher.publish_batch([(event.type, event.envelope())])
            consumer.drain(idle=0.2)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield confirm
    for thread in threads:
        thread.join(timeout=30)
    publisher.close()


def test_erase_waits_until_every_service_has_erased(liaison, identity, tenant_key, other_services_confirm):
    crm = tenant_key.tenant.crm
    contact = identity.post("/v1/contacts", json={"crm_ref": {"system": "hub", "id": "gone"},
                                                  "email": "gone@example.com"}, headers=crm).json["id"]
    other_services_confirm(tenant_key.tenant, contact)

    result = liaison("contacts", "erase", contact, "--wait", "--interval", "0.1", "--timeout", "30", "--json",
                     key=tenant_key.key)

    assert result.exit_code == 0, result.output
    erasure = as_json(result)
    assert erasure["status"] == "completed" and erasure["contact_id"] == contact
    assert {"identity", "enrichment", "campaigns"} <= set(erasure["services"])
    assert set(erasure["services"].values()) == {"completed"}
    assert identity.get(f"/v1/contacts/{contact}", headers=crm).status_code == 404

    # Nobody confirms this one: the wait gives up with exit code 4 and the state so far.
    lonely = identity.post("/v1/contacts", json={"crm_ref": {"system": "hub", "id": "lonely"}},
                           headers=crm).json["id"]
    waited = liaison("contacts", "erase", lonely, "--wait", "--interval", "0.1", "--timeout", "0.3", "--json",
                     key=tenant_key.key)
    assert waited.exit_code == 4
    assert as_json(waited)["status"] == "pending" and as_json(waited)["services"]["identity"] == "completed"


def test_deadletters_list_and_replay_on_a_real_queue(liaison, settings, identity_app, tenant_key):
    name = f"cli-flaky-{uuid.uuid4().hex[:6]}"
    healthy = threading.Event()
    handled = []

    def handler(uow, envelope):
        if not healthy.is_set():
            raise RuntimeError("downstream is broken")
        handled.append(envelope["id"])

    consumer = EventConsumer.from_settings(name, identity_app.extensions["liaison"].db, IDENTITY,
                                           {"liaison.test.cli": handler}, settings, max_attempts=1)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    events = [CloudEvent("liaison.test.cli", "/test", tenant_key.id, {"n": n}) for n in range(2)]
    publisher = Publisher.from_settings(settings)
    publisher.publish_batch([(e.type, e.envelope()) for e in events])
    publisher.close()
    consumer.drain(idle=0.5)
    try:
        listed = liaison("deadletters", "list", name, "--json")
        assert listed.exit_code == 0, listed.output
        entries = as_json(listed)["items"]
        assert sorted(e["id"] for e in entries) == sorted(e.id for e in events)
        assert all("downstream is broken" in e["error"] for e in entries)

        healthy.set()
        replayed = liaison("deadletters", "replay", name, "--id", events[0].id, "--json")
        assert replayed.exit_code == 0 and as_json(replayed)["replayed"] == 1
        consumer.drain(idle=0.5)
        assert handled == [events[0].id]
        assert [e["id"] for e in as_json(liaison("deadletters", "list", name, "--json"))["items"]] == [events[1].id]
        assert liaison("deadletters", "replay", name, "--all", "--json").exit_code == 0
        consumer.drain(idle=0.5)
        assert sorted(handled) == sorted(e.id for e in events)
        assert liaison("deadletters", "replay", name).exit_code == 2  # neither --all nor --id
    finally:
        with Connection(settings.broker_url) as connection:
            for suffix in ("", ".retry", ".dead"):
                Queue(consumer.topology.queue_name + suffix)(connection.default_channel).delete()


def test_expected_failures_have_their_exit_codes_and_no_traceback(liaison, identity, tenant_key):
    unreachable = f"http://127.0.0.1:{free_port()}"
    down = liaison("audit", "verify", "--json", key=tenant_key.key, env={"IDENTITY_URL": unreachable})
    assert down.exit_code == 3 and "Cannot reach identity" in down.stderr
    assert as_json(down)["error"]["title"].startswith("Cannot reach identity")

    status = liaison("status", "--json", env={"ENRICHMENT_URL": unreachable})
    assert status.exit_code == 3
    assert {name: state["ready"] for name, state in as_json(status).items()} == {
        "identity": True, "enrichment": False, "campaigns": True}

    unknown = liaison("contacts", "erase", str(uuid.uuid4()), "--json", key=tenant_key.key)
    assert unknown.exit_code == 1 and as_json(unknown)["error"]["status"] == 404

    assert liaison("audit", "verify", key="not-a-key").exit_code == 1
    crm_only = tenant_key.tenant.keys["crm"]["key"]
    forbidden = liaison("audit", "verify", "--json", key=crm_only)
    assert forbidden.exit_code == 1 and as_json(forbidden)["error"]["status"] == 403
    assert liaison("campaigns", "follow", str(uuid.uuid4()), key=tenant_key.key).exit_code == 1
    assert liaison("contacts", "import", "/no/such/file.csv", key=tenant_key.key).exit_code == 2
