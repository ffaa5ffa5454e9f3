"""`make run`: the whole stack on one machine.

1. With no `DATABASE_URL` / `BROKER_URL`, starts the embedded PostgreSQL and Redis under ./var/
   (shared/embedded.py); with them set, uses those and starts nothing.
2. Reads LIAISON_SECRET_KEY and LIAISON_ADMIN_KEY from the environment, or from var/secrets.env,
   generating and saving there whichever is missing (so keys survive restarts).
3. Starts the provider sandbox (sandbox/, on SANDBOX_URL, http://127.0.0.1:8009 by default) and
   points every enrichment provider the operator left unconfigured at it: a provider counts as
   configured when its base URL or one of its credentials is set, and is then left alone. So
   enrichment works offline with synthetic data, and a real provider is one variable away.
4. Applies every service's migrations once, before any web process starts.
5. Runs the Procfile's processes with honcho, prints the URLs, the admin key and a curl example
   once every service (and the sandbox) answers /readyz, and on Ctrl-C or SIGTERM stops them
   all, then the embedded servers.

    .venv/bin/python -m scripts.run
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# Only light imports up here: the signal handlers must be in place as early as possible (run()
# imports psycopg, redis and honcho after installing them).
from shared.settings import Settings, SettingsError

if TYPE_CHECKING:
    from services.enrichment.providers.http import Adapter

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PROCFILE = ROOT / "Procfile"
SECRETS = VAR / "secrets.env"
EMBEDDED_DATABASE = "liaison"
READY_TIMEOUT = 120.0

# The services, in the order they start and are listed: the contract's three, the webhooks to the
# CRM and the console for people. A service takes part as soon as its package exists
# (services/<name>/app.py); its URL comes from Settings.<name>_url.
SERVICES = ("identity", "enrichment", "campaigns", "webhooks", "console")

# The provider sandbox (sandbox/): its URL, and the credential it is given for every provider
# variable the operator left unset (it accepts any token but those starting with "invalid" or "expired").
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8009"
SANDBOX_CREDENTIAL = "sandbox-token"


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while the stack was starting."""


@dataclass(frozen=True)
class Service:
    name: str
    url: str

    @property
    def bind(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 80}"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    command: str


def _module_exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def present_services(settings: Settings) -> list[Service]:
    """The services whose code exists in this checkout, with their URLs."""
    return [Service(name, getattr(settings, f"{name}_url")) for name in SERVICES
            if _module_exists(f"services.{name}.app")]


# `python -m package.module` or gunicorn's 'package.module:create_app()'
_RUNS_MODULE = re.compile(r"-m\s+([\w.]+)|'([\w.]+):")


def procfile_processes(
    services: list[Service], procfile: Path = PROCFILE, values: Mapping[str, str] | None = None
) -> list[ProcessSpec]:
    """The Procfile's lines, templates repeated per service, keeping those whose module exists.
    `values` fills the other placeholders of any line ({sandbox_bind})."""
    values = dict(values or {})
    processes = []
    for line in procfile.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        if not command.strip():
            raise SystemExit(f"{procfile}: a line is `name: command`, not {line!r}")
        expanded = ([(name.format(service=s.name),
                      command.strip().format(**values, service=s.name, bind=s.bind)) for s in services]
                    if "{service}" in name else [(name, command.strip().format(**values))])
        for process_name, process_command in expanded:
            runs = _RUNS_MODULE.search(process_command)
            module = runs and (runs.group(1) or runs.group(2))
            if module and not _module_exists(module):
                continue
            processes.append(ProcessSpec(process_name.strip(), process_command))
    return processes


# -- environment -------------------------------------------------------------------------------
def sandbox_service(env: Mapping[str, str]) -> Service:
    """The sandbox's URL from SANDBOX_URL, checked like the services' URLs."""
    url = (env.get("SANDBOX_URL") or DEFAULT_SANDBOX_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SettingsError(f"SANDBOX_URL={url!r} must be an http:// URL such as {DEFAULT_SANDBOX_URL}")
    return Service("sandbox", url)


def _provider_adapters() -> list[type[Adapter]]:
    """The enrichment adapter classes, if enrichment is in this checkout (imported late: they
    pull in requests and pycountry, which the signal handlers must not wait for)."""
    if not _module_exists("services.enrichment.providers"):
        return []
    from services.enrichment.providers import registry

    return [registry()[network] for network in sorted(registry())]


def _configured(adapter: type[Adapter], env: Mapping[str, str]) -> bool:
    return bool(env.get(adapter.base_url_env)) or any(env.get(var) for var in adapter.credential_env.values())


def sandbox_env(
    env: Mapping[str, str], sandbox_url: str, providers: Iterable[type[Adapter]] | None = None
) -> dict[str, str]:
    """A copy of `env` where every provider the operator did not configure (neither its base URL
    nor any of its credentials set) is pointed at the sandbox, with the sandbox credential in
    each of its credential variables. The base URL keeps the real one's path (the Graph API's
    /v19.0), so the requests look exactly like the real ones. A configured provider is left
    as it is: the operator means the real one. With no `providers` given, that is enrichment's
    providers and campaigns' channel APIs (SMS, X DMs, Messenger; plus the fixed values the
    sandbox needs, such as SMS_FROM); and with SMTP_HOST unset, email goes to the sandbox's SMTP
    sink (127.0.0.1:SANDBOX_SMTP_PORT, 8025 by default)."""
    filled = dict(env)
    if providers is None and _module_exists("services.campaigns.channels"):
        from services.campaigns.channels import sandboxed_providers

        providers = [*_provider_adapters(), *sandboxed_providers()]  # type: ignore[list-item]
        if not env.get("SMTP_HOST"):
            filled.update(SMTP_HOST="127.0.0.1", SMTP_PORT=env.get("SANDBOX_SMTP_PORT") or "8025")
    for adapter in _provider_adapters() if providers is None else providers:
        if _configured(adapter, env):
            continue
        version = urlsplit(adapter.default_base_url).path.rstrip("/")
        filled[adapter.base_url_env] = sandbox_url.rstrip("/") + version
        for var in adapter.credential_env.values():
            filled[var] = SANDBOX_CREDENTIAL
        filled.update({var: value for var, value in getattr(adapter, "sandbox_values", {}).items()
                       if not env.get(var)})
    return filled


def sandboxed_networks(
    env: Mapping[str, str], sandbox_url: str, providers: Iterable[type[Adapter]] | None = None
) -> list[str]:
    """The providers `env` sends to the sandbox."""
    prefix = sandbox_url.rstrip("/")
    return [adapter.network for adapter in (_provider_adapters() if providers is None else providers)
            if (env.get(adapter.base_url_env) or "").startswith(prefix)]


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def load_keys(env: dict[str, str]) -> None:
    """Fills LIAISON_SECRET_KEY and LIAISON_ADMIN_KEY into `env`: the environment wins, then
    var/secrets.env; a missing one is generated and saved there (readable by its owner only)."""
    saved = _read_env_file(SECRETS)
    generated = {
        "LIAISON_SECRET_KEY": lambda: secrets.token_urlsafe(32),
        "LIAISON_ADMIN_KEY": lambda: "admin_" + secrets.token_urlsafe(24),
    }
    changed = False
    for name, make in generated.items():
        if not saved.get(name):
            saved[name] = make()
            changed = True
        if not env.get(name):
            env[name] = saved[name]
    if changed:
        SECRETS.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(SECRETS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# Generated by `make run`; the environment's values win over these.\n")
            handle.writelines(f"{key}={value}\n" for key, value in saved.items())


def fresh_metrics_dir(env: dict[str, str]) -> None:
    """prometheus-client's multiprocess mode needs a folder no earlier run has left files in."""
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = VAR / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def check_ports_free(services: list[Service]) -> None:
    for service in services:
        parts = urlsplit(service.url)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((parts.hostname or "127.0.0.1", parts.port or 80))
            except OSError as exc:
                raise SystemExit(f"{service.name} cannot listen on {service.bind}: {exc.strerror}. "
                                 f"Is another `make run` running? (or set {service.name.upper()}_URL)"
                                 ) from None


def migrate_all(database_url: str, services: list[Service]) -> None:
    """Once, here, before the web processes start: their workers would otherwise all queue on the
    migration lock at start (safe, but slow and noisy)."""
    from shared.migrate import migrate, service_migrations

    for service in services:
        found = service_migrations(f"services.{service.name}")
        if found is None:  # the console keeps nothing of its own
            continue
        schema, folder = found
        applied = migrate(database_url, schema, folder)
        print(f"  {service.name}: schema {schema!r} up to date"
              + (f" ({len(applied)} migrations applied)" if applied else ""), flush=True)


# -- what the user sees ------------------------------------------------------------------------
def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(services: list[Service], timeout: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending and not stop.is_set():
        pending = [s for s in pending if not _ready(s.url)]
        if pending and time.monotonic() > deadline:
            return False
        stop.wait(0.5)
    return not pending


def banner(services: list[Service], env: dict[str, str], embedded_used: list[str],
           sandbox: Service | None = None, sandboxed: list[str] | None = None) -> str:
    identity = next((s.url for s in services if s.name == "identity"), "http://127.0.0.1:8001")
    width = max(len(s.name) for s in services)
    lines = ["", "=" * 78, "Liaison is running.", ""]
    for s in services:
        if s.name == "console":  # for people, not programs: no OpenAPI document of its own
            lines.append(f"  {s.name.ljust(width)}  {s.url}   sign in with an API key (marketing, compliance)")
        else:
            lines.append(f"  {s.name.ljust(width)}  {s.url}   docs {s.url}/docs   spec {s.url}/openapi.json")
    missing = [name for name in SERVICES if name not in {s.name for s in services}]
    if missing:
        lines.append(f"  (not in this checkout yet: {', '.join(missing)})")
    lines += [
        "",
        f"  Admin key (manages tenants and API keys only): {env['LIAISON_ADMIN_KEY']}",
        f"  Database: {env['DATABASE_URL']}",
        f"  Broker:   {env['BROKER_URL']}",
    ]
    if embedded_used:
        lines.append(f"  Embedded {' and '.join(embedded_used)} under {VAR}/ (stopped with the stack).")
    if sandbox and sandboxed:
        lines.append(f"  Providers answered by the sandbox at {sandbox.url}, with synthetic data: "
                     f"{', '.join(sandboxed)}.")
        lines.append("  (A handle starting with `unknown` is not found there. Set a provider's base URL or "
                     "credentials to use the real one.)")
    elif sandbox:
        lines.append(f"  Sandbox at {sandbox.url} (every provider is configured: none uses it).")
    lines += [
        "",
        "  Try it: create a tenant, then an API key for it (its secret is shown once):",
        f"    ADMIN={env['LIAISON_ADMIN_KEY']}",
        f"    TENANT=$(curl -s -X POST {identity}/v1/tenants \\",
        "      -H \"Authorization: Bearer $ADMIN\" -H 'Content-Type: application/json' \\",
        "      -d '{\"name\": \"Acme\"}' \\",
        "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')",
        f"    curl -s -X POST {identity}/v1/tenants/$TENANT/api-keys \\",
        "      -H \"Authorization: Bearer $ADMIN\" -H 'Content-Type: application/json' \\",
        "      -d '{\"name\": \"try\", \"scopes\": [\"crm\", \"marketing\", \"compliance\"]}'",
        "  then send that key as `Authorization: Bearer <key>` (README.md walks through contacts).",
        "",
        "  Ctrl-C stops everything.",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


# -- the run -----------------------------------------------------------------------------------
class _Interruptions:
    """SIGINT/SIGTERM while starting: raise Interrupted at once, except inside `deferred()`,
    where it waits for the block to finish (a first `initdb` cut short would leave a data
    directory PostgreSQL can never start from)."""

    def __init__(self) -> None:
        self.deferring = False
        self.pending: int | None = None

    def handle(self, signum: int, frame: object) -> None:
        if self.deferring:
            self.pending = signum
            return
        raise Interrupted(signal.Signals(signum).name)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        except Exception as exc:
            # A terminal's Ctrl-C also reaches the children of the block (initdb, pg_ctl), which
            # then fail: that is the interruption, not an error of its own.
            if self.pending is not None:
                raise Interrupted(signal.Signals(self.pending).name) from exc
            raise
        finally:
            self.deferring = False
        if self.pending is not None:
            raise Interrupted(signal.Signals(self.pending).name)


_interruptions = _Interruptions()


def serve(env: dict[str, str], stoppers: list[tuple[str, Callable[[], bool]]]) -> int:
    """Everything between the lock and the shutdown of the embedded servers (which `run` does,
    whatever happens here, from `stoppers`). Returns the exit code."""
    from honcho.manager import Manager

    from shared import embedded

    load_keys(env)
    # The service URLs (and every other setting) are checked before anything starts; the
    # placeholders stand for the embedded servers' URLs, known once they run.
    services = present_services(Settings.from_env({
        **env,
        "DATABASE_URL": env.get("DATABASE_URL") or "postgresql://embedded",
        "BROKER_URL": env.get("BROKER_URL") or "redis+socket:///embedded",
    }))
    # The sandbox runs when the Procfile has its line and its package is in this checkout.
    sandbox: Service | None = sandbox_service(env)
    processes = procfile_processes(services, values={"sandbox_bind": sandbox.bind})
    if not any(p.name == "sandbox" for p in processes):
        sandbox = None
    check_ports_free(services + ([sandbox] if sandbox else []))
    if sandbox:
        env.update(sandbox_env(env, sandbox.url))
    sandboxed = sandboxed_networks(env, sandbox.url) if sandbox else []

    embedded_used = []
    if not env.get("DATABASE_URL"):
        print(f"Starting the embedded PostgreSQL under {embedded.postgres_dir(VAR)}/ ...", flush=True)
        stoppers.append(("PostgreSQL", lambda: embedded.stop_postgres(embedded.postgres_dir(VAR))))
        with _interruptions.deferred():
            server = embedded.start_postgres(embedded.postgres_dir(VAR))
            env["DATABASE_URL"] = embedded.ensure_database(server, EMBEDDED_DATABASE)
        embedded_used.append("PostgreSQL")
    if not env.get("BROKER_URL"):
        print(f"Starting the embedded Redis broker under {embedded.broker_dir(VAR)}/ ...", flush=True)
        stoppers.append(("Redis", lambda: embedded.stop_broker(embedded.broker_dir(VAR))))
        with _interruptions.deferred():
            env["BROKER_URL"] = embedded.start_broker(embedded.broker_dir(VAR))
        embedded_used.append("Redis")
    settings = Settings.from_env(env)

    print("Applying migrations ...", flush=True)
    migrate_all(settings.database_url, services)

    fresh_metrics_dir(env)
    env["PYTHONUNBUFFERED"] = "1"  # children's logs reach the terminal as they are written
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    stopping = threading.Event()

    class StackManager(Manager):
        def terminate(self) -> None:  # on our signal, or when a process exits
            stopping.set()
            super().terminate()

    manager = StackManager()
    for process in processes:
        manager.add_process(process.name, process.command, env=env, cwd=str(ROOT))

    def announce() -> None:
        if wait_ready(services + ([sandbox] if sandbox else []), READY_TIMEOUT, stopping):
            if not stopping.is_set():
                print(banner(services, env, embedded_used, sandbox, sandboxed), flush=True)
        elif not stopping.is_set():
            print(f"Not every service answered /readyz within {READY_TIMEOUT:.0f} s; "
                  "see the logs above.", flush=True)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    manager.loop()  # returns once every process has stopped (Ctrl-C, SIGTERM, or one died)
    stopping.set()
    # honcho's return code is 130/143 when it stopped everything on our signal: a clean exit.
    if manager.returncode in (130, 143):
        return 0
    print(f"A process exited on its own (code {manager.returncode}); stopping everything.",
          file=sys.stderr, flush=True)
    return manager.returncode if manager.returncode and manager.returncode > 0 else 1


def run() -> int:
    signal.signal(signal.SIGINT, _interruptions.handle)  # also when started in the background,
    signal.signal(signal.SIGTERM, _interruptions.handle)  # where a shell leaves SIGINT ignored
    try:
        from shared.embedded import EmbeddedError
        from shared.migrate import MigrationError
    except Interrupted:
        return 0
    VAR.mkdir(exist_ok=True)
    lock = open(VAR / "run.lock", "w")  # held for the whole run: one `make run` per ./var/
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"Another `make run` is using {VAR}/ already.", file=sys.stderr)
        return 1
    stoppers: list[tuple[str, Callable[[], bool]]] = []
    try:
        code = serve(dict(os.environ), stoppers)
    except Interrupted as exc:
        print(f"\n{exc} received while starting; stopping.", flush=True)
        code = 0
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        code = 2
    except (EmbeddedError, MigrationError) as exc:
        print(f"Could not start: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the shutdown of the servers short and leave them orphaned.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for what, stop in reversed(stoppers):
            print(f"Stopping the embedded {what} ...", flush=True)
            stop()
        lock.close()
    if code == 0:
        print("Liaison stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(run())
