"""Model heads: what a model's outputs mean, and the one rule that turns them into a decision.

An engine runs a graph; a head knows what the graph's outputs are.  As in anomalib, the two
steps are kept apart:

1. :meth:`Head.batch` turns one engine call's outputs into a threshold-free
   :class:`InferenceBatch` (``pred_score``, ``anomaly_map``, and class ``probs`` for a classifier);
2. :meth:`Head.opinion` reads one item of it against a threshold, and :func:`decide` combines
   the opinions of every model that ran on the item into its :class:`Decision`.

So ``edge-inspector calibrate`` moves a threshold without touching a model, and the same
inference serves any threshold.  The manifest entry's ``kind`` picks the head
(:data:`HEADS`); the visual runner (:mod:`~edge_inspector.inspectors.visual_model`) and the
acoustic path read alike: each opens its models through
:mod:`~edge_inspector.inspectors.factory`, asks each head for its opinion and lets
:func:`decide` apply the scoring contract.  A new kind of model is a new head here plus its
manifest entry type; nothing downstream changes.

**The scoring contract** (events, ``inspect``, reports):

- *classifier only*: ``score = 1 - p(good)``; defective when ``score >= threshold`` (the
  manifest's, or the source's ``threshold``); ``label`` is then the most probable defect class.
- *anomaly model only*: ``score = anomaly_score = sigmoid((raw - t) / s)``, 0.5 at the
  manifest's raw threshold ``t`` (``s``: the spread of the good parts' scores, see
  :class:`~edge_inspector.manifest.AnomalyDecision`); defective when it reaches the source's
  ``anomaly_threshold`` (default 0.5); ``label`` ``anomaly``.
- *both*: each score is mapped piecewise-linearly so that its own threshold lands on 0.5
  (``[0, t] -> [0, 0.5]``, ``[t, 1] -> [0.5, 1]``); ``score`` is the larger of the two, so
  ``score >= 0.5`` exactly when either model flags the item, it stays in [0, 1] and rises with
  defectiveness; ``label`` is the classifier's defect type when the classifier flags the item,
  else ``anomaly``.  The item also carries ``anomaly_score`` whenever an anomaly model ran.

The box (visual) comes from the map of the model that decided: the classifier's heatmap when
it flagged the item, else the anomaly map, cut at :data:`BOX_LEVEL` of the way from a typical
good part's score (the manifest's ``typical``) to the map's peak, never below ``map_threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import numpy as np

ANOMALY_LABEL = "anomaly"
# an anomaly box takes the cells 3/4 of the way from a typical good part's score to the map's peak
# (measured on the development products: IoU >= 0.3 for 64-88 % of found defects, against 15-61 %
# for the cells above the fixed map threshold)
BOX_LEVEL = 0.75


@dataclass
class InferenceBatch:
    """One model's outputs for a batch, before any threshold (anomalib's ``InferenceBatch``)."""

    pred_score: np.ndarray  # [N] raw score, higher = more defective (classifier: 1 - p(good))
    anomaly_map: np.ndarray | None = None  # [N, h, w] per cell, same direction (classifier: heatmap)
    probs: np.ndarray | None = None  # [N, C] class probabilities (classifier only)


@dataclass
class Thresholds:
    """A source's overrides: ``classifier`` on 1 - p(good), ``anomaly`` on the anomaly score."""

    classifier: float | None = None
    anomaly: float | None = None


@dataclass
class Opinion:
    """What one model says about one item."""

    kind: str  # "classifier" | "anomaly"
    score: float  # classifier: 1 - p(good); anomaly: the anomaly score (0.5 at the manifest threshold)
    threshold: float  # on ``score``
    label: str  # the defect type the model would name (classifier) or "anomaly"
    cell_map: np.ndarray | None = None  # [h, w] in [0, 1], same scale as ``score``
    map_threshold: float = 0.5  # cells at or above it make the box
    probs: dict[str, float] | None = None
    raw: float | None = None  # anomaly: the graph's raw score

    @property
    def flagged(self) -> bool:
        return self.score >= self.threshold


@dataclass
class Decision:
    """The verdict on one item once every model has given its opinion."""

    label: str
    score: float
    defect: bool
    cell_map: np.ndarray | None  # the deciding model's map (reports, box)
    map_threshold: float
    probs: dict[str, float]  # classifier class probabilities ({} without a classifier)
    anomaly_score: float | None = None


class Head(Protocol):
    kind: str
    entry: Any

    def batch(self, outputs: Mapping[str, np.ndarray]) -> InferenceBatch: ...

    def opinion(self, batch: InferenceBatch, i: int, threshold: float | None = None) -> Opinion: ...


def classify(probs: np.ndarray, threshold: float, labels: tuple[str, ...]) -> tuple[float, str, bool]:
    """``(score, label, defect)`` from class probabilities (index 0 is the good class):
    ``score = 1 - p(good)``; the most probable defect class when ``score >= threshold``."""
    score = float(np.clip(1.0 - probs[0], 0.0, 1.0))
    if score >= threshold:
        return score, labels[1 + int(np.argmax(probs[1:]))], True
    return score, labels[0], False


class ClassifierHead:
    """A supervised model: class probabilities (index 0 = good) and, for images, a heatmap."""

    kind = "classifier"

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        self.output_names = tuple(n for n in (entry.output_probs, getattr(entry, "output_heatmap", None)) if n)

    def batch(self, outputs: Mapping[str, np.ndarray]) -> InferenceBatch:
        probs = np.asarray(outputs[self.entry.output_probs], np.float32)
        heat_name = getattr(self.entry, "output_heatmap", None)
        heat = np.asarray(outputs[heat_name], np.float32)[:, 0] if heat_name else None
        return InferenceBatch(pred_score=1.0 - probs[..., 0], anomaly_map=heat, probs=probs)

    def opinion(self, batch: InferenceBatch, i: int, threshold: float | None = None) -> Opinion:
        assert batch.probs is not None
        p = batch.probs[i]
        limit = self.entry.threshold if threshold is None else float(threshold)
        score, label, defect = classify(p, limit, self.entry.labels)
        if not defect:  # the type it would name if it were defective
            label = self.entry.labels[1 + int(np.argmax(p[1:]))]
        return Opinion("classifier", score, limit, label,
                       None if batch.anomaly_map is None else batch.anomaly_map[i],
                       getattr(self.entry, "heatmap_threshold", 0.5),
                       {k: float(v) for k, v in zip(self.entry.labels, p)})


def anomaly_score(raw: np.ndarray | float, threshold: float, scale: float) -> np.ndarray:
    """The normalised anomaly score: ``sigmoid((raw - threshold) / scale)`` (0.5 at the threshold)."""
    z = np.clip((np.asarray(raw, np.float64) - threshold) / scale, -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


class AnomalyHead:
    """A good-parts-only model: a raw score per item (and per cell), normalised by the manifest."""

    kind = "anomaly"

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        self.output_names = tuple(n for n in (entry.output_score, getattr(entry, "output_map", None)) if n)
        # the map's box threshold on the same normalised scale as the score
        self.map_threshold = float(anomaly_score(getattr(entry, "map_threshold", entry.threshold),
                                                 entry.threshold, entry.score_scale))

    def batch(self, outputs: Mapping[str, np.ndarray]) -> InferenceBatch:
        score = np.asarray(outputs[self.entry.output_score], np.float32).reshape(-1)
        map_name = getattr(self.entry, "output_map", None)
        amap = np.asarray(outputs[map_name], np.float32)[:, 0] if map_name else None
        return InferenceBatch(pred_score=score, anomaly_map=amap)

    def opinion(self, batch: InferenceBatch, i: int, threshold: float | None = None) -> Opinion:
        e = self.entry
        raw = float(batch.pred_score[i])
        cells, box_level = None, self.map_threshold
        if batch.anomaly_map is not None:
            cells = anomaly_score(batch.anomaly_map[i], e.threshold, e.score_scale)
            typical = getattr(e, "typical", None)
            if typical is not None:  # relative to this map's peak: a strong defect's box is not its halo
                level = typical + BOX_LEVEL * (float(batch.anomaly_map[i].max()) - typical)
                box_level = max(self.map_threshold, float(anomaly_score(level, e.threshold, e.score_scale)))
        return Opinion("anomaly", float(anomaly_score(raw, e.threshold, e.score_scale)),
                       0.5 if threshold is None else float(threshold), ANOMALY_LABEL, cells, box_level, raw=raw)


HEADS: dict[str, type] = {"classifier": ClassifierHead, "anomaly": AnomalyHead}


def head_for(entry: Any) -> Head:
    """The head for a manifest entry, chosen by its ``kind``."""
    return HEADS[entry.kind](entry)


def lift(score: float, threshold: float) -> float:
    """Map ``score`` piecewise-linearly so that ``threshold`` lands on 0.5 (0 and 1 stay put)."""
    t = min(max(threshold, 1e-6), 1.0 - 1e-6)
    return 0.5 * score / t if score < t else 0.5 + 0.5 * (score - t) / (1.0 - t)


def decide(opinions: list[Opinion], good_label: str) -> Decision:
    """Apply the scoring contract (module docstring) to the opinions of the models that ran."""
    if not opinions:
        raise ValueError("no model gave an opinion")
    classifier = next((o for o in opinions if o.kind == "classifier"), None)
    anomaly = next((o for o in opinions if o.kind == "anomaly"), None)
    anomaly_value = None if anomaly is None else anomaly.score
    probs = (classifier.probs or {}) if classifier is not None else {}
    if len(opinions) == 1:
        only = opinions[0]
        defect = only.flagged
        score = only.score
        deciding = only
    else:
        lifted = [(lift(o.score, o.threshold), o) for o in opinions]
        score, deciding = max(lifted, key=lambda pair: pair[0])
        flagged = [o for o in opinions if o.flagged]
        defect = bool(flagged)
        if flagged:
            deciding = classifier if classifier is not None and classifier.flagged else flagged[0]
    if not defect:
        label = good_label
    elif classifier is not None and classifier.flagged:
        label = classifier.label
    else:
        label = ANOMALY_LABEL
    score = float(min(1.0, max(0.0, score))) if not math.isnan(score) else score
    return Decision(label, score, defect, deciding.cell_map, deciding.map_threshold, probs, anomaly_value)


def decision_labels(entries: list[Any]) -> list[str]:
    """Every label a decision over these models can carry, the good one first."""
    classifier = next((e for e in entries if e.kind == "classifier"), None)
    labels = list(classifier.labels) if classifier is not None else ["ok"]
    if any(e.kind == "anomaly" for e in entries):
        labels.append(ANOMALY_LABEL)
    return labels


def decision_threshold(entries: list[Any]) -> float | None:
    """Where ``score`` turns into a defect with the manifest's own thresholds (reports)."""
    if not entries:
        return None
    if len(entries) == 1:
        return float(entries[0].threshold) if entries[0].kind == "classifier" else 0.5
    return 0.5
