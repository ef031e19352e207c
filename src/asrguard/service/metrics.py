"""Prometheus metrics of one app (``GET /metrics``), in a registry of its own.

A registry per app, not the process-wide default, so that several apps (tests, or two
detectors in one process) never collide.

Example:
    >>> m = Metrics()
    >>> m.observe_request("/v1/detect", 200, 0.02)
    >>> b"asrguard_requests_total" in m.render()[0]
    True
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Paths with their own label; anything else is counted as "other" (unbounded labels would leak memory).
KNOWN_PATHS = ("/", "/healthz", "/metrics", "/v1/detect")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("asrguard_requests", "HTTP requests by path and status.", ["path", "status"],
                                registry=r)
        self.latency = Histogram("asrguard_request_seconds", "Request latency by path.", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("asrguard_stage_seconds", "Time in each stage of /v1/detect.", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.verdicts = Counter("asrguard_verdicts", "Answers of /v1/detect: benign, adversarial or no_speech.",
                                ["verdict"], registry=r)
        self.inflight = Gauge("asrguard_inflight_requests", "Detect requests admitted and not yet answered.",
                              registry=r)
        self.queue_depth = Gauge("asrguard_queue_depth", "Decoded uploads waiting for the scorer.", registry=r)
        self.batch_size = Histogram("asrguard_batch_size", "Uploads scored per pass of the scorer.",
                                    buckets=(1, 2, 4, 8, 16, 32), registry=r)
        self.refused = Counter("asrguard_refused", "Requests refused, by error code.", ["code"], registry=r)

    @staticmethod
    def path_label(path: str) -> str:
        return path if path in KNOWN_PATHS else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        label = self.path_label(path)
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its media type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["KNOWN_PATHS", "Metrics"]
