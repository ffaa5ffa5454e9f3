"""The broker topology a deployment loads (infra/rabbitmq/definitions.json) against the code, on
the real RabbitMQ: the committed file is what the workers declare, a broker that loaded it
accepts the workers' own declarations, and quorum queues carry an event through failure, retry
and dead letter as classic ones do."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from dataclasses import replace

import pytest
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection, Exchange, Queue

from infra.rabbitmq import DEFINITIONS, render, topologies
from shared.bus import ConsumerTopology, Publisher, definitions
from shared.consumer import EventConsumer
from shared.db import Database
from shared.deadletters import list_dead
from shared.events import CloudEvent

# Every consumer the workers start today; a new one shows up in the generated file by itself.
KNOWN_CONSUMERS = {"identity", "enrichment", "enrichment-jobs", "campaigns",
                   "campaigns-email", "campaigns-sms", "campaigns-social_dm"}


def test_the_committed_definitions_are_what_the_code_declares():
    assert DEFINITIONS.read_text() == render(), "infra/rabbitmq/definitions.json is stale: python -m infra.rabbitmq"
    document = json.loads(DEFINITIONS.read_text())
    names = {q["name"] for q in document["queues"]}
    consumers = {n for n in names if not n.endswith((".retry", ".dead"))}
    assert KNOWN_CONSUMERS <= consumers
    assert names == {f"{c}{s}" for c in consumers for s in ("", ".retry", ".dead")}
    assert all(q["durable"] and q["arguments"]["x-queue-type"] == "quorum" for q in document["queues"])
    assert not any("x-expires" in q["arguments"] for q in document["queues"])  # a deployment's queues stay
    assert {p["pattern"] for p in document["policies"]} == {f"^{c}$".replace("-", "\\-") for c in consumers}
    assert {e["name"] for e in document["exchanges"]} == {"liaison.events", "liaison.direct"}


@pytest.fixture()
def prefixed(settings):
    """This run's copy of the deployment topology: prefixed, and removed by RabbitMQ once unused."""
    prefix = f"{settings.bus_prefix}defs-{uuid.uuid4().hex[:6]}."
    found = [replace(t, prefix=prefix, expires=600.0) for t in topologies()]
    yield found
    with Connection(settings.broker_url) as connection:
        for topology in found:
            for queue in topology.queues():
                queue(connection.channel()).delete()


def _load(connection: Connection, document: dict) -> None:
    """What a broker does with the definitions at start, over AMQP (exchanges, queues, bindings)."""
    channel = connection.channel()
    for exchange in document["exchanges"]:
        Exchange(exchange["name"], type=exchange["type"], durable=exchange["durable"])(channel).declare()
    for queue in document["queues"]:
        Queue(queue["name"], durable=queue["durable"], queue_arguments=queue["arguments"])(channel).declare()
    for bound in document["bindings"]:
        channel.queue_bind(bound["destination"], bound["source"], bound["routing_key"])


def test_a_broker_that_loaded_the_definitions_accepts_the_workers_declarations(settings, prefixed):
    document = definitions(prefixed)
    with Connection(settings.broker_url) as connection:
        _load(connection, document)
        for topology in prefixed:
            topology.declare(connection)  # PRECONDITION_FAILED here would stop every worker at start
        # The check bites: a worker left on classic queues is refused by that broker.
        classic = replace(prefixed[0], queue_type="classic")
        with pytest.raises(PreconditionFailed):
            classic.declare(Connection(settings.broker_url))


def _rabbitmqctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture()
def rabbitmqctl():
    """The broker's own CLI, where this machine lets us use it (root, on the broker's host)."""
    if shutil.which("rabbitmqctl") is None or _rabbitmqctl("list_policies").returncode != 0:
        pytest.skip("rabbitmqctl is not usable here: the definitions' import is not checked")
    return _rabbitmqctl


def test_rabbitmq_imports_the_definitions_and_their_policy_dead_letters_a_poison_message(
        settings, prefixed, rabbitmqctl):
    topology = prefixed[0]  # one consumer: an import costs a second of the broker's CLI
    document = definitions([topology], delivery_limit=2)
    # On stdin: the CLI may run as the broker's user, who cannot read this test's files.
    imported = rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(document))
    assert imported.returncode == 0, imported.stderr
    try:
        with Connection(settings.broker_url) as connection:
            main = next(q for q in topology.queues() if q.name == topology.queue_name)
            deadline = time.monotonic() + 20  # the import is asynchronous; queues come after policies
            while True:
                try:
                    main(connection.channel()).queue_declare(passive=True)
                    break
                except NotFound:  # until the import has created it
                    assert time.monotonic() < deadline, "the import did not create the queues"
                    time.sleep(0.2)
            topology.declare(connection)  # what RabbitMQ made of the file equals what the worker declares
            connection.Producer().publish({"poison": True}, exchange=topology.direct_exchange_name,
                                          routing_key=topology.queue_name, delivery_mode=2)
            queue, dead_letters = main(connection.channel()), topology.dead()(connection.channel())
            handed_out, dead = 0, None
            deadline = time.monotonic() + 20  # a quorum queue takes a moment to take a message back
            while dead is None and time.monotonic() < deadline:
                message = queue.get(no_ack=False)
                if message is not None:  # a consumer dying on it, each time
                    handed_out += 1
                    message.reject(requeue=True)
                else:
                    dead = dead_letters.get(no_ack=True)
                    time.sleep(0.05)
            assert dead is not None and dead.payload == {"poison": True}
            assert handed_out == 3  # the first delivery and two more: delivery-limit 2
    finally:
        rabbitmqctl("clear_policy", f"{topology.queue_name}.poison")


def test_quorum_queues_are_durable_only(settings):
    name = f"{settings.bus_prefix}transient-{uuid.uuid4().hex[:6]}"
    with Connection(settings.broker_url) as connection, pytest.raises(PreconditionFailed, match="non-durable"):
        Queue(name, durable=False, queue_arguments={"x-queue-type": "quorum"})(connection.channel()).declare()


@pytest.fixture()
def db(settings, identity_app):
    database = Database(settings.database_url, max_size=2, name="test-bus-topology").open()
    yield database
    database.close()


def test_an_event_on_quorum_queues_is_retried_then_dead_lettered(settings, db, tenant):
    quorum = replace(settings, bus_queue_type="quorum")
    attempts: list[str] = []

    def handler(uow, envelope):
        attempts.append(envelope["data"]["name"])
        if envelope["data"]["name"] == "poison" or attempts.count(envelope["data"]["name"]) == 1:
            raise RuntimeError("downstream is broken")

    consumer = EventConsumer.from_settings(f"quorum-{uuid.uuid4().hex[:6]}", db, "identity",
                                           {"liaison.test.quorum": handler}, quorum, max_attempts=3, base_delay=0.05)
    assert consumer.topology == ConsumerTopology.from_settings(consumer.name, ["liaison.test.quorum"], quorum)
    with Connection(settings.broker_url) as connection:
        consumer.topology.declare(connection)
    flaky = CloudEvent("liaison.test.quorum", "/test", tenant.id, {"name": "flaky"})
    poison = CloudEvent("liaison.test.quorum", "/test", tenant.id, {"name": "poison"})
    publisher = Publisher.from_settings(settings)
    try:
        publisher.publish_batch([(e.type, e.envelope()) for e in (flaky, poison)])
    finally:
        publisher.close()
    consumer.drain(idle=1.5)
    # flaky failed once, waited in the quorum retry queue, came back and was handled.
    assert attempts.count("flaky") == 2 and attempts.count("poison") == 3
    dead = list_dead(settings.broker_url, consumer.topology)
    assert [d["id"] for d in dead] == [poison.id] and dead[0]["attempts"] == 3
    with Connection(settings.broker_url) as connection:
        for queue in consumer.topology.queues():
            queue(connection.channel()).delete()
