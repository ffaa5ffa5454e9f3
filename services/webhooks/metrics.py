"""The webhooks' Prometheus metrics (the worker counts; the web app's /metrics adds the live
backlog, read at scrape time)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

ATTEMPTS = Counter(
    "liaison_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (succeeded, retry, failed)",
    ["outcome"],
)
DELIVERIES_CREATED = Counter("liaison_webhook_deliveries_created_total", "Deliveries created from events")
DELIVERY_LAG = Histogram(
    "liaison_webhook_delivery_lag_seconds",
    "From a delivery's creation to the receiver's 2xx",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600),
)


class _Backlog:
    def __init__(self, read: Callable[[], dict[str, float]]):
        self.read = read

    def collect(self):
        lag = self.read()
        pending = GaugeMetricFamily("liaison_webhook_pending_deliveries", "Deliveries not yet succeeded or failed")
        pending.add_metric([], lag["pending"])
        overdue = GaugeMetricFamily("liaison_webhook_oldest_due_seconds",
                                    "How long the most overdue pending delivery has been due")
        overdue.add_metric([], lag["overdue"])
        yield pending
        yield overdue


def render_backlog(read: Callable[[], dict[str, float]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Backlog(read))
    return generate_latest(registry)
