"""The process every service's worker is: its outbox relay, its event consumers and its periodic
housekeeping, each on a thread, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
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
               periodic: list[PeriodicTask]) -> None:
    """Runs the relay (None for a process that only consumes, such as a pool of channel workers
    whose outbox another process relays), the consumers and the periodic tasks until SIGTERM or
    SIGINT."""
    from shared.maintenance import run_periodically

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=relay.run, args=(stop,), name="relay")] if relay is not None else []
    threads += [threading.Thread(target=c.run, args=(stop,), name=c.name) for c in consumers]
    threads += [threading.Thread(target=run_periodically, args=(stop, t.interval, t.run, t.name), name=t.name)
                for t in periodic]
    for thread in threads:
        thread.start()
    log.info(f"{name} worker started", extra={"consumers": [c.name for c in consumers],
                                              "periodic": [t.name for t in periodic]})
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
