"""Evaluation during a replay: counts decisions against the labels as verdicts arrive.

Memory stays bounded on long recordings: per-frame results are folded into confusion counts,
score histograms (50 bins) and a float32 latency array; only false rejects and misses keep
their heatmap (a 32x32 float16 each, at most ``max_thumbnails`` per camera and kind), and
their frames are read back from the video after the replay for the report's thumbnails.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.config import Config
from edge_inspector.evaluation.labels import Labels, load_labels
from edge_inspector.evaluation.metrics import Confusion, match_episodes, percentiles
from edge_inspector.inspectors.heads import decision_labels, decision_threshold
from edge_inspector.values import Verdict

log = logging.getLogger(__name__)

BINS = 50


@dataclass
class Mismatch:
    """A false reject (good part rejected) or a miss (defective part passed)."""

    kind: str  # "false_reject" | "miss"
    source: str
    frame: int
    truth: str
    predicted: str
    score: float
    bbox: list[int] | None
    heatmap: np.ndarray | None


class _Latencies:
    def __init__(self) -> None:
        self.data = np.empty(1024, np.float32)
        self.n = 0

    def add(self, value: float) -> None:
        if self.n == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.n] = value
        self.n += 1

    def values(self) -> np.ndarray:
        return self.data[: self.n]


class Evaluation:
    """``observe`` every verdict during the replay, then ``finish`` writes the report."""

    def __init__(self, labels: Labels, cfg: Config, video_paths: dict[str, Path], visual_classes: list[str],
                 default_threshold: float | None, labels_path: Path, max_thumbnails: int = 150) -> None:
        self.labels, self.cfg, self.video_paths, self.labels_path = labels, cfg, video_paths, labels_path
        self.max_thumbnails = max_thumbnails
        self.visual = Confusion(visual_classes)
        self.thresholds = {c.name: c.threshold if c.threshold is not None else default_threshold for c in cfg.cameras}
        self.hist: dict[str, dict[str, np.ndarray]] = {
            c.name: {"good": np.zeros(BINS, np.int64), "defective": np.zeros(BINS, np.int64)} for c in cfg.cameras}
        self.frames_seen: dict[str, int] = {c.name: 0 for c in cfg.cameras}
        self.max_frame: dict[str, int] = {c.name: -1 for c in cfg.cameras}
        self.mismatches: list[Mismatch] = []
        self.mismatch_counts = {"false_reject": 0, "miss": 0}
        self.episodes: dict[str, list[dict[str, Any]]] = {m.name: [] for m in cfg.microphones}
        self.latency = {"visual": _Latencies(), "acoustic": _Latencies()}
        self.started = time.time()

    @classmethod
    def from_csv(cls, path: Path, cfg: Config, inputs: list[Any]) -> "Evaluation":
        from edge_inspector.manifest import load_manifest

        cameras = {c.name for c in cfg.cameras}
        labels = load_labels(path, cameras, {m.name for m in cfg.microphones})
        manifest = load_manifest(cfg.runtime.engines_dir, verify=False)
        visual = list(manifest.entries("visual"))
        classes, threshold = decision_labels(visual), decision_threshold(visual)
        videos = {i.name: i.path for i in inputs if i.kind == "camera"}
        return cls(labels, cfg, videos, classes, threshold, path)

    # -- during the replay (inspector threads; the caller serialises calls) --------------------
    def observe(self, verdict: Verdict, latency_ms: float) -> None:
        self.latency[verdict.kind].add(latency_ms)
        if verdict.kind == "acoustic":
            final_episode = not verdict.extra.get("ongoing") and not verdict.extra.get("window")
            if verdict.defect and final_episode and verdict.source in self.episodes:
                self.episodes[verdict.source].append({"offset_s": verdict.offset_s or 0.0, "duration_s": verdict.duration_s,
                                                      "label": verdict.label, "score": verdict.score})
            return
        source, frame = verdict.source, int(verdict.frame or 0)
        good = self.visual.classes[0]
        truth = self.labels.frame_label(source, frame, good)
        predicted = verdict.label if verdict.defect else good
        self.visual.add(truth, predicted)
        self.frames_seen[source] = self.frames_seen.get(source, 0) + 1
        self.max_frame[source] = max(self.max_frame.get(source, -1), frame)
        b = min(BINS - 1, max(0, int(verdict.score * BINS)))
        self.hist.setdefault(source, {"good": np.zeros(BINS, np.int64), "defective": np.zeros(BINS, np.int64)})
        self.hist[source]["good" if truth == good else "defective"][b] += 1
        kind = "false_reject" if truth == good and predicted != good else "miss" if truth != good and predicted == good else None
        if kind is None:
            return
        self.mismatch_counts[kind] += 1
        kept = sum(1 for m in self.mismatches if m.kind == kind and m.source == source)
        if kept < self.max_thumbnails:
            heat = None if verdict.heatmap is None else np.asarray(verdict.heatmap, np.float16).copy()
            self.mismatches.append(Mismatch(kind, source, frame, truth, predicted, float(verdict.score), verdict.bbox, heat))

    # -- after the replay ------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        """Everything the report shows, as plain JSON-able data."""
        good = self.visual.classes[0]
        out: dict[str, Any] = {"labels_file": str(self.labels_path)}
        if self.cfg.cameras:
            unreplayed = sum(1 for s, frames in self.labels.visual.items() for f in frames if f > self.max_frame.get(s, -1))
            binary = {"false_rejects": self.mismatch_counts["false_reject"], "misses": self.mismatch_counts["miss"]}
            good_total = sum(n for (t, _), n in self.visual.counts.items() if t == good)
            bad_total = self.visual.total - good_total
            binary["false_reject_rate"] = binary["false_rejects"] / good_total if good_total else None
            binary["miss_rate"] = binary["misses"] / bad_total if bad_total else None
            binary["accuracy"] = ((self.visual.total - binary["false_rejects"] - binary["misses"]) / self.visual.total
                                  if self.visual.total else None)
            out["visual"] = {
                "frames": self.visual.total, "per_source_frames": self.frames_seen, "classes": self.visual.classes,
                "confusion": self.visual.matrix(), "per_class": self.visual.per_class(), "accuracy": self.visual.accuracy(),
                "good_vs_defective": binary, "thresholds": self.thresholds,
                "histograms": {s: {k: v.tolist() for k, v in h.items()} for s, h in self.hist.items()},
                "labels_beyond_replayed_frames": unreplayed, "latency_ms": percentiles(self.latency["visual"].values()),
            }
            if unreplayed:
                log.warning("%s: %d labelled frame(s) lie beyond the replayed frames", self.labels_path, unreplayed)
        if self.cfg.microphones:
            confusion = Confusion(["normal"])
            rows: dict[str, list[dict[str, Any]]] = {}
            for mic in self.cfg.microphones:
                c, r = match_episodes(self.labels.acoustic.get(mic.name, []), self.episodes.get(mic.name, []))
                for (t, p), n in c.counts.items():
                    confusion.add(t, p, n)
                rows[mic.name] = r
            out["acoustic"] = {
                "classes": confusion.classes, "confusion": confusion.matrix(),
                "per_class": confusion.per_class(skip=["normal"]),
                "intervals": sum(len(v) for v in self.labels.acoustic.values()),
                "episodes": sum(len(v) for v in self.episodes.values()),
                "missed": sum(n for (t, p), n in confusion.counts.items() if t != "normal" and p == "normal"),
                "false_alarms": sum(n for (t, p), n in confusion.counts.items() if t == "normal" and p != "normal"),
                "rows": rows, "latency_ms": percentiles(self.latency["acoustic"].values()),
            }
        out["latency_ms"] = percentiles(np.concatenate([v.values() for v in self.latency.values()]))
        return out

    def finish(self, report: Path, manifests: list[dict[str, Any]], model_manifest: Any, speed: str) -> dict[str, Any]:
        """Write ``report`` (HTML) and ``report.json``, print the summary; returns the figures."""
        from edge_inspector.evaluation.report import latency_name, print_summary, write_report
        from edge_inspector.evaluation.thumbnails import render_thumbnails

        figures = self.figures()
        figures["speed"] = speed
        for kind in ("visual", "acoustic"):
            if kind in figures:
                figures[kind]["latency_measure"] = latency_name(speed, kind)
        figures["recordings"] = [{"started": m.get("started"), "ended": m.get("ended")} for m in manifests]
        figures["models"] = {k: {"name": m["name"], "sha256": m["sha256"]} for k, m in model_manifest.summary().items()}
        rois = {c.name: c.roi for c in self.cfg.cameras}
        thumbs = render_thumbnails(self.mismatches, self.video_paths, rois)
        write_report(report, figures, thumbs, self.mismatch_counts)
        print_summary(figures, report)
        return figures
