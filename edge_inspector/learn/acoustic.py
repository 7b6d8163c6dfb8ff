"""Learn a machine's normal sound: fit the normal-only model and set its threshold, NumPy only.

The model (:mod:`edge_inspector.learn.acoustic_graph`): per 10 ms frame, the log of the mean
mel-band power over the last ``window`` frames (a quarter second: steady faults rise above the
frame-to-frame noise, and a knock among quiet frames still counts), standardised, whitened by a
PCA of the good audio, and scored by the distance to the nearest remembered good context.
Chosen against Mahalanobis, PCA reconstruction, per-band residuals and other context statistics
on development machines (the model card of ``training/acoustic`` has the comparison).  A
nearest-neighbour memory fits a machine with several normal states (idle, loaded, stopped,
starting) that one Gaussian would blur together.

The threshold comes from good audio the model did not see: the recording is cut into 10 s
blocks dealt round-robin into :data:`FOLDS` folds; each fold is scored by a model fitted on the
others.  Those held-out scores, smoothed as the daemon smooths them, give the threshold for a
target rate of false alarms per hour: a Gumbel law fitted to the maxima of 1 s blocks (by
their median and 90th percentile, so a rare state such as the one stop in the recording, which
its fold's model never heard, does not stretch it) is extrapolated to the quantile where one
block in ``3600 / rate`` exceeds it (three minutes of audio cannot show a once-an-hour event
directly), kept between 0.5 and 0.75 times the held-out spread (99.9th percentile minus
typical score) above the 99.9th percentile of held-out scores: a state or an event its fold's
model never heard stretches the law, and the machine's life holds loads a little beyond the recorded ones (bounds chosen on the
development machines).  The offset (hysteresis) sits halfway between
the typical held-out score and the threshold, or above 99.5 % of the held-out scores if higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.features import LOG_EPS, LogMelParams, logmel
from edge_inspector.inspectors.level_gate import DB_PER_NEPER, LevelGate
from edge_inspector.learn.acoustic_graph import ContextKnn
from edge_inspector.learn.audio import GoodAudio

FOLDS = 3
SPREAD_ABOVE = (0.5, 0.75)  # the threshold's bounds over the top held-out scores (:func:`calibrate`)
TOP_QUANTILE = 0.999
MIN_SECONDS = 30.0  # less cannot set a threshold for a rate per hour (3 minutes recommended)


@dataclass
class LearnOptions:
    window_frames: int = 25  # context: 0.25 s
    components: int = 64  # whitened dimensions
    floor: float = 0.02  # smallest whitening gain, as a fraction of the largest (noise directions)
    bank: int = 4000  # remembered good contexts
    smoothing_s: float = 0.3  # the daemon's moving average of the frame score
    max_false_alarms_per_hour: float = 1.0
    folds: int = FOLDS  # held-out folds (each scored by a model fitted on the others)
    fold_block_s: float = 10.0  # ... dealt the recording round-robin in blocks this long
    # the level gate (manifest ``gate_*``): a start or stop is caught within a few tenths of a second
    gate_window_s: float = 0.3
    gate_db: float = 1.5
    gate_hold_s: float = 1.5
    gate_below_running_db: float = 8.0  # a level this far under the running machine's counts as stopped


def running_floor_db(mels: list[np.ndarray], below_db: float) -> float | None:
    """The level gate's floor: ``below_db`` under the running machine's level (the 75th
    percentile of the per-frame median-over-bands level: a recording is mostly of the machine
    running, with a stop or two), in dB of mel power; None without audio."""
    levels = np.concatenate([np.median(m, axis=1) for m in mels if m.size])
    levels = levels[levels > math.log(LOG_EPS) + 1.0]  # not digital silence
    if not levels.size:
        return None
    return float(np.quantile(levels, 0.75)) * DB_PER_NEPER - below_db


@dataclass
class Calibrated:
    """The threshold and what it was set on."""

    threshold: float  # raw smoothed score that opens an episode
    score_scale: float
    offset: float  # normalised (the anomaly head's scale)
    false_alarms_per_hour: float  # the Gumbel law's estimate at the threshold
    held_out: np.ndarray  # smoothed held-out scores (for the card's histogram)
    typical: float  # their median
    offset_raw: float


def contexts_of(mel: np.ndarray, params: LogMelParams, window: int,
                gate: LevelGate | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Context features of one contiguous segment and, per context, whether the daemon's level
    gate (``gate``, None: never) would suspend scoring there (a start or stop).  Without the
    first ``window`` frames (the daemon does not score them either: its context is still
    filling) and without contexts that are all digital silence (a recording that starts before
    the sound does): a microphone delivering zeros says nothing about the machine, and would
    stretch the standardisation."""
    model = ContextKnn(window, np.zeros(1), np.ones(1), np.zeros((1, 1)), np.zeros((1, 1)))
    ctx = model.contexts(mel)[0][window:]
    gated = (gate.push(mel) if gate is not None else np.zeros(mel.shape[0], bool))[window:]
    silent = ctx[:, : params.n_mels].max(axis=1) < math.log(LOG_EPS) + 1.0
    return ctx[~silent], gated[~silent]


def fit(contexts: np.ndarray, window: int, components: int, bank: int, floor: float = 0.05) -> ContextKnn:
    """Standardise, whiten (PCA, small singular values floored at ``floor`` times the largest) and
    remember ``bank`` contexts spread evenly over the recording."""
    mean = contexts.mean(axis=0)
    std = contexts.std(axis=0) + 1e-3
    z = (contexts - mean) / std
    sub = z[:: max(1, z.shape[0] // 20000)]
    _, s, vt = np.linalg.svd(sub - sub.mean(axis=0), full_matrices=False)
    p = min(components, vt.shape[0])
    sv = s[:p] / math.sqrt(sub.shape[0])
    whiten = vt[:p].T / (sv + floor * sv[0])
    idx = np.unique(np.linspace(0, z.shape[0] - 1, min(bank, z.shape[0])).round().astype(int))
    return ContextKnn(window, mean.astype(np.float32), (1.0 / std).astype(np.float32),
                      whiten.astype(np.float32), (z[idx] @ whiten).astype(np.float32))


def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Causal moving average over ``n`` values (the daemon's smoothing)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(0, idx - n)
    return (c[idx] - c[lo]) / (idx - lo)


def _gumbel_quantile(maxima: np.ndarray, p: float) -> tuple[float, float, float]:
    """Quantile ``p`` of a Gumbel law fitted to ``maxima`` by their median and 90th percentile
    (robust: the one block where the machine stopped does not stretch the whole law)."""
    q50, q90 = (float(v) for v in np.quantile(maxima, [0.5, 0.9]))
    beta = max((q90 - q50) / (math.log(-math.log(0.5)) - math.log(-math.log(0.9))), 1e-6)
    mu = q50 + beta * math.log(-math.log(0.5))
    return mu - beta * math.log(-math.log(p)), mu, beta


def calibrate(held_out: list[np.ndarray], frames_per_s: float, smooth: int, per_hour: float) -> Calibrated:
    """Threshold, scale and offset from held-out frame scores (module docstring)."""
    smoothed = [moving_average(s, smooth) for s in held_out if s.size]
    block = int(round(frames_per_s))
    maxima = np.concatenate([s[: s.size // block * block].reshape(-1, block).max(axis=1) for s in smoothed])
    every = np.concatenate(smoothed)
    typical = float(np.median(every))
    rate = max(per_hour, 1e-3) / 3600.0  # exceedances per 1 s block
    threshold, mu, beta = _gumbel_quantile(maxima, 1.0 - rate)
    # three minutes are a short sample of a machine's life: a state or an event its fold's model
    # never heard (the one blow-off, the one slow spell) stretches the law (the threshold then
    # misses quiet faults), a load a little beyond the recorded ones is not in it at all; keep the
    # extrapolation between these bounds above what 99.9 % of held-out scores stay under (not
    # their maximum: one unheard event), in units of its spread over the typical score
    top = float(np.quantile(every, TOP_QUANTILE))
    threshold = float(np.clip(threshold, top + SPREAD_ABOVE[0] * (top - typical), top + SPREAD_ABOVE[1] * (top - typical)))
    scale = max((threshold - typical) / 3.0, 1e-6)  # a typical good frame lands at sigmoid(-3) ~ 0.05
    estimate = 3600.0 * (1.0 - math.exp(-math.exp(-(threshold - mu) / beta)))
    # close below what 99.5 % of good frames stay under (else halfway), and clearly below the threshold
    offset_raw = min(max(typical + 0.5 * (threshold - typical), float(np.quantile(every, 0.995))),
                     threshold - 0.1 * (threshold - typical))
    offset = 1.0 / (1.0 + math.exp(-(offset_raw - threshold) / scale))
    return Calibrated(threshold, scale, offset, estimate, every, typical, offset_raw)


def learn(audio: GoodAudio, params: LogMelParams, options: LearnOptions,
          progress: Callable[[str], None] = lambda _m: None) -> tuple[ContextKnn, Calibrated, SimpleNamespace]:
    """Fit on ``audio`` and calibrate on its held-out folds; the final model uses all of it.
    Returns the model, its calibration and its level gate (``gate_*``, for the manifest)."""
    w = options.window_frames
    seconds = sum(s.samples.size for s in audio.segments) / params.sample_rate
    if seconds < MIN_SECONDS:
        raise UserError(f"{', '.join(audio.sources)}: only {seconds:.1f} s of audio; learning needs at least "
                        f"{MIN_SECONDS:.0f} s (3 minutes or more of the machine's normal life recommended)")
    progress(f"features of {seconds:.0f} s of audio in {len(audio.segments)} segment(s)")
    mels = [logmel(s.samples, params) for s in audio.segments]
    gate = SimpleNamespace(sample_rate=params.sample_rate, hop_length=params.hop_length, gate_db=options.gate_db,
                           gate_window_s=options.gate_window_s, gate_hold_s=options.gate_hold_s,
                           gate_floor_db=running_floor_db(mels, options.gate_below_running_db))
    per_segment = [contexts_of(mel, params, w, LevelGate(gate)) for mel in mels]
    frames_per_s = params.sample_rate / params.hop_length
    block = int(options.fold_block_s * frames_per_s)
    folds: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(options.folds)]
    counter = 0
    for ctx, gated in per_segment:
        for a in range(0, ctx.shape[0], block):
            folds[counter % options.folds].append((ctx[a : a + block], gated[a : a + block]))
            counter += 1
    held_out: list[np.ndarray] = []
    for j in range(options.folds):
        progress(f"held-out fold {j + 1}/{options.folds}")
        rest = [x for i, f in enumerate(folds) if i != j for x, _ in f]
        if not rest or not folds[j]:
            continue
        model = fit(np.concatenate(rest), w, options.components, options.bank, options.floor)
        # scored as the daemon scores them: 0 while the gate holds (a start or stop)
        held_out += [np.where(g, 0.0, model.distance(model.embed(x))) for x, g in folds[j]]
    smooth = max(1, int(round(options.smoothing_s * frames_per_s)))
    progress("threshold")
    calibrated = calibrate(held_out, frames_per_s, smooth, options.max_false_alarms_per_hour)
    progress("final model on all the audio")
    everything = np.concatenate([ctx for ctx, _ in per_segment])
    return fit(everything, w, options.components, options.bank, options.floor), calibrated, gate
