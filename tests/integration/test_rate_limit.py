"""The rate limit shared by a service's replicas, on the real PostgreSQL: two limiters (two
processes' worth) drawing on one bucket must together stay within it."""

from __future__ import annotations

import threading
import time

import pytest

from shared.db import Database
from shared.migrate import migrate
from shared.ratelimit import PostgresRateLimiter

SCHEMA = "ratelimit_test"


@pytest.fixture(scope="module")
def db(settings, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no_service_migrations")
    migrate(settings.database_url, SCHEMA, empty)  # only the plumbing, rate_buckets included
    database = Database(settings.database_url, min_size=1, max_size=8, name="ratelimit-test").open()
    yield database
    database.close()


def test_a_burst_is_granted_then_callers_are_spaced_or_refused(db):
    limiter = PostgresRateLimiter(db, SCHEMA)
    key = f"x:burst-{time.time_ns()}"
    first = [limiter.reserve(key, rate=2.0, burst=3, max_wait=10.0) for _ in range(3)]
    assert all(r.granted and r.wait == 0.0 for r in first)
    # The bucket is empty: the next caller waits about 1/rate, the one after twice that.
    fourth, fifth = (limiter.reserve(key, rate=2.0, burst=3, max_wait=10.0) for _ in range(2))
    assert fourth.granted and 0.3 < fourth.wait <= 0.5
    assert fifth.granted and 0.8 < fifth.wait <= 1.0
    # A wait beyond max_wait is refused and takes nothing: asking again at once says the same.
    refused = limiter.reserve(key, rate=2.0, burst=3, max_wait=1.0)
    assert not refused.granted and refused.wait > 1.0
    again = limiter.reserve(key, rate=2.0, burst=3, max_wait=1.0)
    assert not again.granted and abs(again.wait - refused.wait) < 0.1
    # Another key (another tenant's credentials) has a bucket of its own.
    assert limiter.reserve(key + ":other", rate=2.0, burst=3, max_wait=0.0).granted


def test_replicas_share_one_budget(db):
    replicas = [PostgresRateLimiter(db, SCHEMA) for _ in range(2)]
    key = f"x:shared-{time.time_ns()}"
    granted_now = []
    lock = threading.Lock()

    def caller(limiter: PostgresRateLimiter) -> None:
        for _ in range(10):
            reservation = limiter.reserve(key, rate=1.0, burst=5, max_wait=0.0)  # only what is free now
            if reservation.granted:
                with lock:
                    granted_now.append(reservation)

    threads = [threading.Thread(target=caller, args=(replicas[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 40 attempts within well under a second against a bucket of 5 refilling at 1/s: each
    # replica with a bucket of its own would have let 10 through.
    assert 5 <= len(granted_now) <= 6
