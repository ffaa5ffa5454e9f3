"""webhooks: bus events into deliveries (the worker's consumer) and deliveries to a receiver that
verifies every signature (the worker's dispatcher), each beside the raw speed of RabbitMQ,
PostgreSQL and the receiver measured in the same run.

Intake: `--events` `liaison.campaigns.delivery.updated` CloudEvents of one tenant, whose two
endpoints want them (one by its type, one by the pattern `liaison.campaigns.*`), while 10 other
tenants have 3 endpoints each (`*`, the same type, `liaison.identity.*`) that must get nothing;
published to the run's bus prefix in confirmed batches of 500 (as the outbox relay does) and
consumed by the worker's consumer alone (`python -m bench.webhooks consume`: the worker's own
`build()`, relay and consumer, without the dispatcher, so that sending does not share the CPU with
the intake). Rate: events / (first publish .. the last delivery's created_at).

Dispatch: a second tenant's deliveries (made the same way, then held due in an hour), the real
worker (`python -m services.webhooks.worker`) started, the deliveries made due at once; it sends
them to a receiver of this module (`receiver`, a bare WSGI app under gunicorn gthread that checks
each Liaison-Signature with the function of docs/webhooks.md and logs each delivery id). Rate:
deliveries / (first .. last arrival at the receiver). Then a paced trickle of events (well below
capacity) for the latency from a delivery's creation to its arrival at the receiver.

Endpoints are made with the service's own `services.webhooks.endpoints.create` (checks, sealed
secret), not through the API: the API would add identity and the webhooks web app to the run and
measures nothing here.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg import sql

from bench.common import (
    RESULTS,
    BenchError,
    CpuMeter,
    GunicornSettings,
    Line,
    Server,
    background_processes,
    checkpoint,
    compare,
    fresh_database,
    process_cpu_seconds,
    profiled_processes,
    say,
    serve,
    server_urls,
    service_env,
)

ENDPOINT_PATH = "/liaison/events"
WORKER = ["-m", "services.webhooks.worker"]
CONSUMER_ONLY = ["-m", "bench.webhooks", "consume"]
APPLICATION_NAME = "webhooks-worker"  # the worker's pool, for its PostgreSQL backends' CPU
EVENT_TYPE = "liaison.campaigns.delivery.updated"
SUBSCRIPTIONS = (["liaison.campaigns.delivery.updated"], ["liaison.campaigns.*"])
OTHER_TENANTS = 10
OTHER_SUBSCRIPTIONS = (["*"], ["liaison.campaigns.delivery.updated"], ["liaison.identity.*"])
PUBLISH_BATCH = 500
RECEIVER_DIR_ENV = "WEBHOOK_RECEIVER_DIR"
DELIVERY_COLUMNS = sql.SQL("tenant_id, id, endpoint_id, event_id, event_type, subject, payload, next_attempt_at,"
                           " give_up_at, created_at")
EVERY = sql.SQL("true")
# Attempted, its outcome recorded (a claimed delivery is still pending with no status code).
ATTEMPTED = sql.SQL("status <> 'pending' OR last_status_code IS NOT NULL OR last_error IS NOT NULL")


# -- the receiver (runs under gunicorn: `bench.webhooks:receiver`) -------------------------------
def verify_liaison_signature(secret: str, header: str, body: bytes, tolerance: int = 300,
                             now: float | None = None) -> bool:
    """True when `header` (Liaison-Signature) signs the raw `body` with `secret`, within `tolerance` s.
    docs/webhooks.md's function, as a receiver copies it."""
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


_receiver: dict[str, Any] = {}
_receiver_lock = threading.Lock()


def _received_log() -> int:
    """This process's log of arrivals (one file per gunicorn worker: a line each, appended with
    one write, so the threads' lines never interleave)."""
    with _receiver_lock:
        if _receiver.get("pid") != os.getpid():
            path = Path(os.environ[RECEIVER_DIR_ENV]) / f"received-{os.getpid()}.log"
            _receiver.update(pid=os.getpid(), fd=os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        return _receiver["fd"]


def _secret_of(webhook_id: str) -> str | None:
    known = _receiver.get("secrets") or {}
    if webhook_id not in known:  # endpoints are made after the receiver starts: read them again
        path = Path(os.environ[RECEIVER_DIR_ENV]) / "secrets.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        _receiver["secrets"] = known
    return known.get(webhook_id)


def receiver(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A CRM's webhook receiver reduced to its duty: checks the signature of the raw body, notes
    the delivery id and the time it arrived, answers 200 (400 for a bad signature)."""
    if environ["REQUEST_METHOD"] != "POST":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    arrived = time.time()
    secret = _secret_of(environ.get("HTTP_LIAISON_WEBHOOK_ID", ""))
    ok = secret is not None and verify_liaison_signature(secret, environ.get("HTTP_LIAISON_SIGNATURE", ""), body)
    delivery_id = environ.get("HTTP_LIAISON_DELIVERY_ID", "-")
    # The client's port tells how many TCP connections the sender opened (keep-alive or not).
    port = environ.get("REMOTE_PORT", "0")
    os.write(_received_log(), f"{delivery_id} {int(ok)} {arrived:.6f} {port}\n".encode())
    start_response("200 OK" if ok else "400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok" if ok else b"no"]


def read_arrivals(folder: Path) -> dict[str, list[tuple[bool, float, str]]]:
    """Every arrival the receiver logged, by delivery id: (signature good, unix time, client port)."""
    found: dict[str, list[tuple[bool, float, str]]] = {}
    for path in folder.glob("received-*.log"):
        for entry in path.read_text().splitlines():
            delivery_id, ok, at, port = entry.split(" ")
            found.setdefault(delivery_id, []).append((ok == "1", float(at), port))
    return found


def connections(arrivals: dict[str, list[tuple[bool, float, str]]], ids: Iterable[str]) -> int:
    """TCP connections these deliveries came over (distinct client ports)."""
    return len({port for i in ids for _, _, port in arrivals.get(i, [])})


# -- the consumer alone (a subprocess: `python -m bench.webhooks consume`) -----------------------
def consume_only() -> None:
    """The webhooks worker without its dispatcher and housekeeping: its relay and its consumer,
    built by services.webhooks.worker.build, on a pool of the same size and name."""
    from services.webhooks import SCHEMA
    from services.webhooks.app import MIGRATIONS
    from services.webhooks.worker import build
    from shared import logging as json_logging
    from shared.db import Database
    from shared.migrate import migrate
    from shared.settings import Settings
    from shared.worker import run_worker

    settings = Settings.from_env()
    json_logging.configure("webhooks-consumer-bench", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    db = Database(settings.database_url, min_size=1, max_size=4, name=APPLICATION_NAME).open()
    try:
        relay, consumers = build(settings, db)
        run_worker("webhooks", relay, consumers, [])
    finally:
        db.close()


# -- fixture ------------------------------------------------------------------------------------
def make_endpoints(database_url: str, secret_key: str, url: str, tenant_id: str,
                   subscriptions: Iterable[list[str]]) -> dict[str, str]:
    """Endpoints of `tenant_id` at `url`, one per subscription, made by the service's own code;
    returns {endpoint id: secret}."""
    from services.webhooks import endpoints
    from shared.db import Database

    db = Database(database_url, min_size=1, max_size=1, name="bench-fixture").open()
    made = {}
    try:
        for event_types in subscriptions:
            with db.transaction() as uow:
                view = endpoints.create(uow, endpoints.secret_box(secret_key), tenant_id,
                                        {"url": url, "event_types": event_types, "description": "bench"})
            made[view["id"]] = view["secret"]
    finally:
        db.close()
    return made


def delivery_events(tenant_id: str, count: int) -> list[tuple[str, Any]]:
    """`count` delivery.updated events as campaigns makes them (services.campaigns.sending), in
    their JSON form, ready to publish."""
    from services.campaigns.sending import delivery_event
    from shared.bus import SerializedEvent

    campaigns = [str(uuid.uuid4()) for _ in range(5)]
    statuses = (("sent", None), ("delivered", None), ("failed", "provider_error"), ("suppressed", "no_consent"))
    out = []
    for n in range(count):
        status, reason = statuses[n % len(statuses)]
        envelope = delivery_event({"id": uuid.uuid4(), "tenant_id": tenant_id, "contact_id": uuid.uuid4(),
                                   "campaign_id": campaigns[n % len(campaigns)], "trigger_id": None,
                                   "channel": ("email", "sms")[n % 2], "status": status, "reason": reason}).envelope()
        out.append((EVENT_TYPE, SerializedEvent(envelope["id"], json.dumps(envelope, separators=(",", ":")))))
    return out


def publish(broker_url: str, prefix: str, events: list[tuple[str, Any]]) -> None:
    """In confirmed batches of PUBLISH_BATCH, as shared.outbox's relay publishes."""
    from shared.bus import Publisher

    publisher = Publisher(broker_url, prefix=prefix)
    try:
        for first in range(0, len(events), PUBLISH_BATCH):
            publisher.publish_batch(events[first:first + PUBLISH_BATCH])
    finally:
        publisher.close()


def wait_deliveries(database_url: str, tenant_id: str, expected: int, timeout: float, processes: list[Any],
                    condition: sql.Composable = EVERY) -> None:
    """Until `expected` deliveries of the tenant meet `condition` (EVERY or ATTEMPTED)."""
    deadline = time.monotonic() + timeout
    query = sql.SQL("SELECT count(*) FILTER (WHERE {}) FROM webhooks.deliveries WHERE tenant_id = %s").format(condition)
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            done = conn.execute(query, (tenant_id,)).fetchone()[0]
            if done >= expected:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{done} of {expected} deliveries after {timeout:.0f} s")
            for process in processes:
                if process.poll() is not None:
                    raise BenchError(f"a webhooks process exited with {process.returncode}; see {RESULTS}/*.log")
            time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of seconds, in ms."""
    return {"p50_ms": round(statistics.median(values) * 1000, 1), "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "p99_ms": round(percentile(values, 0.99) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


# -- raw limits ---------------------------------------------------------------------------------
def raw_event_transactions(database_url: str, tenant_id: str, events: int) -> Line:
    """PostgreSQL alone, shaped as the consumer's work: per event one transaction, one
    handled_events row and the event's delivery rows (the same rows, read out first, not timed),
    committed, on one connection. Into bench_raw tables LIKE webhooks' INCLUDING ALL."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw.handled_events (LIKE webhooks.handled_events INCLUDING ALL)")
        conn.execute("CREATE TABLE bench_raw.deliveries (LIKE webhooks.deliveries INCLUDING ALL)")
        rows = conn.execute(
            "SELECT endpoint_id, event_id, event_type, subject, payload FROM webhooks.deliveries"
            " WHERE event_id IN (SELECT DISTINCT event_id FROM webhooks.deliveries WHERE tenant_id = %s"
            " ORDER BY event_id LIMIT %s) AND tenant_id = %s ORDER BY event_id",
            (tenant_id, events, tenant_id)).fetchall()
    by_event: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_event.setdefault(row[1], []).append(row)
    checkpoint(database_url)
    insert_delivery = ("INSERT INTO bench_raw.deliveries (tenant_id, id, endpoint_id, event_id, event_type, subject,"
                       " payload, next_attempt_at, give_up_at, created_at) VALUES (%s, webhooks.time_ordered_id(now()),"
                       " %s, %s, %s, %s, %s, now(), now() + interval '24 hours', now())")
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        pg0 = process_cpu_seconds(backend)
        started = time.perf_counter()
        for event_id, deliveries in by_event.items():
            with conn.cursor() as cur:
                cur.execute("INSERT INTO bench_raw.handled_events (tenant_id, consumer, event_id) VALUES (%s, %s, %s)",
                            (tenant_id, "webhooks", event_id))
                cur.executemany(insert_delivery, [(tenant_id, *row) for row in deliveries])
            conn.commit()
        seconds = time.perf_counter() - started
        pg_cpu = process_cpu_seconds(backend) - pg0
    count = len(by_event)
    per_event = len(rows) // max(1, count)
    return Line(f"PostgreSQL alone: one transaction per event (its handled_events row + its {per_event} delivery rows),"
                " one connection", count / seconds, "events/s", pg_cpu_us=pg_cpu / count * 1e6,
                details={"events": count, "rows": len(rows), "seconds": round(seconds, 2),
                         "note": "the same rows as the intake's, into tables LIKE webhooks' INCLUDING ALL (no "
                                 "foreign key); each commit waits for its WAL flush, as the consumer's does"})


def raw_insert_select(database_url: str, tenant_id: str, rows: int) -> Line:
    """The intake's rows again, all in one INSERT ... SELECT (new ids): the floor of writing them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw.deliveries_bulk (LIKE webhooks.deliveries INCLUDING ALL)")
    checkpoint(database_url)
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        pg0 = process_cpu_seconds(backend)
        started = time.perf_counter()
        written = conn.execute(
            sql.SQL("INSERT INTO bench_raw.deliveries_bulk ({}) SELECT tenant_id, webhooks.time_ordered_id(now()),"
                    " endpoint_id, event_id, event_type, subject, payload, next_attempt_at, give_up_at, created_at"
                    " FROM webhooks.deliveries WHERE tenant_id = %s").format(DELIVERY_COLUMNS), (tenant_id,)).rowcount
        conn.commit()
        seconds = time.perf_counter() - started
        pg_cpu = process_cpu_seconds(backend) - pg0
    if written != rows:
        raise BenchError(f"raw INSERT ... SELECT wrote {written} rows of {rows}")
    return Line("PostgreSQL alone: INSERT ... SELECT of the same delivery rows in one statement", rows / seconds,
                "rows/s", pg_cpu_us=pg_cpu / rows * 1e6, details={"rows": rows, "seconds": round(seconds, 2)})


def raw_receiver(receiver_server: Server, webhook_id: str, secret: str, payload: str, count: int,
                 clients: int) -> Line:
    """The receiver alone: `count` signed POSTs of a delivery's body and headers from `clients`
    threads with a requests.Session each, as many as the dispatcher has in flight."""
    url = receiver_server.url + ENDPOINT_PATH
    body = payload.encode()
    todo = list(range(count))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        session = requests.Session()
        while not failures:
            with lock:
                if not todo:
                    break
                n = todo.pop()
            timestamp = int(time.time())
            signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
            response = session.post(url, data=body, timeout=30, allow_redirects=False, headers={
                "Content-Type": "application/json", "User-Agent": "Liaison-Webhooks/1",
                "Liaison-Webhook-Id": webhook_id, "Liaison-Delivery-Id": f"raw-{n}", "Liaison-Event-Id": f"raw-{n}",
                "Liaison-Event-Type": EVENT_TYPE, "Liaison-Signature": f"t={timestamp},v1={signature}"})
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")
        session.close()

    cpu0 = receiver_server.cpu_seconds()
    client_cpu0 = time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"raw-receiver-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = receiver_server.cpu_seconds() - cpu0
    client_cpu = time.process_time() - client_cpu0
    if failures:
        raise BenchError(f"the receiver refused raw POSTs: {failures[:3]}")
    return Line(f"receiver alone: signed POSTs, {clients} clients (requests.Session each)", count / seconds, "req/s",
                cpu_us=cpu / count * 1e6,
                details={"requests": count, "seconds": round(seconds, 2), "body_bytes": len(body),
                         "client_cpu_us_per_request": round(client_cpu / count * 1e6, 1),
                         "note": "app CPU: the receiver's gunicorn workers (signature check and log line)"})


# -- 1. intake ----------------------------------------------------------------------------------
def intake_phase(args: argparse.Namespace, database_url: str, broker_url: str, prefix: str, tenant_id: str,
                 consumer: Any) -> list[Line]:
    from bench.enrichment import raw_round_trip
    from shared.bus import EVENTS_EXCHANGE

    count = args.events
    events = delivery_events(tenant_id, count)
    expected = count * len(SUBSCRIPTIONS)
    checkpoint(database_url)
    meter = CpuMeter(None, database_url, APPLICATION_NAME)
    meter.start()
    cpu0 = process_cpu_seconds(consumer.pid)
    say(f"intake: publishing {count:,} {EVENT_TYPE} events (confirmed batches of {PUBLISH_BATCH}); the consumer "
        f"writes {expected:,} deliveries")
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    with profiled_processes([consumer.pid], "webhooks-intake", args.profile):
        publish(broker_url, prefix, events)
        publish_seconds = time.perf_counter() - started
        wait_deliveries(database_url, tenant_id, expected, args.timeout, [consumer])
    cpu = process_cpu_seconds(consumer.pid) - cpu0
    _, pg_cpu = meter.stop()
    with psycopg.connect(database_url) as conn:
        last_created = conn.execute("SELECT max(created_at) FROM webhooks.deliveries WHERE tenant_id = %s",
                                    (tenant_id,)).fetchone()[0]
        per_endpoint = [n for (n,) in conn.execute(
            "SELECT count(*) FROM webhooks.deliveries WHERE tenant_id = %s GROUP BY endpoint_id", (tenant_id,))]
        elsewhere = conn.execute("SELECT count(*) FROM webhooks.deliveries WHERE tenant_id <> %s",
                                 (tenant_id,)).fetchone()[0]
    if sorted(per_endpoint) != [count] * len(SUBSCRIPTIONS) or elsewhere:
        raise BenchError(f"deliveries per endpoint {per_endpoint} (expected {count} each), {elsewhere} to other "
                         "tenants' endpoints (expected 0)")
    seconds = (last_created - started_at).total_seconds()
    line = Line(f"webhooks intake: {count:,} events -> bus -> consumer -> {expected:,} deliveries (2 endpoints want "
                f"them, {OTHER_TENANTS * len(OTHER_SUBSCRIPTIONS)} of other tenants do not)"
                f"{' [PROFILED]' if args.profile else ''}", count / seconds, "events/s",
                cpu_us=cpu / count * 1e6, pg_cpu_us=pg_cpu / count * 1e6, target="(information)",
                details={"seconds": round(seconds, 2), "deliveries_per_s": round(expected / seconds),
                         "publish_seconds": round(publish_seconds, 2),
                         "note": "time: first publish -> the last delivery's created_at; CPU per event: the consumer "
                                 "process's (relay + consumer, no dispatcher) and its PostgreSQL backends'"})
    say(f"intake: {line.rate:,.0f} events/s ({expected / seconds:,.0f} deliveries/s), {seconds:.1f} s")

    body = events[0][1].body.encode()
    say(f"raw: RabbitMQ publish + consume of {args.raw_messages:,} {len(body)}-byte events")
    bus = raw_round_trip(broker_url, f"{prefix}{EVENTS_EXCHANGE}", body, args.raw_messages, confirm_batch=PUBLISH_BATCH,
                         prefetch=50)
    say(f"raw: PostgreSQL, {min(count, args.raw_transactions):,} events one transaction each, then one INSERT ... "
        f"SELECT of {expected:,} rows")
    pg_events = raw_event_transactions(database_url, tenant_id, min(count, args.raw_transactions))
    pg_bulk = raw_insert_select(database_url, tenant_id, expected)
    say(f"RabbitMQ alone {bus.rate:,.0f} msg/s; PostgreSQL alone {pg_events.rate:,.0f} events/s one transaction "
        f"each, {pg_bulk.rate:,.0f} rows/s in one INSERT ... SELECT")
    compare(line, pg_events)
    return [line, pg_events, pg_bulk, bus]


# -- 2. dispatch --------------------------------------------------------------------------------
def dispatch_phase(args: argparse.Namespace, env: dict[str, str], database_url: str, broker_url: str, prefix: str,
                   tenant_id: str, endpoints_made: dict[str, str], receiver_server: Server, folder: Path
                   ) -> list[Line]:
    from bench.campaigns import wait_consumers
    from shared.bus import Publisher

    count_events = math.ceil(args.deliveries / len(SUBSCRIPTIONS))
    count = count_events * len(SUBSCRIPTIONS)
    say(f"dispatch: {count_events:,} events -> {count:,} deliveries by the consumer alone, then held due in an hour")
    consumer_env = {**env, "LOG_LEVEL": "WARNING"}
    with background_processes(consumer_env, [CONSUMER_ONLY], "webhooks-consumer-dispatch") as consumers:
        wait_consumers(broker_url, f"{prefix}webhooks", 1, consumers)
        publish(broker_url, prefix, delivery_events(tenant_id, count_events))
        wait_deliveries(database_url, tenant_id, count, args.timeout, consumers)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE webhooks.deliveries SET next_attempt_at = now() + interval '1 hour' WHERE tenant_id = %s",
                     (tenant_id,))
        conn.execute("VACUUM ANALYZE webhooks.deliveries")
        payload = conn.execute("SELECT payload FROM webhooks.deliveries WHERE tenant_id = %s LIMIT 1",
                               (tenant_id,)).fetchone()[0]
    checkpoint(database_url)

    webhook_id, secret = next(iter(endpoints_made.items()))
    raw_count = args.raw_requests
    say(f"raw: the receiver alone, {raw_count:,} signed POSTs over {args.concurrency} clients")
    raw = raw_receiver(receiver_server, webhook_id, secret, payload, raw_count, args.concurrency)
    say(f"receiver alone: {raw.rate:,.0f} req/s")

    worker_env = {**env, "LOG_LEVEL": "WARNING", "WEBHOOK_CONCURRENCY": str(args.concurrency)}
    with background_processes(worker_env, [WORKER], "webhooks-worker") as (worker,):
        wait_consumers(broker_url, f"{prefix}webhooks", 1, [worker])
        time.sleep(1.5)  # its dispatcher has run once (nothing due) and its pool is open
        meter = CpuMeter(None, database_url, APPLICATION_NAME)
        meter.start()
        cpu0 = process_cpu_seconds(worker.pid)
        receiver_cpu0 = receiver_server.cpu_seconds()
        say(f"dispatch: {count:,} deliveries due now; the worker sends them (WEBHOOK_CONCURRENCY={args.concurrency})")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE tenant_id = %s", (tenant_id,))
        with profiled_processes([worker.pid], "webhooks-dispatch", args.profile):
            wait_deliveries(database_url, tenant_id, count, args.timeout, [worker],
                            ATTEMPTED)
        cpu = process_cpu_seconds(worker.pid) - cpu0
        receiver_cpu = receiver_server.cpu_seconds() - receiver_cpu0
        _, pg_cpu = meter.stop()
        with psycopg.connect(database_url) as conn:
            backlog_ids = {str(i) for (i,) in conn.execute("SELECT id FROM webhooks.deliveries WHERE tenant_id = %s",
                                                           (tenant_id,))}
            since = conn.execute("SELECT now()").fetchone()[0]

        paced = args.paced_events
        say(f"latency: {paced} events at {args.paced_rate:g}/s ({paced * len(SUBSCRIPTIONS)} deliveries), each "
            "published alone")
        events = delivery_events(tenant_id, paced)
        publisher = Publisher(broker_url, prefix=prefix)
        try:
            began = time.perf_counter()
            for n, event in enumerate(events):
                pause = began + n / args.paced_rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                publisher.publish_batch([event])
        finally:
            publisher.close()
        wait_deliveries(database_url, tenant_id, count + paced * len(SUBSCRIPTIONS), args.timeout, [worker],
                        ATTEMPTED)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT id, status, created_at, delivered_at FROM webhooks.deliveries"
                            " WHERE tenant_id = %s", (tenant_id,)).fetchall()
        attempts = conn.execute(
            "SELECT a.duration_ms, a.at FROM webhooks.attempts a JOIN webhooks.deliveries d"
            " ON d.tenant_id = a.tenant_id AND d.id = a.delivery_id WHERE d.tenant_id = %s AND d.created_at < %s",
            (tenant_id, since)).fetchall()
    durations = [d for d, _ in attempts]
    # Each claimed batch stamps its attempts with the time of its claim: one distinct `at` a batch.
    batches = len({at for _, at in attempts})
    arrivals = read_arrivals(folder)
    statuses: dict[str, int] = {}
    for _, status, _, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    ids = {str(i) for i, _, _, _ in rows}
    duplicates = sum(len(arrivals[i]) - 1 for i in ids if i in arrivals)
    bad = sum(1 for seen in arrivals.values() for ok, _, _ in seen if not ok)
    missing = sum(1 for i in ids if not any(ok for ok, _, _ in arrivals.get(i, [])))
    if statuses.get("succeeded") != len(rows) or duplicates or bad or missing:
        raise BenchError(f"deliveries {statuses}; at the receiver: {duplicates} duplicates, {bad} bad signatures, "
                         f"{missing} never received")

    first = {i: min(t for _, t, _ in arrivals[i]) for i in ids}
    backlog_times = sorted(first[i] for i in backlog_ids)
    seconds = backlog_times[-1] - backlog_times[0]
    service_lag = [(delivered - created).total_seconds() for i, _, created, delivered in rows if str(i) in backlog_ids]
    stamped = sorted(delivered for i, _, _, delivered in rows if str(i) in backlog_ids)
    line = Line(f"webhooks dispatch: {count:,} due deliveries -> receiver (signatures checked), 1 worker, "
                f"WEBHOOK_CONCURRENCY={args.concurrency}{' [PROFILED]' if args.profile else ''}", count / seconds,
                "deliveries/s", cpu_us=cpu / count * 1e6, pg_cpu_us=pg_cpu / count * 1e6, target="(information)",
                details={"seconds": round(seconds, 2), "duplicates": duplicates, "bad_signatures": bad,
                         "rate_by_delivered_at": round(count / max(1e-9, (stamped[-1] - stamped[0]).total_seconds())),
                         "attempt_duration_ms": {"p50": statistics.median(durations),
                                                 "p95": percentile(durations, 0.95),
                                                 "mean": round(statistics.mean(durations), 1)} if durations else None,
                         "batches": batches, "batch_cycle_ms": round(seconds / max(1, batches - 1) * 1000, 1),
                         "backlog_created_to_delivered_at": spread(service_lag),
                         "receiver_cpu_us_per_delivery": round(receiver_cpu / count * 1e6, 1),
                         "tcp_connections": connections(arrivals, backlog_ids),
                         "note": "time: first .. last arrival at the receiver (its clock); the deliveries were made "
                                 "before the worker started and all made due at once (a backlog), so their "
                                 "creation -> delivered times are queueing, not latency; CPU per delivery: the "
                                 "worker process's and its PostgreSQL backends'"})
    raw.details["tcp_connections"] = connections(arrivals, (i for i in arrivals if i.startswith("raw-")))
    compare(line, raw)
    say(f"dispatch: {line.rate:,.0f} deliveries/s, {cpu / count * 1e6:,.0f} µs worker CPU and "
        f"{pg_cpu / count * 1e6:,.0f} µs PostgreSQL CPU per delivery, over {line.details['tcp_connections']:,} TCP "
        f"connections (receiver alone: {raw.details['tcp_connections']:,}); 0 duplicates, 0 bad signatures")

    paced_rows = [(str(i), created, delivered) for i, _, created, delivered in rows if str(i) not in backlog_ids]
    to_receiver = [first[i] - created.timestamp() for i, created, _ in paced_rows]
    to_stamp = [(delivered - created).total_seconds() for _, created, delivered in paced_rows]
    figures = spread(to_receiver)
    latency = Line(f"webhooks latency: delivery created -> at the receiver, {paced} events at {args.paced_rate:g}/s "
                   f"({len(paced_rows)} deliveries)", None, "ms", p50_ms=figures["p50_ms"],
                   p99_ms=figures["p99_ms"], target="(information)",
                   details={**figures, "samples": len(paced_rows), "service_created_to_delivered_at": spread(to_stamp),
                            "note": "created_at is the consumer's transaction time, the arrival the receiver's clock "
                                    "(one machine); delivered_at is the time the dispatcher claimed the batch (what "
                                    "liaison_webhook_delivery_lag_seconds observes), before the request is sent"})
    say(f"latency: p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, max {figures['max_ms']:.0f} ms")
    return [line, raw, latency]


# -- the benchmark ------------------------------------------------------------------------------
def run(args: argparse.Namespace, settings: GunicornSettings) -> tuple[list[Line], dict[str, Any]]:
    from bench.campaigns import delete_bus, wait_consumers
    from services.webhooks import SCHEMA
    from services.webhooks.app import MIGRATIONS
    from shared.migrate import migrate

    server_url, broker_url = server_urls()
    prefix = f"liaison_bench_{secrets.token_hex(4)}."
    receiver_settings = GunicornSettings(workers=2, worker_class="gthread", threads=max(8, args.concurrency),
                                         extra=settings.extra)
    queues = [f"{prefix}webhooks{suffix}" for suffix in ("", ".retry", ".dead")]
    lines: list[Line] = []
    with fresh_database(server_url) as database_url, tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        env = service_env(database_url, broker_url, BUS_PREFIX=prefix, BUS_QUEUE_EXPIRES="600",
                          **{RECEIVER_DIR_ENV: folder})
        migrate(database_url, SCHEMA, MIGRATIONS)
        try:
            with serve("bench.webhooks:receiver", env, receiver_settings, "webhooks-receiver") as receiver_server:
                url = receiver_server.url + ENDPOINT_PATH
                intake_tenant, dispatch_tenant = str(uuid.uuid4()), str(uuid.uuid4())
                made = make_endpoints(database_url, env["LIAISON_SECRET_KEY"], url, intake_tenant, SUBSCRIPTIONS)
                dispatch_endpoints = make_endpoints(database_url, env["LIAISON_SECRET_KEY"], url, dispatch_tenant,
                                                    SUBSCRIPTIONS)
                made.update(dispatch_endpoints)
                for _ in range(OTHER_TENANTS):
                    made.update(make_endpoints(database_url, env["LIAISON_SECRET_KEY"], url, str(uuid.uuid4()),
                                               OTHER_SUBSCRIPTIONS))
                (Path(folder) / "secrets.json").write_text(json.dumps(made))
                consumer_env = {**env, "LOG_LEVEL": "WARNING"}
                if args.events:
                    with background_processes(consumer_env, [CONSUMER_ONLY], "webhooks-consumer") as (consumer,):
                        wait_consumers(broker_url, f"{prefix}webhooks", 1, [consumer])
                        lines += intake_phase(args, database_url, broker_url, prefix, intake_tenant, consumer)
                    with psycopg.connect(database_url, autocommit=True) as conn:
                        # The intake's deliveries are not the dispatcher's to send.
                        conn.execute("DELETE FROM webhooks.deliveries WHERE tenant_id = %s", (intake_tenant,))
                        conn.execute("DROP SCHEMA IF EXISTS bench_raw CASCADE")
                if args.deliveries:
                    lines += dispatch_phase(args, env, database_url, broker_url, prefix, dispatch_tenant,
                                            dispatch_endpoints, receiver_server, Path(folder))
        finally:
            delete_bus(broker_url, prefix, queues)
    meta = {"events": args.events, "deliveries": args.deliveries, "concurrency": args.concurrency,
            "receiver_gunicorn": receiver_settings.describe(),
            "fixture": "endpoints made with services.webhooks.endpoints.create; events shaped by "
                       "services.campaigns.sending.delivery_event",
            "worker_logs": str(RESULTS / "webhooks-*.log")}
    return lines, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    intake = parser.add_argument_group("the intake")
    intake.add_argument("--events", type=int, default=50_000, help="events published to the consumer (0: skip)")
    intake.add_argument("--raw-messages", type=int, default=20_000, help="messages of the raw RabbitMQ round trip")
    intake.add_argument("--raw-transactions", type=int, default=10_000,
                        help="events of the raw PostgreSQL one-transaction-per-event line")
    dispatch = parser.add_argument_group("the dispatch")
    dispatch.add_argument("--deliveries", type=int, default=20_000, help="deliveries sent by the worker (0: skip)")
    dispatch.add_argument("--concurrency", type=int, default=8, help="WEBHOOK_CONCURRENCY of the worker, and the "
                          "clients of the receiver-alone line")
    dispatch.add_argument("--raw-requests", type=int, default=10_000, help="POSTs of the receiver-alone line")
    dispatch.add_argument("--paced-events", type=int, default=300, help="events of the latency line (2 deliveries "
                          "each)")
    dispatch.add_argument("--paced-rate", type=float, default=30.0, help="events per second of the latency line")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each phase's deliveries")


if __name__ == "__main__":
    if sys.argv[1:] != ["consume"]:
        sys.exit("usage: python -m bench.webhooks consume  (the webhooks consumer alone; `python -m bench webhooks` "
                 "runs the benchmark)")
    consume_only()
