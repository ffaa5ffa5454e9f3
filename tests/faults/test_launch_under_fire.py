"""A launch of RECIPIENTS (100,000) emails, and in each test one thing goes wrong on the way: a
process killed with SIGKILL, the broker stopped for 30 s, PostgreSQL restarted. Each test ends
with every eligible member's email at the sandbox exactly once (none lost, none twice, repeats
recognised by Message-ID and reported), nothing failed, and every service answering /readyz.

A killed process is started again by the test, as a supervisor would; nothing else is done for
the system: what it does after a restart, a reconnection or a replay is its own recovery."""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import _server_urls
from tests.faults.conftest import RECIPIENTS
from tests.faults.launch import start_launch
from tests.faults.stack import wait_for

BROKER_DOWN_SECONDS = 30


def report(what: str, counts: dict[str, int], started: float) -> None:
    print(f"\n{what}: {counts}; {time.monotonic() - started:.0f} s from the fault to the end")


def test_the_relay_and_launcher_killed_twice(stack, database_url, tenant):
    """The campaigns worker runs the launch (one transaction) and relays the outbox (dispatch and
    delivery events). Killed during the launch, it replays it whole; killed while relaying, it
    publishes again what the broker had not confirmed, which consumers recognise."""
    launch = start_launch(stack, database_url, tenant, RECIPIENTS)
    wait_for(lambda: launch.api("GET", f"/v1/campaigns/{launch.campaign_id}", 200)["status"] == "launching", 30,
             lambda: "the launch never started")
    started = time.monotonic()
    time.sleep(0.5)  # inside the launch's INSERT ... SELECT
    stack.kill("campaigns-worker")
    written = sum(launch.statuses().values())
    assert written in (0, RECIPIENTS), f"a launch is all or nothing: {written} deliveries written"
    stack.start("campaigns-worker")
    launch.wait_sent(RECIPIENTS // 4)
    stack.kill("campaigns-worker")  # the relay is publishing a delivery event per send
    stack.start("campaigns-worker")
    report("relay killed twice", launch.assert_each_eligible_sent_once(), started)


def test_a_channel_worker_killed_mid_batch(stack, database_url, tenant):
    launch = start_launch(stack, database_url, tenant, RECIPIENTS)
    launch.wait_sent(RECIPIENTS // 5)
    started = time.monotonic()
    stack.kill("email-1")  # it holds a batch: some deliveries claimed, some handed to the sink
    stack.start("email-1")
    launch.wait_sent(RECIPIENTS // 2)
    stack.kill("email-2")
    stack.start("email-2")
    report("channel workers killed", launch.assert_each_eligible_sent_once(), started)


def test_the_campaigns_api_killed_as_it_accepts_the_launch(stack, database_url, tenant):
    """The launch's 202 means it was written down (with its event, in the outbox): the API dying
    a moment later loses nothing. Killed again while people poll it, it comes back ready."""
    launch = start_launch(stack, database_url, tenant, RECIPIENTS)
    started = time.monotonic()
    stack.kill("campaigns")
    launch.wait_sent(RECIPIENTS // 5)
    stack.start("campaigns")
    stack.wait_ready()
    stack.kill("identity")  # every API call of campaigns checks its key with identity
    stack.start("identity")
    report("APIs killed", launch.assert_each_eligible_sent_once(), started)


def _local(url: str) -> bool:
    return urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None or not _local(_server_urls()[1])
                    or not _server_urls()[1].startswith("amqp"),
                    reason="needs the local RabbitMQ and rabbitmqctl to stop and start it")
def test_the_broker_stopped_for_30_seconds(stack, database_url, tenant):
    launch = start_launch(stack, database_url, tenant, RECIPIENTS)
    launch.wait_sent(RECIPIENTS // 5)
    started = time.monotonic()
    _rabbitmqctl("stop_app")  # every connection drops; nothing listens on 5672
    try:
        time.sleep(BROKER_DOWN_SECONDS)
        during = launch.sent()
    finally:
        _rabbitmqctl("start_app")
    _rabbitmqctl("await_startup")
    report("broker stopped", launch.assert_each_eligible_sent_once(), started)
    assert during < launch.eligible, "the broker came back before the launch was done"


def _cluster_of(url: str) -> tuple[str, str] | None:
    """The local cluster (version, name) serving `url`'s port, from pg_lsclusters."""
    if shutil.which("pg_lsclusters") is None or not _local(url):
        return None
    port = str(urlsplit(url).port or 5432)
    for line in subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        version, name, cluster_port, status, *_ = line.split()
        if cluster_port == port and status == "online":
            return version, name
    return None


@pytest.mark.skipif(_cluster_of(_server_urls()[0]) is None,
                    reason="needs the local PostgreSQL cluster and pg_ctlcluster to restart it")
def test_postgresql_restarted(stack, database_url, tenant):
    launch = start_launch(stack, database_url, tenant, RECIPIENTS)
    launch.wait_sent(RECIPIENTS // 5)
    version, name = _cluster_of(database_url)  # type: ignore[misc]
    started = time.monotonic()
    # Fast shutdown: every session is cut, open transactions roll back, as in a crash or failover.
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"],
                   check=True, capture_output=True, timeout=120)
    wait_for(lambda: _accepts(database_url), 60, lambda: "PostgreSQL did not come back")
    report("PostgreSQL restarted", launch.assert_each_eligible_sent_once(), started)


def _accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False
