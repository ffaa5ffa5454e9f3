"""The stack a fault test breaks: campaigns and identity as the Procfile runs them (gunicorn, the
campaigns worker that relays the outbox and runs launches, two email channel workers), the
sandbox (its HTTP app for `GET /sandbox/outbox`, its SMTP sink), each a real process of its own
on the real PostgreSQL and RabbitMQ, so that a test can kill -9 any of them.

A killed process is started again by `Stack.start`, as a supervisor (Kubernetes, systemd) would:
that is the only thing done for the system; what it does on restart is its own recovery.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(app: str, port: int, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"), "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}", app]


def module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


@dataclass
class Stack:
    """Named processes sharing one environment; logs under `logs`."""

    env: dict[str, str]
    logs: Path
    commands: dict[str, list[str]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)  # the web processes' base URLs, by name
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, command: list[str], url: str | None = None) -> None:
        self.commands[name] = command
        if url:
            self.urls[name] = url

    def start(self, *names: str) -> None:
        for name in names or tuple(self.commands):
            self.starts[name] = self.starts.get(name, 0) + 1
            self.logs.mkdir(parents=True, exist_ok=True)
            with open(self.logs / f"{name}.{self.starts[name]}.log", "wb") as log:
                # A session of its own: kill() reaches a gunicorn master and its workers at once.
                self.processes[name] = subprocess.Popen(self.commands[name], cwd=ROOT, env=self.env, stdout=log,
                                                        stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str) -> None:
        """kill -9, of the process and of everything it started (gunicorn's workers)."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def pids(self, name: str) -> list[int]:
        """The process and its children (a gunicorn master's workers)."""
        pid = self.processes[name].pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            return [pid, *(int(p) for p in children.read_text().split())]
        except OSError:
            return [pid]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running process, with its children, has used so far."""
        used = {}
        for name in self.processes:
            total = 0.0
            for pid in self.pids(name) if self.alive(name) else []:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            used[name] = round(total, 1)
        return used

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def exited(self) -> dict[str, int]:
        """The processes that stopped by themselves, with their exit codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"---- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # -- HTTP ------------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return self.urls[name]

    def ready(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """Each web process's /readyz status (0 when it does not answer)."""
        statuses = {}
        for name in names or self.urls:
            path = "/readyz" if name != "sandbox" else "/healthz"
            try:
                statuses[name] = requests.get(self.urls[name] + path, timeout=5).status_code
            except requests.RequestException:
                statuses[name] = 0
        return statuses

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until every web process started so far answers /readyz with 200."""
        names = [name for name in self.urls if name in self.processes]
        wait_for(lambda: all(status == 200 for status in self.ready(names).values()), timeout,
                 lambda: f"not ready: {self.ready(names)}; exited: {self.exited()}\n{self.log_tail()}")


def wait_for(condition: Callable[[], Any], timeout: float, describe: Callable[[], str], every: float = 0.2) -> Any:
    """Polls `condition` until it returns something true; fails the test with `describe()`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s: {describe()}")
        time.sleep(every)
