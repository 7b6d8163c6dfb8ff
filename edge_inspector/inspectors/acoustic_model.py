"""Running a microphone's acoustic models: features, normalisation, carried state, clip scores.

A directory has an acoustic classifier (the shipped GRU), a normal-only model learnt on the line
(``edge-inspector learn acoustic``), or both; :class:`AcousticStreamRunner` feeds one log-mel
stream to each, carrying each graph's state, and :func:`clip_decision` turns a recording's frames
into one decision by the scoring contract of :mod:`~edge_inspector.inspectors.heads`.

The classifier is exported as a *chunk* model: ``mel [N, T, n_mels]`` and ``h_in [layers, N,
hidden]`` in, ``probs [N, T, labels]`` (per-frame softmax) and ``h_out`` out.  Because the
GRU is causal and its state is carried, running a stream chunk by chunk gives the same
per-frame probabilities as running the whole clip at once; that is what lets the daemon
score live audio with 10 ms frames and ``inspect`` score WAV files with the same code.

The classifier's per-frame score is ``1 - p(normal)``.  Its clip score (:func:`clip_score`) is
defined here once and used by training evaluation, ``inspect`` and the tests: the mean of the
top decile of frame scores after the warm-up, so a fault that occupies only part of a clip
still dominates while a single spurious frame does not.  The learnt model's clip score is its
largest smoothed frame score (:func:`clip_raw`): the clip is flagged exactly when the stream
would have opened an episode.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_inspector.errors import InputError
from edge_inspector.features import LogMelParams, LogMelStream, load_wav, wav_truncation
from edge_inspector.inspectors.heads import Decision, Head, InferenceBatch, classify, head_for
from edge_inspector.inspectors.heads import decide as decide_opinions
from edge_inspector.inspectors.level_gate import QUIET, LevelGate
from edge_inspector.manifest import AcousticModel
from edge_inspector.runtime.base import Engine

TOP_FRACTION = 0.1  # clip score: mean of this top fraction of post-warm-up frame scores


def warmup_frames(model: Any) -> int:
    """Frames after a state reset that are not scored (the GRU has not heard enough yet)."""
    return int(round(model.warmup_s * model.sample_rate / model.hop_length))


def normalise(mel: np.ndarray, model: AcousticModel) -> np.ndarray:
    return ((mel - model.feature_mean) / model.feature_std).astype(np.float32)


def initial_state(model: AcousticModel, batch: int = 1) -> np.ndarray:
    return np.zeros((model.num_layers, batch, model.hidden_size), dtype=np.float32)


def run_frames(
    engine: Engine, model: AcousticModel, mel: np.ndarray, state: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One engine call on normalised ``mel [N, T, n_mels]``: ``(probs [N, T, C], h_out)``."""
    if state is None:
        state = initial_state(model, mel.shape[0])
    out = engine.run({model.input: np.ascontiguousarray(mel, dtype=np.float32), model.input_state: state})
    return out[model.output_probs], out[model.output_state]


def anomaly_scores(probs: np.ndarray) -> np.ndarray:
    """Per-frame anomaly score ``1 - p(normal)`` (label index 0 is the good class)."""
    return (1.0 - probs[..., 0]).astype(np.float32)


def top_fraction_probs(frame_probs: np.ndarray, n_labels: int) -> np.ndarray:
    """Mean class probabilities over the top decile of frames by anomaly score (no warm-up
    handling: the caller passes only frames that may be scored)."""
    if frame_probs.shape[0] == 0:
        out = np.zeros(n_labels, dtype=np.float32)
        out[0] = 1.0
        return out
    scores = anomaly_scores(frame_probs)
    k = max(1, int(math.ceil(TOP_FRACTION * scores.size)))
    return frame_probs[np.argsort(scores, kind="stable")[-k:]].mean(axis=0)


def decide(probs: np.ndarray, threshold: float, labels: tuple[str, ...]) -> tuple[float, str]:
    """``(score, label)`` from aggregated class probabilities: a defect label when
    ``1 - p(normal) >= threshold``, the good class otherwise (the classifier head's rule)."""
    score, label, _ = classify(probs, threshold, labels)
    return score, label


def clip_probs(frame_probs: np.ndarray, model: AcousticModel) -> np.ndarray:
    """Class probabilities of a clip: the mean over the top decile of post-warm-up frames."""
    start = warmup_frames(model)
    if frame_probs.shape[0] <= start:  # shorter than the warm-up: score what there is
        start = 0
    return top_fraction_probs(frame_probs[start:], len(model.labels))


def clip_score(frame_probs: np.ndarray, model: AcousticModel) -> tuple[float, str]:
    """``(score, label)`` of a clip from its per-frame probabilities ``[T, C]`` (from a reset).

    ``score = 1 - p(normal)`` of :func:`clip_probs` (= mean of the top decile of frame scores
    after warm-up); ``label`` is the most probable defect class when ``score >= threshold``,
    else the good class.
    """
    return decide(clip_probs(frame_probs, model), model.threshold, model.labels)


@dataclass
class LoadedModel:
    """One acoustic model of a runner: its manifest entry, head, engine and the file it runs."""

    entry: Any
    head: Head
    engine: Engine
    file: Any = None  # edge_inspector.precision.ModelFile


@dataclass
class Frames:
    """New frames of one push: the classifier's probabilities and the anomaly model's raw scores."""

    n: int
    probs: np.ndarray | None = None  # [n, C]
    raw: np.ndarray | None = None  # [n] (0 where the level gate suspended scoring)
    gated: np.ndarray | None = None  # [n] bool: the machine was starting or stopping

    @property
    def scores(self) -> np.ndarray:
        """The classifier's frame scores ``1 - p(normal)`` ([n])."""
        if self.probs is None:
            raise ValueError("no acoustic classifier ran")
        return anomaly_scores(self.probs)


class _GraphStream:
    """One model's engine and carried state: the GRU's ``h``, or the learnt model's context."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        e = model.entry
        self.classifier = model.head.kind == "classifier"
        self.chunk = max(1, int(e.chunk_frames))
        self.state = self._initial()

    def _initial(self) -> np.ndarray:
        e = self.model.entry
        if self.classifier:
            return initial_state(e)
        return np.full((1, e.context_frames - 1, e.n_mels), QUIET, np.float32)

    def reset(self) -> None:
        self.state = self._initial()

    def run(self, mel: np.ndarray) -> np.ndarray:
        """``mel [t, n_mels]`` raw log-mel -> probs ``[t, C]`` or raw scores ``[t]``."""
        e = self.model.entry
        x = (normalise(mel, e) if self.classifier else mel.astype(np.float32))[None]
        out_name = e.output_probs if self.classifier else e.output_score
        parts = []
        for a in range(0, x.shape[1], self.chunk):
            out = self.model.engine.run({e.input: np.ascontiguousarray(x[:, a : a + self.chunk]), e.input_state: self.state})
            self.state = out[e.output_state]
            parts.append(out[out_name][0])
        return np.concatenate(parts, axis=0)


class AcousticStreamRunner:
    """Streaming inference for one microphone: one log-mel stream feeding every acoustic model of
    the directory (the classifier, the learnt anomaly model, or both), each with carried state.

    ``AcousticStreamRunner(models)`` takes :class:`LoadedModel` s (from
    :func:`~edge_inspector.inspectors.factory.open_acoustic`); ``AcousticStreamRunner(engine,
    entry)`` is the one-model shorthand.
    """

    def __init__(self, models: Sequence[LoadedModel] | Engine, entry: Any = None) -> None:
        if entry is not None:
            models = [LoadedModel(entry, head_for(entry), models)]  # type: ignore[list-item]
        self.models = list(models)  # type: ignore[arg-type]
        if not self.models:
            raise ValueError("no acoustic model to run")
        self.classifier = next((m for m in self.models if m.head.kind == "classifier"), None)
        self.anomaly = next((m for m in self.models if m.head.kind == "anomaly"), None)
        self.model = (self.classifier or self.anomaly).entry  # type: ignore[union-attr]
        self.features = LogMelStream(LogMelParams.from_model(self.model))
        self.streams = [_GraphStream(m) for m in self.models]
        self.gate = LevelGate(self.anomaly.entry) if self.anomaly is not None else None
        self.frames_seen = 0  # frames produced since the last reset
        self.inference_ms = 0.0
        self.last_mel = np.zeros((0, 0), np.float32)  # log-mel of the frames the last push produced
        self.name = "+".join(m.entry.name for m in self.models)
        self.sha256 = (self.models[0].entry.sha256 if len(self.models) == 1 else
                       hashlib.sha256("+".join(m.entry.sha256 for m in self.models).encode()).hexdigest())

    @property
    def warmup(self) -> int:
        """Frames after a reset that are not scored (the longest of the models' warm-ups)."""
        return max(warmup_frames(m.entry) for m in self.models)

    def reset(self) -> None:
        """The audio is not contiguous with what came before: forget samples and state."""
        self.features.reset()
        for s in self.streams:
            s.reset()
        if self.gate is not None:
            self.gate.reset()
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> Frames:
        """Feed mono samples at the model rate; returns the new frames' outputs (maybe none)."""
        mel = self.last_mel = self.features.push(samples)
        out = Frames(mel.shape[0])
        if out.n:
            t0 = time.perf_counter()
            for s in self.streams:
                if s.classifier:
                    out.probs = s.run(mel)
                else:
                    out.raw = s.run(mel)
            if self.gate is not None and out.raw is not None:
                out.gated = self.gate.push(mel)
                out.raw = np.where(out.gated, 0.0, out.raw).astype(np.float32)
            self.inference_ms += (time.perf_counter() - t0) * 1000.0
        elif self.classifier is not None:
            out.probs = np.zeros((0, len(self.classifier.entry.labels)), np.float32)
        if out.raw is None and self.anomaly is not None:
            out.raw = np.zeros(0, np.float32)
        self.frames_seen += out.n
        return out


def smoothed(raw: np.ndarray, entry: Any) -> np.ndarray:
    """Causal moving average of frame scores over the model's ``smoothing_s`` (the inspector's)."""
    n = max(1, int(round(entry.smoothing_s * entry.sample_rate / entry.hop_length)))
    c = np.concatenate([[0.0], np.cumsum(np.asarray(raw, np.float64))])
    idx = np.arange(1, raw.size + 1)
    lo = np.maximum(0, idx - n)
    return (c[idx] - c[lo]) / (idx - lo)


def clip_raw(raw: np.ndarray, entry: Any) -> float:
    """The anomaly model's clip score: the largest smoothed frame score after the warm-up (an
    episode would have opened above its threshold)."""
    start = warmup_frames(entry)
    if raw.size <= start:
        start = 0
    return float(smoothed(raw[start:], entry).max()) if raw.size else 0.0


def clip_decision(runner: AcousticStreamRunner, frames: Frames) -> Decision:
    """The decision on a whole recording from its frames (from a reset), by the scoring contract."""
    opinions = []
    if runner.classifier is not None and frames.probs is not None:
        m = runner.classifier
        p = clip_probs(frames.probs, m.entry)
        opinions.append(m.head.opinion(InferenceBatch(pred_score=1.0 - p[None, 0], probs=p[None]), 0))
    if runner.anomaly is not None and frames.raw is not None:
        m = runner.anomaly
        opinions.append(m.head.opinion(InferenceBatch(pred_score=np.array([clip_raw(frames.raw, m.entry)], np.float32)), 0))
    good = runner.classifier.entry.labels[0] if runner.classifier is not None else "normal"
    return decide_opinions(opinions, good)


@dataclass
class Curve:
    """The smoothed frame score episodes are decided on, with its onset and offset (one model: its
    own scale; two: each mapped so its onset lands on 0.5, then the larger, as the inspector does)."""

    values: np.ndarray
    onset: float
    offset: float


def decision_curve(runner: AcousticStreamRunner, frames: Frames) -> Curve:
    """The :class:`Curve` of a recording's frames (from a reset)."""
    from edge_inspector.inspectors.heads import anomaly_score, lift

    parts = []
    if runner.classifier is not None and frames.probs is not None:
        e = runner.classifier.entry
        parts.append((smoothed(anomaly_scores(frames.probs), e), e.onset, e.offset))
    if runner.anomaly is not None and frames.raw is not None:
        e = runner.anomaly.entry
        parts.append((anomaly_score(smoothed(frames.raw, e), e.threshold, e.score_scale), e.onset, e.offset))
    if len(parts) == 1:
        return Curve(np.asarray(parts[0][0], np.float32), parts[0][1], parts[0][2])
    values = np.max([[lift(float(v), on) for v in vals] for vals, on, _ in parts], axis=0)
    return Curve(values.astype(np.float32), 0.5, min(lift(off, on) for _, on, off in parts))


def inspect_samples(runner: AcousticStreamRunner, samples: np.ndarray) -> np.ndarray:
    """Per-frame classifier probabilities ``[T, C]`` of one whole recording, from a fresh state."""
    runner.reset()
    probs = runner.push(samples).probs
    if probs is None:
        raise ValueError("no acoustic classifier ran")
    return probs


def inspect_wav(path: str | Path, runner_or_engine: AcousticStreamRunner | Engine, model: Any = None) -> dict[str, Any]:
    """The ``edge-inspector inspect`` result for one WAV file (any rate, any channel count).

    Returns ``{"path", "kind": "acoustic", "label", "score", "duration_s", "sample_rate",
    "probs"}`` (and ``anomaly_score`` with a learnt model) where ``sample_rate`` is the file's own
    rate and ``probs`` maps each classifier label to its clip probability.  Unreadable files raise
    :class:`~edge_inspector.errors.InputError`.
    """
    return inspect_wav_detail(path, runner_or_engine, model)[0]


def inspect_wav_detail(
    path: str | Path, runner_or_engine: AcousticStreamRunner | Engine, model: Any = None
) -> tuple[dict[str, Any], np.ndarray, Curve]:
    """:func:`inspect_wav`'s object with the clip's log-mel ``[T, n_mels]`` and the smoothed
    score curve the daemon's episodes follow (``inspect --overlay`` draws them)."""
    if isinstance(runner_or_engine, AcousticStreamRunner):
        runner = runner_or_engine
    else:
        if model is None:
            raise TypeError("inspect_wav needs the manifest entry when given an engine")
        runner = AcousticStreamRunner(runner_or_engine, model)
    m = runner.model
    problem = wav_truncation(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    samples, rate, _channels = load_wav(path, m.sample_rate)
    runner.reset()
    frames = runner.push(samples)
    decision = clip_decision(runner, frames)
    result: dict[str, Any] = {
        "path": str(path),
        "kind": "acoustic",
        "label": decision.label,
        "score": round(decision.score, 6),
        "duration_s": round(samples.size / m.sample_rate, 6),
        "sample_rate": rate,
        "probs": {name: round(float(p), 6) for name, p in decision.probs.items()},
    }
    if decision.anomaly_score is not None:
        result["anomaly_score"] = round(float(decision.anomaly_score), 6)
    return result, runner.last_mel, decision_curve(runner, frames)
