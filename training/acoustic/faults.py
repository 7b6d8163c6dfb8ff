"""Faults of the plant machines that the classifier has no label for (and its own three).

Each fault is a signal the length of its interval, locked to the machine's shaft where the
physics says so (a rubbing blade scrapes once per turn, a broken tooth hits once per turn of its
gear), unit-free: the caller scales it to an audibility (:mod:`training.acoustic.audibility`).

Development faults tune the normal-only model; evaluation faults are never looked at while
tuning.  The classifier's own kinds (``bearing``, ``knock``, ``squeal``) come from
:mod:`edge_inspector.synthetic.machines`, so evaluation machines also show whether the classifier
names a fault it knows on a machine it has never heard.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from edge_inspector.synthetic.machines import make_fault as known_fault

DEV_FAULTS = ("misalignment", "looseness", "electrical")
EVAL_FAULTS = ("blade_rub", "cavitation", "valve_flutter", "broken_tooth", "rattle")
KNOWN_FAULTS = ("bearing", "knock", "squeal")


def _ring(x: np.ndarray, freq: float, tau_s: float, sr: int) -> np.ndarray:
    r = math.exp(-1.0 / (tau_s * sr))
    w = 2 * math.pi * freq / sr
    return lfilter([1.0 - r], [1.0, -2 * r * math.cos(w), r * r], x)


def _per_turn(phase: np.ndarray, per_turn: float, offset: float) -> np.ndarray:
    """Sample indices where ``per_turn * phase / 2π + offset`` crosses an integer."""
    k = np.floor(phase * per_turn / (2 * np.pi) + offset)
    return np.nonzero(np.diff(k) > 0)[0] + 1


def _bursts(rng: np.random.Generator, n: int, at: np.ndarray, length: int, sr: int,
            band: tuple[float, float], decay_s: tuple[float, float]) -> np.ndarray:
    """Band-limited noise bursts starting at ``at``."""
    out = np.zeros(n)
    sos = butter(2, band, btype="bandpass", fs=sr, output="sos")
    for a in at:
        m = min(length, n - int(a))
        if m <= 0:
            continue
        env = np.exp(-np.arange(m) / (rng.uniform(*decay_s) * sr))
        out[a : a + m] += rng.uniform(0.6, 1.0) * env * rng.standard_normal(m)
    return sosfilt(sos, out)


def make_plant_fault(rng: np.random.Generator, kind: str, phase: np.ndarray, speed_hz: np.ndarray,
                     sr: int = 16000) -> np.ndarray:
    """The fault ``kind`` over ``phase.size`` samples of a shaft at ``phase`` (radians, carried)."""
    n = phase.size
    rot = float(np.median(speed_hz)) if n else 20.0
    if kind in KNOWN_FAULTS:
        return known_fault(rng, kind, n, sr, max(rot, 5.0))
    if kind == "blade_rub":  # a blade tip scraping the casing once per turn (1-4 kHz scrape)
        lo = rng.uniform(900, 2500)
        return _bursts(rng, n, _per_turn(phase, 1.0, rng.random()), int(0.02 * sr), sr, (lo, lo * 2.2), (0.003, 0.01))
    if kind == "cavitation":  # collapsing vapour bubbles: dense random crackle, 3-7 kHz, in bursts
        rate = rng.uniform(150, 600)
        count = rng.poisson(rate * n / sr)
        at = np.sort(rng.integers(0, n, count))
        x = np.zeros(n)
        x[at] = rng.lognormal(0.0, 0.8, count) * rng.choice([-1.0, 1.0], count)
        swell = 1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * np.arange(n) / sr + rng.uniform(0, 6.3))
        return _ring(x, rng.uniform(3000, 7000), rng.uniform(0.0002, 0.0006), sr) * swell
    if kind == "valve_flutter":  # a cracked valve reed: rapid chatter, 8-20 clicks per turn group
        groups = _per_turn(phase, 1.0, rng.random())
        at = np.concatenate([g + (np.arange(int(rng.integers(3, 7))) * rng.uniform(0.003, 0.008) * sr).astype(int)
                             for g in groups]) if groups.size else np.zeros(0, int)
        at = at[at < n]
        x = np.zeros(n)
        x[at] = rng.uniform(0.5, 1.0, at.size)
        return _ring(x, rng.uniform(1500, 3500), rng.uniform(0.0008, 0.002), sr)
    if kind == "broken_tooth":  # one damaged tooth: a hit once per turn ringing the housing
        x = np.zeros(n)
        at = _per_turn(phase, 1.0, rng.random())
        x[at] = 1.0
        return _ring(x, rng.uniform(600, 2500), rng.uniform(0.002, 0.006), sr) \
            + 0.5 * _ring(x, rng.uniform(2500, 5000), rng.uniform(0.001, 0.003), sr)
    if kind == "rattle":  # a loose guard: irregular clatter, 2-8 per second
        count = max(1, rng.poisson(rng.uniform(2, 8) * n / sr))
        at = np.sort(rng.integers(0, max(1, n - 10), count))
        at[0] = int(rng.integers(0, max(1, min(n, sr // 4))))
        lo = rng.uniform(700, 2000)
        return _bursts(rng, n, at, int(0.04 * sr), sr, (lo, min(7500.0, lo * 3)), (0.004, 0.015))
    if kind == "misalignment":  # 2x and 3x shaft orders rise, with a rub at 2x
        t_phase = phase
        return np.sin(2 * t_phase + rng.uniform(0, 6.3)) + 0.6 * np.sin(3 * t_phase + rng.uniform(0, 6.3)) \
            + 0.3 * _bursts(rng, n, _per_turn(phase, 2.0, rng.random()), int(0.01 * sr), sr, (2000, 5000), (0.002, 0.005))
    if kind == "looseness":  # many shaft orders at once: a clipped, rattling 1x
        x = np.clip(np.sin(phase + rng.uniform(0, 6.3)) * rng.uniform(2, 5), -1, 1)
        return sosfilt(butter(2, 150, btype="highpass", fs=sr, output="sos"), x)
    if kind == "electrical":  # a loose winding: twice-mains buzz rich in harmonics
        mains = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / sr
        return np.sign(np.sin(2 * np.pi * 2 * mains * t)) * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t))
    raise ValueError(f"unknown fault kind {kind!r}")


def sparse_knocks(rng: np.random.Generator, n: int, sr: int = 16000, gap_s: tuple[float, float] = (0.5, 2.0)) -> np.ndarray:
    """A knock every ``gap_s`` seconds (a sparse fault that must still be ONE episode)."""
    at, t = [], float(rng.uniform(0.05, 0.3))
    while t * sr < n - 10:
        at.append(int(t * sr))
        t += float(rng.uniform(*gap_s))
    out = np.zeros(n)
    for a in at:
        m = min(n - a, int(0.06 * sr))
        tt = np.arange(m) / sr
        out[a : a + m] += rng.standard_normal(m) * np.exp(-tt / rng.uniform(0.004, 0.01)) \
            + 0.6 * np.sin(2 * np.pi * rng.uniform(200, 600) * tt) * np.exp(-tt / 0.02)
    return out
