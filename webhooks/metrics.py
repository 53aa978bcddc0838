"""Prometheus metrics of the webhook endpoints, correct under gunicorn with several workers.

With PROMETHEUS_MULTIPROC_DIR set (`lifecycle serve` sets it up), every worker process writes
its samples there and `/metrics` aggregates them; otherwise each app has its own registry.
The queue depth is read from Redis when `/metrics` is scraped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _QueueDepth(Collector):
    """`lifecycle_queue_depth{queue}`, read live at scrape time (absent when Redis is down)."""

    def __init__(self, queue_name: str, depth: Callable[[], int | None]) -> None:
        self.queue_name = queue_name
        self.depth = depth

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("lifecycle_queue_depth", "Jobs waiting in the RQ queue.", labels=["queue"])
        value = self.depth()
        if value is not None:
            gauge.add_metric([self.queue_name], value)
        yield gauge


class Metrics:
    """The counters and histogram the views update, and `render()` for `/metrics`."""

    def __init__(self, queue_name: str, depth: Callable[[], int | None]) -> None:
        self.multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if self.multiproc_dir and values.ValueClass is values.MutexValue:
            # prometheus_client was imported before the variable was set: switch to file-backed values.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        registry = None if self.multiproc_dir else CollectorRegistry()
        self._registry = registry
        self._depth = _QueueDepth(queue_name, depth)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        if registry is not None:
            registry.register(self._depth)
        self.requests = Counter(
            "lifecycle_webhook_requests", "Webhook requests by endpoint and outcome.",
            ["endpoint", "outcome"], registry=registry,
        )
        self.accepted = Counter(
            "lifecycle_webhook_events_accepted", "Events stored in a job.", ["endpoint"], registry=registry,
        )
        self.deduplicated = Counter(
            "lifecycle_webhook_events_deduplicated", "Events acknowledged as already received.",
            ["endpoint"], registry=registry,
        )
        self.dropped = Counter(
            "lifecycle_webhook_events_dropped", "Events acknowledged but not enqueued, by reason.",
            ["endpoint", "reason"], registry=registry,
        )
        self.enqueue_seconds = Histogram(
            "lifecycle_enqueue_seconds", "Time to store a delivery's jobs and ledger entries in Redis.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=registry,
        )

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: prometheus_client validates the labels and
        takes a lock on every `labels()` call, several µs a request for five updates."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)  # a race only looks it up twice
        return found

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (all processes in multiprocess mode)."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        registry.register(self._depth)
        return generate_latest(registry)
