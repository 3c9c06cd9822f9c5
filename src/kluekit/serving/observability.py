"""Prometheus metrics at ``GET /metrics`` (prometheus-client): requests by route and status, their latency,
the model calls' batch sizes, and the micro-batchers' own stats (their queue depth among them), labelled
``model`` by the served model's name: the bi-encoder's and each task model's batcher.

Each app has its own registry (two apps in one process, as in the tests, never share counters). Requests for
``/metrics`` itself are not counted, so a scraper does not inflate what it measures.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

METRICS_PATH = "/metrics"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
GAUGE_KEYS = ("queue_depth", "queued_texts")  # the batcher's live values; its other stats only grow
GAUGE_PREFIXES = ("largest", "last", "max", "current")


class Metrics:
    """The app's registry and instruments; ``watch(batcher, model)`` adds a batcher's view once it is started."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("kluekit_http_requests", "HTTP requests answered, by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("kluekit_http_request_duration_seconds", "time to answer a request, in seconds",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("kluekit_http_requests_in_flight", "requests being answered now",
                               registry=self.registry)
        self.batch_size = Histogram("kluekit_batch_size", "inputs per model call (micro-batches): texts of the "
                                    "bi-encoder, request items of a task model", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batchers: dict[str, object] = {}  # model name -> its micro-batcher
        self.paths: set[str] = set()  # the app's route paths: a request stopped before routing (413, 401, 503)
        self.registry.register(_BatcherCollector(self))

    def watch(self, batcher, model: str) -> None:
        """Observe ``batcher`` (the model named ``model``) through its public API: its ``stats`` at scrape time
        (the queue depth among them) and, where it exposes its model function as ``fn``, each call's size."""
        self.batchers[model] = batcher
        fn = getattr(batcher, "fn", None)
        if callable(fn) and not getattr(fn, "kluekit_sized", False):
            sizes = self.batch_size.labels(model)

            def sized_fn(texts, *args, **kwargs):
                sizes.observe(len(texts))
                return fn(texts, *args, **kwargs)

            sized_fn.kluekit_sized = True
            batcher.fn = sized_fn

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _BatcherCollector:
    """The batchers' own counters (``stats.as_dict()``: requests, batches, texts, ...), read at scrape time:
    one family per stat, one sample per model."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        families = {}
        for model, batcher in self.metrics.batchers.items():
            for key, value in _stat_values(batcher):
                if key not in families:
                    families[key] = _family(key)
                families[key].add_metric([model], value)
        yield from families.values()


def _stat_values(batcher):
    """(key, number) of a batcher's ``stats.as_dict()``; nothing for a batcher without stats."""
    stats = getattr(batcher, "stats", None)
    values = stats.as_dict() if hasattr(stats, "as_dict") else {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, value


def _family(key: str):
    """The metric family of one batcher stat, labelled ``model``: a gauge for live values, else a counter."""
    name = f"kluekit_batcher_{key}"
    if key in GAUGE_KEYS or key.startswith(GAUGE_PREFIXES):
        return GaugeMetricFamily(name, f"micro-batcher: {key} (its stats)", labels=["model"])
    return CounterMetricFamily(name, f"micro-batcher: {key} since start (its stats)", labels=["model"])


class MetricsMiddleware:
    """Counts and times every HTTP request but those for /metrics; routes are labelled by their template
    (``/similarity``), paths that match no route as ``unmatched`` so that scans cannot add label values."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            return await self.app(scope, receive, send)
        status = 500
        started = time.perf_counter()

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or \
                (scope["path"] if scope["path"] in self.metrics.paths else "unmatched")
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


def build_metrics_router() -> APIRouter:
    router = APIRouter(tags=["status"])

    @router.get(METRICS_PATH, summary="Prometheus metrics (text exposition format)",
                response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics(request: Request):
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
