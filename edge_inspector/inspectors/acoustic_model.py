"""Running the streaming acoustic GRU: features, normalisation, carried state, clip scores.

The model is exported as a *chunk* model: ``mel [N, T, n_mels]`` and ``h_in [layers, N,
hidden]`` in, ``probs [N, T, labels]`` (per-frame softmax) and ``h_out`` out.  Because the
GRU is causal and its state is carried, running a stream chunk by chunk gives the same
per-frame probabilities as running the whole clip at once; that is what lets the daemon
score live audio with 10 ms frames and ``inspect`` score WAV files with the same code.

The per-frame anomaly score is ``1 - p(normal)``.  The clip score (:func:`clip_score`) is
defined here once and used by training evaluation, ``inspect`` and the tests: the mean of the
top decile of frame scores after the warm-up, so a fault that occupies only part of a clip
still dominates while a single spurious frame does not.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.errors import InputError
from edge_inspector.features import LogMelParams, LogMelStream, load_wav, wav_truncation
from edge_inspector.inspectors.heads import classify
from edge_inspector.manifest import AcousticModel
from edge_inspector.runtime.base import Engine

TOP_FRACTION = 0.1  # clip score: mean of this top fraction of post-warm-up frame scores


def warmup_frames(model: AcousticModel) -> int:
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


class AcousticStreamRunner:
    """Streaming inference for one microphone: log-mel stream plus carried GRU state."""

    def __init__(self, engine: Engine, model: AcousticModel) -> None:
        self.engine = engine
        self.model = model
        self.features = LogMelStream(LogMelParams.from_model(model))
        self.state = initial_state(model)
        self.frames_seen = 0  # frames produced since the last reset
        self.inference_ms = 0.0
        self.last_mel = np.zeros((0, 0), np.float32)  # log-mel of the frames the last push produced

    def reset(self) -> None:
        """The audio is not contiguous with what came before: forget samples and state."""
        self.features.reset()
        self.state = initial_state(self.model)
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed mono samples at the model rate; returns ``(scores [t], probs [t, C])`` for the
        ``t`` new frames (``t`` may be 0).  The GRU runs on at most ``chunk_frames`` at a time."""
        mel = self.last_mel = self.features.push(samples)
        n = mel.shape[0]
        probs = np.zeros((n, len(self.model.labels)), dtype=np.float32)
        if n:
            x = normalise(mel, self.model)[None]
            step = max(1, self.model.chunk_frames)
            t0 = time.perf_counter()
            for a in range(0, n, step):
                p, self.state = run_frames(self.engine, self.model, x[:, a : a + step], self.state)
                probs[a : a + step] = p[0]
            self.inference_ms += (time.perf_counter() - t0) * 1000.0
        self.frames_seen += n
        return anomaly_scores(probs), probs


def inspect_samples(runner: AcousticStreamRunner, samples: np.ndarray) -> np.ndarray:
    """Per-frame probabilities ``[T, C]`` of one whole recording, from a fresh state."""
    runner.reset()
    return runner.push(samples)[1]


def inspect_wav(
    path: str | Path, runner_or_engine: AcousticStreamRunner | Engine, model: AcousticModel | None = None
) -> dict[str, Any]:
    """The ``edge-inspector inspect`` result for one WAV file (any rate, any channel count).

    Returns ``{"path", "kind": "acoustic", "label", "score", "duration_s", "sample_rate",
    "probs"}`` where ``sample_rate`` is the file's own rate and ``probs`` maps each label to
    its clip probability.  Unreadable files raise :class:`~edge_inspector.errors.InputError`.
    """
    return inspect_wav_detail(path, runner_or_engine, model)[0]


def inspect_wav_detail(
    path: str | Path, runner_or_engine: AcousticStreamRunner | Engine, model: AcousticModel | None = None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """:func:`inspect_wav`'s object with the clip's log-mel ``[T, n_mels]`` and per-frame
    probabilities ``[T, C]`` (``inspect --overlay`` draws them)."""
    if isinstance(runner_or_engine, AcousticStreamRunner):
        runner = runner_or_engine
    else:
        if model is None:
            raise TypeError("inspect_wav needs the AcousticModel when given an engine")
        runner = AcousticStreamRunner(runner_or_engine, model)
    m = runner.model
    problem = wav_truncation(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    samples, rate, _channels = load_wav(path, m.sample_rate)
    frame_probs = inspect_samples(runner, samples)
    score, label = clip_score(frame_probs, m)
    probs = clip_probs(frame_probs, m)
    return ({
        "path": str(path),
        "kind": "acoustic",
        "label": label,
        "score": round(score, 6),
        "duration_s": round(samples.size / m.sample_rate, 6),
        "sample_rate": rate,
        "probs": {name: round(float(p), 6) for name, p in zip(m.labels, probs)},
    }, runner.last_mel, frame_probs)
