"""The daemon's Prometheus registry: histograms fed as verdicts happen, the rest read at scrape time.

A histogram has to see every observation, so capture-to-publish latency and inference time are
observed in the verdict path (one dictionary lookup and one ``observe``, about a microsecond);
every other number already exists as a counter somewhere in the service and is read only when
Prometheus scrapes (:func:`~edge_inspector.service_metrics.metric_snapshot`).  The process
itself (CPU seconds, resident memory, open files, Python's garbage collector) is reported by
prometheus-client's own collectors.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector

from edge_inspector.health import MetricSnapshot, SnapshotCollector

# seconds; a frame is due within tens of milliseconds, a sound chunk within its own length
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    """One registry per service (never prometheus-client's global one: tests run several)."""

    def __init__(self, snapshot: Callable[[], MetricSnapshot]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "edge_inspector_latency_seconds",
            "capture to publish per inspected frame (cameras), capture of a sound chunk's last sample "
            "to its inspection (microphones)",
            ["source", "kind"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram(
            "edge_inspector_inference_seconds",
            "engine time of the call that inspected each frame (one call serves a batch) or sound chunk",
            ["source", "kind"], buckets=INFERENCE_BUCKETS, registry=self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(SnapshotCollector(snapshot))
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe(self, source: str, kind: str, latency_s: float | None, inference_s: float | None) -> None:
        """One inspected frame or chunk (negative latencies, from clocks of replayed files, are 0)."""
        children = self._children.get((source, kind))
        if children is None:
            children = self._children[(source, kind)] = (self.latency.labels(source, kind),
                                                         self.inference.labels(source, kind))
        if latency_s is not None:
            children[0].observe(max(0.0, latency_s))
        if inference_s is not None:
            children[1].observe(max(0.0, inference_s))
