"""The process every service's worker is: its outbox relay, its event consumers and its periodic
housekeeping, each on a thread, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.consumer import EventConsumer
from shared.outbox import OutboxRelay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    interval: float  # seconds
    run: Callable[[], object]


def run_worker(name: str, relay: OutboxRelay | None, consumers: list[EventConsumer],
               periodic: list[PeriodicTask], loops: Sequence[tuple[str, Callable[[threading.Event], object]]] = ()
               ) -> None:
    """Runs the relay (None for a process that only consumes, such as a pool of channel workers
    whose outbox another process relays), the consumers, the periodic tasks and the `loops`
    (name, run(stop): a loop of the service's own until stop is set) until SIGTERM or SIGINT.
    A part that dies of an error it does not handle stops the whole process with exit code 1: a
    worker missing its relay or a consumer must not look alive, and its supervisor (Kubernetes,
    systemd, honcho) starts it again whole."""
    from shared.maintenance import run_periodically

    stop = threading.Event()
    died: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def part(thread_name: str, target: Callable[..., object], *args: object) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except Exception:
                log.exception("a part of the worker died: stopping the process", extra={"part": thread_name})
                died.append(thread_name)
                stop.set()

        return threading.Thread(target=run, name=thread_name)

    threads = [part("relay", relay.run, stop)] if relay is not None else []
    threads += [part(c.name, c.run, stop) for c in consumers]
    threads += [part(t.name, run_periodically, stop, t.interval, t.run, t.name) for t in periodic]
    threads += [part(loop_name, loop, stop) for loop_name, loop in loops]
    for thread in threads:
        thread.start()
    log.info(f"{name} worker started", extra={"consumers": [c.name for c in consumers],
                                              "periodic": [t.name for t in periodic],
                                              "loops": [loop_name for loop_name, _ in loops]})
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
    if died:
        raise SystemExit(1)
