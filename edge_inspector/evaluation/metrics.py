"""Figures from counted decisions: confusion matrices, per-class P/R/F1, latency percentiles,
and event-level matching of acoustic episodes against labelled intervals.

Pure functions over plain data, so every number in a report can be checked by hand.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from edge_inspector.evaluation.labels import Interval


class Confusion:
    """Counts of (true label, predicted label); classes keep first-seen order after ``seed``."""

    def __init__(self, seed: Iterable[str] = ()) -> None:
        self.classes: list[str] = list(dict.fromkeys(seed))
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, truth: str, predicted: str, n: int = 1) -> None:
        for c in (truth, predicted):
            if c not in self.classes:
                self.classes.append(c)
        self.counts[(truth, predicted)] = self.counts.get((truth, predicted), 0) + n

    def matrix(self) -> list[list[int]]:
        """Rows: true class, columns: predicted class (in ``classes`` order)."""
        return [[self.counts.get((t, p), 0) for p in self.classes] for t in self.classes]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def per_class(self, skip: Sequence[str] = ()) -> dict[str, dict[str, float | int | None]]:
        """Precision, recall, F1 and support per class (None where undefined: nothing predicted/true)."""
        out: dict[str, dict[str, float | int | None]] = {}
        for c in self.classes:
            if c in skip:
                continue
            tp = self.counts.get((c, c), 0)
            predicted = sum(n for (_, p), n in self.counts.items() if p == c)
            support = sum(n for (t, _), n in self.counts.items() if t == c)
            precision = tp / predicted if predicted else None
            recall = tp / support if support else None
            f1 = (2 * precision * recall / (precision + recall)
                  if precision is not None and recall is not None and precision + recall > 0 else
                  (0.0 if precision is not None and recall is not None else None))
            out[c] = {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted}
        return out

    def accuracy(self) -> float | None:
        total = self.total
        return sum(n for (t, p), n in self.counts.items() if t == p) / total if total else None


def percentiles(values: np.ndarray | Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 (and mean, min, max) of latencies in ms; None when there are none."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "mean": None, "min": None, "max": None}
    p50, p95, p99 = (float(x) for x in np.percentile(arr, [50, 95, 99]))
    return {"count": int(arr.size), "p50": round(p50, 3), "p95": round(p95, 3), "p99": round(p99, 3),
            "mean": round(float(arr.mean()), 3), "min": round(float(arr.min()), 3), "max": round(float(arr.max()), 3)}


def match_episodes(intervals: Sequence[Interval], episodes: Sequence[dict[str, Any]], good: str = "normal"
                   ) -> tuple[Confusion, list[dict[str, Any]]]:
    """Event-level acoustic matching.

    Each labelled interval is *detected* by the defect episode that overlaps it most (its label
    is the prediction) or missed (predicted ``normal``); each defect episode that overlaps no
    interval is a false alarm (true ``normal``).  Normal-vs-normal time is not counted: it has
    no natural unit.  Returns the confusion and one row per interval / false alarm.
    """
    confusion = Confusion([good])
    rows: list[dict[str, Any]] = []
    used: set[int] = set()
    for iv in intervals:
        best, best_overlap = None, 0.0
        for i, ep in enumerate(episodes):
            start = float(ep["offset_s"])
            end = start + float(ep.get("duration_s") or 0.0)
            overlap = min(end, iv.end_s) - max(start, iv.start_s)
            if end == start and iv.start_s <= start <= iv.end_s:
                overlap = 1e-9  # an instantaneous episode inside the interval
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        predicted = good if best is None else str(episodes[best]["label"])
        if best is not None:
            used.add(best)
        confusion.add(iv.label, predicted)
        rows.append({"start_s": iv.start_s, "end_s": iv.end_s, "truth": iv.label, "predicted": predicted,
                     "score": None if best is None else episodes[best]["score"]})
    for i, ep in enumerate(episodes):
        start = float(ep["offset_s"])
        end = start + float(ep.get("duration_s") or 0.0)
        if i in used or any(min(end, iv.end_s) >= max(start, iv.start_s) for iv in intervals):
            continue
        confusion.add(good, str(ep["label"]))
        rows.append({"start_s": start, "end_s": end, "truth": good, "predicted": ep["label"], "score": ep["score"]})
    return confusion, rows


def histogram(scores: Sequence[float] | np.ndarray, bins: int = 50) -> list[int]:
    counts, _ = np.histogram(np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return [int(c) for c in counts]
