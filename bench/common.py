"""What every benchmark shares: the servers to measure against, a fresh database per run, the
services under gunicorn, the API calls that set a tenant up, optional py-spy profiles of the
workers, and the results table."""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class BenchError(RuntimeError):
    """A benchmark could not run (server not ready, wrong answer...); the message says why."""


def server_urls() -> tuple[str, str]:
    """The PostgreSQL server and broker to measure on; benchmarks only ever hit this machine."""
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    broker_url = os.environ.get("BROKER_URL") or DEFAULT_BROKER_URL
    for name, url in (("DATABASE_URL", database_url), ("BROKER_URL", broker_url)):
        host = urlsplit(url).hostname or ""
        if host not in LOCAL_HOSTS:
            raise BenchError(f"{name} points at {host!r}: benchmarks only run against this machine")
    return database_url, broker_url


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A database of its own for one run (liaison_bench_<random>), dropped at the end."""
    name = f"liaison_bench_{secrets.token_hex(5)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def checkpoint(url: str) -> None:
    """Flushes dirty pages before a measured phase, so that one phase's writes are not paid for
    by the next one's checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def service_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "LIAISON_ADMIN_KEY": "admin-" + secrets.token_urlsafe(24),
        "LIAISON_SECRET_KEY": secrets.token_urlsafe(32),
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


# -- gunicorn ----------------------------------------------------------------------------------
CONFIG = ROOT / "gunicorn.conf.py"


@dataclass(frozen=True)
class GunicornSettings:
    """One command line for identity and for the bare app it is compared with: the project's
    gunicorn.conf.py (what `make run` and production use), with the overrides given here."""

    workers: int | None = None
    worker_class: str | None = None
    threads: int | None = None
    timeout: int | None = None
    extra: tuple[str, ...] = ()  # any other gunicorn flags, e.g. --worker-connections=16

    def args(self) -> list[str]:
        args = ["--config", str(CONFIG)] if CONFIG.exists() else ["--workers", "2", "--threads", "4",
                                                                  "--worker-class", "gthread"]
        for flag, value in (("--workers", self.workers), ("--worker-class", self.worker_class),
                            ("--threads", self.threads), ("--timeout", self.timeout)):
            if value is not None:
                args += [flag, str(value)]
        return args + list(self.extra)

    def effective(self) -> dict[str, Any]:
        """The settings gunicorn will run with (the config file read as gunicorn reads it)."""
        import runpy

        conf = runpy.run_path(str(CONFIG)) if CONFIG.exists() else {}
        return {"workers": self.workers or conf.get("workers", 2),
                "worker_class": self.worker_class or conf.get("worker_class", "gthread"),
                "threads": self.threads or conf.get("threads", 4),
                "timeout": self.timeout or conf.get("timeout", 30)}

    def describe(self) -> str:
        eff = self.effective()
        return (f"{eff['workers']} x {eff['worker_class']}"
                + (f" x {eff['threads']} threads" if eff["worker_class"] == "gthread" else "")
                + f" (gunicorn {' '.join(self.args()).replace(str(ROOT) + '/', '')})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def connections_per_worker(self) -> list[int]:
        """Established client connections each worker holds (a gthread worker keeps the keep-alive
        connections it accepted: when one worker grabs most of them, the other core idles)."""
        ss = shutil.which("ss")
        if ss is None:
            return []
        port = urlsplit(self.url).port
        out = subprocess.run([ss, "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
        return sorted((out.count(f"pid={pid},") for pid in self.worker_pids()), reverse=True)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the gunicorn workers have used so far: unlike a rate, the
        CPU a request costs hardly changes when other work shares the machine."""
        return sum(process_cpu_seconds(pid) for pid in self.worker_pids())


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextmanager
def serve(app_spec: str, env: dict[str, str], settings: GunicornSettings, name: str,
          ready_path: str = "/readyz", ready_timeout: float = 60.0) -> Iterator[Server]:
    """Runs `gunicorn app_spec` on a free local port until the block ends."""
    port = free_port()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / f"{name}.gunicorn.log"
    cmd = [sys.executable, "-m", "gunicorn", *settings.args(), "--bind", f"127.0.0.1:{port}", app_spec]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(name, f"http://127.0.0.1:{port}", process, env, log_path)
    try:
        _wait_ready(server, ready_path, ready_timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # gunicorn's graceful stop of its workers
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_ready(server: Server, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.process.returncode}; see {server.log_path}")
        try:
            response = requests.get(server.url + path, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"{server.name} not ready after {timeout:.0f} s ({last}); see {server.log_path}")


@contextmanager
def background_processes(env: dict[str, str], commands: list[list[str]], label: str
                         ) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One `python <command>` process per command (a service's worker, a channel worker), each
    logging to bench/results/<label>-<n>.log, stopped (SIGTERM, then SIGKILL) when the block
    ends, whatever happens in it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i, command in enumerate(commands):
            with open(RESULTS / f"{label}-{i}.log", "wb") as log:
                processes.append(subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
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


def backend_pids(database_url: str, application_name: str) -> list[int]:
    """PostgreSQL server processes of a pool (by its application_name), for their CPU time."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = "
                            "current_database()", (application_name,)).fetchall()
    return [r[0] for r in rows]


class CpuMeter:
    """CPU seconds used between start() and stop() by a server's workers and by the PostgreSQL
    backends of its pool (those alive at both ends)."""

    def __init__(self, server: Server | None, database_url: str, application_name: str):
        self.server = server
        self.database_url = database_url
        self.application_name = application_name

    def start(self) -> None:
        self.app0 = self.server.cpu_seconds() if self.server else 0.0
        self.pids = backend_pids(self.database_url, self.application_name)
        self.pg0 = {pid: process_cpu_seconds(pid) for pid in self.pids}

    def stop(self) -> tuple[float, float]:
        app = (self.server.cpu_seconds() if self.server else 0.0) - self.app0
        pids = backend_pids(self.database_url, self.application_name)
        pg = sum(process_cpu_seconds(pid) - self.pg0.get(pid, 0.0) for pid in pids)
        return app, pg


# -- the API calls that set a tenant up --------------------------------------------------------
def create_tenant(server: Server, name: str = "bench") -> tuple[str, str]:
    """Creates a tenant and a crm+marketing key with the admin key; returns (tenant_id, key)."""
    admin = {"Authorization": f"Bearer {server.env['LIAISON_ADMIN_KEY']}"}
    response = requests.post(server.url + "/v1/tenants", json={"name": name}, headers=admin, timeout=10)
    expect(response, 201)
    tenant_id = response.json()["id"]
    response = requests.post(server.url + f"/v1/tenants/{tenant_id}/api-keys",
                             json={"name": "bench", "scopes": ["crm", "marketing"]},
                             headers=admin, timeout=10)
    expect(response, 201)
    return tenant_id, response.json()["key"]


def expect(response: requests.Response, status: int) -> None:
    if response.status_code != status:
        raise BenchError(f"{response.request.method} {response.url} answered {response.status_code}"
                         f" (expected {status}): {response.text[:500]}")


# -- profiles ----------------------------------------------------------------------------------
@contextmanager
def profiled(server: Server, label: str, enabled: bool, rate: int = 100) -> Iterator[None]:
    """With `enabled`, py-spy samples every gunicorn worker of `server` while the block runs and
    writes a flame graph (SVG) and collapsed stacks per worker under bench/results/profiles/.
    Only the thread holding the GIL is sampled (`--gil`): that is where a worker's CPU goes, and
    the GIL is what a gthread worker's threads queue for.
    py-spy must be on the PATH (`pip install py-spy`); profiling costs throughput, so the
    figures of a profiled run are not the ones to report."""
    with profiled_processes(server.worker_pids() if enabled else [], label, enabled, rate):
        yield


@contextmanager
def profiled_processes(pids: list[int], label: str, enabled: bool, rate: int = 100) -> Iterator[None]:
    """`profiled` for any processes (a service's worker, the channel workers): py-spy samples
    each of `pids` while the block runs, the thread holding the GIL only."""
    if not enabled:
        yield
        return
    spy = shutil.which("py-spy")
    if spy is None:
        raise BenchError("--profile needs py-spy on the PATH (pip install py-spy)")
    out = RESULTS / "profiles"
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for pid in pids:
        for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
            spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", fmt, "--gil",
                 "--output", str(out / f"{label}-{pid}.{ext}"), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
    try:
        yield
    finally:
        for spy_process in spies:
            spy_process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy_process in spies:
            try:
                spy_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy_process.kill()
        print(f"  profiles of {label} written to {out}", flush=True)


# -- results -----------------------------------------------------------------------------------
@dataclass
class Line:
    """One row of the results table."""

    what: str
    rate: float | None
    unit: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None  # CPU of the server's workers per request / row / event
    pg_cpu_us: float | None = None  # CPU of the PostgreSQL backends serving it, per op
    reference: str | None = None  # the `what` of the raw line this one is compared with
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


def compare(line: Line, reference: Line) -> Line:
    line.reference = reference.what
    if line.rate is not None and reference.rate:
        line.ratio = line.rate / reference.rate
    return line


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def table(lines: list[Line]) -> str:
    header = ["benchmark", "rate", "unit", "p50 ms", "p99 ms", "app CPU µs/op", "PG CPU µs/op",
              "compared with", "ratio", "target", "met"]
    rows = [[
        line.what, _fmt(line.rate), line.unit, _fmt(line.p50_ms, 1), _fmt(line.p99_ms, 1),
        _fmt(line.cpu_us, 1 if (line.cpu_us or 100) < 100 else 0),
        _fmt(line.pg_cpu_us, 1 if (line.pg_cpu_us or 100) < 100 else 0),
        line.reference or "", f"{line.ratio:.0%}" if line.ratio is not None else "", line.target,
        "" if line.met is None else ("yes" if line.met else "NO"),
    ] for line in lines]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def report(name: str, lines: list[Line], meta: dict[str, Any]) -> Path:
    """Prints the table and writes bench/results/<time>-<name>.json and .md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {"benchmark": name, "at": stamp, "machine": machine(), **meta}
    text = table(lines)
    print()
    print(text, flush=True)
    print()
    base = RESULTS / f"{stamp}-{name}"
    base.with_suffix(".json").write_text(
        json.dumps({**meta, "lines": [asdict(line) for line in lines]}, indent=2, default=str)
    )
    notes = "\n".join(f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, dict | list))
    base.with_suffix(".md").write_text(f"# {name} ({stamp})\n\n{text}\n\n{notes}\n")
    return base.with_suffix(".json")


# -- realistic contacts ------------------------------------------------------------------------
FIRST_NAMES = ("Jeanne", "Louis", "Amina", "Kenji", "Sofia", "Mateo", "Olga", "Noah", "Chloé", "Ravi",
               "Fatou", "Lukas", "Inès", "Tomás", "Mei", "Arjun", "Hanna", "Yusuf", "Elena", "Kwame")
LAST_NAMES = ("Martin", "Bernard", "Dubois", "Tanaka", "Rossi", "García", "Ivanova", "Smith", "Müller",
              "Nakamura", "Diallo", "Kowalski", "Silva", "Chen", "Patel", "Novak", "Okafor", "Larsen",
              "Haddad", "O'Brien", "Moreau", "Fischer", "Kim", "Ferreira", "Jensen")
LOCALES = ("fr-FR", "en-GB", "en-US", "de-DE", "es-ES", "it-IT", "ja-JP", "pt-BR")
ZONES = ("Europe/Paris", "Europe/London", "America/New_York", "Europe/Berlin", "Europe/Madrid",
         "Europe/Rome", "Asia/Tokyo", "America/Sao_Paulo")
SEGMENTS = ("prospect", "customer", "vip", "churned", "partner")
_ASCII = str.maketrans("éèüíáó'", "eeuiao-")


def crm_id(n: int) -> str:
    return f"003{n:012d}"


def contact_row(n: int, system: str = "salesforce") -> dict[str, Any]:
    """Contact number n as a CRM sends it to POST /v1/contacts/bulk: every field set."""
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    k = n % len(LOCALES)
    return {
        "crm_ref": {"system": system, "id": crm_id(n)},
        "email": f"{first.lower().translate(_ASCII)}.{last.lower().translate(_ASCII)}.{n}@example.com",
        "phone": f"+336{n % 100_000_000:08d}",
        "first_name": first,
        "last_name": last,
        "locale": LOCALES[k],
        "timezone": ZONES[k],
        "attributes": {"segment": SEGMENTS[n % len(SEGMENTS)], "lifetime_value": (n * 37) % 5000,
                       "newsletter": n % 3 == 0, "source": "crm-sync"},
    }


@dataclass
class BatchRun:
    seconds: float
    rows: int
    created: int
    updated: int
    errors: int
    batch_seconds: list[float]
    stopped_early: bool = False


def bulk_bodies(start: int, count: int, batch: int, system: str = "salesforce") -> list[bytes]:
    """Request bodies for POST /v1/contacts/bulk, serialized ahead of any clock."""
    bodies = []
    for first in range(start, start + count, batch):
        rows = [contact_row(n, system) for n in range(first, min(first + batch, start + count))]
        bodies.append(json.dumps({"contacts": rows}, separators=(",", ":")).encode())
    return bodies


def post_batches(server: Server, key: str, path: str, bodies: list[bytes], streams: int,
                 expected_status: int = 200, max_seconds: float | None = None,
                 ) -> tuple[float, list[tuple[float, dict[str, Any]]]]:
    """POSTs the JSON bodies to `path` over `streams` keep-alive connections at once; returns the
    seconds it took and (seconds, answer) per batch sent. A status other than `expected_status`
    stops every stream and raises BenchError."""
    import http.client
    import threading

    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    queue = list(reversed(range(len(bodies))))
    lock = threading.Lock()
    results: list[tuple[float, dict[str, Any]]] = []
    failures: list[str] = []
    stop = threading.Event()
    started = time.perf_counter()

    def stream() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=600)
        while not stop.is_set():
            with lock:
                if not queue:
                    break
                index = queue.pop()
            t0 = time.perf_counter()
            connection.request("POST", path, body=bodies[index], headers=headers)
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - t0
            if response.status != expected_status:
                failures.append(f"batch {index}: {response.status} {payload[:300]!r}")
                stop.set()
                break
            with lock:
                results.append((elapsed, json.loads(payload)))
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                stop.set()
        connection.close()

    threads = [threading.Thread(target=stream, name=f"batches-{i}") for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise BenchError(f"POST {path} failed: " + "; ".join(failures))
    return seconds, results


def send_batches(server: Server, key: str, bodies: list[bytes], streams: int,
                 max_seconds: float | None = None) -> BatchRun:
    """POSTs the bodies to /v1/contacts/bulk over `streams` keep-alive connections at once."""
    seconds, results = post_batches(server, key, "/v1/contacts/bulk", bodies, streams, max_seconds=max_seconds)
    created = sum(r["created"] for _, r in results)
    updated = sum(r["updated"] for _, r in results)
    errors = sum(len(r["errors"]) for _, r in results)
    return BatchRun(seconds, created + updated, created, updated, errors,
                    sorted(t for t, _ in results), stopped_early=len(results) < len(bodies))
