"""Harmless plant sounds: none of them is a fault, and a microphone must not cry wolf at them.

Three sets of *kinds* cover the same families (hiss, pneumatic puffs, impacts, speech, warning
tones, other machines, level and channel changes) with different generators:
:data:`TRAIN_KINDS` go into the classifier's training data; :data:`HELDOUT_KINDS` are never used
in training or tuning and measure how the classifier copes with plant sounds it has not heard.
:data:`FRESH_KINDS` are a second held-out set, written after the shipped classifier was trained
and never used to train or choose anything: the first set's kinds have been looked at while
designing the training kinds, these have not.

:func:`add_nuisance` mixes one into a clip at a level relative to the clip (the nuisance's RMS
over the samples where it sounds, against the clip's RMS there), or, for ``level``/``channel``
kinds, changes the clip itself.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

TRAIN_KINDS = ("hiss", "hp_hiss", "valve_puff", "clatter", "speech", "beeps", "hum", "level", "channel")
HELDOUT_KINDS = ("air_gun", "blowoff", "dropped_part", "babble", "radio", "reversing_alarm", "hand_drill",
                 "buzz", "agc")
FRESH_KINDS = ("siren", "door_slam", "steam_whistle", "pa_voice", "engine_idle", "limiter")
CHANNEL_KINDS = ("level", "channel", "agc", "limiter")  # change the clip itself instead of adding a sound


def _ring(x: np.ndarray, f: float, tau: float, sr: int) -> np.ndarray:
    r = math.exp(-1.0 / (tau * sr))
    return lfilter([1.0 - r], [1.0, -2 * r * math.cos(2 * math.pi * f / sr), r * r], x)


def _noise(rng: np.random.Generator, n: int, sr: int, lo: float | None, hi: float | None) -> np.ndarray:
    x = rng.standard_normal(n)
    if lo and hi:
        return sosfilt(butter(2, (lo, min(hi, 0.45 * sr)), btype="bandpass", fs=sr, output="sos"), x)
    if lo:
        return sosfilt(butter(2, lo, btype="highpass", fs=sr, output="sos"), x)
    if hi:
        return sosfilt(butter(2, hi, fs=sr, output="sos"), x)
    return x


def _env_bursts(rng: np.random.Generator, n: int, sr: int, count: int, dur: tuple[float, float],
                attack: float, decay: tuple[float, float]) -> np.ndarray:
    env = np.zeros(n)
    for _ in range(count):
        a, m = int(rng.integers(0, max(1, n - sr // 10))), int(rng.uniform(*dur) * sr)
        t = np.arange(min(m, n - a)) / sr
        env[a : a + t.size] = np.maximum(env[a : a + t.size], np.minimum(1.0, t / attack) * np.exp(-t / rng.uniform(*decay)))
    return env


_VOWELS_A = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
_VOWELS_B = ((850, 1220, 2810), (310, 2790, 3310), (370, 950, 2670), (610, 2330, 2990), (590, 920, 2710))
_VOWELS_C = ((660, 1700, 2400), (400, 2000, 2550), (450, 1030, 2380), (340, 1100, 2250), (480, 1550, 2600))


def _voice(rng: np.random.Generator, n: int, sr: int, pitch: tuple[float, float], vowels: tuple) -> np.ndarray:
    """A formant voice: a jittered glottal pulse train through three resonances, in syllables."""
    f0 = rng.uniform(*pitch) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * np.arange(n) / sr))
    phase = np.cumsum(f0 / sr)
    pulses = np.zeros(n)
    pulses[np.nonzero(np.diff(np.floor(phase)) > 0)[0]] = 1.0
    out = np.zeros(n)
    syl = int(sr / rng.uniform(3.0, 6.0))
    for a in range(0, n, syl):
        b = min(n, a + syl)
        f1, f2, f3 = vowels[int(rng.integers(len(vowels)))]
        seg = pulses[a:b]
        v = _ring(seg, f1, 0.004, sr) + 0.6 * _ring(seg, f2, 0.003, sr) + 0.3 * _ring(seg, f3, 0.002, sr)
        if rng.random() < 0.3:  # a fricative instead
            v = 0.3 * _noise(rng, b - a, sr, 3000, 7000)
        t = np.arange(b - a) / (b - a)
        out[a:b] = v * np.sin(np.pi * t) ** 2 * (0.0 if rng.random() < 0.15 else 1.0)
    return out


def make_nuisance(rng: np.random.Generator, kind: str, n: int, sr: int = 16000) -> np.ndarray:
    """The sound of ``kind`` over ``n`` samples (unit-free), for the additive kinds."""
    t = np.arange(n) / sr
    if kind == "hiss":  # airflow: broad noise, a random tilt, steady or slowly swelling
        x = _noise(rng, n, sr, None, rng.uniform(2000, 7500)) + rng.uniform(0, 0.5) * rng.standard_normal(n)
        return x * (1 + rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t))
    if kind == "hp_hiss":  # coolant spray / leak: high-passed
        return _noise(rng, n, sr, rng.uniform(1000, 4000), None) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 1) * t))
    if kind == "valve_puff":  # pneumatic valves: short high-passed puffs
        env = _env_bursts(rng, n, sr, int(rng.integers(1, 5)), (0.08, 0.4), 0.005, (0.03, 0.15))
        return env * _noise(rng, n, sr, rng.uniform(800, 3000), None)
    if kind == "clatter":  # a neighbour's impacts: thuds and clanks
        x = np.zeros(n)
        at = rng.integers(0, n, int(rng.poisson(rng.uniform(0.5, 3.0) * n / sr)) + 1)
        x[at] = rng.uniform(0.3, 1.0, at.size)
        return _ring(x, rng.uniform(80, 250), 0.03, sr) + sum(
            rng.uniform(0.2, 0.6) * _ring(x, rng.uniform(800, 4000), rng.uniform(0.02, 0.08), sr) for _ in range(3))
    if kind == "speech":
        return _voice(rng, n, sr, (90, 220), _VOWELS_A)
    if kind == "beeps":  # a forklift's warning beeper
        f, on, off = rng.uniform(1000, 3000), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.8)
        gate = ((t + rng.uniform(0, on + off)) % (on + off)) < on
        return gate * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))
    if kind == "hum":  # another machine nearby: shaft harmonics and mains
        f = rng.uniform(10, 60)
        x = sum(k ** -1.0 * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 6.3)) for k in range(1, 8))
        return x + 0.5 * np.sin(2 * np.pi * float(rng.choice([100.0, 120.0])) * t)
    if kind == "air_gun":  # compressed-air blow gun: a band of noise held for a second or two
        env = _env_bursts(rng, n, sr, int(rng.integers(1, 3)), (0.6, 2.0), rng.uniform(0.05, 0.3), (1.0, 3.0))
        return env * _noise(rng, n, sr, rng.uniform(1500, 3000), rng.uniform(5000, 7500))
    if kind == "blowoff":  # a big exhaust: long decaying hiss with a whistle
        env = _env_bursts(rng, n, sr, 1, (0.8, 2.5), 0.01, (0.3, 0.9))
        w = rng.uniform(2000, 5000)
        return env * (_noise(rng, n, sr, 600, None) + 0.3 * np.sin(2 * np.pi * w * t))
    if kind == "dropped_part":  # metal part hitting the floor: one hit ringing long, a few bounces
        x = np.zeros(n)
        a = int(rng.integers(0, max(1, n - sr // 2)))
        for k in range(int(rng.integers(2, 5))):
            p = a + int(k * rng.uniform(0.05, 0.25) * sr)
            if p < n:
                x[p] = 0.5 ** k
        return sum(_ring(x, rng.uniform(300, 6000), rng.uniform(0.1, 0.6), sr) for _ in range(4))
    if kind == "babble":  # several people talking at once
        return sum(_voice(rng, n, sr, pr, _VOWELS_B) for pr in ((100, 150), (170, 300), (120, 260))[: int(rng.integers(2, 4))])
    if kind == "radio":  # music: chords with vibrato over a beat
        chord = rng.uniform(200, 500) * np.array([1.0, 1.26, 1.5, 2.0])
        vib = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
        x = sum(np.sin(2 * np.pi * np.cumsum(f * vib) / sr) * 0.7 ** i for i, f in enumerate(chord))
        beat = np.zeros(n)
        beat[:: int(sr * 60 / rng.uniform(80, 140))] = 1.0
        return x + 3.0 * _ring(beat, 70, 0.05, sr)
    if kind == "reversing_alarm":  # a two-tone warble
        f1, f2, rate = rng.uniform(700, 1000), rng.uniform(1100, 1600), rng.uniform(1.0, 3.0)
        f = np.where((t * rate) % 1.0 < 0.5, f1, f2)
        return np.sin(2 * np.pi * np.cumsum(f) / sr)
    if kind == "hand_drill":  # a hand tool's whine, speeding up and down
        f = rng.uniform(150, 450) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t))
        ph = 2 * np.pi * np.cumsum(f) / sr
        return sum(k ** -0.7 * np.sin(k * ph) for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 7 * t))
    if kind == "buzz":  # a fluorescent light or transformer: mains harmonics, odd ones strong
        f = float(rng.choice([100.0, 120.0]))
        return sum((1.0 if k % 2 else 0.3) / k * np.sin(2 * np.pi * k * f * t) for k in range(1, 16))
    if kind == "siren":  # FRESH: a siren sweeping up and down
        f = rng.uniform(500, 900) * (1 + rng.uniform(0.3, 0.8) * (0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(1.0, 4.0))))
        ph = 2 * np.pi * np.cumsum(f) / sr
        return np.sin(ph) + 0.4 * np.sin(2 * ph) + 0.2 * np.sin(3 * ph)
    if kind == "door_slam":  # FRESH: a heavy door or hatch: a low thump, a noise burst, a short rattle
        x = np.zeros(n)
        a = int(rng.integers(0, max(1, n - sr // 2)))
        x[a] = 1.0
        burst = _noise(rng, n, sr, None, rng.uniform(1500, 4000)) * np.exp(-np.maximum(0, np.arange(n) - a) / (0.06 * sr))
        burst[:a] = 0
        ticks = np.zeros(n)
        for k in range(int(rng.integers(3, 8))):
            p = a + int(rng.uniform(0.05, 0.4) * sr)
            if p < n:
                ticks[p] = rng.uniform(0.05, 0.2)
        return 3 * _ring(x, rng.uniform(40, 120), 0.08, sr) + 0.5 * burst + _ring(ticks, rng.uniform(1500, 3500), 0.01, sr)
    if kind == "steam_whistle":  # FRESH: a leak whistling: a narrow band of noise and its tone
        fc = rng.uniform(2500, 6000)
        return _noise(rng, n, sr, fc / 1.08, fc * 1.08) + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * fc * t)
    if kind == "pa_voice":  # FRESH: an announcement over the public-address horns (band-limited, echoing)
        v = sosfilt(butter(3, (300, 3400), btype="bandpass", fs=sr, output="sos"), _voice(rng, n, sr, (110, 240), _VOWELS_C))
        d = int(rng.uniform(0.08, 0.25) * sr)
        return v + 0.4 * np.concatenate([np.zeros(d), v[:-d]])
    if kind == "engine_idle":  # FRESH: a forklift's diesel idling: firing pulses and exhaust rumble
        fire = np.zeros(n)
        fire[:: int(sr / rng.uniform(18, 35))] = 1.0
        return _ring(fire, rng.uniform(90, 300), 0.02, sr) + 0.3 * _noise(rng, n, sr, None, 400)
    raise ValueError(f"unknown nuisance kind {kind!r}")


def _channel(rng: np.random.Generator, x: np.ndarray, kind: str, sr: int) -> np.ndarray:
    n = x.size
    if kind == "level":  # the microphone's gain stepped or ramped by -12..+6 dB
        g = 10 ** (rng.uniform(-12, 6) / 20)
        at = int(rng.uniform(0, n))
        r = np.clip((np.arange(n) - at) / max(1, int(rng.uniform(0, 1.0) * sr)), 0, 1)
        return x * (1 + (g - 1) * r)
    if kind == "channel":  # another microphone or cable: low-pass, high-pass, tilt
        y = sosfilt(butter(int(rng.integers(2, 7)), rng.uniform(3000, 7800), fs=sr, output="sos"), x)
        if rng.random() < 0.5:
            y = sosfilt(butter(2, rng.uniform(50, 300), btype="highpass", fs=sr, output="sos"), y)
        return y * 10 ** (rng.uniform(-6, 6) / 20)
    if kind == "agc":  # automatic gain control pumping, and a peaking EQ
        env = np.sqrt(lfilter([0.001], [1, -0.999], x * x) + 1e-8)
        gain = np.clip(0.05 / env, 0.25, 4.0) ** rng.uniform(0.3, 0.8)
        f, g = rng.uniform(300, 4000), 10 ** (rng.uniform(-9, 9) / 20)
        bp = sosfilt(butter(1, (f / 1.4, min(f * 1.4, 0.45 * sr)), btype="bandpass", fs=sr, output="sos"), x)
        return (x + (g - 1) * bp) * gain
    if kind == "limiter":  # FRESH: a fast peak limiter with make-up gain (a camera's or a recorder's input)
        env = lfilter([0.01], [1, -0.99], np.abs(x)) + 1e-9
        ceiling = float(np.quantile(env, rng.uniform(0.3, 0.7))) + 1e-9
        gain = np.minimum(1.0, (ceiling / env) ** (1 - 1 / rng.uniform(4, 10)))
        return x * gain * (np.quantile(np.abs(x), 0.99) / max(np.quantile(np.abs(x * gain), 0.99), 1e-9))
    raise ValueError(kind)


def add_nuisance(rng: np.random.Generator, clip: np.ndarray, kind: str, level_db: float, sr: int = 16000) -> np.ndarray:
    """``clip`` with the nuisance ``kind`` at ``level_db`` relative to the clip (module docstring)."""
    x = np.asarray(clip, np.float64)
    if kind in CHANNEL_KINDS:
        return _channel(rng, x, kind, sr).astype(np.float32)
    s = make_nuisance(rng, kind, x.size, sr)
    on = np.abs(s) > 1e-3 * (np.max(np.abs(s)) + 1e-12)
    if not on.any():
        return x.astype(np.float32)
    rms_s = math.sqrt(float(np.mean(s[on] ** 2)))
    rms_x = math.sqrt(float(np.mean(x[on] ** 2))) + 1e-9
    return (x + s * rms_x / rms_s * 10 ** (level_db / 20)).astype(np.float32)
