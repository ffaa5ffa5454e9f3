"""A worker process whose relay, consumer or periodic task dies of an unhandled error stops as a
whole, with exit code 1, so that its supervisor starts it again instead of it running on without
that part."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from shared.worker import PeriodicTask, run_worker


class BrokenRelay:
    def run(self, stop: threading.Event) -> None:
        time.sleep(0.05)
        raise RuntimeError("the relay hit a bug")


@pytest.fixture(autouse=True)
def signal_handlers():
    """run_worker installs its own SIGTERM and SIGINT handlers: give pytest its own back."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in kept.items():
        signal.signal(sig, handler)


def test_a_part_that_dies_stops_the_worker_with_exit_code_1():
    ticks: list[float] = []
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        run_worker("test", BrokenRelay(), [], [PeriodicTask("ticker", 0.01, lambda: ticks.append(time.monotonic()))])
    assert exited.value.code == 1
    assert time.monotonic() - started < 5
    # The periodic task ran, then stopped with the rest: no tick after the worker returned.
    count = len(ticks)
    assert count > 0
    time.sleep(0.1)
    assert len(ticks) == count
