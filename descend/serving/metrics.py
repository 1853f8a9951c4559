"""``GET /metrics``: the server's counters in Prometheus's text format.

Each app has a registry of its own, not prometheus-client's global one, so that two apps in one
process (tests, an embedding program) count apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The paths counted by name; any other is "other", so that a client sending random paths
# cannot grow the labels without end.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """Requests by path and status, their latency, the queue and the batches."""

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self.paths = frozenset(paths)  # the app's own (`app.ENDPOINTS`); any other is "other"
        self.registry = CollectorRegistry()
        self.requests = Counter("descend_requests", "HTTP requests answered, by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("descend_request_seconds",
                                 "Time from the request's headers to the end of its answer",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("descend_batch_size", "Images in each forward pass",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("descend_in_flight", "Requests being decoded or predicted",
                               registry=self.registry)
        self.queued = Gauge("descend_queue_length", "Requests waiting for a place in flight "
                            "(or, with ?explain=1, for their turn to explain)",
                            registry=self.registry)
        self.refused = Counter("descend_refused", "Requests or connections turned away, by "
                               "reason", ["reason"], registry=self.registry)

    def watch(self, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        self.in_flight.set_function(in_flight)
        self.queued.set_function(queued)

    def answered(self, path: str, status: int, seconds: float) -> None:
        label = path if path in self.paths else "other"
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
