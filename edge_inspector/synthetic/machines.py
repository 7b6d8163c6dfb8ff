"""Procedural machine sounds with labelled faults (demo microphone, training, tests).

A "machine" is a rotating part heard through a microphone: a harmonic hum at the rotation
frequency (with slow speed jitter and amplitude modulation), often a gear-mesh tone locked to
the shaft, mains hum (50 or 60 Hz and harmonics) and broadband noise (pink, with a random
share of white noise).  A fault is added on top for a time interval, at an SNR
(fault RMS over its interval relative to the background RMS there) between -6 and +6 dB:

* ``bearing`` -- an impulse train at a bearing defect frequency (3-5.5 x rotation), each
  impulse ringing a structural resonance between 2 and 6 kHz;
* ``knock``   -- sparse broadband transients (a few per second) with a low "thud";
* ``squeal``  -- a narrowband tone between 1 and 4 kHz that drifts slowly in pitch.

Held-out machine: training uses rotation frequencies in :data:`TRAIN_ROTATION_HZ`
(15-40 Hz); :data:`HELDOUT_ROTATION_HZ` (45-60 Hz) is never used for training so evaluation
can show how the model behaves on a machine it has never heard.

A line also hears the machine *not* running: :func:`make_clip` with an ``envelope`` puts the
machine on a gain envelope over a microphone noise floor (digital silence or white/pink noise at
-90..-50 dBFS): ``start``/``stop`` (abrupt, or a fade of up to 1.5 s), ``gap`` (a break),
``silence`` (machine off throughout) and ``level`` (the level steps or ramps by up to 15 dB).
All of these are *normal*: a fault is only ever heard while the machine runs.

Everything is deterministic given the generator or seed; only numpy and scipy are used so
the daemon's ``synthetic://machine`` microphone runs anywhere.  Background synthesis is
stateful (phases, filter states), so :func:`machine_stream` is phase-continuous block to block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

LABELS: tuple[str, ...] = ("normal", "bearing", "knock", "squeal")
TRAIN_ROTATION_HZ: tuple[float, float] = (15.0, 40.0)
HELDOUT_ROTATION_HZ: tuple[float, float] = (45.0, 60.0)
SNR_RANGE_DB: tuple[float, float] = (-6.0, 6.0)
ENVELOPES: tuple[str, ...] = ("steady", "start", "stop", "gap", "silence", "level")
FLOOR_DBFS: tuple[float, float] = (-90.0, -50.0)

# Paul Kellet's 3-pole approximation of a 1/f (pink) spectrum, applied to white noise
# (output RMS about 0.087 per unit input).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


@dataclass
class Clip:
    """One generated recording and its ground truth."""

    samples: np.ndarray  # float32 mono in [-1, 1]
    label: str
    sample_rate: int
    fault_start_s: float  # the fault occupies [fault_start_s, fault_end_s); empty when normal
    fault_end_s: float
    snr_db: float | None  # None for normal clips
    rotation_hz: float


class _Background:
    """A stateful machine background generator: consecutive calls continue seamlessly."""

    def __init__(self, rng: np.random.Generator, rotation_hz: float, sample_rate: int) -> None:
        self.rng = rng
        self.sr = sample_rate
        self.rotation_hz = rotation_hz
        n_harm = int(rng.integers(4, 10))
        k = np.arange(1, n_harm + 1, dtype=np.float64)
        self.harm_k = k
        self.harm_amp = k ** -rng.uniform(0.4, 1.4) * rng.uniform(0.5, 1.0, n_harm)
        self.harm_phase = rng.uniform(0, 2 * np.pi, n_harm)
        self.mains_hz = float(rng.choice([50.0, 60.0]))
        self.mains_amp = np.array([1.0, 0.4, 0.25]) * rng.uniform(0.05, 0.4)
        self.mains_phase = rng.uniform(0, 2 * np.pi, 3)
        self.noise_level = rng.uniform(0.25, 1.5)  # broadband noise RMS relative to hum RMS
        self.white_frac = rng.uniform(0.0, 0.6)  # share of flat (white) noise: energy up to 8 kHz
        # Gear mesh: a steady tone locked to the shaft (teeth x rotation), 0.3-3.6 kHz; it makes
        # "a steady tone" normal, so squeal has to be told apart by its drift and independence.
        self.gear_teeth = int(rng.integers(15, 61)) if rng.random() < 0.6 else 0
        self.gear_amp = rng.uniform(0.05, 0.4)
        self.gear_phase = rng.uniform(0, 2 * np.pi, 2)
        self.mod_depth = rng.uniform(0.05, 0.3)
        self.mod_hz = rng.uniform(0.2, 1.0)
        self.mod_phase = rng.uniform(0, 2 * np.pi)
        self.jit = (rng.uniform(0.002, 0.01), rng.uniform(0.05, 0.4), rng.uniform(0, 2 * np.pi))
        self.walk_zi = np.zeros(1)
        self.pink_zi = np.zeros(3)
        self.rot_phase = 0.0
        self.t = 0  # samples generated so far
        hum_rms = math.sqrt(0.5 * float(np.sum(self.harm_amp**2)))
        self.hum_scale = 1.0 / hum_rms
        self.gain = rng.uniform(0.015, 0.06)  # overall background level (mic gain)

    def next(self, n: int) -> np.ndarray:
        t = (self.t + np.arange(n)) / self.sr
        amp_j, hz_j, ph_j = self.jit
        walk, self.walk_zi = lfilter([0.002], [1.0, -0.9995], self.rng.standard_normal(n), zi=self.walk_zi)
        inst_hz = self.rotation_hz * (1.0 + amp_j * np.sin(2 * np.pi * hz_j * t + ph_j) + 0.02 * walk)
        phase = self.rot_phase + 2 * np.pi * np.cumsum(inst_hz) / self.sr
        self.rot_phase = float(phase[-1] % (2 * np.pi))
        hum = np.zeros(n)
        for k, a, p in zip(self.harm_k, self.harm_amp, self.harm_phase):
            if k * self.rotation_hz < 0.45 * self.sr:
                hum += a * np.sin(k * phase + p)
        hum *= self.hum_scale * (1.0 + self.mod_depth * np.sin(2 * np.pi * self.mod_hz * t + self.mod_phase))
        mains = sum(
            a * np.sin(2 * np.pi * self.mains_hz * (i + 1) * t + p)
            for i, (a, p) in enumerate(zip(self.mains_amp, self.mains_phase))
        )
        if self.gear_teeth and 2 * self.gear_teeth * self.rotation_hz < 0.45 * self.sr:
            mesh = self.gear_teeth * phase
            hum += self.gear_amp * (np.sin(mesh + self.gear_phase[0]) + 0.4 * np.sin(2 * mesh + self.gear_phase[1]))
        pink, self.pink_zi = lfilter(_PINK_B, _PINK_A, self.rng.standard_normal(n), zi=self.pink_zi)
        white = self.rng.standard_normal(n)
        wf = self.white_frac
        noise = self.noise_level * (math.sqrt(1.0 - wf * wf) * pink / 0.087 + wf * white)
        self.t += n
        return self.gain * (hum + mains + noise)


def _resonator(x: np.ndarray, freq_hz: float, tau_s: float, sr: int) -> np.ndarray:
    """Ring a damped 2nd-order resonance (freq, decay time constant) with excitation ``x``."""
    r = math.exp(-1.0 / (tau_s * sr))
    w = 2 * math.pi * freq_hz / sr
    return lfilter([1.0 - r], [1.0, -2 * r * math.cos(w), r * r], x)


def _bearing(rng: np.random.Generator, n: int, sr: int, rotation_hz: float) -> np.ndarray:
    rate = rotation_hz * rng.uniform(3.0, 5.5)
    period = sr / rate
    times = np.arange(rng.uniform(0, period), n, period)
    times = times + rng.normal(0, 0.02 * period, times.size)
    times = times[(times >= 0) & (times < n)].astype(np.int64)
    x = np.zeros(n)
    depth = rng.uniform(0.0, 0.8)
    mod = 1.0 + depth * np.cos(2 * np.pi * rotation_hz * times / sr + rng.uniform(0, 2 * np.pi))
    x[times] = mod * rng.uniform(0.7, 1.0, times.size) * rng.choice([-1.0, 1.0], times.size)
    out = _resonator(x, rng.uniform(2000, 6000), rng.uniform(0.0004, 0.0015), sr)
    if rng.random() < 0.5:  # a second structural mode
        out += rng.uniform(0.3, 0.8) * _resonator(x, rng.uniform(2000, 6000), rng.uniform(0.0004, 0.0015), sr)
    return out


def _knock(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    rate = rng.uniform(1.5, 5.0)
    count = max(1, int(rng.poisson(rate * n / sr)))
    starts = rng.integers(0, max(1, n - sr // 50), count)
    starts[0] = int(rng.integers(0, max(1, min(n, int(0.3 * sr)))))  # audible early in the episode
    out = np.zeros(n)
    for s in starts:
        length = min(n - s, int(0.08 * sr))
        if length <= 0:
            continue
        tt = np.arange(length) / sr
        burst = rng.standard_normal(length) * np.exp(-tt / rng.uniform(0.002, 0.012))
        thud = np.sin(2 * np.pi * rng.uniform(150, 700) * tt) * np.exp(-tt / rng.uniform(0.01, 0.03))
        out[s : s + length] += rng.uniform(0.5, 1.0) * (burst + rng.uniform(0.2, 1.0) * thud)
    return out


def _squeal(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = rng.uniform(1000, 4000)
    drift = (
        rng.uniform(0.01, 0.05) * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t + rng.uniform(0, 2 * np.pi))
        + rng.uniform(-0.03, 0.03) * t
    )
    freq = np.clip(f0 * (1.0 + drift), 900, 4200)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    am = 1.0 + rng.uniform(0.0, 0.4) * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t)
    out = am * (np.sin(phase) + rng.uniform(0.0, 0.3) * np.sin(2 * phase + 1.0))
    fade = min(n // 2, int(0.02 * sr))  # 20 ms raised-cosine fades: no click at on/off
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        out[:fade] *= ramp
        out[n - fade :] *= ramp[::-1]
    return out


def make_fault(rng: np.random.Generator, label: str, n: int, sample_rate: int, rotation_hz: float) -> np.ndarray:
    """The fault signal alone (unit-free; scaled to an SNR by the caller)."""
    if label == "bearing":
        return _bearing(rng, n, sample_rate, rotation_hz)
    if label == "knock":
        return _knock(rng, n, sample_rate)
    if label == "squeal":
        return _squeal(rng, n, sample_rate)
    raise ValueError(f"unknown fault label {label!r}; expected one of {LABELS[1:]}")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _add_fault(background: np.ndarray, fault: np.ndarray, start: int, snr_db: float) -> None:
    """Add ``fault`` at sample ``start`` in place, scaled to ``snr_db`` against the background there."""
    seg = background[start : start + fault.size]
    scale = _rms(seg) * 10 ** (snr_db / 20) / max(_rms(fault), 1e-12)
    seg += scale * fault[: seg.size]


def noise_floor(rng: np.random.Generator, n: int) -> np.ndarray:
    """A microphone/ADC noise floor: digital silence (a quarter of the time) or white/pink noise
    at an RMS drawn from :data:`FLOOR_DBFS`."""
    if rng.random() < 0.25:
        return np.zeros(n)
    x = rng.standard_normal(n)
    if rng.random() < 0.5:
        x = lfilter(_PINK_B, _PINK_A, x) / 0.087
    return x * 10 ** (rng.uniform(*FLOOR_DBFS) / 20)


def _ramp(n: int, at: int, width: int, rising: bool) -> np.ndarray:
    """0 -> 1 (or 1 -> 0) reached at sample ``at`` over ``width`` samples (abrupt when 0)."""
    idx = np.arange(n, dtype=np.float64)
    r = np.clip((idx - (at - width)) / max(width, 1), 0.0, 1.0) if width else (idx >= at).astype(np.float64)
    r = 0.5 - 0.5 * np.cos(np.pi * r)
    return r if rising else 1.0 - r


def envelope(rng: np.random.Generator, kind: str, n: int, sr: int, keep_on: tuple[int, int] | None = None) -> np.ndarray:
    """The machine's gain over ``n`` samples for an :data:`ENVELOPES` kind.

    ``keep_on = (a, b)``: the machine runs at full level throughout samples ``[a, b)`` (a fault
    is there); kinds that cannot honour it fall back to ``level`` outside that interval.
    """
    if kind not in ENVELOPES:
        raise ValueError(f"unknown envelope {kind!r}; expected one of {ENVELOPES}")
    a, b = keep_on if keep_on is not None else (n, 0)  # empty interval: no constraint
    margin = int(0.3 * sr)

    def width() -> int:
        return 0 if rng.random() < 0.5 else int(rng.uniform(0.01, 1.5) * sr)

    if kind == "steady":
        return np.ones(n)
    if kind == "silence":
        return np.zeros(n) if keep_on is None else envelope(rng, "level", n, sr, keep_on)
    if kind == "start":
        hi = min(n, a - margin)
        if hi <= 0:
            return envelope(rng, "level", n, sr, keep_on)
        w = width()
        at = int(rng.uniform(0, hi))
        return _ramp(n, at, min(w, at), rising=True)
    if kind == "stop":
        lo = max(0, b + margin) if keep_on is not None else 0
        if lo >= n:
            return envelope(rng, "level", n, sr, keep_on)
        return _fade_out(n, int(rng.uniform(lo, n)), width())
    if kind == "gap":
        if keep_on is not None:
            return envelope(rng, "level", n, sr, keep_on)
        off = int(rng.uniform(0, 0.7 * n))
        on = int(rng.uniform(off + 0.1 * sr, n + 0.5 * sr))
        return np.maximum(_fade_out(n, off, width()), _ramp(n, on, min(width(), max(0, on - off)), rising=True))
    # level: a step or ramp between two levels (dB), never below the full level inside keep_on
    g1, g2 = 10 ** (rng.uniform(-15, 0, 2) / 20)
    at = int(rng.uniform(0, n))
    r = _ramp(n, at, width(), rising=True)
    g = g1 + (g2 - g1) * r
    if keep_on is not None:
        g = np.ones(n) * max(g1, g2)  # a fault keeps its SNR: one level over the whole clip
    return g


def _fade_out(n: int, at: int, width: int) -> np.ndarray:
    """1 until ``at``, then down to 0 over ``width`` samples (abrupt when 0)."""
    idx = np.arange(n, dtype=np.float64)
    r = np.clip((idx - at) / max(width, 1), 0.0, 1.0) if width else (idx >= at).astype(np.float64)
    return 0.5 + 0.5 * np.cos(np.pi * r)


def make_clip(
    rng: np.random.Generator,
    duration_s: float = 4.0,
    label: str | None = None,
    snr_db: float | None = None,
    rotation_hz: float | None = None,
    fault_start_s: float = 0.0,
    fault_end_s: float | None = None,
    sample_rate: int = 16000,
    envelope_kind: str | None = None,
    gain_db: float = 0.0,
) -> Clip:
    """A machine recording with at most one fault in [fault_start_s, fault_end_s).

    Unset parameters are drawn from ``rng``: the label uniformly from :data:`LABELS`, the SNR
    from :data:`SNR_RANGE_DB`, the rotation from :data:`TRAIN_ROTATION_HZ`.  ``envelope_kind``
    (one of :data:`ENVELOPES`) runs the machine on that envelope over a :func:`noise_floor`
    (a fault stays inside the running part); ``gain_db`` scales the machine (microphone gain).
    """
    if label is None:
        label = LABELS[int(rng.integers(len(LABELS)))]
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    if rotation_hz is None:
        rotation_hz = float(rng.uniform(*TRAIN_ROTATION_HZ))
    n = int(round(duration_s * sample_rate))
    audio = _Background(rng, rotation_hz, sample_rate).next(n)
    if label == "normal":
        start_s = end_s = 0.0
        snr = None
    else:
        snr = float(rng.uniform(*SNR_RANGE_DB)) if snr_db is None else float(snr_db)
        end_s = duration_s if fault_end_s is None else min(float(fault_end_s), duration_s)
        start_s = max(0.0, float(fault_start_s))
        if end_s <= start_s:
            raise ValueError(f"empty fault interval [{start_s}, {end_s})")
        a, b = int(round(start_s * sample_rate)), int(round(end_s * sample_rate))
        _add_fault(audio, make_fault(rng, label, b - a, sample_rate, rotation_hz), a, snr)
    audio *= 10 ** (gain_db / 20)
    if envelope_kind is not None:
        keep = None
        if label != "normal":
            keep = (int(round(start_s * sample_rate)), int(round(end_s * sample_rate)))
        audio = audio * envelope(rng, envelope_kind, n, sample_rate, keep) + noise_floor(rng, n)
    samples = np.clip(audio, -1.0, 1.0).astype(np.float32)
    return Clip(samples, label, sample_rate, start_s, end_s, snr, float(rotation_hz))


def machine_stream(
    seed: int, block_s: float = 1.0, fault_rate: float = 0.1, sample_rate: int = 16000
) -> Iterator[np.ndarray]:
    """An endless, phase-continuous machine for the demo microphone, in float32 blocks.

    Fault episodes (random type, 2-6 s, SNR 0-6 dB) occupy on average ``fault_rate`` of the
    time: after each episode the machine runs normally for an exponential gap whose mean makes
    that fraction (``fault_rate=0`` never faults).  The first 3 s are always normal.
    """
    rng = np.random.default_rng(seed)
    rotation_hz = float(rng.uniform(*TRAIN_ROTATION_HZ))
    machine = _Background(rng, rotation_hz, sample_rate)
    block = max(1, int(round(block_s * sample_rate)))
    fault: np.ndarray | None = None  # remaining samples of the current episode's fault
    until_next = int(3 * sample_rate)
    while True:
        audio = machine.next(block)
        pos = 0
        while pos < block:
            if fault is None:
                step = min(block - pos, until_next)
                pos += step
                until_next -= step
                if fault_rate <= 0:
                    until_next = block  # never faults
                elif until_next <= 0 and pos < block:
                    label = LABELS[1 + int(rng.integers(len(LABELS) - 1))]
                    dur = rng.uniform(2.0, 6.0)
                    fault = make_fault(rng, label, int(dur * sample_rate), sample_rate, rotation_hz)
                    # SNR against this block's background (no fault is in progress in it yet)
                    fault *= _rms(audio) * 10 ** (rng.uniform(0.0, 6.0) / 20) / max(_rms(fault), 1e-12)
                    mean_gap = dur * (1.0 - min(fault_rate, 0.95)) / min(fault_rate, 0.95)
                    until_next = max(1, int(rng.exponential(mean_gap) * sample_rate))
            else:
                step = min(block - pos, fault.size)
                audio[pos : pos + step] += fault[:step]
                fault = fault[step:] if step < fault.size else None
                pos += step
        yield np.clip(audio, -1.0, 1.0).astype(np.float32)
