"""What a running service reports about itself: the source table, heartbeat counters, metrics.

Read when asked (a status table refresh, a heartbeat, a Prometheus scrape) from the counters the
service and its threads keep anyway, so the hot path never touches them.  The histograms, which
must see every frame, live in :mod:`edge_inspector.metrics`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_inspector.health import MetricSnapshot
from edge_inspector.log_writer import log_lines_dropped
from edge_inspector.memory import memory_parts

if TYPE_CHECKING:
    from edge_inspector.service import Service

Samples = dict[tuple[tuple[str, str], ...], float]

#: bus counters exported as metrics: key in the heartbeat's counters -> (name, help)
_BUS_COUNTERS = {
    "catchup_requests": ("edge_inspector_catchup_requests", "catch-up requests received"),
    "catchup_refused": ("edge_inspector_catchup_refused", "catch-up requests refused as malformed (answered with an error)"),
    "catchup_busy": ("edge_inspector_catchup_busy", "catch-up requests answered busy (too many running)"),
    "catchup_dropped": ("edge_inspector_catchup_dropped", "catch-up clients dropped because they stopped reading"),
}


def source_rows(service: "Service") -> list[dict[str, Any]]:
    """One row per source: state, counts, rate, last verdict, latency percentiles.

    A camera counts frames; a microphone seconds of audio (its verdicts come per episode, so a
    count of them says nothing about how much was listened to).
    """
    rows = []
    now = time.monotonic()
    with service._lock:
        for v in service.sources.values():
            lat = sorted(v.latencies_ms)
            elapsed = max(1e-6, now - v.started_mono)
            mic = service.acoustic.mics[v.name] if v.kind == "microphone" and service.acoustic else None
            inspected = round(mic.audio_s, 1) if mic is not None else v.inspected
            rows.append({
                "source": v.name, "kind": v.kind, "state": v.thread.counters.state,
                "captured": v.thread.counters.items, "inspected": inspected,
                "rate": inspected / elapsed, "dropped": v.queue.stats.dropped,
                "overflows": v.thread.counters.overflows, "defects": v.defects,
                "last": f"{v.last_label} {v.last_score:.2f}" if v.last_label else "",
                "last_label": v.last_label, "last_score": v.last_score,
                "p50_ms": lat[len(lat) // 2] if lat else None,
                "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
                "reconnects": v.thread.counters.reconnects, "error": v.thread.counters.last_error,
                "stale": v.thread.counters.stale, "stalls": v.thread.counters.stalls,
                "audio_s": mic.audio_s if mic is not None else None,
            })
    return rows


def heartbeat_counters(service: "Service") -> dict[str, Any]:
    """Compact counters carried by every heartbeat event."""
    out: dict[str, Any] = {"uptime_s": round(time.monotonic() - service.started_mono, 1)}
    for row in service.source_rows():
        out[row["source"]] = {k: row[k] for k in ("state", "inspected", "dropped", "defects", "stale")}
    failures, _restarts = service.threads.snapshot()
    if failures:
        out["thread_failures"] = failures
    if service.visual is not None:
        out["visual_batches"] = dict(service.visual.stats.batch_sizes)
    if service.views.snapshots is not None:
        out["snapshots"] = service.views.snapshots.counters()
    return out


def metric_snapshot(service: "Service") -> MetricSnapshot:
    """Every metric of the service, as :class:`~edge_inspector.health.HealthServer` serves them."""
    rows = service.source_rows()

    def per_source(key: str, kind: str | None = None) -> Samples:
        return {(("source", r["source"]), ("kind", r["kind"])): float(r[key]) for r in rows
                if kind is None or r["kind"] == kind}

    snap: MetricSnapshot = {
        "edge_inspector_captured": ("items captured per source (frames; microphones: audio chunks)", "counter",
                                    per_source("captured")),
        "edge_inspector_inspected": ("frames inspected per camera", "counter", per_source("inspected", "camera")),
        "edge_inspector_audio_inspected_seconds": ("seconds of audio inspected per microphone", "counter",
                                                   per_source("audio_s", "microphone")),
        "edge_inspector_dropped": ("items dropped because the inspector was behind", "counter", per_source("dropped")),
        "edge_inspector_defects": ("defect verdicts per source", "counter", per_source("defects")),
        "edge_inspector_reconnects": ("source reconnects", "counter", per_source("reconnects")),
        "edge_inspector_stale_frames": ("frames dropped because they arrived too late to be fresh", "counter", per_source("stale")),
        "edge_inspector_stalls": ("times a source delivered nothing for its stall timeout", "counter", per_source("stalls")),
        "edge_inspector_source_online": ("1 when the source is online", "gauge", {
            (("source", r["source"]), ("kind", r["kind"])): float(r["state"] == "online") for r in rows}),
        "edge_inspector_uptime_seconds": ("seconds since start", "gauge", {(): time.monotonic() - service.started_mono}),
    }
    for view in service.sources.values():  # metrics of one kind of source, labelled like the others
        for name, (help_text, kind, samples) in view.thread.source_metrics().items():
            merged = snap.setdefault(name, (help_text, kind, {}))[2]
            for labels, value in samples.items():
                merged[(("source", view.name), ("kind", view.kind)) + labels] = value
    failures, restarts = service.threads.snapshot()
    snap["edge_inspector_thread_failures"] = ("unexpected exceptions per long-lived thread", "counter", {
        (("thread", name),): float(n) for name, n in failures.items()})
    snap["edge_inspector_thread_restarts"] = ("restarts per long-lived thread after a failure", "counter", {
        (("thread", name),): float(n) for name, n in restarts.items()})
    snap["edge_inspector_log_lines_dropped"] = ("log lines dropped because nobody read the daemon's stderr", "counter", {
        (): float(log_lines_dropped())})
    snap["edge_inspector_memory_bytes"] = ("the process's memory by part: native_in_use, native_free (mostly given back), "
                                           "python_arenas, python_objects, sqlite (see README)", "gauge", {
        (("part", part),): value for part, value in memory_parts().items()})
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
    snap.update(_event_metrics(service))
    snap.update(_view_metrics(service))
    snap["edge_inspector_model_info"] = ("the models running: 1 per model, with the file that runs, its sha256 prefix, "
                                         "backend and precision", "gauge", {
        (("role", m["model"]), ("name", m["name"]), ("file", m["file"]), ("sha256", m["sha256"]),
         ("backend", str(m["backend"])), ("precision", str(m["precision"]))): 1.0 for m in service.model_info()})
    return snap


def _by_kind(counts: dict[str, int]) -> Samples:
    return {(("topic_kind", k),): float(n) for k, n in counts.items()}


def _event_metrics(service: "Service") -> MetricSnapshot:
    """Events by topic kind through the journal, the PUB socket and catch-up; the journal itself."""
    bus, journal = service.bus, service.journal
    snap: MetricSnapshot = {
        "edge_inspector_events_journalled": ("events journalled, by topic kind (defect, verdict, status, heartbeat)",
                                             "counter", _by_kind(bus.journalled)),
    }
    for sink in bus.sinks:
        if hasattr(sink, "published_by_kind"):
            snap["edge_inspector_events_published"] = ("events sent on the ZeroMQ PUB socket, by topic kind", "counter",
                                                       _by_kind(sink.published_by_kind))
        if hasattr(sink, "events_by_kind"):
            snap["edge_inspector_events_caught_up"] = ("events sent again to catch-up clients, by topic kind", "counter",
                                                       _by_kind(sink.events_by_kind))
    path = Path(journal.path)
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())
    snap["edge_inspector_journal_bytes"] = ("size of the journal database with its write-ahead log", "gauge", {(): float(size)})
    try:
        oldest = float(journal.first_seq())
    except RuntimeError:  # closed while stopping
        oldest = 0.0
    snap["edge_inspector_journal_oldest_seq"] = ("oldest seq the journal still holds (catch-up reaches back to it)",
                                                 "gauge", {(): oldest})
    snap["edge_inspector_journal_newest_seq"] = ("newest seq journalled", "gauge", {(): float(journal.last_seq)})
    return snap


def _view_metrics(service: "Service") -> MetricSnapshot:
    """The snapshot store and the live preview."""
    snap: MetricSnapshot = {}
    writer, preview = service.views.snapshots, service.views.preview
    if writer is not None:
        c = writer.counters()
        snap["edge_inspector_snapshots_bytes"] = ("size of the snapshot store", "gauge", {(): float(c["bytes"])})
        snap["edge_inspector_snapshots_stored"] = ("defect events whose pictures the store holds", "gauge",
                                                   {(): float(c["stored"])})
        for key, text in (("written", "defects whose pictures were written"),
                          ("dropped", "defects that went without pictures because the picture queue was full"),
                          ("limited", "defects that went without pictures: more than snapshots.max_per_s for the source"),
                          ("failed", "defects whose pictures could not be drawn or written"),
                          ("deleted", "defects whose pictures retention deleted (size, age, free space)"),
                          ("skipped_disk", "defects whose pictures were not written: too little free disk space")):
            snap[f"edge_inspector_snapshots_{key}"] = (text, "counter", {(): float(c[key])})
    if preview is not None:
        snap["edge_inspector_preview_viewers"] = ("open live.mjpg streams", "gauge", {(): float(preview.watching())})
        snap["edge_inspector_preview_frames"] = ("live preview frames drawn and encoded", "counter",
                                                 {(): float(preview.encoded)})
    return snap
