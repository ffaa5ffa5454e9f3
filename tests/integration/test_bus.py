"""The outbox, the relay and the consumer loop against the real broker and database."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
from kombu import Connection, Queue, binding

from shared.bus import Publisher, events_exchange
from shared.consumer import EventConsumer
from shared.db import Database
from shared.deadletters import list_dead, replay
from shared.events import CloudEvent
from shared.outbox import OutboxRelay, write_events
from tests.integration.test_http_platform import contact_body


@pytest.fixture()
def db(settings, identity_app):
    database = Database(settings.database_url, max_size=4, name="test-bus").open()
    yield database
    database.close()


@pytest.fixture()
def tap(settings):
    """A queue that sees every event on liaison.events, removed after the test."""
    name = f"{settings.bus_prefix}tap-{uuid.uuid4().hex[:6]}"
    with Connection(settings.broker_url) as connection:
        queue = Queue(name, bindings=[binding(events_exchange(settings.bus_prefix), routing_key="#")], durable=False,
                      auto_delete=False)
        queue(connection.default_channel).declare()

        def take(limit: int = 10_000) -> list[dict]:
            got = []
            while len(got) < limit:
                message = queue(connection.default_channel).get(accept=["cloudevents", "json"])
                if message is None:
                    break
                got.append({"routing_key": message.delivery_info["routing_key"], "body": message.payload,
                            "content_type": message.content_type})
                message.ack()
            return got

        yield take
        queue(connection.default_channel).delete()


def test_the_relay_publishes_committed_events_as_cloudevents(identity, tenant, settings, db, tap):
    contact = identity.post("/v1/contacts", json=contact_body("bus1", email="b@example.com"),
                            headers=tenant.crm).json
    relay = OutboxRelay(db, Publisher.from_settings(settings), ["identity"])
    assert relay.drain() >= 1
    published = [m for m in tap() if m["body"].get("subject") == contact["id"]]
    assert len(published) == 1
    message = published[0]
    assert message["routing_key"] == "liaison.identity.contact.upserted"
    assert message["content_type"] == "application/cloudevents+json"
    body = message["body"]
    for attribute in ("specversion", "id", "source", "type", "time", "subject", "tenantid", "data"):
        assert attribute in body
    assert body["tenantid"] == tenant.id and body["data"]["contact"]["email"] == "b@example.com"
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM identity.outbox").fetchone()[0] == 0


def test_events_wait_in_the_outbox_while_the_broker_is_down(identity, tenant, settings, db, tap):
    contact = identity.post("/v1/contacts", json=contact_body("bus2"), headers=tenant.crm).json
    assert contact["id"]  # the change committed although nothing could be published
    down = OutboxRelay(db, Publisher("amqp://guest:guest@127.0.0.1:1//"), ["identity"])
    with pytest.raises(Exception):  # noqa: B017 - whichever connection error the client raises
        down.drain()
    with psycopg.connect(settings.database_url) as conn:
        waiting = conn.execute("SELECT count(*) FROM identity.outbox WHERE envelope->>'subject' = %s",
                               (contact["id"],)).fetchone()[0]
    assert waiting == 1
    OutboxRelay(db, Publisher.from_settings(settings), ["identity"]).drain()
    assert [m for m in tap() if m["body"].get("subject") == contact["id"]]


def _publish(settings, event: CloudEvent) -> None:
    publisher = Publisher.from_settings(settings)
    publisher.publish_batch([(event.type, event.envelope())])
    publisher.close()


def test_a_redelivered_event_is_handled_once(settings, db, tenant):
    seen = []
    consumer = EventConsumer.from_settings(f"dedupe-{uuid.uuid4().hex[:6]}", db, "identity",
                                           {"liaison.test.ping": lambda uow, e: seen.append(e["id"])}, settings)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    event = CloudEvent("liaison.test.ping", "/test", tenant.id, {"n": 1})
    _publish(settings, event)
    _publish(settings, event)
    consumer.drain(idle=0.5)
    assert seen == [event.id]


def test_a_failing_event_is_retried_then_dead_lettered_and_can_be_replayed(settings, db, tenant):
    attempts = []
    healthy = [False]

    def handler(uow, envelope):
        attempts.append(envelope["id"])
        if not healthy[0]:
            raise RuntimeError("downstream is broken")

    consumer = EventConsumer.from_settings(f"flaky-{uuid.uuid4().hex[:6]}", db, "identity",
                                           {"liaison.test.flaky": handler}, settings,
                                         max_attempts=3, base_delay=0.05)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    event = CloudEvent("liaison.test.flaky", "/test", tenant.id, {})
    _publish(settings, event)
    consumer.drain(idle=1.5)
    assert len(attempts) == 3
    queue = consumer.topology
    # The operator lists the dead letters (listing leaves them there) ...
    listed = list_dead(settings.broker_url, queue)
    assert [d["id"] for d in listed] == [event.id]
    assert "downstream is broken" in listed[0]["error"] and listed[0]["attempts"] == 3
    assert [d["id"] for d in list_dead(settings.broker_url, queue)] == [event.id]
    # ... and replays them once the cause is fixed: back to the consumer's own queue.
    healthy[0] = True
    assert replay(settings.broker_url, queue) == 1
    consumer.drain(idle=0.5)
    assert len(attempts) == 4
    assert list_dead(settings.broker_url, queue) == []
    with psycopg.connect(settings.database_url) as conn:
        handled = conn.execute("SELECT count(*) FROM identity.handled_events WHERE event_id = %s",
                               (event.id,)).fetchone()[0]
    assert handled == 1
    with Connection(settings.broker_url) as connection:
        for suffix in ("", ".retry", ".dead"):
            Queue(consumer.topology.queue_name + suffix)(connection.default_channel).delete()


def test_a_malformed_message_goes_straight_to_the_dead_letters(settings, db):
    consumer = EventConsumer.from_settings(f"strict-{uuid.uuid4().hex[:6]}", db, "identity",
                                           {"liaison.test.#": lambda uow, e: None}, settings)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
        connection.Producer().publish({"not": "a cloudevent"}, exchange=events_exchange(settings.bus_prefix),
                                      routing_key="liaison.test.bad", serializer="json")
    assert consumer.drain(idle=0.5) == 1
    with Connection(settings.broker_url) as connection:
        dead = Queue(f"{consumer.topology.queue_name}.dead")(connection.default_channel)
        message = dead.get(accept=["cloudevents", "json"])
        assert message is not None and "malformed" in message.headers["x-liaison-error"]
        message.ack()


def test_events_written_in_a_rolled_back_transaction_never_leave(settings, db, tenant):
    event = CloudEvent("liaison.test.rollback", "/test", tenant.id, {})
    with pytest.raises(RuntimeError), db.transaction() as uow:
        write_events(uow.conn, "identity", [event])
        raise RuntimeError("the change failed")
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM identity.outbox WHERE envelope->>'id' = %s",
                            (event.id,)).fetchone()[0] == 0


def test_an_event_met_by_a_database_outage_waits_in_its_queue_without_spending_attempts(settings, db, tenant):
    import psycopg as pg

    from shared.consumer import DatabaseUnavailable

    calls = []

    def handler(uow, envelope):
        calls.append(envelope["id"])
        if len(calls) == 1:
            raise pg.OperationalError("the database is restarting")

    consumer = EventConsumer.from_settings(f"outage-{uuid.uuid4().hex[:6]}", db, "identity",
                                           {"liaison.test.outage": handler}, settings, max_attempts=1)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    event = CloudEvent("liaison.test.outage", "/test", tenant.id, {})
    _publish(settings, event)
    with pytest.raises(DatabaseUnavailable):
        consumer.drain(idle=0.5)
    # With max_attempts=1 a handler failure would have dead-lettered it; the outage did not count.
    consumer.drain(idle=0.5)
    assert calls == [event.id, event.id]
    assert list_dead(settings.broker_url, consumer.topology) == []


def _local_rabbitmq(settings) -> bool:
    return (shutil.which("rabbitmqctl") is not None and settings.broker_url.startswith("amqp")
            and urlsplit(settings.broker_url).hostname in {"127.0.0.1", "localhost"})


def _broker_connections_of_this_process() -> set[str]:
    """RabbitMQ's names ("127.0.0.1:PORT -> 127.0.0.1:5672") of this process's connections."""
    return {f"{c.laddr.ip}:{c.laddr.port} -> {c.raddr.ip}:{c.raddr.port}"
            for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == 5672}


def test_a_consumer_whose_connection_the_broker_closes_reconnects_and_goes_on(settings, db, tenant):
    """RabbitMQ closing a connection (CONNECTION_FORCED: what a broker shutting down or an
    operator does) raised an error the consumer loop did not count as losing the broker, and its
    thread died with it. It reconnects now, and handles what comes next."""
    if not _local_rabbitmq(settings):
        pytest.skip("needs the local RabbitMQ and rabbitmqctl to close a connection")
    seen: list[str] = []
    consumer = EventConsumer.from_settings(f"forced-{uuid.uuid4().hex[:6]}", db, "identity",
                                           {"liaison.test.forced": lambda uow, e: seen.append(e["id"])}, settings)
    before = _broker_connections_of_this_process()
    stop = threading.Event()
    loop = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    loop.start()

    def handled(event: CloudEvent, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while event.id not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        return event.id in seen

    try:
        first = CloudEvent("liaison.test.forced", "/test", tenant.id, {})
        for _ in range(50):  # until the consumer has declared its queue (before, nothing routes there)
            _publish(settings, first)
            if handled(first, 0.2):
                break
        assert seen == [first.id]
        [ours] = _broker_connections_of_this_process() - before
        listed = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "name"], check=True,
                                capture_output=True, text=True, timeout=60).stdout
        [pid] = [line.split("\t")[0] for line in listed.splitlines() if line.endswith("\t" + ours)]
        subprocess.run(["rabbitmqctl", "close_connection", pid, "closed by the test"], check=True,
                       capture_output=True, timeout=60)
        second = CloudEvent("liaison.test.forced", "/test", tenant.id, {})
        _publish(settings, second)  # its queue is durable: it waits there for the consumer to come back
        assert handled(second), f"not handled; the consumer's thread is {'alive' if loop.is_alive() else 'dead'}"
        assert loop.is_alive() and seen == [first.id, second.id]
    finally:
        stop.set()
        loop.join(timeout=10)
        with Connection(settings.broker_url) as connection:
            for suffix in ("", ".retry", ".dead"):
                Queue(consumer.topology.queue_name + suffix)(connection.default_channel).delete()
