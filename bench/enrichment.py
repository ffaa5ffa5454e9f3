"""enrichment: the social listening feed through POST /v1/social/events against raw COPY of the
same rows, and enrichment jobs (POST /v1/enrichments, the bus, the worker, the providers) against
the provider sandbox alone and a RabbitMQ publish + consume round trip.

identity runs too (enrichment asks it about API keys), and the provider sandbox; all three under
gunicorn with the same settings. The enrichment workers are `python -m services.enrichment.worker`
processes. Everything goes through a bus prefix of this run's own (BUS_PREFIX), so no other
consumer on the broker sees its events, and its queues and exchanges are deleted at the end.

Fixture: contacts exist for enrichment only as its projections of identity's events (consents,
linked handles). They are written here with SQL `INSERT ... SELECT generate_series`: feeding them
through identity's API, outbox and bus would take minutes and is not what is measured.

The jobs run before the feed, so that the workers' outbox relay has only the jobs' events to
carry; the workers are stopped before the feed is measured (relaying the feed's events is the
outbox relay's work, measured by `bench bulk`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests
from amqp.exceptions import NotFound
from kombu import Connection, Consumer, Exchange, Queue

from bench.common import (
    RESULTS,
    ROOT,
    BenchError,
    CpuMeter,
    GunicornSettings,
    Line,
    Server,
    checkpoint,
    compare,
    create_tenant,
    expect,
    fresh_database,
    post_batches,
    process_cpu_seconds,
    profiled,
    say,
    serve,
    server_urls,
    service_env,
)
from services.enrichment import GEOLOCATION, PROFILE_ENRICHMENT
from services.enrichment.jobs import requested_event
from services.enrichment.providers import registry
from services.enrichment.providers.instagram import USER_FIELDS as INSTAGRAM_FIELDS
from services.enrichment.providers.x import USER_FIELDS as X_FIELDS
from services.enrichment.repository.social import EVENT_COLUMNS
from services.enrichment.sentiment import score_mention
from services.enrichment.social import normalize_handle
from shared.bus import ACCEPT, CLOUDEVENTS_CONTENT_TYPE, DIRECT_EXCHANGE, EVENTS_EXCHANGE

IDENTITY_APP = "services.identity.app:create_app()"
ENRICHMENT_APP = "services.enrichment.app:create_app()"
SANDBOX_APP = "sandbox.app:create_app()"
FINISHED = ("completed", "failed", "skipped")
BRAND = "@liaison_brand"
RAW_KEY = "liaison.bench.raw_round_trip"

# Mentions as a listening platform forwards them, English and French, praise, complaints and
# plain remarks, so the sentiment scorer does its real work (negation, intensifiers, emojis).
MENTIONS = (
    "I love the new collection from {brand}, really great quality!",
    "Worst customer service ever, still waiting for my refund {brand} 😡",
    "Just picked up my order from {brand}, the shop was busy today",
    "Not bad at all, the delivery was fast and the staff very helpful",
    "Honestly disappointed, the shoes broke after two weeks. Never again.",
    "Can't wait for the summer sale at {brand} 😍",
    "J'adore la nouvelle boutique {brand}, le personnel est super sympa !",
    "Service client nul, personne ne répond depuis une semaine {brand}",
    "Commande reçue ce matin, rien à signaler",
    "Pas mal du tout, livraison rapide et produit conforme",
    "Vraiment déçu par la qualité, c'est pas terrible {brand}",
    "Merci {brand} pour l'accueil, très bonne expérience 👍",
)
PLACES = (("Lyon Part-Dieu", 45.7605, 4.8597), ("Paris Opéra", 48.8719, 2.3316),
          ("London Covent Garden", 51.5117, -0.1240), ("Bordeaux Sainte-Catherine", 44.8404, -0.5737),
          ("New York SoHo", 40.7233, -74.0030))


# -- the fixture -------------------------------------------------------------------------------
def seed_contacts(database_url: str, tenant_id: str, count: int, handle_prefix: str, networks: list[str],
                  purposes: list[str]) -> dict[int, str]:
    """`count` contacts in enrichment's projections: handle <prefix><n> on each network and a
    granted consent for each purpose. Returns n -> contact id."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "WITH c AS MATERIALIZED (SELECT n, gen_random_uuid() AS id FROM generate_series(0, %(count)s - 1) n),"
            " handles AS (INSERT INTO enrichment.contact_handles (tenant_id, network, handle, contact_id, identity_id)"
            "  SELECT %(tenant)s, net, %(prefix)s || n, id, gen_random_uuid()"
            "  FROM c CROSS JOIN unnest(%(networks)s::text[]) AS net)"
            " INSERT INTO enrichment.contact_consents (tenant_id, contact_id, purpose, status, captured_at)"
            " SELECT %(tenant)s, id, purpose, 'granted', now()"
            " FROM c CROSS JOIN unnest(%(purposes)s::text[]) AS purpose",
            {"count": count, "tenant": tenant_id, "prefix": handle_prefix, "networks": networks,
             "purposes": purposes},
        )
        rows = conn.execute(
            "SELECT substr(handle, %s)::int, contact_id FROM enrichment.contact_handles"
            " WHERE tenant_id = %s AND network = %s AND handle LIKE %s",
            (len(handle_prefix) + 1, tenant_id, networks[0], handle_prefix + "%"),
        ).fetchall()
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE enrichment.contact_handles")
        conn.execute("VACUUM ANALYZE enrichment.contact_consents")
    if len(rows) != count:
        raise BenchError(f"{len(rows)} contacts seeded instead of {count}")
    return {n: str(contact_id) for n, contact_id in rows}


def isolated_env(env: dict[str, str], sandbox_url: str, rate: float, burst: int) -> dict[str, str]:
    """`env` with every provider pointed at the sandbox (scripts.run.sandbox_env) and its rate
    limit raised, so neither a real provider nor our own limiter is what is measured. Provider
    variables inherited from the shell are dropped first: sandbox_env leaves a configured
    provider alone, and a benchmark must never call a real one."""
    from scripts.run import sandbox_env, sandboxed_networks

    env = dict(env)
    adapters = [registry()[network] for network in sorted(registry())]
    for adapter in adapters:
        for var in (adapter.base_url_env, *adapter.credential_env.values()):
            env.pop(var, None)
        env[f"{adapter.env_prefix}_RATE_PER_SECOND"] = str(rate)
        env[f"{adapter.env_prefix}_BURST"] = str(burst)
    env = sandbox_env(env, sandbox_url, adapters)
    if sorted(sandboxed_networks(env, sandbox_url, adapters)) != sorted(registry()):
        raise BenchError("not every provider points at the sandbox")
    return env


# -- the broker --------------------------------------------------------------------------------
def delete_bus(broker_url: str, prefix: str, queues: list[str]) -> None:
    """Deletes this run's queues and its prefixed exchanges."""
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in (f"{prefix}{EVENTS_EXCHANGE}", f"{prefix}{DIRECT_EXCHANGE}"):
            channel.exchange_delete(name)
        channel.close()


def consumers_on(broker_url: str, queue: str) -> int:
    """Consumers attached to `queue` (0 while it does not exist yet)."""
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            return channel.queue_declare(queue, passive=True).consumer_count
        except NotFound:
            return 0


def raw_round_trip(broker_url: str, exchange_name: str, body: bytes, messages: int, confirm_batch: int,
                   prefetch: int) -> Line:
    """kombu alone: a publisher (persistent, confirms waited for per batch, as
    shared.bus.Publisher) and a consumer (prefetch, decode, ack each, as shared.consumer) at once
    through a durable queue of this run. Rate: messages / (first publish .. last ack)."""
    exchange = Exchange(exchange_name, type="topic", durable=True)
    # A routing key of its own: the enrichment workers' queue, bound to job.requested, gets none of these.
    queue = Queue(f"{exchange_name}.raw_round_trip", exchange=exchange, routing_key=RAW_KEY, durable=True)
    with Connection(broker_url, connect_timeout=5) as connection:
        queue(connection.default_channel).declare()

    def publish() -> None:
        acked = 0

        def on_ack(delivery_tag: int, multiple: bool) -> None:
            nonlocal acked
            acked = max(acked, delivery_tag)

        with Connection(broker_url, connect_timeout=5, heartbeat=0) as connection:
            channel = connection.default_channel
            channel.confirm_select()
            channel.events["basic_ack"].add(on_ack)
            producer = connection.Producer(serializer=None)
            sent = 0
            while sent < messages:
                for _ in range(min(confirm_batch, messages - sent)):
                    producer.publish(body, exchange=exchange_name, routing_key=RAW_KEY,
                                     delivery_mode=2, content_type=CLOUDEVENTS_CONTENT_TYPE,
                                     content_encoding="utf-8")
                    sent += 1
                while acked < sent:
                    connection.drain_events(timeout=10)

    consumed = 0

    def on_message(decoded: Any, message: Any) -> None:
        nonlocal consumed
        message.ack()
        consumed += 1

    try:
        with Connection(broker_url, connect_timeout=5, heartbeat=0) as connection, \
                ThreadPoolExecutor(1, thread_name_prefix="raw-publish") as pool:
            with Consumer(connection.default_channel, queues=[queue], callbacks=[on_message], accept=ACCEPT,
                          prefetch_count=prefetch):
                cpu0 = time.process_time()
                started = time.perf_counter()
                published = pool.submit(publish)
                while consumed < messages:
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        if published.done():
                            published.result()  # raises the publisher's error, if it had one
                            raise BenchError(f"raw round trip: {consumed} of {messages} messages came back"
                                             ) from None
                seconds = time.perf_counter() - started
                cpu = time.process_time() - cpu0
                published.result()
    finally:
        with Connection(broker_url, connect_timeout=5) as connection:
            queue(connection.default_channel).delete()
    return Line(f"RabbitMQ alone: kombu publish (confirms per {confirm_batch}) + consume "
                f"(prefetch {prefetch}, ack each)", messages / seconds, "msg/s", cpu_us=cpu / messages * 1e6,
                details={"messages": messages, "seconds": round(seconds, 2), "body_bytes": len(body),
                         "note": "CPU is this process's: publisher and consumer threads"})


# -- the enrichment workers --------------------------------------------------------------------
@contextmanager
def enrichment_workers(env: dict[str, str], count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` processes of `python -m services.enrichment.worker`, stopped (SIGTERM, then
    SIGKILL) when the block ends, whatever happens in it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with open(RESULTS / f"enrichment-worker-{i}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "services.enrichment.worker"], cwd=ROOT, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def wait_consumers(broker_url: str, queue: str, workers: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Until every worker consumes the job queue: a job event published before would be lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in workers:
            if process.poll() is not None:
                raise BenchError(f"an enrichment worker exited with {process.returncode}; see "
                                 f"{RESULTS}/enrichment-worker-*.log")
        if consumers_on(broker_url, queue) >= len(workers):
            return
        time.sleep(0.2)
    raise BenchError(f"the enrichment workers did not all consume {queue} within {timeout:.0f} s")


# -- enrichment jobs ---------------------------------------------------------------------------
def request_jobs(server: Server, key: str, contact_ids: list[str], clients: int) -> tuple[float, list[float]]:
    """POST /v1/enrichments for each contact over `clients` keep-alive sessions at once."""
    headers = {"Authorization": f"Bearer {key}"}
    todo = list(reversed(contact_ids))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def client() -> None:
        session = requests.Session()
        while not failures:
            with lock:
                if not todo:
                    break
                contact_id = todo.pop()
            t0 = time.perf_counter()
            response = session.post(server.url + "/v1/enrichments", json={"contact_id": contact_id},
                                    headers=headers, timeout=30)
            elapsed = time.perf_counter() - t0
            if response.status_code != 202 or response.json().get("status") != "queued":
                failures.append(f"{response.status_code} {response.text[:300]}")
                break
            with lock:
                latencies.append(elapsed)
        session.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"enrich-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise BenchError(f"POST /v1/enrichments failed: {failures[:3]}")
    return seconds, sorted(latencies)


def wait_jobs(database_url: str, tenant_id: str, since: datetime, expected: int, timeout: float,
              workers: list[subprocess.Popen[bytes]]) -> None:
    """Polls enrichment_jobs until the `expected` jobs created since `since` have all ended."""
    deadline = time.monotonic() + timeout
    done = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT count(*) FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND created_at >= %s"
                " AND status = ANY(%s)", (tenant_id, since, list(FINISHED)),
            ).fetchone()[0]
            if done >= expected:
                return
            if any(p.poll() is not None for p in workers):
                raise BenchError(f"an enrichment worker died; see {RESULTS}/enrichment-worker-*.log")
            time.sleep(0.1)
    raise BenchError(f"only {done} of {expected} enrichment jobs ended within {timeout:.0f} s")


def job_figures(database_url: str, tenant_id: str, since: datetime) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) AS jobs, count(*) FILTER (WHERE status = 'completed') AS completed,"
            " max(finished_at) AS last_finished,"
            " sum(jsonb_array_length(providers)) AS calls,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS p99,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS e50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS e99"
            " FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND created_at >= %s",
            (tenant_id, since),
        ).fetchone()
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM enrichment.enrichment_jobs WHERE tenant_id = %s AND created_at >= %s"
            " GROUP BY status", (tenant_id, since)).fetchall())
        answers = dict(conn.execute(
            "SELECT p->>'network' || ':' || (p->>'status'), count(*) FROM enrichment.enrichment_jobs,"
            " jsonb_array_elements(providers) AS p WHERE tenant_id = %s AND created_at >= %s GROUP BY 1",
            (tenant_id, since)).fetchall())
    return {"jobs": row[0], "completed": row[1], "last_finished": row[2], "calls": int(row[3] or 0),
            "p50_s": float(row[4] or 0), "p99_s": float(row[5] or 0), "end_to_end_p50_s": float(row[6] or 0),
            "end_to_end_p99_s": float(row[7] or 0), "statuses": statuses, "answers": answers}


def lookups(handles: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The requests the adapters make for a contact with these X and Instagram handles (the
    FullContact one asks by the X username), as (method, path, keyword arguments)."""
    out = []
    for handle in handles:
        out.append(("GET", f"/2/users/by/username/{handle}",
                    {"params": {"user.fields": X_FIELDS}, "headers": {"Authorization": "Bearer sandbox-token"}}))
        out.append(("GET", "/v19.0/sandbox-token",
                    {"params": {"fields": f"business_discovery.username({handle}){{{INSTAGRAM_FIELDS}}}",
                                "access_token": "sandbox-token"}}))
        out.append(("POST", "/v3/person.enrich",
                    {"json": {"profiles": [{"service": "twitter", "username": handle}]},
                     "headers": {"Authorization": "Bearer sandbox-token"}}))
    return out


def raw_sandbox(sandbox: Server, requests_: list[tuple[str, str, dict[str, Any]]], clients: int) -> Line:
    """The sandbox alone: the jobs' lookups straight from `clients` requests.Session pools (the
    workers call the providers one at a time each, so as many calls are in flight)."""
    todo = list(reversed(requests_))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        session = requests.Session()
        while not failures:
            with lock:
                if not todo:
                    break
                method, path, kwargs = todo.pop()
            response = session.request(method, sandbox.url + path, timeout=30, **kwargs)
            if response.status_code != 200:
                failures.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        session.close()

    cpu0 = sandbox.cpu_seconds()
    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"sandbox-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = sandbox.cpu_seconds() - cpu0
    if failures:
        raise BenchError(f"sandbox lookups failed: {failures[:3]}")
    return Line(f"sandbox alone: the same lookups, {clients} clients (requests.Session)",
                len(requests_) / seconds, "req/s", cpu_us=cpu / len(requests_) * 1e6,
                details={"requests": len(requests_), "seconds": round(seconds, 2),
                         "note": "app CPU is the sandbox's gunicorn workers'"})


def jobs_phase(args: argparse.Namespace, env: dict[str, str], broker_url: str, database_url: str,
               enrichment: Server, sandbox: Server, tenant_id: str, key: str, queue: str) -> list[Line]:
    total, warmup = args.jobs, min(50, args.jobs)
    say(f"seeding {total + warmup:,} contacts with X and Instagram handles and consent (SQL)")
    ids = seed_contacts(database_url, tenant_id, total + warmup, "bj", ["x", "instagram"], [PROFILE_ENRICHMENT])
    warm_ids = [ids[n] for n in range(total, total + warmup)]
    measured_ids = [ids[n] for n in range(total)]

    say(f"raw: the sandbox alone, {3 * total:,} lookups over {args.job_workers} clients")
    sandbox_raw = raw_sandbox(sandbox, lookups([f"bj{n}" for n in range(total)]), args.job_workers)
    say(f"sandbox alone: {sandbox_raw.rate:,.0f} req/s")

    envelope = requested_event(tenant_id, str(uuid.uuid4()), warm_ids[0]).envelope()
    body = json.dumps(envelope, separators=(",", ":")).encode()
    say(f"raw: RabbitMQ publish + consume of {args.round_trip_messages:,} {len(body)}-byte messages")
    bus_raw = raw_round_trip(broker_url, f"{env['BUS_PREFIX']}{EVENTS_EXCHANGE}", body, args.round_trip_messages,
                             confirm_batch=500, prefetch=50)
    say(f"RabbitMQ alone: {bus_raw.rate:,.0f} msg/s")

    worker_env = {**env, "LOG_LEVEL": "WARNING"}
    say(f"starting {args.job_workers} enrichment workers")
    with enrichment_workers(worker_env, args.job_workers) as workers:
        wait_consumers(broker_url, queue, workers)
        say(f"warm-up: {warmup} jobs")
        warm_since = datetime.now(UTC)
        request_jobs(enrichment, key, warm_ids, args.clients)
        wait_jobs(database_url, tenant_id, warm_since, warmup, 60, workers)
        checkpoint(database_url)

        say(f"{total:,} jobs: POST /v1/enrichments over {args.clients} clients, then wait for the workers")
        api_meter = CpuMeter(enrichment, database_url, "enrichment")
        worker_meter = CpuMeter(None, database_url, "enrichment-worker")
        api_meter.start()
        worker_meter.start()
        worker_cpu0 = sum(process_cpu_seconds(p.pid) for p in workers)
        sandbox_cpu0 = sandbox.cpu_seconds()
        since = datetime.now(UTC)
        started = time.perf_counter()
        with profiled(enrichment, "enrichment-jobs-api", args.profile):
            post_seconds, latencies = request_jobs(enrichment, key, measured_ids, args.clients)
            wait_jobs(database_url, tenant_id, since, total, args.jobs_timeout, workers)
        waited = time.perf_counter() - started
        api_cpu, api_pg = api_meter.stop()
        _, worker_pg = worker_meter.stop()
        worker_cpu = sum(process_cpu_seconds(p.pid) for p in workers) - worker_cpu0
        sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu0

    figures = job_figures(database_url, tenant_id, since)
    if figures["completed"] != total:
        raise BenchError(f"{figures['completed']} of {total} jobs completed: {figures['statuses']}, "
                         f"provider answers {figures['answers']}")
    not_ok = {k: v for k, v in figures["answers"].items() if not k.endswith(":ok")}
    if not_ok:
        raise BenchError(f"some providers did not answer ok: {not_ok}")
    seconds = (figures["last_finished"] - since).total_seconds()
    if not 0 < seconds <= waited + 1:
        raise BenchError(f"job timing is off: {seconds:.2f} s from the first request to the last finish, "
                         f"{waited:.2f} s waited")
    calls = figures["calls"]
    suffix = " [PROFILED]" if args.profile else ""
    jobs_line = Line(
        f"enrichment jobs: POST /v1/enrichments -> bus -> {args.job_workers} workers -> "
        f"{calls // total} providers ({total:,} jobs){suffix}",
        total / seconds, "jobs/s", figures["p50_s"] * 1000, figures["p99_s"] * 1000,
        cpu_us=(api_cpu + worker_cpu) / total * 1e6, pg_cpu_us=(api_pg + worker_pg) / total * 1e6,
        target="(information)",
        details={"jobs": total, "seconds": round(seconds, 2), "statuses": figures["statuses"],
                 "provider_answers": figures["answers"], "worker_cpu_us": round(worker_cpu / total * 1e6, 1),
                 "api_cpu_us": round(api_cpu / total * 1e6, 1),
                 "request_to_end_p50_ms": round(figures["end_to_end_p50_s"] * 1000),
                 "request_to_end_p99_ms": round(figures["end_to_end_p99_s"] * 1000),
                 "note": "rate: jobs / (first request .. last job finished); p50/p99: per job, from its claim "
                         "by a worker to its end (request_to_end adds the wait in the queue, which grows "
                         "with the backlog the requests build); CPU: enrichment's gunicorn workers + the "
                         "enrichment workers"},
    )
    compare(jobs_line, bus_raw)
    calls_line = Line(f"enrichment jobs: provider calls to the sandbox ({calls:,} calls)", calls / seconds,
                      "calls/s", cpu_us=worker_cpu / calls * 1e6, target="(information)",
                      details={"calls": calls, "sandbox_cpu_us_per_call": round(sandbox_cpu / calls * 1e6, 1),
                               "note": "app CPU: the enrichment workers' per call"})
    compare(calls_line, sandbox_raw)
    n = len(latencies)
    post_line = Line(f"enrichment POST /v1/enrichments ({args.clients} clients in-process)", n / post_seconds,
                     "req/s", latencies[n // 2] * 1000, latencies[min(n - 1, int(n * 0.99))] * 1000,
                     cpu_us=api_cpu / n * 1e6, target="(information)",
                     details={"requests": n, "seconds": round(post_seconds, 2),
                              "note": "app CPU includes the key checks; the workers run meanwhile"})
    say(f"jobs: {jobs_line.rate:,.0f} jobs/s, {calls_line.rate:,.0f} provider calls/s")
    return [jobs_line, calls_line, sandbox_raw, bus_raw, post_line]


# -- the social listening feed -----------------------------------------------------------------
def feed_events(count: int, contacts: int, seed: int) -> list[dict[str, Any]]:
    """`count` events: 60 % mentions (English and French), 20 % check-ins, 20 % follows; 70 %
    from the seeded contacts' handles (bs<n>, written as a platform might: @, capitals), 30 %
    from unknown ones (the prospects)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    for i in range(count):
        if rng.random() < 0.7:
            n = rng.randrange(contacts)
            handle = rng.choice((f"@bs{n}", f"bs{n}", f"@BS{n}"))
        else:
            handle = f"@fan_{rng.randrange(contacts)}"
        kind = rng.random()
        event: dict[str, Any] = {"network": "x", "handle": handle, "brand_account": BRAND,
                                 "occurred_at": (start + timedelta(seconds=i)).isoformat()}
        if kind < 0.6:
            event.update(type="mention", text=rng.choice(MENTIONS).format(brand=BRAND))
            if handle.startswith("@fan_"):
                event["followers"] = rng.randrange(50, 200_000)
        elif kind < 0.8:
            name, lat, lon = rng.choice(PLACES)
            event.update(type="checkin", place={"name": name, "lat": lat, "lon": lon})
        else:
            event["type"] = "follow"
        events.append(event)
    return events


def copy_text(tenant_id: str, events: list[dict[str, Any]], contact_ids: dict[str, str]) -> tuple[bytes, int]:
    """The rows the feed stores for these events (check-ins of unknown handles are not stored), as
    COPY text in EVENT_COLUMNS order, with the sentiment our scorer gives; and their count."""
    scores: dict[str, Any] = {}
    lines = []
    for event in events:
        handle = normalize_handle(event["handle"])
        contact_id = contact_ids.get(handle)
        if event["type"] == "checkin" and contact_id is None:
            continue
        text = event.get("text")
        sentiment = label = language = None
        if text is not None:
            if text not in scores:
                scores[text] = score_mention(text, None)
            scored = scores[text]
            sentiment, label, language = scored.score, scored.label, scored.language
        place = event.get("place") or {}
        values = (tenant_id, str(uuid.uuid4()), event["type"], "x", handle, contact_id, event["occurred_at"], text,
                  sentiment, label, language, place.get("name"), place.get("lat"), place.get("lon"), BRAND)
        line = "\t".join("\\N" if v is None else str(v) for v in values)
        if "\n" in line or line.count("\t") != len(values) - 1:
            raise BenchError("a feed row needs COPY escaping, which this generator does not do")
        lines.append(line)
    return ("\n".join(lines) + "\n").encode(), len(lines)


def raw_copy(database_url: str, text: bytes, rows: int) -> Line:
    """COPY into bench_raw.social_events, made LIKE enrichment.social_events INCLUDING ALL (same
    columns, defaults, keys and indexes), in one transaction."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw.social_events (LIKE enrichment.social_events INCLUDING ALL)")
    checkpoint(database_url)
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        pg0 = process_cpu_seconds(backend)
        started = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(f"COPY bench_raw.social_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for offset in range(0, len(text), 1 << 20):
                    copy.write(text[offset:offset + (1 << 20)])
        conn.commit()
        seconds = time.perf_counter() - started
        pg_cpu = process_cpu_seconds(backend) - pg0
        count = conn.execute("SELECT count(*) FROM bench_raw.social_events").fetchone()[0]
    if count != rows:
        raise BenchError(f"raw COPY loaded {count} rows of {rows}")
    return Line("PostgreSQL alone: COPY of the same rows into a table like enrichment.social_events",
                rows / seconds, "rows/s", pg_cpu_us=pg_cpu / rows * 1e6,
                details={"seconds": round(seconds, 2), "rows": rows})


def bodies_of(events: list[dict[str, Any]], batch: int) -> list[bytes]:
    return [json.dumps({"events": events[i:i + batch]}, separators=(",", ":")).encode()
            for i in range(0, len(events), batch)]


def feed_phase(args: argparse.Namespace, database_url: str, enrichment: Server, tenant_id: str,
               key: str) -> list[Line]:
    contacts, total, batch = args.contacts, args.events, args.batch
    say(f"seeding {contacts:,} contacts with X handles and consents (SQL)")
    ids = seed_contacts(database_url, tenant_id, contacts, "bs", ["x"], [PROFILE_ENRICHMENT, GEOLOCATION])
    by_handle = {f"bs{n}": contact_id for n, contact_id in ids.items()}

    say(f"preparing {total:,} feed events: request bodies and COPY text (not timed)")
    t0 = time.perf_counter()
    events = feed_events(total, contacts, seed=1)
    bodies = bodies_of(events, batch)
    text, expected = copy_text(tenant_id, events, by_handle)
    unknown_checkins = total - expected
    body_bytes = sum(map(len, bodies))
    del events
    say(f"prepared in {time.perf_counter() - t0:.1f} s ({body_bytes / 1e6:,.0f} MB of JSON)")

    say("raw COPY")
    raw = raw_copy(database_url, text, expected)
    del text
    say(f"raw COPY: {raw.rate:,.0f} rows/s")

    # Warm every gunicorn worker's pool, key cache and code path with other events.
    warm_bodies = bodies_of(feed_events(4 * batch, contacts, seed=2), batch)
    _, warm = post_batches(enrichment, key, "/v1/social/events", warm_bodies, args.streams, expected_status=202)
    warm_accepted = sum(r["accepted"] for _, r in warm)
    checkpoint(database_url)

    say(f"POST /v1/social/events: {len(bodies)} batches of {batch:,} over {args.streams} streams")
    meter = CpuMeter(enrichment, database_url, "enrichment")
    meter.start()
    with profiled(enrichment, "enrichment-feed", args.profile):
        seconds, results = post_batches(enrichment, key, "/v1/social/events", bodies, args.streams,
                                        expected_status=202)
    app_cpu, pg_cpu = meter.stop()
    accepted = sum(r["accepted"] for _, r in results)
    skipped = sum(r["skipped"] for _, r in results)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM enrichment.social_events WHERE tenant_id = %s",
                              (tenant_id,)).fetchone()[0] - warm_accepted
        prospects = conn.execute("SELECT count(*) FROM enrichment.prospects WHERE tenant_id = %s",
                                 (tenant_id,)).fetchone()[0]
        engaged = conn.execute("SELECT count(*) FROM enrichment.profiles WHERE tenant_id = %s"
                               " AND engagement IS NOT NULL", (tenant_id,)).fetchone()[0]
        outbox = conn.execute("SELECT count(*) FROM enrichment.outbox").fetchone()[0]
    if accepted != expected or stored != accepted or skipped != unknown_checkins:
        raise BenchError(f"the feed accepted {accepted} events and stored {stored}, skipped {skipped}; "
                         f"expected {expected} stored and {unknown_checkins} skipped")
    if prospects == 0:
        raise BenchError("the feed turned up no prospect")
    times = sorted(t for t, _ in results)
    line = Line(f"enrichment POST /v1/social/events ({total:,} events, {batch:,}/batch, "
                f"{args.streams} streams){' [PROFILED]' if args.profile else ''}",
                accepted / seconds, "events/s", times[len(times) // 2] * 1000,
                times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
                cpu_us=app_cpu / accepted * 1e6, pg_cpu_us=pg_cpu / accepted * 1e6, target="(information)",
                details={"events": total, "seconds": round(seconds, 2), "stored": stored, "skipped": skipped,
                         "prospects": prospects, "profiles_with_engagement": engaged, "outbox_events": outbox,
                         "request_json_mb": round(body_bytes / 1e6, 1),
                         "sent_events_per_s": round(total / seconds),
                         "note": "rate: events accepted (stored) per second, the rows the COPY writes; "
                                 "sent_events_per_s also counts the check-ins skipped; p50/p99 per batch"})
    compare(line, raw)
    say(f"feed: {line.rate:,.0f} events/s in {seconds:.1f} s ({prospects:,} prospects)")
    return [line, raw]


# -- the benchmark -----------------------------------------------------------------------------
def run(args: argparse.Namespace, settings: GunicornSettings) -> tuple[list[Line], dict[str, Any]]:
    server_url, broker_url = server_urls()
    prefix = f"liaison_bench_{secrets.token_hex(4)}."
    queue = f"{prefix}enrichment"
    lines: list[Line] = []
    with fresh_database(server_url) as database_url:
        # BUS_QUEUE_EXPIRES: should this process die before deleting them, RabbitMQ drops the
        # run's queues once unused for 10 minutes.
        env = service_env(database_url, broker_url, BUS_PREFIX=prefix, BUS_QUEUE_EXPIRES="600")
        try:
            with serve(IDENTITY_APP, env, settings, "identity") as identity:
                tenant_id, key = create_tenant(identity)
                env["IDENTITY_URL"] = identity.url
                with serve(SANDBOX_APP, env, settings, "sandbox") as sandbox:
                    env = isolated_env(env, sandbox.url, args.provider_rate, args.provider_burst)
                    with serve(ENRICHMENT_APP, env, settings, "enrichment") as enrichment:
                        response = requests.get(enrichment.url + "/v1/social/prospects",
                                                headers={"Authorization": f"Bearer {key}"}, timeout=10)
                        expect(response, 200)  # enrichment accepts identity's key
                        if args.jobs:
                            lines += jobs_phase(args, env, broker_url, database_url, enrichment, sandbox,
                                                tenant_id, key, queue)
                        if args.events:
                            lines = feed_phase(args, database_url, enrichment, tenant_id, key) + lines
        finally:
            delete_bus(broker_url, prefix, [queue, f"{queue}.retry", f"{queue}.dead"])
    meta = {"gunicorn": settings.describe(), "events": args.events, "contacts": args.contacts,
            "batch": args.batch, "streams": args.streams, "jobs": args.jobs, "workers": args.job_workers,
            "clients": args.clients, "provider_rate_per_second": args.provider_rate,
            "provider_burst": args.provider_burst,
            "fixture": "enrichment's projections (handles, consents) seeded with SQL INSERT ... SELECT",
            "worker_logs": str(Path(RESULTS) / "enrichment-worker-<n>.log")}
    return lines, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    feed = parser.add_argument_group("the social listening feed")
    feed.add_argument("--events", type=int, default=200_000, help="feed events to post (0: skip the feed)")
    feed.add_argument("--contacts", type=int, default=10_000, help="contacts with an X handle and consents")
    feed.add_argument("--batch", type=int, default=1_000, help="events per request (max 1,000)")
    feed.add_argument("--streams", type=int, default=4, help="batches in flight at once")
    jobs = parser.add_argument_group("enrichment jobs")
    jobs.add_argument("--jobs", type=int, default=2_000, help="enrichment jobs to request (0: skip the jobs)")
    jobs.add_argument("--job-workers", type=int, default=2, metavar="N",
                      help="enrichment worker processes (python -m services.enrichment.worker)")
    jobs.add_argument("--clients", type=int, default=8, help="POST /v1/enrichments in flight at once")
    jobs.add_argument("--jobs-timeout", type=float, default=300.0, help="seconds to wait for the jobs to end")
    jobs.add_argument("--provider-rate", type=float, default=1000.0,
                      help="<PROVIDER>_RATE_PER_SECOND for every provider (raised so our limiter is not measured)")
    jobs.add_argument("--provider-burst", type=int, default=10_000, help="<PROVIDER>_BURST for every provider")
    jobs.add_argument("--round-trip-messages", type=int, default=20_000,
                      help="messages of the raw RabbitMQ publish + consume")
