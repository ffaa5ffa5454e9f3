"""campaigns: the launch of a campaign to 1,000,000 recipients, the channel workers' dispatch rate
against the sandbox, and the latency from a check-in to its triggered SMS; each beside the raw
PostgreSQL and RabbitMQ figures measured in the same run.

identity (API keys), campaigns and the channel sandbox run under gunicorn (the sandbox with
the Procfile's 2 gthread workers x 8 threads); the campaigns worker, the channel workers and,
for the check-ins, enrichment and its worker too. Everything goes through a bus prefix of this
run's own (BUS_PREFIX), whose queues and exchanges are deleted at the end; the sandbox keeps its
outbox in a SQLite file of its own (SANDBOX_STORE in a temporary directory), and its SMS status
callbacks are off (SANDBOX_SMS_CALLBACK_DELAY=off) so that they add no load.

Fixture: the audience is campaigns' projection of identity's and enrichment's events; it is
written with SQL `INSERT ... SELECT generate_series` (as `bench segments` does): feeding a million
contacts through identity, enrichment and the bus would take many minutes and is not what is
measured. Each measurement has a tenant of its own.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import select
import smtplib
import socket
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psutil
import psycopg
import requests
from amqp.exceptions import NotFound
from kombu import Connection, Consumer, Exchange, Queue
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
    create_tenant,
    expect,
    free_port,
    fresh_database,
    process_cpu_seconds,
    profiled_processes,
    say,
    serve,
    server_urls,
    service_env,
)
from bench.enrichment import consumers_on, raw_round_trip
from services.campaigns import dispatch, sending
from services.campaigns.channels.sms import SANDBOX_FROM
from services.enrichment import GEOLOCATION
from shared.bus import ACCEPT, CLOUDEVENTS_CONTENT_TYPE, DIRECT_EXCHANGE, EVENTS_EXCHANGE
from shared.events import CloudEvent

IDENTITY_APP = "services.identity.app:create_app()"
CAMPAIGNS_APP = "services.campaigns.app:create_app()"
ENRICHMENT_APP = "services.enrichment.app:create_app()"
SANDBOX_APP = "sandbox.app:create_app()"
CAMPAIGNS_WORKER = ["-m", "services.campaigns.worker"]
ENRICHMENT_WORKER = ["-m", "services.enrichment.worker"]
SMS_WORKER = ["-m", "services.campaigns.channel_worker", "--channels", "sms"]
FINAL = ("sent", "delivered", "failed", "suppressed")
BRAND = "@liaison_brand"
SHOP = ("Lyon Part-Dieu", 45.7605, 4.8597)  # the trigger's geofence; check-ins land 30 m from it
LAUNCH_TARGET_S = 60.0
RSS_TARGET_MB = 300.0
LATENCY_TARGET_MS = 1000.0
RAW_CLIENTS = 16
EMAIL_WORKER = ["-m", "services.campaigns.channel_worker", "--channels", "email"]

EMAIL_CONTENT = {"subject": "{{ contact.first_name }}, the winter collection is in",
                 "body": "Hello {{ contact.first_name }},\n\nOur winter collection is in the shops and online: "
                         "{{ link(\"https://shop.example/winter\") }}\n\nSee you soon!"}
SMS_BODY = "Hi {{ contact.first_name }}, -20% this weekend only: {{ link(\"https://shop.example/weekend\") }}"

# The launch's audience: a realistic mix. 97 % with an email address, 60 % with a mobile number;
# time zones of 8 countries; 0.5 % on identity's suppression list. random() per row (the lateral
# names n, so PostgreSQL evaluates it for each row), seeded first: every run has the same rows.
SEED_AUDIENCE = """
INSERT INTO campaigns.audience (tenant_id, contact_id, contact_version, email, phone, first_name, last_name, locale,
                                timezone, attributes, suppressed, country, demographics_at)
SELECT %(tenant)s, gen_random_uuid(), now(),
       CASE WHEN r.email < 0.97 THEN 'c' || n || '@example.com' END,
       CASE WHEN r.phone < %(phone_share)s THEN '+3361' || lpad((n %% 10000000)::text, 7, '0') END,
       (ARRAY['Jeanne', 'Louis', 'Amina', 'Kenji', 'Sofia', 'Mateo', 'Olga', 'Noah', 'Chloé', 'Ravi'])[1 + n %% 10],
       (ARRAY['Martin', 'Dubois', 'Tanaka', 'Rossi', 'García', 'Müller', 'Diallo'])[1 + n %% 7],
       (ARRAY['fr-FR', 'en-GB', 'en-US', 'de-DE', 'es-ES', 'it-IT', 'ja-JP', 'pt-BR'])[1 + n %% 8],
       (ARRAY['Europe/Paris', 'Europe/London', 'America/New_York', 'Europe/Berlin', 'Europe/Madrid',
              'Europe/Rome', 'Asia/Tokyo', 'America/Sao_Paulo'])[1 + n %% 8],
       jsonb_build_object('segment', (ARRAY['prospect', 'customer', 'vip', 'churned', 'partner'])[1 + n %% 5],
                          'lifetime_value', (n * 37) %% 5000),
       r.suppressed < %(suppressed_share)s,
       (ARRAY['FR', 'GB', 'US', 'DE', 'ES', 'IT', 'JP', 'BR'])[1 + n %% 8], now() - interval '10 days'
FROM generate_series(1, %(count)s) AS n
CROSS JOIN LATERAL (SELECT random() AS email, random() AS phone, random() AS suppressed, n AS row_number) AS r
"""
# Consents: email marketing granted to 70 % (a twentieth of those expired since), withdrawn by
# 5 %; SMS marketing granted to `sms_share` of the audience.
SEED_CONSENTS = """
INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, record_id, captured_at, expires_at)
SELECT a.tenant_id, a.contact_id, p.purpose,
       CASE WHEN p.purpose = 'email_marketing' AND r.x >= 0.70 THEN 'withdrawn' ELSE 'granted' END,
       gen_random_uuid(), now() - interval '200 days',
       CASE WHEN p.purpose = 'email_marketing' AND r.x < 0.035 THEN now() - interval '1 day' END
FROM campaigns.audience a
CROSS JOIN LATERAL (SELECT random() AS x, random() AS y, a.contact_id) AS r
CROSS JOIN LATERAL (VALUES ('email_marketing'), ('sms_marketing')) AS p(purpose)
WHERE a.tenant_id = %(tenant)s
  AND ((p.purpose = 'email_marketing' AND r.x < 0.75) OR (p.purpose = 'sms_marketing' AND r.y < %(sms_share)s))
"""


# -- shared pieces -----------------------------------------------------------------------------
def seed_audience(database_url: str, tenant_id: str, count: int, phone_share: float, sms_share: float,
                  suppressed_share: float) -> float:
    """The fixture, VACUUM ANALYZEd; returns the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(SEED_AUDIENCE, {"tenant": tenant_id, "count": count, "phone_share": phone_share,
                                     "suppressed_share": suppressed_share})
        conn.execute(SEED_CONSENTS, {"tenant": tenant_id, "sms_share": sms_share})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE campaigns.audience")
        conn.execute("VACUUM ANALYZE campaigns.audience_consents")
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def api(server: Server, key: str, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
    response = requests.request(method, server.url + path, headers={"Authorization": f"Bearer {key}"},
                                timeout=30, **kwargs)
    expect(response, status)
    return response.json()


def campaign_for(campaigns: Server, key: str, name: str, channels: list[str]) -> str:
    """A segment of the tenant's whole audience and a draft campaign to it: first_eligible, no
    quiet hours, no frequency cap. Returns the campaign's id."""
    segment = api(campaigns, key, "POST", "/v1/segments", 201, json={"name": f"{name}: everyone", "rules": {"all": []}})
    content = {"email": EMAIL_CONTENT, "sms": {"body": SMS_BODY}}
    campaign = api(campaigns, key, "POST", "/v1/campaigns", 201, json={
        "name": name, "segment_id": segment["id"], "channels": channels, "strategy": "first_eligible",
        "content": {channel: content[channel] for channel in channels},
    })
    return campaign["id"]


def wait_status(campaigns: Server, key: str, campaign_id: str, statuses: tuple[str, ...], timeout: float,
                workers: list[Any], poll: float = 0.1) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        campaign = api(campaigns, key, "GET", f"/v1/campaigns/{campaign_id}", 200)
        if campaign["status"] in statuses:
            return campaign
        for process in workers:
            if process.poll() is not None:
                raise BenchError(f"a worker exited with {process.returncode}; see {RESULTS}/*.log")
        time.sleep(poll)
    raise BenchError(f"campaign {campaign_id} not {' or '.join(statuses)} after {timeout:.0f} s")


def wait_consumers(broker_url: str, queue: str, count: int, workers: list[Any], timeout: float = 60) -> None:
    """Until `count` consumers take `queue`: an event published before would go nowhere."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in workers:
            if process.poll() is not None:
                raise BenchError(f"a worker exited with {process.returncode}; see {RESULTS}/*.log")
        if consumers_on(broker_url, queue) >= count:
            return
        time.sleep(0.2)
    raise BenchError(f"{count} consumers did not take {queue} within {timeout:.0f} s")


def wait_outbox_empty(database_url: str, schema: str, timeout: float) -> float:
    """Until the relay has published everything in `schema`'s outbox; returns the seconds waited."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.perf_counter() - started < timeout:
            query = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {}.outbox)").format(sql.Identifier(schema))
            if conn.execute(query).fetchone()[0]:
                return time.perf_counter() - started
            time.sleep(0.1)
    raise BenchError(f"{schema}'s outbox not relayed within {timeout:.0f} s")


def delete_bus(broker_url: str, prefix: str, queues: list[str]) -> None:
    """Deletes this run's queues (those that exist) and its prefixed exchanges."""
    with Connection(broker_url, connect_timeout=5) as connection:
        for name in queues:
            channel = connection.channel()
            try:
                channel.queue_delete(name)
            except NotFound:
                pass  # never declared in this run: a NotFound closes the channel, so one per queue
            finally:
                if channel.is_open:
                    channel.close()
        channel = connection.channel()
        for name in (f"{prefix}{EVENTS_EXCHANGE}", f"{prefix}{DIRECT_EXCHANGE}"):
            channel.exchange_delete(name)
        channel.close()


class RssSampler:
    """Peak resident memory of a process and its children, sampled every `interval` seconds on a
    thread of its own; `mark()` notes the peak so far (the launch's), sampling goes on."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.marked: int | None = None
        self.first = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def mark(self) -> int:
        self.peak = max(self.peak, self.rss())
        self.marked = self.peak
        return self.marked

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# -- 1. the launch -----------------------------------------------------------------------------
DELIVERY_COLUMNS = sql.SQL("tenant_id, id, campaign_id, contact_id, channel, status, reason, address, send_after,"
                           " created_at")


def raw_insert_select(database_url: str, tenant_id: str, campaign_id: str, rows: int) -> Line:
    """INSERT ... SELECT of the launch's rows (ids made anew by the same campaigns.uuid7()) into
    bench_raw.deliveries, made LIKE campaigns.deliveries INCLUDING ALL (same keys and indexes):
    the writing alone, without the segment, the eligibility or the dispatch events."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw.deliveries (LIKE campaigns.deliveries INCLUDING ALL)")
    checkpoint(database_url)
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        pg0 = process_cpu_seconds(backend)
        started = time.perf_counter()
        written = conn.execute(sql.SQL(
            "INSERT INTO bench_raw.deliveries ({}) SELECT tenant_id, campaigns.uuid7(), campaign_id, contact_id,"
            " channel, status, reason, address, send_after, created_at FROM campaigns.deliveries"
            " WHERE tenant_id = %s AND campaign_id = %s").format(DELIVERY_COLUMNS),
            (tenant_id, campaign_id),
        ).rowcount
        conn.commit()
        seconds = time.perf_counter() - started
        pg_cpu = process_cpu_seconds(backend) - pg0
    if written != rows:
        raise BenchError(f"raw INSERT ... SELECT wrote {written} rows of {rows}")
    return Line("PostgreSQL alone: INSERT ... SELECT of the same rows into a table like campaigns.deliveries",
                rows / seconds, "rows/s", pg_cpu_us=pg_cpu / rows * 1e6,
                details={"seconds": round(seconds, 2), "rows": rows})


def raw_copy(database_url: str, tenant_id: str, campaign_id: str, rows: int) -> Line:
    """COPY of the launch's rows (read out first, not timed) into bench_raw.deliveries_copy, made
    LIKE campaigns.deliveries INCLUDING ALL, in one transaction."""
    chunks: list[bytes] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw.deliveries_copy (LIKE campaigns.deliveries INCLUDING ALL)")
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY (SELECT {} FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s)"
                                  " TO STDOUT").format(DELIVERY_COLUMNS), (tenant_id, campaign_id)) as copy:
                chunks = [bytes(chunk) for chunk in copy]
    checkpoint(database_url)
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        pg0 = process_cpu_seconds(backend)
        started = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY bench_raw.deliveries_copy ({}) FROM STDIN").format(DELIVERY_COLUMNS)) as copy:
                for chunk in chunks:
                    copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        pg_cpu = process_cpu_seconds(backend) - pg0
        count = conn.execute("SELECT count(*) FROM bench_raw.deliveries_copy").fetchone()[0]
    if count != rows:
        raise BenchError(f"raw COPY loaded {count} rows of {rows}")
    return Line("PostgreSQL alone: COPY of the same rows into a table like campaigns.deliveries",
                rows / seconds, "rows/s", pg_cpu_us=pg_cpu / rows * 1e6,
                details={"seconds": round(seconds, 2), "rows": rows, "copy_mb": round(sum(map(len, chunks)) / 1e6)})


def dispatch_counter(broker_url: str, prefix: str) -> Queue:
    """A queue of this run bound to every dispatch event: the launch's dispatch events are counted
    there (no channel worker runs during the launch, so no channel queue exists yet)."""
    queue = Queue(f"{prefix}bench.dispatch_count", exchange=Exchange(f"{prefix}{EVENTS_EXCHANGE}", type="topic",
                                                                     durable=True),
                  routing_key="liaison.campaigns.dispatch.*", durable=True)
    with Connection(broker_url, connect_timeout=5) as connection:
        queue(connection.default_channel).declare()
    return queue


def launch_phase(args: argparse.Namespace, database_url: str, broker_url: str, prefix: str, identity: Server,
                 campaigns: Server, worker: Any) -> tuple[list[Line], dict[str, Any]]:
    tenant_id, key = create_tenant(identity, "bench-launch")
    count = args.recipients
    say(f"launch: seeding {count:,} audience rows and their consents (SQL)")
    seeded = seed_audience(database_url, tenant_id, count, phone_share=0.6, sms_share=0.35, suppressed_share=0.005)
    say(f"seeded in {seeded:.1f} s")
    campaign_id = campaign_for(campaigns, key, "Winter collection", ["email", "sms"])
    counter = dispatch_counter(broker_url, prefix)
    checkpoint(database_url)

    sampler = RssSampler(worker.pid)
    sampler.start()
    try:
        meter = CpuMeter(None, database_url, "campaigns-worker")
        meter.start()
        worker_cpu0 = process_cpu_seconds(worker.pid)
        say(f"launch: POST /v1/campaigns/{{id}}/launch, then GET until running ({count:,} recipients)")
        started = time.perf_counter()
        with profiled_processes([worker.pid], "campaigns-launch", args.profile):
            answer = api(campaigns, key, "POST", f"/v1/campaigns/{campaign_id}/launch", 202)
            if answer["status"] != "launching":
                raise BenchError(f"the launch answered {answer['status']}, not launching")
            campaign = wait_status(campaigns, key, campaign_id, ("running", "completed"), args.launch_timeout, [worker])
            seconds = time.perf_counter() - started
        launch_peak = sampler.mark()
        worker_cpu = process_cpu_seconds(worker.pid) - worker_cpu0
        _, pg_cpu = meter.stop()
        say(f"launched in {seconds:.1f} s; waiting for the relay to publish the dispatch events")
        relay_seconds = wait_outbox_empty(database_url, "campaigns", args.launch_timeout)
    finally:
        overall_peak = sampler.stop()

    with psycopg.connect(database_url) as conn:
        by_status = {f"{channel}:{status}{':' + reason if reason else ''}": n for channel, status, reason, n in
                     conn.execute("SELECT channel, status, reason, count(*) FROM campaigns.deliveries"
                                  " WHERE tenant_id = %s AND campaign_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                                  (tenant_id, campaign_id)).fetchall()}
        queued = dict(conn.execute("SELECT channel, count(*) FROM campaigns.deliveries WHERE tenant_id = %s"
                                   " AND campaign_id = %s AND status = 'queued' GROUP BY 1",
                                   (tenant_id, campaign_id)).fetchall())
    written = sum(by_status.values())
    expected_events = sum(math.ceil(n / dispatch.BATCH) for n in queued.values())
    with Connection(broker_url, connect_timeout=5) as connection:
        events = counter(connection.default_channel).queue_declare(passive=True).message_count
        counter(connection.default_channel).delete()
    if campaign["audience"] != count or written != count:
        raise BenchError(f"the launch saw {campaign['audience']} members and wrote {written} deliveries; "
                         f"expected {count} of each (first_eligible: one per contact)")
    if events != expected_events:
        raise BenchError(f"the launch published {events} dispatch events; its {sum(queued.values())} queued "
                         f"deliveries make {expected_events}")

    say("raw: INSERT ... SELECT and COPY of the same rows")
    raw_insert = raw_insert_select(database_url, tenant_id, campaign_id, written)
    raw_copy_line = raw_copy(database_url, tenant_id, campaign_id, written)
    say(f"raw INSERT ... SELECT {raw_insert.rate:,.0f} rows/s, COPY {raw_copy_line.rate:,.0f} rows/s")

    peak_mb, overall_mb = launch_peak / 1e6, overall_peak / 1e6
    launch = Line(f"campaigns launch: POST .../launch -> running, {count:,} recipients, email+sms first_eligible "
                  f"({seconds:.1f} s){' [PROFILED]' if args.profile else ''}", written / seconds, "deliveries/s",
                  cpu_us=worker_cpu / written * 1e6, pg_cpu_us=pg_cpu / written * 1e6,
                  target=f"{count:,} in < {LAUNCH_TARGET_S:.0f} s", met=seconds < LAUNCH_TARGET_S,
                  details={"seconds": round(seconds, 2), "audience": campaign["audience"], "deliveries": written,
                           "by_status": by_status, "dispatch_events": events,
                           "dispatch_events_per_s": round(events / seconds, 1),
                           "relay_seconds_after_running": round(relay_seconds, 2),
                           "seed_seconds": round(seeded, 1),
                           "note": "seconds: from the POST to the first GET seeing `running` (polled every "
                                   "0.1 s); CPU: the campaigns worker process's and its PostgreSQL backends', "
                                   "per delivery; the dispatch events were counted on a queue of this run "
                                   "bound to them"})
    compare(launch, raw_insert)
    memory = Line("campaigns worker peak RSS during the launch (process tree, psutil every 50 ms)", peak_mb, "MB",
                  target=f"< {RSS_TARGET_MB:.0f} MB", met=peak_mb < RSS_TARGET_MB,
                  details={"idle_before_mb": round(sampler.first / 1e6, 1),
                           "peak_until_dispatch_events_relayed_mb": round(overall_mb, 1)})
    events_line = Line(f"campaigns launch: dispatch events written ({events:,} of up to {dispatch.BATCH} ids)",
                       events / seconds, "events/s", target="(information)",
                       details={"events": events, "queued": queued})
    say(f"launch: {seconds:.1f} s, {launch.rate:,.0f} deliveries/s, {events:,} dispatch events, "
        f"peak RSS {peak_mb:.0f} MB")
    compare(raw_copy_line, raw_insert)
    return [launch, memory, events_line, raw_insert, raw_copy_line], {"launch_by_status": by_status}


# -- 2. the dispatch ---------------------------------------------------------------------------
def raw_sandbox_sms(sandbox: Server, count: int, clients: int) -> Line:
    """The sandbox alone answering `count` Twilio-shaped POSTs (distinct idempotency tokens, as
    the SMS adapter sends them) from `clients` requests.Session clients at once: as many as the
    channel workers have sends in flight (capped at RAW_CLIENTS: more threads in this one
    process would measure its GIL, not the sandbox)."""
    todo = list(range(count))
    lock = threading.Lock()
    failures: list[str] = []
    url = f"{sandbox.url}/2010-04-01/Accounts/sandbox/Messages.json"

    def client() -> None:
        session = requests.Session()
        while not failures:
            with lock:
                if not todo:
                    break
                n = todo.pop()
            response = session.post(url, auth=("sandbox", "sandbox"), timeout=30, headers={
                "I-Twilio-Idempotency-Token": str(uuid.uuid4()), "Accept": "application/json"}, data={
                "To": f"+3362{n % 10_000_000:07d}", "From": SANDBOX_FROM,
                "Body": "Hi Jeanne, -20% this weekend only: http://127.0.0.1/t/c/abcdefghijklmnopqrstuvwxyz0123456789",
                "StatusCallback": "http://127.0.0.1:9/v1/campaigns/callbacks/sms"})
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:200]}")
        session.close()

    cpu0 = sandbox.cpu_seconds()
    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"sms-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = sandbox.cpu_seconds() - cpu0
    if failures:
        raise BenchError(f"the sandbox refused SMS: {failures[:3]}")
    return Line(f"sandbox alone: Twilio-shaped SMS POSTs, {clients} clients (requests.Session)", count / seconds,
                "req/s", cpu_us=cpu / count * 1e6,
                details={"requests": count, "seconds": round(seconds, 2), "note": "app CPU: the sandbox's workers"})


def sandbox_messages(sandbox: Server, channel: str, payload: bool = True) -> list[dict[str, Any]]:
    response = requests.get(sandbox.url + "/sandbox/outbox", timeout=120,
                            params={"channel": channel, "payload": str(payload).lower()})
    expect(response, 200)
    return response.json()["items"]


def clear_sandbox(sandbox: Server) -> None:
    expect(requests.delete(sandbox.url + "/sandbox/outbox", timeout=60), 200)


def dispatch_phase(args: argparse.Namespace, env: dict[str, str], database_url: str, broker_url: str, prefix: str,
                   identity: Server, campaigns: Server, sandbox: Server, worker: Any) -> list[Line]:
    tenant_id, key = create_tenant(identity, "bench-dispatch")
    count, workers_n = args.sms, args.channel_workers
    say(f"dispatch: seeding {count:,} contacts with a mobile number and SMS consent (SQL)")
    seed_audience(database_url, tenant_id, count, phone_share=1.0, sms_share=1.0, suppressed_share=0.0)
    campaign_id = campaign_for(campaigns, key, "Weekend SMS", ["sms"])

    raw_count = min(count, args.raw_sms)
    clients = min(RAW_CLIENTS, workers_n * sending.CONCURRENCY)
    say(f"raw: the sandbox alone, {raw_count:,} SMS over {clients} clients")
    sandbox_raw = raw_sandbox_sms(sandbox, raw_count, clients)
    clear_sandbox(sandbox)
    say(f"sandbox alone: {sandbox_raw.rate:,.0f} req/s")
    body = CloudEvent(dispatch.DISPATCH["sms"], "bench", tenant_id, {
        "campaign_id": campaign_id, "trigger_id": None, "channel": "sms",
        "delivery_ids": [str(uuid.uuid4()) for _ in range(dispatch.BATCH)]}).envelope()
    encoded = json.dumps(body, separators=(",", ":")).encode()
    say(f"raw: RabbitMQ publish + consume of {args.round_trip_messages:,} {len(encoded):,}-byte dispatch messages")
    bus = raw_round_trip(broker_url, f"{prefix}{EVENTS_EXCHANGE}", encoded, args.round_trip_messages,
                         confirm_batch=500, prefetch=1)
    bus_raw = Line(f"RabbitMQ alone: dispatch-sized messages ({dispatch.BATCH} ids) publish + consume (prefetch 1), "
                   f"x {dispatch.BATCH} deliveries each", bus.rate * dispatch.BATCH, "deliveries/s",
                   details={**bus.details, "messages_per_s": round(bus.rate)})
    say(f"RabbitMQ alone: {bus.rate:,.0f} dispatch messages/s")

    worker_env = {**env, "LOG_LEVEL": "WARNING"}
    say(f"starting {workers_n} SMS channel workers")
    with background_processes(worker_env, [SMS_WORKER] * workers_n, "campaigns-sms-worker") as senders:
        wait_consumers(broker_url, f"{prefix}campaigns-sms", workers_n, senders)
        meter = CpuMeter(None, database_url, "campaigns-channels")
        meter.start()
        cpu0 = sum(process_cpu_seconds(p.pid) for p in senders)
        sandbox_cpu0 = sandbox.cpu_seconds()
        say(f"dispatch: launching the SMS campaign to {count:,} contacts; the channel workers send")
        launched = time.perf_counter()
        api(campaigns, key, "POST", f"/v1/campaigns/{campaign_id}/launch", 202)
        deadline = time.monotonic() + args.dispatch_timeout
        done = 0
        profiled = [p.pid for p in senders] + sandbox.worker_pids()
        with psycopg.connect(database_url, autocommit=True) as conn, \
                profiled_processes(profiled, "campaigns-dispatch", args.profile):
            while True:
                done = conn.execute("SELECT count(*) FROM campaigns.deliveries WHERE tenant_id = %s"
                                    " AND campaign_id = %s AND status = ANY(%s)",
                                    (tenant_id, campaign_id, list(FINAL))).fetchone()[0]
                if done >= count:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"only {done} of {count} SMS deliveries ended within {args.dispatch_timeout} s")
                for process in [worker, *senders]:
                    if process.poll() is not None:
                        raise BenchError(f"a worker exited with {process.returncode}; see {RESULTS}/*.log")
                time.sleep(0.2)
        waited = time.perf_counter() - launched
        cpu = sum(process_cpu_seconds(p.pid) for p in senders) - cpu0
        sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu0
        _, pg_cpu = meter.stop()

    with psycopg.connect(database_url) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM campaigns.deliveries WHERE tenant_id = %s"
                                     " AND campaign_id = %s GROUP BY 1", (tenant_id, campaign_id)).fetchall())
        first, last, launched_at = conn.execute(
            "SELECT min(d.sent_at), max(d.sent_at), c.launched_at FROM campaigns.deliveries d"
            " JOIN campaigns.campaigns c ON c.tenant_id = d.tenant_id AND c.id = d.campaign_id"
            " WHERE d.tenant_id = %s AND d.campaign_id = %s GROUP BY c.launched_at", (tenant_id, campaign_id),
        ).fetchone()
    messages = sandbox_messages(sandbox, "sms")
    repeats = sum(m["received"] - 1 for m in messages)
    if statuses.get("sent") != count:
        raise BenchError(f"{statuses.get('sent', 0)} of {count} SMS deliveries ended sent: {statuses}")
    if len(messages) != count:
        raise BenchError(f"the sandbox holds {len(messages)} SMS for {count} sent deliveries")
    seconds = (last - first).total_seconds()
    line = Line(f"campaigns SMS dispatch: {count:,} deliveries, {dispatch.BATCH}/batch, {workers_n} channel workers "
                f"-> sandbox{' [PROFILED]' if args.profile else ''}", count / seconds, "sends/s",
                cpu_us=cpu / count * 1e6, pg_cpu_us=pg_cpu / count * 1e6,
                target="(information)",
                details={"seconds_first_to_last_sent": round(seconds, 2),
                         "seconds_launch_to_last_sent": round((last - launched_at).total_seconds(), 2),
                         "waited_s": round(waited, 1), "statuses": statuses, "sandbox_messages": len(messages),
                         "sandbox_repeats_recognised": repeats,
                         "sandbox_cpu_us_per_send": round(sandbox_cpu / count * 1e6, 1),
                         "note": "rate: sent deliveries / (first sent_at .. last sent_at); app CPU: the channel "
                                 "workers' per send; PG CPU: their backends'; SMS status callbacks off"})
    compare(line, sandbox_raw)
    say(f"dispatch: {line.rate:,.0f} sends/s over {seconds:.1f} s; the sandbox holds {len(messages):,} SMS, "
        f"each once")
    clear_sandbox(sandbox)
    return [line, sandbox_raw, bus_raw]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def raw_smtp_sink(port: int, messages: list[bytes], clients: int) -> Line:
    """The SMTP sink alone taking `messages` (built as the email adapter builds them) over
    `clients` kept connections, as smtplib sends them."""
    todo = list(messages)
    lock = threading.Lock()

    def client() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            while True:
                with lock:
                    if not todo:
                        return
                    message = todo.pop()
                smtp.sendmail("offers@liaison.invalid", ["someone@example.com"], message)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"smtp-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Line(f"SMTP sink alone: {len(messages):,} emails over {clients} connections (smtplib)",
                len(messages) / seconds, "emails/s", details={"seconds": round(seconds, 2)})


def email_phase(args: argparse.Namespace, env: dict[str, str], database_url: str, broker_url: str, prefix: str,
                identity: Server, campaigns: Server, sandbox: Server, smtp_port: int) -> list[Line]:
    """A campaign by email to `--emails` contacts (the launch's consent mix: about 70 % of them
    eligible), sent by the channel workers through the SMTP sink."""
    from services.campaigns.channels.base import OutgoingMessage
    from services.campaigns.channels.email import WIRE, build_message

    tenant_id, key = create_tenant(identity, "bench-email")
    count, workers_n = args.emails, args.channel_workers
    say(f"email: seeding {count:,} contacts (SQL)")
    seed_audience(database_url, tenant_id, count, phone_share=0.0, sms_share=0.0, suppressed_share=0.005)
    campaign_id = campaign_for(campaigns, key, "Winter newsletter", ["email"])

    sample = OutgoingMessage(str(uuid.uuid4()), tenant_id, "email", "jeanne.martin@example.com",
                             {"subject": "Jeanne, the winter collection is in", "text": EMAIL_CONTENT["body"] * 2,
                              "html": "<p>" + EMAIL_CONTENT["body"] * 2 + "</p>"},
                             unsubscribe_url=f"{campaigns.url}/t/u/" + "x" * 90)
    raw_count = min(count, args.raw_emails)
    messages = [build_message(replace(sample, delivery_id=str(uuid.uuid4())), "Liaison <offers@liaison.invalid>")
                .as_bytes(policy=WIRE) for _ in range(raw_count)]
    clients = min(RAW_CLIENTS, workers_n * sending.CONCURRENCY)
    say(f"raw: the SMTP sink alone, {raw_count:,} emails over {clients} connections")
    sink_raw = raw_smtp_sink(smtp_port, messages, clients)
    clear_sandbox(sandbox)
    say(f"SMTP sink alone: {sink_raw.rate:,.0f} emails/s")

    with background_processes({**env, "LOG_LEVEL": "WARNING"}, [EMAIL_WORKER] * workers_n,
                              "campaigns-email-worker") as senders:
        wait_consumers(broker_url, f"{prefix}campaigns-email", workers_n, senders)
        meter = CpuMeter(None, database_url, "campaigns-channels")
        meter.start()
        cpu0 = sum(process_cpu_seconds(p.pid) for p in senders)
        say(f"email: launching the campaign to {count:,} contacts; the channel workers send")
        api(campaigns, key, "POST", f"/v1/campaigns/{campaign_id}/launch", 202)
        deadline = time.monotonic() + args.dispatch_timeout
        with psycopg.connect(database_url, autocommit=True) as conn:
            while True:
                left, total = conn.execute(
                    "SELECT count(*) FILTER (WHERE status IN ('queued', 'sending')), count(*)"
                    " FROM campaigns.deliveries WHERE tenant_id = %s AND campaign_id = %s",
                    (tenant_id, campaign_id)).fetchone()
                if total and not left:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{left} of {total} email deliveries not sent after {args.dispatch_timeout} s")
                for process in senders:
                    if process.poll() is not None:
                        raise BenchError(f"a channel worker exited with {process.returncode}")
                time.sleep(0.2)
        cpu = sum(process_cpu_seconds(p.pid) for p in senders) - cpu0
        _, pg_cpu = meter.stop()
    with psycopg.connect(database_url) as conn:
        sent, first, last = conn.execute(
            "SELECT count(*), min(sent_at), max(sent_at) FROM campaigns.deliveries WHERE tenant_id = %s"
            " AND campaign_id = %s AND status = 'sent'", (tenant_id, campaign_id)).fetchone()
    emails = sandbox_messages(sandbox, "email", payload=False)
    if len(emails) != sent:
        raise BenchError(f"the sink holds {len(emails)} emails for {sent} sent deliveries")
    seconds = (last - first).total_seconds()
    line = Line(f"campaigns email dispatch: {sent:,} emails ({count:,} contacts), {workers_n} channel workers "
                f"x {sending.CONCURRENCY} sends in flight -> SMTP sink", sent / seconds, "emails/s",
                cpu_us=cpu / sent * 1e6, pg_cpu_us=pg_cpu / sent * 1e6, target="(information)",
                details={"sent": sent, "seconds_first_to_last_sent": round(seconds, 2),
                         "sink_repeats_recognised": sum(m["received"] - 1 for m in emails)})
    compare(line, sink_raw)
    say(f"email: {line.rate:,.0f} emails/s; the sink holds {len(emails):,}, each once")
    clear_sandbox(sandbox)
    return [line, sink_raw]


# -- 3. check-in to SMS ------------------------------------------------------------------------
def seed_checkin_contacts(database_url: str, tenant_id: str, count: int) -> list[tuple[str, str, str]]:
    """`count` contacts known to enrichment (an Instagram handle, geolocation consent) and to
    campaigns (a mobile number, SMS consent, the handle); returns (contact id, handle, phone)."""
    contacts = [(str(uuid.uuid4()), f"bc{n}", f"+3363{n:07d}") for n in range(count)]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO enrichment.contact_handles (tenant_id, network, handle, contact_id, identity_id)"
                        " VALUES (%s, 'instagram', %s, %s, gen_random_uuid())",
                        [(tenant_id, handle, contact_id) for contact_id, handle, _ in contacts])
        cur.executemany("INSERT INTO enrichment.contact_consents (tenant_id, contact_id, purpose, status, captured_at)"
                        " VALUES (%s, %s, %s, 'granted', now())",
                        [(tenant_id, contact_id, GEOLOCATION) for contact_id, _, _ in contacts])
        cur.executemany("INSERT INTO campaigns.audience (tenant_id, contact_id, contact_version, phone, first_name,"
                        " timezone) VALUES (%s, %s, now(), %s, 'Jeanne', 'Europe/Paris')",
                        [(tenant_id, contact_id, phone) for contact_id, _, phone in contacts])
        cur.executemany("INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, captured_at)"
                        " VALUES (%s, %s, 'sms_marketing', 'granted', now())",
                        [(tenant_id, contact_id) for contact_id, _, _ in contacts])
        cur.executemany("INSERT INTO campaigns.audience_handles (tenant_id, network, handle, contact_id, identity_id)"
                        " VALUES (%s, 'instagram', %s, %s, gen_random_uuid())",
                        [(tenant_id, handle, contact_id) for contact_id, handle, _ in contacts])
    return contacts


def raw_bus_latency(broker_url: str, exchange_name: str, samples: int) -> Line:
    """One persistent message at a time, published with its confirm waited for (as the relay
    publishes) while a consumer thread takes them from a durable queue of this run (ack each,
    as shared.consumer): publish -> received by the consumer."""
    exchange = Exchange(exchange_name, type="topic", durable=True)
    queue = Queue(f"{exchange_name}.raw_latency", exchange=exchange, routing_key="liaison.bench.raw_latency",
                  durable=True)
    arrived = threading.Event()
    stop = threading.Event()
    received_at: list[float] = []

    def on_message(decoded: Any, message: Any) -> None:
        received_at.append(time.perf_counter())
        message.ack()
        arrived.set()

    def consume(ready: threading.Event) -> None:
        with Connection(broker_url, connect_timeout=5, heartbeat=0) as connection:
            with Consumer(connection.default_channel, queues=[queue], callbacks=[on_message], accept=ACCEPT,
                          prefetch_count=50):
                ready.set()
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except TimeoutError:
                        continue

    latencies = []
    with Connection(broker_url, connect_timeout=5) as connection:
        queue(connection.default_channel).declare()
    ready = threading.Event()
    consumer = threading.Thread(target=consume, args=(ready,), name="raw-latency-consumer")
    consumer.start()
    try:
        if not ready.wait(10):
            raise BenchError("the raw latency consumer did not start")
        with Connection(broker_url, connect_timeout=5, heartbeat=0) as publishing:
            channel = publishing.default_channel
            channel.confirm_select()
            acked = [0]
            channel.events["basic_ack"].add(lambda delivery_tag, multiple: acked.__setitem__(0, delivery_tag))
            producer = publishing.Producer(serializer=None)
            for i in range(samples + 5):
                arrived.clear()
                received_at.clear()
                started = time.perf_counter()
                producer.publish(b'{"specversion":"1.0"}', exchange=exchange_name,
                                 routing_key="liaison.bench.raw_latency", delivery_mode=2,
                                 content_type=CLOUDEVENTS_CONTENT_TYPE, content_encoding="utf-8")
                while acked[0] < i + 1:
                    publishing.drain_events(timeout=5)
                if not arrived.wait(5):
                    raise BenchError("a raw message did not come back within 5 s")
                if i >= 5:  # warm-up
                    latencies.append(received_at[0] - started)
    finally:
        stop.set()
        consumer.join(timeout=10)
        with Connection(broker_url, connect_timeout=5) as connection:
            queue(connection.default_channel).delete()
    return latency_line("RabbitMQ alone: publish (confirmed) -> consumed, one message at a time", latencies)


def raw_notify_latency(database_url: str, samples: int) -> Line:
    """An INSERT and a NOTIFY committed on one connection -> the LISTENing connection woken (as a
    service's outbox write wakes its relay)."""
    latencies = []
    with psycopg.connect(database_url, autocommit=True) as listener, psycopg.connect(database_url) as writer:
        writer.execute("CREATE TABLE IF NOT EXISTS bench_raw_wakeup (id bigserial PRIMARY KEY, body jsonb)")
        writer.commit()
        listener.execute("LISTEN bench_raw_wakeup")
        for i in range(samples + 5):
            started = time.perf_counter()
            writer.execute("INSERT INTO bench_raw_wakeup (body) VALUES ('{\"n\": 1}')")
            writer.execute("NOTIFY bench_raw_wakeup")
            writer.commit()
            got = False
            while not got:
                if not select.select([listener.fileno()], [], [], 5)[0]:
                    raise BenchError("a NOTIFY did not arrive within 5 s")
                got = any(True for _ in listener.notifies(timeout=0))
            if i >= 5:
                latencies.append(time.perf_counter() - started)
    return latency_line("PostgreSQL alone: INSERT + NOTIFY committed -> LISTEN woken", latencies)


def latency_line(what: str, latencies: list[float]) -> Line:
    return Line(what, None, "ms", p50_ms=statistics.median(latencies) * 1000,
                p99_ms=percentile(latencies, 0.99) * 1000,
                details={"samples": len(latencies), "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
                         "max_ms": round(max(latencies) * 1000, 2)})


def checkin_phase(args: argparse.Namespace, settings: GunicornSettings, env: dict[str, str], database_url: str,
                  broker_url: str, prefix: str, identity: Server, campaigns: Server, sandbox: Server,
                  worker: Any) -> list[Line]:
    tenant_id, key = create_tenant(identity, "bench-checkin")
    warmup, count = 3, args.checkins
    name, lat, lon = SHOP
    api(campaigns, key, "POST", "/v1/triggers", 201, json={
        "name": f"{name} check-in offer", "event": "social.checkin", "channel": "sms", "cooldown_hours": 24,
        "conditions": {"network": "instagram", "geofence": {"lat": lat, "lon": lon, "radius_m": 300}},
        "content": {"body": "Welcome to " + name + ", {{ contact.first_name }}! Show this SMS for -15% today."}})

    say("raw: RabbitMQ publish -> consume and PostgreSQL NOTIFY -> LISTEN latencies")
    bus_raw = raw_bus_latency(broker_url, f"{prefix}{EVENTS_EXCHANGE}", args.raw_samples)
    pg_raw = raw_notify_latency(database_url, args.raw_samples)

    worker_env = {**env, "LOG_LEVEL": "WARNING"}
    lines: list[Line] = []
    # enrichment creates its schema as it starts: the contacts are seeded once it is up.
    with serve(ENRICHMENT_APP, env, settings, "enrichment") as enrichment, \
            background_processes(worker_env, [ENRICHMENT_WORKER, SMS_WORKER], "checkin-worker") as processes:
        contacts = seed_checkin_contacts(database_url, tenant_id, warmup + count)
        wait_consumers(broker_url, f"{prefix}campaigns-sms", 1, processes)
        wait_consumers(broker_url, f"{prefix}enrichment", 1, processes)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        posted: dict[str, tuple[datetime, float]] = {}
        say(f"check-ins: {warmup} warm-up, then {count}, one at a time, each waited for in the sandbox outbox")
        for i, (_, handle, phone) in enumerate(contacts):
            event = {"network": "instagram", "handle": "@" + handle, "type": "checkin", "brand_account": BRAND,
                     "occurred_at": datetime.now(UTC).isoformat(),
                     "place": {"name": name, "lat": lat + 0.0002, "lon": lon + 0.0002}}
            t0 = time.perf_counter()
            response = session.post(enrichment.url + "/v1/social/events", json={"events": [event]}, timeout=30)
            returned = datetime.now(UTC)
            post_seconds = time.perf_counter() - t0
            expect(response, 202)
            if response.json().get("accepted") != 1:
                raise BenchError(f"the check-in was not stored: {response.text[:300]}")
            posted[phone] = (returned, post_seconds)
            deadline = time.monotonic() + args.checkin_timeout
            while not any(m["payload"]["to"] == phone for m in sandbox_messages(sandbox, "sms")):
                if time.monotonic() > deadline:
                    raise BenchError(f"check-in {i}: no SMS to {phone} within {args.checkin_timeout:.0f} s")
                for process in [worker, *processes]:
                    if process.poll() is not None:
                        raise BenchError(f"a worker exited with {process.returncode}; see {RESULTS}/*.log")
                time.sleep(0.05)
        session.close()

    messages = {m["payload"]["to"]: m for m in sandbox_messages(sandbox, "sms")}
    with psycopg.connect(database_url) as conn:
        fired = {phone: (created, sent) for phone, created, sent in conn.execute(
            "SELECT a.phone, d.created_at, d.sent_at FROM campaigns.deliveries d JOIN campaigns.audience a"
            " ON a.tenant_id = d.tenant_id AND a.contact_id = d.contact_id WHERE d.tenant_id = %s"
            " AND d.trigger_id IS NOT NULL", (tenant_id,)).fetchall()}
    if len(messages) != warmup + count or any(m["received"] != 1 for m in messages.values()):
        raise BenchError(f"the sandbox holds {len(messages)} SMS for {warmup + count} check-ins, or repeats")
    total, to_trigger, to_sandbox, post_ms = [], [], [], []
    for _, _, phone in contacts[warmup:]:
        returned, post_seconds = posted[phone]
        arrived = datetime.fromisoformat(messages[phone]["first_at"])
        created, _sent = fired[phone]
        total.append((arrived - returned).total_seconds())
        to_trigger.append((created - returned).total_seconds())
        to_sandbox.append((arrived - created).total_seconds())
        post_ms.append(post_seconds * 1000)
    line = latency_line(f"check-in -> SMS: POST /v1/social/events returned -> SMS in the sandbox outbox "
                        f"({count} check-ins, one at a time)", total)
    p95 = line.details["p95_ms"]
    line.target, line.met = f"p95 < {LATENCY_TARGET_MS:,.0f} ms", p95 < LATENCY_TARGET_MS
    floor = 2 * ((bus_raw.p50_ms or 0) + (pg_raw.p50_ms or 0))
    line.details.update({
        "post_returned_to_delivery_written_p50_ms": round(statistics.median(to_trigger) * 1000, 1),
        "delivery_written_to_sandbox_p50_ms": round(statistics.median(to_sandbox) * 1000, 1),
        "post_p50_ms": round(statistics.median(post_ms), 1),
        "raw_floor_ms": round(floor, 2),
        "note": "time: the sandbox's first_at of the SMS minus the wall clock when the POST returned (one machine); "
                "the path: enrichment's outbox -> relay (NOTIFY) -> bus -> campaigns worker (trigger, delivery, "
                "dispatch event) -> relay (NOTIFY) -> bus -> SMS channel worker -> sandbox; raw_floor: 2 x (bus p50 + "
                "NOTIFY p50)"})
    floor_line = Line("floor of that path: 2 x (RabbitMQ p50 + NOTIFY p50), the two relays' hops", None, "ms",
                      p50_ms=floor)
    line.reference = floor_line.what
    say(f"check-in -> SMS: p50 {line.p50_ms:.0f} ms, p95 {p95:.0f} ms, max {line.details['max_ms']:.0f} ms "
        f"(raw floor {floor:.1f} ms)")
    lines += [line, floor_line, bus_raw, pg_raw]
    clear_sandbox(sandbox)
    return lines


# -- the benchmark -----------------------------------------------------------------------------
def channel_env(env: dict[str, str], sandbox_url: str) -> dict[str, str]:
    """`env` with every channel provider pointed at the sandbox (scripts.run.sandbox_env).
    Provider variables inherited from the shell are dropped first: sandbox_env leaves a configured
    provider alone, and a benchmark must never reach a real one."""
    from scripts.run import sandbox_env
    from services.campaigns.channels import sandboxed_providers

    env = dict(env)
    for provider in sandboxed_providers():
        for var in (provider.base_url_env, *provider.credential_env.values(), *provider.sandbox_values):
            env.pop(var, None)
    for var in ("SMTP_HOST", "SMTP_PORT"):
        env.pop(var, None)
    env = sandbox_env(env, sandbox_url)
    if not env.get("SMS_API_BASE_URL", "").startswith(sandbox_url):
        raise BenchError("the SMS channel does not point at the sandbox")
    return env


def run(args: argparse.Namespace, settings: GunicornSettings) -> tuple[list[Line], dict[str, Any]]:
    server_url, broker_url = server_urls()
    prefix = f"liaison_bench_{secrets.token_hex(4)}."
    # The sandbox as the Procfile runs it.
    sandbox_settings = GunicornSettings(workers=2, worker_class="gthread", threads=8, extra=settings.extra)
    lines: list[Line] = []
    meta: dict[str, Any] = {}
    smtp_port = free_port()
    queues = [f"{prefix}{name}{suffix}" for name in ("campaigns", "campaigns-sms", "campaigns-email", "enrichment")
              for suffix in ("", ".retry", ".dead")] + [f"{prefix}bench.dispatch_count"]
    with fresh_database(server_url) as database_url, tempfile.TemporaryDirectory(prefix="bench-sandbox-") as store:
        # BUS_QUEUE_EXPIRES: should this process die before deleting them, RabbitMQ drops the
        # run's queues once unused for 10 minutes.
        env = service_env(database_url, broker_url, BUS_PREFIX=prefix, BUS_QUEUE_EXPIRES="600",
                          SANDBOX_STORE=f"{store}/outbox.sqlite3", SANDBOX_SMS_CALLBACK_DELAY="off")
        try:
            with serve(IDENTITY_APP, env, settings, "identity") as identity, \
                    serve(SANDBOX_APP, env, sandbox_settings, "sandbox") as sandbox:
                env["IDENTITY_URL"] = identity.url
                env["SANDBOX_SMTP_PORT"] = str(smtp_port)
                env = channel_env(env, sandbox.url)
                with serve(CAMPAIGNS_APP, env, settings, "campaigns") as campaigns:
                    env["CAMPAIGNS_URL"] = campaigns.url
                    with background_processes({**env, "LOG_LEVEL": "WARNING"}, [CAMPAIGNS_WORKER],
                                              "campaigns-worker") as (worker,):
                        wait_consumers(broker_url, f"{prefix}campaigns", 1, [worker])
                        if args.recipients:
                            launch_lines, launch_meta = launch_phase(args, database_url, broker_url, prefix,
                                                                     identity, campaigns, worker)
                            lines += launch_lines
                            meta.update(launch_meta)
                        if args.sms:
                            lines += dispatch_phase(args, env, database_url, broker_url, prefix, identity, campaigns,
                                                    sandbox, worker)
                        if args.emails:
                            with background_processes(env, [["-m", "sandbox.smtp"]], "sandbox-smtp"):
                                wait_port(smtp_port)
                                lines += email_phase(args, env, database_url, broker_url, prefix, identity,
                                                     campaigns, sandbox, smtp_port)
                        if args.checkins:
                            lines += checkin_phase(args, settings, env, database_url, broker_url, prefix, identity,
                                                   campaigns, sandbox, worker)
        finally:
            delete_bus(broker_url, prefix, queues)
    meta.update({"gunicorn": settings.describe(), "sandbox_gunicorn": sandbox_settings.describe(),
                 "recipients": args.recipients, "sms": args.sms, "emails": args.emails,
                 "channel_workers": args.channel_workers,
                 "checkins": args.checkins, "sms_status_callbacks": "off",
                 "fixture": "campaigns.audience (and enrichment's projections for the check-ins) seeded with SQL",
                 "worker_logs": str(RESULTS / "<name>-<n>.log")})
    return lines, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    launch = parser.add_argument_group("the launch")
    launch.add_argument("--recipients", type=int, default=1_000_000, help="audience of the launch (0: skip it)")
    launch.add_argument("--launch-timeout", type=float, default=600.0, help="seconds to wait for `running`")
    sending = parser.add_argument_group("the SMS dispatch")
    sending.add_argument("--sms", type=int, default=10_000, help="SMS deliveries to dispatch (0: skip the dispatch)")
    sending.add_argument("--channel-workers", type=int, default=2, metavar="N",
                         help="SMS channel worker processes (python -m services.campaigns.channel_worker)")
    sending.add_argument("--raw-sms", type=int, default=3_000, help="SMS POSTs of the sandbox-alone line")
    sending.add_argument("--round-trip-messages", type=int, default=2_000,
                         help="dispatch-sized messages of the raw RabbitMQ publish + consume")
    sending.add_argument("--dispatch-timeout", type=float, default=600.0, help="seconds to wait for every send")
    emails = parser.add_argument_group("the email dispatch")
    emails.add_argument("--emails", type=int, default=20_000, help="contacts of the email campaign (0: skip it)")
    emails.add_argument("--raw-emails", type=int, default=5_000, help="emails of the SMTP-sink-alone line")
    checkins = parser.add_argument_group("check-in to SMS")
    checkins.add_argument("--checkins", type=int, default=50, help="check-ins to time (0: skip them)")
    checkins.add_argument("--checkin-timeout", type=float, default=15.0, help="seconds to wait for each SMS")
    checkins.add_argument("--raw-samples", type=int, default=200, help="samples of each raw latency")
