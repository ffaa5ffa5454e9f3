"""Prometheus metrics. Under gunicorn several workers share one view of the counters through
prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by `make run`)."""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

HTTP_REQUESTS = Counter(
    "liaison_http_requests_total",
    "HTTP requests answered",
    ["service", "method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "liaison_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "method", "endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_CONSUMED = Counter(
    "liaison_events_consumed_total",
    "Events taken from the bus, by consumer and outcome (handled, repeat, failed, malformed)",
    ["consumer", "result"],
)
EVENTS_RELAYED = Counter(
    "liaison_outbox_events_published_total", "Events the relay published", ["schema"]
)


class _LiveGauges:
    """Values read at scrape time (outbox lag), not accumulated by a process."""

    def __init__(self, read: Callable[[], dict[str, dict[str, float]]]):
        self.read = read

    def collect(self):
        events = GaugeMetricFamily(
            "liaison_outbox_pending_events", "Events written but not yet published", labels=["schema"]
        )
        age = GaugeMetricFamily(
            "liaison_outbox_oldest_age_seconds", "Age of the oldest unpublished event", labels=["schema"]
        )
        for schema, lag in self.read().items():
            events.add_metric([schema], lag["events"])
            age.add_metric([schema], lag["age"])
        yield events
        yield age


def render(outbox_lag: Callable[[], dict[str, dict[str, float]]] | None = None) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    body = generate_latest(registry)
    if outbox_lag is not None:
        live = CollectorRegistry(auto_describe=False)
        live.register(_LiveGauges(outbox_lag))
        body += generate_latest(live)
    return body, CONTENT_TYPE_LATEST
