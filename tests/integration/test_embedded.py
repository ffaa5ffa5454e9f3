"""The embedded servers `make run` uses when no DATABASE_URL / BROKER_URL is given: they start,
are found again rather than started twice, stop, and keep their data across a restart."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError

from shared import embedded
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def folder() -> Iterator[Path]:
    # Under ./var/ like the real thing (and short enough for Unix socket paths).
    path = ROOT / "var" / "test" / f"embedded-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    embedded.stop_postgres(path / "postgres")
    embedded.stop_broker(path / "broker")
    shutil.rmtree(path)


def test_postgres_starts_once_stops_and_keeps_its_data(folder: Path) -> None:
    data = folder / "postgres"
    url = embedded.start_postgres(data)
    assert url.startswith("postgresql://") and f"host={data}" in url
    Settings.from_env({"DATABASE_URL": url, "BROKER_URL": "memory://",
                       "LIAISON_SECRET_KEY": "s" * 32})  # the project accepts it as is

    with psycopg.connect(url, autocommit=True) as conn:
        started_at = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")

    assert embedded.start_postgres(data) == url  # the running server is found, not restarted
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started_at

    database_url = embedded.ensure_database(url, "liaison_embedded_test")
    assert embedded.ensure_database(url, "liaison_embedded_test") == database_url
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "liaison_embedded_test"

    assert embedded.stop_postgres(data) is True
    assert embedded.postgres_url(data) is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert embedded.stop_postgres(data) is False

    assert embedded.start_postgres(data) == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]


def test_broker_keeps_queued_messages_across_a_restart(folder: Path) -> None:
    data = folder / "broker"
    url = embedded.start_broker(data)
    assert url == f"redis+socket://{data / 'redis.sock'}"
    assert embedded.start_broker(data) == url

    with Connection(url) as connection:
        queue = connection.SimpleQueue("embedded-test")
        queue.put({"note": "queued before the restart"})
        queue.close()

    assert embedded.stop_broker(data) is True
    assert embedded.stop_broker(data) is False
    with pytest.raises(BrokerError), Connection(url, connect_timeout=1) as connection:
        connection.ensure_connection(max_retries=0)

    assert embedded.start_broker(data) == url
    with Connection(url) as connection:
        queue = connection.SimpleQueue("embedded-test")
        message = queue.get(timeout=5)
        assert message.payload == {"note": "queued before the restart"}
        message.ack()
        queue.close()
