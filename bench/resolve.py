"""GET /v1/identities/resolve under gunicorn, against a bare Flask endpoint doing one indexed
SELECT through the same pool under the same gunicorn settings, and against PostgreSQL alone
(pgbench running that SELECT over as many connections).

The load comes from a second process: wrk (Debian package `wrk`, installed here when missing and
running as root) with a Lua script that asks for a random seeded handle each time, or, when wrk
cannot be had, a small asyncio HTTP client in its own process (`python -m bench.resolve
--loadgen`), which is slower than wrk and says so in the results.

Fixture: contacts are imported through POST /v1/contacts/bulk; the first `--api-links` handles
are linked through POST /v1/contacts/{id}/identities (their rate is reported); the rest of the
handles are inserted with one SQL INSERT ... SELECT, because linking 100,000 handles one request
at a time would take minutes and is not what this benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests

from bench.common import (
    BenchError,
    CpuMeter,
    GunicornSettings,
    Line,
    Server,
    bulk_bodies,
    compare,
    create_tenant,
    expect,
    fresh_database,
    profiled,
    say,
    send_batches,
    serve,
    server_urls,
    service_env,
)

IDENTITY_APP = "services.identity.app:create_app()"
BARE_APP = "bench.baseline_app:create_app()"
HANDLE_PREFIX = "bh"  # handle of contact n is bh<n>: valid on X (^[a-z0-9_]{1,15}$)

WRK_SCRIPT = """
local handles = tonumber(os.getenv("BENCH_HANDLES"))
local prefix = os.getenv("BENCH_PATH")
local threads = 0

function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_no)
end

function request()
  return wrk.format("GET", prefix .. math.random(0, handles - 1))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

PGBENCH_SCRIPT = """\\set n random(0, {last})
SELECT id, contact_id FROM identity.identities
 WHERE tenant_id = '{tenant}' AND network = 'x' AND handle = 'bh' || :n;
"""


# -- the load generators -----------------------------------------------------------------------
def ensure_wrk() -> str | None:
    """wrk's path, installing Debian's package when missing and allowed; None when it cannot be had."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    say("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for steps in ([["apt-get", "install", "-y", "-qq", "wrk"]],
                  [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]]):
        try:
            if all(subprocess.run(step, env=env, capture_output=True, timeout=300).returncode == 0
                   for step in steps):
                return shutil.which("wrk")
        except subprocess.TimeoutExpired:
            break
    say("could not install wrk; falling back to the Python load generator")
    return None


def run_wrk(wrk: str, base_url: str, path_prefix: str, handles: int, headers: dict[str, str],
            connections: int, seconds: float, threads: int = 2) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "--timeout", "5s", "--latency", "-s", script.name]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(base_url)
        env = {**os.environ, "BENCH_HANDLES": str(handles), "BENCH_PATH": path_prefix}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script.name)
    match = re.search(r"BENCH_JSON (\{.*\})", done.stdout)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    stats = json.loads(match.group(1))
    stats["tool"] = "wrk"
    return stats


def run_python_load(base_url: str, path_prefix: str, handles: int, headers: dict[str, str],
                    connections: int, seconds: float) -> dict[str, Any]:
    """The fallback load generator, in a process of its own."""
    spec = json.dumps({"url": base_url, "path": path_prefix, "handles": handles, "headers": headers,
                       "connections": connections, "seconds": seconds})
    done = subprocess.run([sys.executable, "-m", "bench.resolve", "--loadgen", spec],
                          capture_output=True, text=True, timeout=seconds + 60,
                          cwd=Path(__file__).resolve().parent.parent)
    match = re.search(r"BENCH_JSON (\{.*\})", done.stdout)
    if done.returncode != 0 or match is None:
        raise BenchError(f"load generator failed: {done.stderr[-800:]}")
    stats = json.loads(match.group(1))
    stats["tool"] = "python-asyncio"
    return stats


async def _python_load(spec: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(spec["url"])
    extra = "".join(f"{k}: {v}\r\n" for k, v in spec["headers"].items())
    latencies: list[float] = []
    status_errors = 0
    deadline = time.perf_counter() + spec["seconds"]

    async def connection() -> None:
        nonlocal status_errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.perf_counter() < deadline:
            path = f"{spec['path']}{random.randrange(spec['handles'])}"
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 2"):
                status_errors += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(spec["connections"])))
    duration = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1e6)

    return {"requests": len(latencies), "duration_us": int(duration * 1e6), "status_errors": status_errors,
            "connect_errors": 0, "read_errors": 0, "write_errors": 0, "timeouts": 0,
            "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "p999_us": pct(99.9),
            "max_us": int(latencies[-1] * 1e6), "mean_us": sum(latencies) / len(latencies) * 1e6}


def load(wrk: str | None, server: Server, path_prefix: str, handles: int, headers: dict[str, str],
         connections: int, seconds: float, meter: CpuMeter | None = None) -> dict[str, Any]:
    """One run of the load generator against `server`."""
    if meter:
        meter.start()
    spread: list[int] = []
    probe = threading.Timer(min(1.0, seconds / 2), lambda: spread.extend(server.connections_per_worker()))
    probe.start()
    if wrk:
        stats = run_wrk(wrk, server.url, path_prefix, handles, headers, connections, seconds)
    else:
        stats = run_python_load(server.url, path_prefix, handles, headers, connections, seconds)
    probe.join()
    stats["connections_per_worker"] = spread
    errors = sum(stats[k] for k in
                 ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    if errors:
        raise BenchError(f"{server.name}: {errors} failed requests under load: {stats}")
    stats["cpu_seconds"], stats["pg_cpu_seconds"] = meter.stop() if meter else (0.0, 0.0)
    return stats


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one endpoint. Rate and latency percentiles are the median of the rounds' (a
    burst of other work on the machine spoils one round, not the figure); CPU per request is over
    all of them."""
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    requests_ = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    rates = [r["requests"] / (r["duration_us"] / 1e6) for r in runs]
    return {"tool": runs[0]["tool"], "requests": requests_, "seconds": round(seconds, 2),
            "rate": median(rates), "overall_rate": requests_ / seconds,
            "cpu_us": sum(r["cpu_seconds"] for r in runs) / requests_ * 1e6,
            "pg_cpu_us": sum(r["pg_cpu_seconds"] for r in runs) / requests_ * 1e6,
            **{key: median([r[key] for r in runs]) for key in ("p50_us", "p90_us", "p99_us", "p999_us")},
            "rounds": [{"rate": round(rate), "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                        "cpu_us": round(r["cpu_seconds"] / r["requests"] * 1e6, 1),
                        "connections_per_worker": r["connections_per_worker"]}
                       for rate, r in zip(rates, runs, strict=True)]}


def line_from(what: str, stats: dict[str, Any]) -> Line:
    return Line(what, stats["rate"], "req/s", stats["p50_us"] / 1000, stats["p99_us"] / 1000,
                cpu_us=stats["cpu_us"], pg_cpu_us=stats["pg_cpu_us"], details=stats)


# -- fixture -----------------------------------------------------------------------------------
def seed(server: Server, key: str, tenant_id: str, database_url: str, handles: int,
         api_links: int) -> Line:
    """`handles` contacts through the bulk API, each with the X handle bh<n>; returns the rate of
    the links made through the API."""
    say(f"seeding {handles:,} contacts through POST /v1/contacts/bulk")
    run = send_batches(server, key, bulk_bodies(0, handles, 10_000), streams=2)
    if run.created != handles:
        raise BenchError(f"seeding created {run.created} contacts of {handles}")
    with psycopg.connect(database_url) as conn:
        ids = conn.execute(
            "SELECT id, (substr(crm_id, 4))::bigint AS n FROM identity.contacts"
            " WHERE tenant_id = %s ORDER BY crm_id LIMIT %s", (tenant_id, api_links),
        ).fetchall()
    say(f"linking {len(ids):,} handles through POST /v1/contacts/{{id}}/identities")
    link_rate = _link_through_api(server, key, ids)
    say(f"inserting the other {handles - len(ids):,} handles with SQL")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO identity.identities (tenant_id, id, contact_id, network, handle, source)"
            " SELECT tenant_id, gen_random_uuid(), id, 'x', %s || (substr(crm_id, 4))::bigint, 'bench'"
            " FROM identity.contacts WHERE tenant_id = %s ON CONFLICT DO NOTHING",
            (HANDLE_PREFIX, tenant_id),
        )
        count = conn.execute("SELECT count(*) FROM identity.identities WHERE tenant_id = %s",
                             (tenant_id,)).fetchone()[0]
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE identity.identities")
        conn.execute("VACUUM ANALYZE identity.contacts")
    if count != handles:
        raise BenchError(f"{count} identities seeded instead of {handles}")
    # The path under load answers what a user expects, whatever way the handle is written.
    response = requests.get(server.url + "/v1/identities/resolve",
                            params={"network": "x", "handle": f"https://x.com/{HANDLE_PREFIX.upper()}7"},
                            headers={"Authorization": f"Bearer {key}"}, timeout=5)
    expect(response, 200)
    return link_rate


def _link_through_api(server: Server, key: str, ids: list[tuple[Any, int]], streams: int = 8) -> Line:
    headers = {"Authorization": f"Bearer {key}"}
    todo = list(ids)
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not todo:
                    return
                contact_id, n = todo.pop()
            t0 = time.perf_counter()
            response = session.post(f"{server.url}/v1/contacts/{contact_id}/identities",
                                    json={"network": "x", "handle": f"@{HANDLE_PREFIX}{n}"},
                                    headers=headers, timeout=10)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:200]}")

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise BenchError(f"linking failed: {failures[:3]}")
    latencies.sort()
    n = len(latencies) or 1
    return Line(f"identity link (POST .../identities, {streams} clients in-process)",
                len(ids) / seconds if ids else None, "req/s",
                latencies[n // 2] * 1000 if latencies else None,
                latencies[min(n - 1, int(n * 0.99))] * 1000 if latencies else None,
                target="(information)")


def pgbench(database_url: str, tenant_id: str, handles: int, connections: int, seconds: float) -> Line:
    pgbench_path = shutil.which("pgbench")
    if pgbench_path is None:
        return Line("PostgreSQL alone (pgbench missing)", None, "req/s")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT.format(last=handles - 1, tenant=tenant_id))
    try:
        done = subprocess.run(
            [pgbench_path, "-n", "-M", "prepared", "-c", str(connections), "-j", "2",
             "-T", str(max(1, round(seconds))), "-f", script.name, database_url],
            capture_output=True, text=True, timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    tps = re.search(r"tps = ([\d.]+) \(without initial", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    if done.returncode != 0 or tps is None:
        raise BenchError(f"pgbench failed: {done.stdout[-400:]} {done.stderr[-400:]}")
    return Line(f"PostgreSQL alone: the same SELECT, pgbench -M prepared -c {connections}",
                float(tps.group(1)), "req/s",
                details={"latency_avg_ms": float(latency.group(1)) if latency else None})


# -- the benchmark -----------------------------------------------------------------------------
def run(args: argparse.Namespace, settings: GunicornSettings) -> tuple[list[Line], dict[str, Any]]:
    server_url, broker_url = server_urls()
    wrk = None if args.python_client else ensure_wrk()
    path = f"/v1/identities/resolve?network=x&handle={HANDLE_PREFIX}"
    bare_path = f"/resolve?network=x&handle={HANDLE_PREFIX}"
    lines: list[Line] = []
    identity_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    with fresh_database(server_url) as database_url:
        env = service_env(database_url, broker_url)
        with serve(IDENTITY_APP, env, settings, "identity") as identity:
            tenant_id, key = create_tenant(identity)
            link_line = seed(identity, key, tenant_id, database_url, args.handles, args.api_links)
            headers = {"Authorization": f"Bearer {key}"}
            with serve(BARE_APP, {**env, "BENCH_TENANT_ID": tenant_id}, settings, "bare") as bare:
                # Both servers stay up; their runs alternate so that a change in the machine's
                # background load falls on both alike.
                each = args.duration / args.rounds
                say(f"warm-up {args.warmup:.0f} s each, then {args.rounds} alternating rounds of "
                    f"{each:.1f} s per endpoint at {args.connections} connections")
                load(wrk, identity, path, args.handles, headers, args.connections, args.warmup)
                load(wrk, bare, bare_path, args.handles, {}, args.connections, args.warmup)
                identity_meter = CpuMeter(identity, database_url, "identity")
                bare_meter = CpuMeter(bare, database_url, "bench-bare")
                for _ in range(args.rounds):
                    with profiled(identity, "resolve-identity", args.profile):
                        identity_runs.append(load(wrk, identity, path, args.handles, headers,
                                                  args.connections, each, identity_meter))
                    with profiled(bare, "resolve-bare", args.profile):
                        bare_runs.append(load(wrk, bare, bare_path, args.handles, {}, args.connections, each,
                                              bare_meter))
                    say("  " + ", ".join(
                        f"{name} {r['requests'] / r['duration_us'] * 1e6:,.0f} req/s"
                        f" ({r['cpu_seconds'] / r['requests'] * 1e6:,.0f} µs CPU/req,"
                        f" connections per worker {r['connections_per_worker']})"
                        for name, r in (("identity", identity_runs[-1]), ("bare", bare_runs[-1]))))
        say("PostgreSQL alone (pgbench)")
        raw = pgbench(database_url, tenant_id, args.handles, args.connections, min(args.duration, 10))

    identity_stats = combine(identity_runs)
    bare_stats = combine(bare_runs)
    tool = identity_stats["tool"]
    bare_line = line_from(f"bare Flask: one indexed SELECT, same pool and gunicorn ({tool})", bare_stats)
    compare(bare_line, raw)
    resolve_line = line_from(f"identity GET /v1/identities/resolve ({tool}, {args.connections} conns)",
                             identity_stats)
    compare(resolve_line, bare_line)
    resolve_line.target = ">= 75% of bare, p99 < 30 ms"
    resolve_line.met = (resolve_line.ratio or 0) >= 0.75 and (resolve_line.p99_ms or 1e9) < 30
    if args.profile:
        resolve_line.what += " [PROFILED]"
    lines += [resolve_line, bare_line, raw, link_line]
    meta = {"gunicorn": settings.describe(), "handles": args.handles, "connections": args.connections,
            "duration_s": args.duration, "rounds": args.rounds, "warmup_s": args.warmup, "load_generator": tool,
            "fixture": "contacts via POST /v1/contacts/bulk; first api_links handles via the API, "
                       "the rest via SQL INSERT ... SELECT",
            "api_links": args.api_links}
    return lines, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--handles", type=int, default=100_000, help="seeded contacts with an X handle")
    parser.add_argument("--api-links", type=int, default=1_000, help="handles linked through the API")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per endpoint")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds the duration is split in")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--python-client", action="store_true", help="use the Python load generator, not wrk")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        print("BENCH_JSON " + json.dumps(asyncio.run(_python_load(json.loads(sys.argv[2])))), flush=True)
    else:
        sys.exit("run `python -m bench resolve`")
