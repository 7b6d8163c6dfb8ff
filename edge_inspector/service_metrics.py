"""Prometheus metrics of a running service: per source, per thread, per sink.

Read at scrape time from the counters the service and its threads keep anyway, so the hot path
never touches a metric.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edge_inspector.health import MetricSnapshot

if TYPE_CHECKING:
    from edge_inspector.service import Service

#: bus counters exported as metrics: key in the heartbeat's counters -> (name, help)
_BUS_COUNTERS = {
    "catchup_requests": ("edge_inspector_catchup_requests", "catch-up requests received"),
    "catchup_refused": ("edge_inspector_catchup_refused", "catch-up requests refused as malformed (answered with an error)"),
    "catchup_busy": ("edge_inspector_catchup_busy", "catch-up requests answered busy (too many running)"),
    "catchup_dropped": ("edge_inspector_catchup_dropped", "catch-up clients dropped because they stopped reading"),
}


def metric_snapshot(service: "Service") -> MetricSnapshot:
    """Every metric of the service, as :class:`~edge_inspector.health.HealthServer` serves them."""
    rows = service.source_rows()

    def per_source(key: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {(("source", r["source"]), ("kind", r["kind"])): float(r[key]) for r in rows}

    snap: MetricSnapshot = {
        "edge_inspector_captured": ("items captured per source", "counter", per_source("captured")),
        "edge_inspector_inspected": ("items inspected per source", "counter", per_source("inspected")),
        "edge_inspector_dropped": ("items dropped because the inspector was behind", "counter", per_source("dropped")),
        "edge_inspector_defects": ("defect verdicts per source", "counter", per_source("defects")),
        "edge_inspector_reconnects": ("source reconnects", "counter", per_source("reconnects")),
        "edge_inspector_stale_frames": ("frames dropped because they arrived too late to be fresh", "counter", per_source("stale")),
        "edge_inspector_stalls": ("times a source delivered nothing for its stall timeout", "counter", per_source("stalls")),
        "edge_inspector_source_online": ("1 when the source is online", "gauge", {
            (("source", r["source"]), ("kind", r["kind"])): float(r["state"] == "online") for r in rows}),
        "edge_inspector_uptime_seconds": ("seconds since start", "gauge", {(): time.monotonic() - service.started_mono}),
    }
    failures, restarts = service.threads.snapshot()
    snap["edge_inspector_thread_failures"] = ("unexpected exceptions per long-lived thread", "counter", {
        (("thread", name),): float(n) for name, n in failures.items()})
    snap["edge_inspector_thread_restarts"] = ("restarts per long-lived thread after a failure", "counter", {
        (("thread", name),): float(n) for name, n in restarts.items()})
    snap["edge_inspector_failed"] = ("1 when a thread failed for good and the daemon is stopping", "gauge", {
        (): float(service.broken() is not None)})
    bus = service.bus.counters()
    for key, (name, help_text) in _BUS_COUNTERS.items():
        if key in bus:
            snap[name] = (help_text, "counter", {(): float(bus[key])})
    if service.visual is not None:
        snap["edge_inspector_visual_batches"] = ("engine calls by batch size", "counter", {
            (("size", str(k)),): float(n) for k, n in service.visual.stats.batch_sizes.items()})
    durable = {s.name: s.counters() for s in service.bus.sinks if s.durable}
    if durable:
        snap["edge_inspector_sink_connected"] = ("1 while a durable sink (MQTT) is connected", "gauge", {
            (("sink", n),): float(bool(c["connected"])) for n, c in durable.items()})
        snap["edge_inspector_sink_backlog"] = ("journalled events a durable sink has not delivered yet", "gauge", {
            (("sink", n),): float(c["backlog"]) for n, c in durable.items()})
        snap["edge_inspector_sink_delivered"] = ("events a durable sink's consumer acknowledged", "counter", {
            (("sink", n),): float(c["delivered"]) for n, c in durable.items()})
    return snap
