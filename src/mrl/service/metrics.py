"""Prometheus metrics of one app: requests and latency per route, items per collection.

Each app has its own registry (not the process-global one), so several apps in one process
(tests) never clash. The route label is the route's template (`/v1/collections/{name}`), not
the raw path, so a client cannot grow the label set; unmatched paths share one label.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from mrl.errors import MrlError

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# request latency buckets (seconds): a vector search is ~1 ms, an embedding batch ~1 s
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _ItemsCollector:
    """`mrl_collection_items{collection}`, read from the backend at scrape time."""

    def __init__(self, backend):
        self.backend = backend

    def collect(self):
        family = GaugeMetricFamily(
            "mrl_collection_items", "Items stored per collection", labels=["collection"]
        )
        try:
            for spec in self.backend.collections():
                family.add_metric([spec.name], self.backend.info(spec.name)["count"])
        except (MrlError, ConnectionError) as e:  # a backend that is down: no gauge this scrape
            logger.warning("metrics: cannot read collection counts (%s)", e)
        yield family

    def describe(self):
        return []


class Metrics:
    """The counters and histograms the middleware updates, and their text rendering."""

    def __init__(self, backend):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mrl_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mrl_request_seconds",
            "HTTP request latency by route template and method",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ItemsCollector(backend))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
