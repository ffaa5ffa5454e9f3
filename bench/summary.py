"""bench/results/summary.md and summary.json: one row per figure of the README's Performance
section, each beside the raw limit of the component under it measured in the same run, with the
machine, the commit, and each benchmark's wall time and load average.

The rows are built from the benchmarks' `Line`s, found by the start of their `what`: a line a
benchmark renamed or did not produce gives a row that says so rather than a figure."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from kombu import Connection

from bench.common import RESULTS, ROOT, Line, table


# -- one benchmark's run -----------------------------------------------------------------------
class LoadSampler:
    """The 1-minute load average before, at its highest during, and after a benchmark: well above
    the core count means the run shared the CPUs and its rates are low."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.before = self.peak = self.after = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="load-sampler", daemon=True)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 1)
        self.after = os.getloadavg()[0]
        self.peak = max(self.peak, self.after)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, os.getloadavg()[0])


@dataclass
class Run:
    """What `python -m bench` kept of one benchmark."""

    name: str
    options: dict[str, Any]
    lines: list[Line]
    meta: dict[str, Any]
    wall_seconds: float
    load_before: float
    load_peak: float
    load_after: float
    results_file: str | None = None
    error: str | None = None


@dataclass
class Row:
    """One row of the summary: a README figure, its raw limit, and the ratio."""

    benchmark: str
    what: str
    figure: str
    raw_limit: str
    ratio: str = ""
    ratio_value: float | None = None
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)  # the Lines used, by role


class MissingLine(LookupError):
    pass


def find(run: Run, start: str) -> Line:
    for line in run.lines:
        if line.what.startswith(start):
            return line
    raise MissingLine(f"no line starting {start!r}")


def numbers(line: Line) -> dict[str, Any]:
    return {"what": line.what, "rate": line.rate, "unit": line.unit, "p50_ms": line.p50_ms, "p99_ms": line.p99_ms,
            "cpu_us": line.cpu_us, "pg_cpu_us": line.pg_cpu_us}


# -- formatting --------------------------------------------------------------------------------
def rate(line: Line) -> str:
    if line.rate is None:
        return "not measured"
    digits = 0 if line.rate >= 100 else 1
    return f"{line.rate:,.{digits}f} {line.unit}"


def ms(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def latencies(line: Line, high: str = "p99") -> str:
    value = line.p99_ms if high == "p99" else line.details.get(f"{high}_ms")
    return f"p50 {ms(line.p50_ms)}, {high} {ms(value)}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f} %"


def ratio_of(figure: float | None, raw: float | None) -> float | None:
    return figure / raw if figure is not None and raw else None


# -- the rows: one function per row of the README ----------------------------------------------
# Each takes the benchmark's run and returns its row, or None when the run skipped that phase
# (e.g. `--jobs 0`).
def resolve_row(run: Run) -> Row:
    o, m = run.options, run.meta
    api, bare = find(run, "identity GET /v1/identities/resolve"), find(run, "bare Flask")
    ratio = ratio_of(api.rate, bare.rate)
    return Row(run.name, f"`GET /v1/identities/resolve`, {m.get('load_generator', '?')}, {o['connections']} "
               "connections", f"{rate(api)}, {latencies(api)}",
               "bare Flask endpoint doing the same indexed SELECT through the same pool and gunicorn settings: "
               f"{rate(bare)}, {latencies(bare)}", percent(ratio), ratio,
               {"figure": numbers(api), "raw": numbers(bare)})


def pgbench_row(run: Run) -> Row:
    pg = find(run, "PostgreSQL alone")
    return Row(run.name, f"the same SELECT in PostgreSQL alone (pgbench, {run.options['connections']} connections)",
               "", rate(pg), lines={"raw": numbers(pg)})


def import_row(run: Run) -> Row:
    o = run.options
    imported, copy = find(run, "identity POST /v1/contacts/bulk"), find(run, "PostgreSQL alone: COPY")
    early = " (stopped early: --max-seconds)" if imported.details.get("stopped_early") else ""
    ratio = ratio_of(imported.rate, copy.rate)
    return Row(run.name, f"`POST /v1/contacts/bulk`, {o['contacts']:,} contacts in batches of {o['batch']:,}, "
               f"{o['streams']} client streams", f"{rate(imported)}: {imported.details.get('seconds')} s{early}",
               f"raw `COPY` of the same rows into a table with the same indexes: {rate(copy)}", percent(ratio), ratio,
               {"figure": numbers(imported), "raw": numbers(copy)})


def relay_row(run: Run) -> Row:
    relay, publish = find(run, "identity outbox relay"), find(run, "RabbitMQ alone: kombu persistent publish")
    ratio = ratio_of(relay.rate, publish.rate)
    return Row(run.name, f"outbox relay to RabbitMQ (batches of {run.options['relay_batch']} confirmed as a whole)",
               rate(relay), f"kombu publishing alone, persistent, confirms per batch: {rate(publish)}",
               percent(ratio), ratio, {"figure": numbers(relay), "raw": numbers(publish)})


def feed_row(run: Run) -> Row | None:
    o = run.options
    if not o["events"]:
        return None
    feed, copy = find(run, "enrichment POST /v1/social/events"), find(run, "PostgreSQL alone: COPY")
    ratio = ratio_of(feed.rate, copy.rate)
    return Row(run.name, f"`POST /v1/social/events`, {o['events']:,} events in batches of {o['batch']:,}, "
               f"{o['streams']} streams (sentiment scored, handles resolved, events and profile changes written to "
               "the outbox)", f"{rate(feed)}, {latencies(feed)} a batch",
               f"raw `COPY` of the same rows into a table like `social_events`: {rate(copy)}", percent(ratio), ratio,
               {"figure": numbers(feed), "raw": numbers(copy)})


def jobs_row(run: Run) -> Row | None:
    o = run.options
    if not o["jobs"]:
        return None
    jobs, calls = find(run, "enrichment jobs: POST"), find(run, "enrichment jobs: provider calls")
    sandbox, bus = find(run, "sandbox alone"), find(run, "RabbitMQ alone")
    providers = round(calls.details["calls"] / jobs.details["jobs"]) if jobs.details.get("jobs") else "?"
    ratio = ratio_of(calls.rate, sandbox.rate)  # each provider call is one request to the sandbox
    return Row(run.name, f"enrichment jobs ({o['jobs']:,}), `POST /v1/enrichments` → bus → {o['job_workers']} "
               f"workers → {providers} providers answered by the sandbox", f"{rate(jobs)} ({rate(calls)})",
               f"the sandbox answering the same lookups alone: {rate(sandbox)}; RabbitMQ publish + consume round "
               f"trip: {rate(bus)}", f"{percent(ratio)} of the sandbox" if ratio is not None else "", ratio,
               {"figure": numbers(jobs), "figure_calls": numbers(calls), "raw": numbers(sandbox),
                "raw_bus": numbers(bus)})


def preview_row(run: Run) -> Row:
    preview = find(run, "campaigns GET /v1/segments/{id}/preview: ")  # the first shape is the headline
    name = preview.what.split(": ", 1)[1]
    raw = find(run, f"PostgreSQL alone: the count of {name}")
    # A latency's ratio reads as a rate's: how fast the API is beside PostgreSQL alone.
    ratio = ratio_of(raw.p50_ms, preview.p50_ms)
    return Row(run.name, f"segment preview, {run.options['contacts']:,} contacts: {name}", latencies(preview),
               f"the same count in PostgreSQL alone: {latencies(raw)}", percent(ratio), ratio,
               {"figure": numbers(preview), "raw": numbers(raw)})


def launch_row(run: Run) -> Row | None:
    o = run.options
    if not o["recipients"]:
        return None
    launch, rss = find(run, "campaigns launch: POST"), find(run, "campaigns worker peak RSS")
    insert, copy = find(run, "PostgreSQL alone: INSERT ... SELECT"), find(run, "PostgreSQL alone: COPY")
    ratio = ratio_of(launch.rate, insert.rate)
    return Row(run.name, f"campaign launch, {o['recipients']:,} recipients, email then SMS (`first_eligible`): "
               "launch → running", f"{launch.details.get('seconds', 0):.1f} s ({rate(launch)}); worker peak RSS "
               f"{rss.rate or 0:.0f} MB", f"PostgreSQL alone, `INSERT ... SELECT` of the same rows: {rate(insert)} "
               f"(`COPY` of them: {rate(copy)})", percent(ratio), ratio,
               {"figure": numbers(launch), "figure_rss": numbers(rss), "raw": numbers(insert),
                "raw_copy": numbers(copy)})


def dispatch_row(run: Run) -> Row | None:
    o = run.options
    if not o["sms"]:
        return None
    sends, sandbox = find(run, "campaigns SMS dispatch"), find(run, "sandbox alone")
    bus = find(run, "RabbitMQ alone: dispatch-sized")
    batch = sends.what.split(" deliveries, ", 1)[1].split("/batch", 1)[0] if "/batch" in sends.what else "?"
    repeats = sends.details.get("sandbox_repeats_recognised", 0)
    ratio = ratio_of(sends.rate, sandbox.rate)
    return Row(run.name, f"SMS dispatch, {o['sms']:,} deliveries in batches of {batch}, {o['channel_workers']} "
               "channel workers → sandbox's Twilio", f"{rate(sends)}, each counted once at the sandbox"
               + (f" ({repeats} repeats recognised)" if repeats else ""),
               f"the sandbox answering the same POSTs alone: {rate(sandbox)}; RabbitMQ carrying dispatch-sized "
               f"messages: {rate(bus)}", percent(ratio), ratio,
               {"figure": numbers(sends), "raw": numbers(sandbox), "raw_bus": numbers(bus)})


def email_row(run: Run) -> Row | None:
    if not run.options.get("emails"):
        return None
    sends, sink = find(run, "campaigns email dispatch"), find(run, "SMTP sink alone")
    repeats = sends.details.get("sink_repeats_recognised", 0)
    ratio = ratio_of(sends.rate, sink.rate)
    return Row(run.name, f"email dispatch, {sends.details.get('sent', 0):,} emails (the launch's consent mix over "
               f"{run.options['emails']:,} contacts), {run.options['channel_workers']} channel workers → SMTP sink",
               f"{rate(sends)}, each counted once at the sink"
               + (f" ({repeats} repeats recognised)" if repeats else ""),
               f"the sink taking the same emails alone: {rate(sink)}", percent(ratio), ratio,
               {"figure": numbers(sends), "raw": numbers(sink)})


def checkin_row(run: Run) -> Row | None:
    if not run.options["checkins"]:
        return None
    checkin, floor = find(run, "check-in -> SMS"), find(run, "floor of that path")
    bus, notify = find(run, "RabbitMQ alone: publish (confirmed)"), find(run, "PostgreSQL alone: INSERT + NOTIFY")
    # No single raw rate bounds a latency made of hops: the raw hops and their floor stand instead.
    return Row(run.name, f"check-in → SMS: `POST /v1/social/events` returned → SMS at the sandbox "
               f"({run.options['checkins']} check-ins)", latencies(checkin, "p95"),
               f"RabbitMQ publish → consume {ms(bus.p50_ms)}, NOTIFY → LISTEN {ms(notify.p50_ms)} (the path crosses "
               f"each twice: floor {ms(floor.p50_ms)})", "", None,
               {"figure": numbers(checkin), "raw_bus": numbers(bus), "raw_notify": numbers(notify),
                "floor": numbers(floor)})


def webhook_intake_row(run: Run) -> Row | None:
    o = run.options
    if not o["events"]:
        return None
    intake, pg = find(run, "webhooks intake"), find(run, "PostgreSQL alone: one transaction per event")
    bulk, bus = find(run, "PostgreSQL alone: INSERT ... SELECT"), find(run, "RabbitMQ alone")
    ratio = ratio_of(intake.rate, pg.rate)
    return Row(run.name, f"webhook intake, {o['events']:,} `delivery.updated` events → bus → the worker's consumer → "
               "a delivery for each of 2 endpoints (30 endpoints of 10 other tenants skipped)",
               f"{rate(intake)} ({intake.details.get('deliveries_per_s', 0):,} deliveries/s)",
               f"PostgreSQL, one transaction per event with the same rows: {rate(pg)}; the rows in one "
               f"`INSERT ... SELECT`: {rate(bulk)}; RabbitMQ publish + consume: {rate(bus)}", percent(ratio), ratio,
               {"figure": numbers(intake), "raw": numbers(pg), "raw_bulk": numbers(bulk), "raw_bus": numbers(bus)})


def webhook_dispatch_row(run: Run) -> Row | None:
    o = run.options
    if not o["deliveries"]:
        return None
    sends, receiver = find(run, "webhooks dispatch"), find(run, "receiver alone")
    latency = find(run, "webhooks latency")
    ratio = ratio_of(sends.rate, receiver.rate)
    return Row(run.name, f"webhook dispatch, {o['deliveries']:,} due deliveries, 1 worker, WEBHOOK_CONCURRENCY="
               f"{o['concurrency']} → a receiver checking every signature; latency: {o['paced_events']} events at "
               f"{o['paced_rate']:g}/s", f"{rate(sends)}, {sends.details.get('duplicates', '?')} duplicates, "
               f"{sends.details.get('bad_signatures', '?')} bad signatures; created → received "
               f"{latencies(latency, 'p95')}",
               f"the receiver alone, the same concurrency: {rate(receiver)}", percent(ratio), ratio,
               {"figure": numbers(sends), "figure_latency": numbers(latency), "raw": numbers(receiver)})


# The README's rows in its order, by benchmark: (what the row is, how to build it).
ROWS: dict[str, list[tuple[str, Callable[[Run], Row | None]]]] = {
    "resolve": [("GET /v1/identities/resolve", resolve_row), ("the same SELECT in PostgreSQL alone", pgbench_row)],
    "bulk": [("POST /v1/contacts/bulk", import_row), ("outbox relay to RabbitMQ", relay_row)],
    "enrichment": [("POST /v1/social/events", feed_row), ("enrichment jobs", jobs_row)],
    "segments": [("segment preview", preview_row)],
    "campaigns": [("campaign launch", launch_row), ("SMS dispatch", dispatch_row), ("email dispatch", email_row),
                  ("check-in → SMS", checkin_row)],
    "webhooks": [("webhook intake", webhook_intake_row), ("webhook dispatch", webhook_dispatch_row)],
}


def rows_of(run: Run) -> list[Row]:
    rows = []
    for what, build in ROWS[run.name]:
        if run.error is not None:
            rows.append(Row(run.name, what, f"not measured: {run.name} failed ({run.error})", ""))
            continue
        try:
            row = build(run)
        except (MissingLine, KeyError, IndexError) as exc:  # a line renamed or missing: say so, keep the rest
            rows.append(Row(run.name, what, f"not measured: {exc}", ""))
            continue
        if row is not None:
            rows.append(row)
    return rows


# -- the machine -------------------------------------------------------------------------------
def _cpuinfo() -> tuple[str, int]:
    model, count = platform.processor() or "?", 0
    try:
        for entry in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = entry.partition(":")
            if key.strip() == "processor":
                count += 1
            elif key.strip() == "model name" and model in ("?", platform.processor()):
                model = value.strip()
    except OSError:
        pass
    return model, count or os.cpu_count() or 0


def _ram_gib() -> float | None:
    try:
        for entry in Path("/proc/meminfo").read_text().splitlines():
            if entry.startswith("MemTotal:"):
                return int(entry.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for entry in Path("/etc/os-release").read_text().splitlines():
            if entry.startswith("PRETTY_NAME="):
                name = entry.split("=", 1)[1].strip().strip('"')
                return f"{name}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _git() -> str:
    def git(*args: str) -> str:
        # --no-optional-locks: reading the work tree's state must not rewrite the index.
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout?)"
    return commit + (f" with uncommitted changes to {len(dirty.splitlines())} files" if dirty else "")


def _postgresql(url: str) -> str:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        return f"unknown ({exc.__class__.__name__})"


def _rabbitmq(url: str) -> str:
    broker = Connection(url, connect_timeout=5)
    try:
        with broker as connection:
            connection.connect()
            props = connection.connection.server_properties or {}
    except broker.connection_errors as exc:
        return f"unknown ({exc.__class__.__name__})"
    version = props.get("version")
    if not version:
        return "not told by the broker"
    product = props.get("product", "")
    platform_ = props.get("platform", "")
    return f"{product} {version}".strip() + (f" ({platform_})" if platform_ else "")


def machine_info(database_url: str, broker_url: str) -> dict[str, Any]:
    model, cpus = _cpuinfo()
    ram = _ram_gib()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cpus
    return {"cpu_model": model, "cpus": cpus, "cpus_usable": usable,
            "ram_gib": round(ram, 1) if ram is not None else None, "os": _os_name(),
            "python": platform.python_version(), "postgresql": _postgresql(database_url),
            "rabbitmq": _rabbitmq(broker_url), "commit": _git()}


# -- writing -----------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(summary: dict[str, Any], runs: list[Run], rows: list[Row]) -> str:
    m = summary["machine"]
    quick = summary["quick"]
    title = "# Benchmark summary" + (" — QUICK RUN (small sizes: not figures to quote)" if quick else "")
    out = [title, ""]
    if summary["profiled"]:
        out += ["**Profiled run** (`--profile`): py-spy sampled the workers, so the figures are slower than they "
                "would be.", ""]
    if quick:
        out += ["`python -m bench --quick` ran every benchmark at small sizes to check the harness; the sizes "
                "are in each row. Run `make bench` for the figures of the README.", ""]
    out += [
        f"- date: {summary['started_at']} → {summary['finished_at']} ({summary['wall_seconds'] / 60:.1f} min)",
        f"- commit: {m['commit']}",
        f"- CPU: {m['cpu_model']}, {m['cpus']} CPUs" + (f" ({m['cpus_usable']} usable)" if m['cpus_usable'] != m['cpus']
                                                         else ""),
        f"- RAM: {m['ram_gib']} GiB" if m["ram_gib"] is not None else "- RAM: unknown",
        f"- OS: {m['os']}",
        f"- Python {m['python']}, PostgreSQL {m['postgresql']}, {m['rabbitmq']}",
        f"- gunicorn: {summary['gunicorn']}",
        "",
        "| what | figure | raw limit, same run | ratio |",
        "|---|---|---|---|",
    ]
    marker = " [quick]" if quick else ""
    out += [f"| {_cell(r.what)}{marker} | {_cell(r.figure)} | {_cell(r.raw_limit)} | {_cell(r.ratio)} |"
            for r in rows]
    out += ["", "Ratio: the figure's rate ÷ the raw rate; for a latency, the raw p50 ÷ the figure's p50.", "",
            "| benchmark | wall time | load average (1 min) before / peak / after | results |",
            "|---|---|---|---|"]
    for run in runs:
        status = f"FAILED: {_cell(run.error)}" if run.error else f"`{run.results_file}`"
        out.append(f"| {run.name} | {run.wall_seconds:.0f} s | {run.load_before:.1f} / {run.load_peak:.1f} / "
                   f"{run.load_after:.1f} | {status} |")
    out += ["", f"A load average well above {m['cpus_usable']} (the usable CPUs) means other work shared the "
            "machine: rates are then low; the CPU per operation in the results files moves much less.", "",
            "## Every line", "", table([line for run in runs for line in run.lines]), ""]
    return "\n".join(out)


def write(runs: list[Run], quick: bool, profiled: bool, gunicorn: str, started_at: datetime, database_url: str,
          broker_url: str) -> Path:
    """Writes bench/results/summary.md and summary.json; returns the .md's path."""
    finished_at = datetime.now(UTC)
    rows = [row for run in runs for row in rows_of(run)]
    summary = {
        "quick": quick,
        "profiled": profiled,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "finished_at": finished_at.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round((finished_at - started_at).total_seconds(), 1),
        "gunicorn": gunicorn,
        "machine": machine_info(database_url, broker_url),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    # The lines and the segments' query plans are in each benchmark's own results file.
    benchmarks = [{**{k: v for k, v in asdict(run).items() if k != "lines"},
                   "meta": {k: v for k, v in run.meta.items() if k != "plans"},
                   "load_before": round(run.load_before, 2), "load_peak": round(run.load_peak, 2),
                   "load_after": round(run.load_after, 2)} for run in runs]
    document = {**summary, "benchmarks": benchmarks, "rows": [asdict(row) for row in rows]}
    (RESULTS / "summary.json").write_text(json.dumps(document, indent=2, default=str))
    path = RESULTS / "summary.md"
    path.write_text(render(summary, runs, rows))
    return path

