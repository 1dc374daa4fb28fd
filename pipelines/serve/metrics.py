"""`attn serve`'s /metrics: Prometheus text format through prometheus_client.

Each app has its own registry (two servers in one process, as in tests, do not share counts).
With several worker processes (`--workers N`) the CLI sets PROMETHEUS_MULTIPROC_DIR before any
worker starts: the workers then write their values to files there, and /metrics, whichever
worker answers it, reports the sum over all of them.
"""

from __future__ import annotations

import os

# Seconds: from a cached lone request (a few ms) to the default request timeout (30 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The server's counters: requests by endpoint and status, request latency, inputs per model
    batch (requests per batch too), errors by kind, and inputs waiting for the model."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("attn_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("attn_request_seconds", "Time from a request's arrival to its answer",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch_items = Histogram("attn_batch_items", "Inputs scored together in one model batch",
                                     buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.batch_requests = Histogram("attn_batch_requests", "Requests scored together in one model batch",
                                        buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.batch_seconds = Histogram("attn_batch_seconds", "Model time per batch", buckets=LATENCY_BUCKETS,
                                       registry=r)  # fmt: skip
        self.errors = Counter("attn_errors", "Requests answered with an error, by kind", ["endpoint", "kind"],
                              registry=r)  # fmt: skip
        self.queued = Gauge("attn_queued_items", "Inputs waiting for the model", registry=r,
                            multiprocess_mode="livesum")  # fmt: skip

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import CollectorRegistry, multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)
