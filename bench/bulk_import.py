"""Bulk import of contacts through POST /v1/contacts/bulk (batches of 10,000, several streams at
once) against raw COPY of the same rows into a plain table with the same columns and indexes;
then the outbox relay draining the events the import wrote, against raw kombu publishing of
messages of the same size to the same queue.

Everything a client or a baseline would spend before the first byte is sent (building the rows,
serializing the request bodies, rendering the COPY text, generating the ids of the COPY rows)
happens before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from typing import Any

import psycopg
from kombu import Connection, Queue

from bench.common import (
    BatchRun,
    BenchError,
    CpuMeter,
    GunicornSettings,
    Line,
    bulk_bodies,
    checkpoint,
    compare,
    contact_row,
    create_tenant,
    fresh_database,
    process_cpu_seconds,
    profiled,
    say,
    send_batches,
    serve,
    server_urls,
    service_env,
)
from shared.bus import CLOUDEVENTS_CONTENT_TYPE, EVENTS_EXCHANGE, Publisher, events_exchange
from shared.db import Database
from shared.ids import new_id
from shared.outbox import OutboxRelay

IDENTITY_APP = "services.identity.app:create_app()"
COPY_COLUMNS = ("tenant_id", "id", "crm_system", "crm_id", "email", "phone", "first_name", "last_name",
                "locale", "timezone", "attributes", "suppressed")
UPSERTED = "liaison.identity.contact.upserted"


def copy_chunks(tenant_id: str, total: int, batch: int) -> list[bytes]:
    """The same contacts as COPY text, one chunk per API batch."""
    chunks = []
    for first in range(0, total, batch):
        lines = []
        for n in range(first, min(first + batch, total)):
            row = contact_row(n)
            values = (tenant_id, str(new_id()), row["crm_ref"]["system"], row["crm_ref"]["id"], row["email"],
                      row["phone"], row["first_name"], row["last_name"], row["locale"], row["timezone"],
                      json.dumps(row["attributes"], separators=(",", ":")), "f")
            line = "\t".join(values)
            if "\\" in line or "\n" in line or line.count("\t") != len(values) - 1:
                raise BenchError(f"row {n} needs COPY escaping, which this generator does not do")
            lines.append(line)
        chunks.append(("\n".join(lines) + "\n").encode())
    return chunks


def raw_copy(database_url: str, chunks: list[bytes], rows: int) -> Line:
    """COPY into bench_raw.contacts, made LIKE identity.contacts INCLUDING ALL (same columns,
    defaults, primary key, unique key and indexes), in one transaction."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA bench_raw")
        conn.execute("CREATE TABLE bench_raw.contacts (LIKE identity.contacts INCLUDING ALL)")
    checkpoint(database_url)
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        pg0 = process_cpu_seconds(backend)
        started = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(f"COPY bench_raw.contacts ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
                for chunk in chunks:
                    copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        pg_cpu = process_cpu_seconds(backend) - pg0
        count = conn.execute("SELECT count(*) FROM bench_raw.contacts").fetchone()[0]
    if count != rows:
        raise BenchError(f"raw COPY loaded {count} rows of {rows}")
    return Line("PostgreSQL alone: COPY of the same rows into a table like identity.contacts",
                rows / seconds, "rows/s", pg_cpu_us=pg_cpu / rows * 1e6,
                details={"seconds": round(seconds, 2), "rows": rows})


def import_line(run: BatchRun, streams: int, batch: int, contacts: int) -> Line:
    rate = run.rows / run.seconds
    times = run.batch_seconds
    line = Line(f"identity POST /v1/contacts/bulk ({contacts:,} contacts, {batch:,}/batch, "
                f"{streams} streams)",
                rate, "rows/s", times[len(times) // 2] * 1000 if times else None,
                times[min(len(times) - 1, int(len(times) * 0.99))] * 1000 if times else None,
                details={"seconds": round(run.seconds, 2), "rows": run.rows, "created": run.created,
                         "updated": run.updated, "row_errors": run.errors,
                         "stopped_early": run.stopped_early,
                         "projected_seconds_for_1M": round(1_000_000 / rate, 1)})
    line.target = "1M in < 60 s (>= 16,667 rows/s)"
    line.met = rate >= 1_000_000 / 60 and not run.stopped_early
    return line


# -- the broker --------------------------------------------------------------------------------
def bench_queue(broker_url: str) -> Queue:
    """A durable queue of this run bound to the events the import raised, so that published
    messages are routed and stored as they would be for a real consumer."""
    queue = Queue(f"liaison_bench_{secrets.token_hex(4)}", exchange=events_exchange(),
                  routing_key=UPSERTED, durable=True, auto_delete=False)
    with Connection(broker_url, connect_timeout=5) as connection:
        queue(connection.default_channel).declare()
    return queue


def purge(broker_url: str, queue: Queue, delete: bool = False) -> None:
    with Connection(broker_url, connect_timeout=5) as connection:
        bound = queue(connection.default_channel)
        bound.delete() if delete else bound.purge()


def raw_publish(broker_url: str, body: bytes, messages: int, batch: int, max_seconds: float) -> Line:
    """kombu alone: persistent messages of `body` to liaison.events, with publisher confirms
    waited for once per batch (what shared.bus.Publisher does, without the outbox)."""
    acked = 0

    def on_ack(delivery_tag: int, multiple: bool) -> None:
        nonlocal acked
        acked = max(acked, delivery_tag)

    with Connection(broker_url, connect_timeout=5, heartbeat=0) as connection:
        channel = connection.default_channel
        events_exchange()(channel).declare()
        channel.confirm_select()
        channel.events["basic_ack"].add(on_ack)
        producer = connection.Producer(serializer=None)
        sent = 0
        cpu0 = time.process_time()
        started = time.perf_counter()
        while sent < messages and time.perf_counter() - started < max_seconds:
            for _ in range(min(batch, messages - sent)):
                producer.publish(body, exchange=EVENTS_EXCHANGE, routing_key=UPSERTED, delivery_mode=2,
                                 content_type=CLOUDEVENTS_CONTENT_TYPE, content_encoding="utf-8")
                sent += 1
            while acked < sent:
                connection.drain_events(timeout=10)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    return Line(f"RabbitMQ alone: kombu persistent publish, confirms per {batch}", sent / seconds, "msg/s",
                cpu_us=cpu / sent * 1e6,
                details={"messages": sent, "seconds": round(seconds, 2), "body_bytes": len(body)})


def relay_drain(database_url: str, broker_url: str, batch: int, max_seconds: float) -> Line:
    """shared.outbox.OutboxRelay with shared.bus.Publisher, as identity's worker runs them,
    draining the import's events for at most `max_seconds`."""
    db = Database(database_url, min_size=1, max_size=1, name="bench-relay").open()
    relay = OutboxRelay(db, Publisher(broker_url), ["identity"], batch=batch)
    moved = 0
    samples = []
    meter = CpuMeter(None, database_url, "bench-relay")
    meter.start()
    cpu0 = time.process_time()
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < max_seconds:
            t0 = time.perf_counter()
            count = relay.relay_once("identity")
            samples.append(time.perf_counter() - t0)
            moved += count
            if not count:
                break
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        _, pg_cpu = meter.stop()
    finally:
        relay.publisher.close()
        db.close()
    samples.sort()
    return Line(f"identity outbox relay (OutboxRelay + Publisher, {batch}/batch)", moved / seconds,
                "events/s", samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000,
                cpu_us=cpu / max(moved, 1) * 1e6, pg_cpu_us=pg_cpu / max(moved, 1) * 1e6, target="(information)",
                details={"events": moved, "seconds": round(seconds, 2),
                         "note": "p50/p99 are per relayed batch"})


def sample_envelope(database_url: str) -> bytes:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT envelope FROM identity.outbox ORDER BY id LIMIT 1").fetchone()
    if row is None:
        raise BenchError("the import wrote no event to identity.outbox")
    return json.dumps(row[0], separators=(",", ":")).encode()


# -- the benchmark -----------------------------------------------------------------------------
def run(args: argparse.Namespace, settings: GunicornSettings) -> tuple[list[Line], dict[str, Any]]:
    server_url, broker_url = server_urls()
    total, batch = args.contacts, args.batch
    lines: list[Line] = []
    with fresh_database(server_url) as database_url:
        env = service_env(database_url, broker_url)
        with serve(IDENTITY_APP, env, settings, "identity") as identity:
            tenant_id, key = create_tenant(identity)
            say(f"preparing {total:,} contacts: request bodies and COPY text (not timed)")
            t0 = time.perf_counter()
            bodies = bulk_bodies(0, total, batch)
            chunks = copy_chunks(tenant_id, total, batch)
            body_bytes = sum(map(len, bodies))
            say(f"prepared in {time.perf_counter() - t0:.1f} s ({body_bytes / 1e6:,.0f} MB of JSON)")

            say("raw COPY")
            raw = raw_copy(database_url, chunks, total)
            del chunks
            say(f"raw COPY: {raw.rate:,.0f} rows/s")

            # Warm both workers' pools and code paths with a small import of other contacts.
            send_batches(identity, key, bulk_bodies(0, min(1000, total), 500, system="warmup"), streams=2)
            checkpoint(database_url)
            say(f"POST /v1/contacts/bulk: {len(bodies)} batches over {args.streams} streams")
            meter = CpuMeter(identity, database_url, "identity")
            meter.start()
            with profiled(identity, "bulk-identity", args.profile):
                result = send_batches(identity, key, bodies, args.streams, max_seconds=args.max_seconds)
            app_cpu, pg_cpu = meter.stop()
            del bodies
        imported = import_line(result, args.streams, batch, total)
        imported.cpu_us = app_cpu / result.rows * 1e6
        imported.pg_cpu_us = pg_cpu / result.rows * 1e6
        if args.profile:
            imported.what += " [PROFILED]"
        compare(imported, raw)
        say(f"import: {imported.rate:,.0f} rows/s in {result.seconds:.1f} s")
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM identity.contacts WHERE crm_system = 'salesforce'"
                                  ).fetchone()[0]
            events = conn.execute("SELECT count(*) FROM identity.outbox").fetchone()[0]
            audit = conn.execute("SELECT count(*) FROM identity.audit_log").fetchone()[0]
        if not result.stopped_early and (stored != total or result.created != total):
            raise BenchError(f"the import stored {stored} contacts ({result.created} created) of {total}")
        imported.details.update({"outbox_events": events, "audit_entries": audit})

        queue = bench_queue(broker_url)
        try:
            body = sample_envelope(database_url)
            say(f"raw kombu publish ({len(body)}-byte messages)")
            publish = raw_publish(broker_url, body, args.publish_messages, args.relay_batch,
                                  args.relay_seconds)
            purge(broker_url, queue)
            say(f"outbox relay: up to {args.relay_seconds:.0f} s of the {events:,} events")
            checkpoint(database_url)
            relay = relay_drain(database_url, broker_url, args.relay_batch, args.relay_seconds)
            compare(relay, publish)
        finally:
            purge(broker_url, queue, delete=True)
    lines += [imported, raw, relay, publish]
    meta = {"gunicorn": settings.describe(), "contacts": total, "batch": batch, "streams": args.streams,
            "request_json_mb": round(body_bytes / 1e6, 1), "relay_batch": args.relay_batch}
    return lines, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="contacts per request (max 10,000)")
    parser.add_argument("--streams", type=int, default=2, help="requests in flight at once")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="stop sending batches after this long (the rate is then of what was sent)")
    parser.add_argument("--relay-seconds", type=float, default=20.0, help="how long to let the relay drain")
    parser.add_argument("--relay-batch", type=int, default=500, help="events per relay batch (OUTBOX_BATCH)")
    parser.add_argument("--publish-messages", type=int, default=100_000, help="messages of the raw publish")
