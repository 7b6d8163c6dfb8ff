"""Plant machines living a normal life: the audio a normal-only model learns and is tested on.

A :class:`PlantMachine` is one unit of a kind (its blade count, resonances, noise colour and
level are drawn from its seed), driven by a control timeline (:class:`NormalLife`): shaft speed
relative to nominal and load, sampled every 10 ms.  Its normal life has idle and loaded spells,
load changes, slow speed drift and slip under load, starts and stops (speed and sound ramp down
to the room's own sound and back up), and the events of its own cycle: a compressor's unloader
blowing off when it goes idle, a pump's check valve clunking at a stop, a gearbox's clutch at a
load change (and, on the development kinds, a mixer's charge of ingredients, a product bumping a
conveyor's rail).  Synthesis is stateful (shaft phase, filter states, pending event tails), so
:meth:`PlantMachine.stream` is continuous block after block and an hour of it costs seconds.

Kinds are split: :data:`DEV_KINDS` tune the normal-only model (features, hyper-parameters,
threshold rule); :data:`EVAL_KINDS` are only ever evaluated, and :data:`FRESH_KINDS` were added for evaluation after
the options and rules in use were fixed.  The two sets share no generator
code paths beyond the generic parts (shaft harmonics, flow noise, room).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

SR = 16000
CTRL_HZ = 100  # control timeline rate
DEV_KINDS = ("motor", "mixer", "conveyor")
VFD_KINDS = ("fan", "pump", "mixer", "conveyor", "blower")  # speed-controlled: several set points
EVAL_KINDS = ("fan", "pump", "compressor", "gearbox")
FRESH_KINDS = ("blower",)  # evaluation only, added after every option and rule was fixed (never looked at before)

# kind -> (nominal shaft Hz range, pass count range (blades, vanes, teeth, slots), flow noise weight)
_KIND = {
    "fan": ((12.0, 25.0), (5, 12), 1.0),
    "pump": ((24.0, 49.0), (5, 8), 0.5),
    "compressor": ((10.0, 25.0), (0, 0), 0.4),
    "gearbox": ((15.0, 40.0), (17, 45), 0.25),
    "motor": ((24.0, 50.0), (28, 48), 0.35),
    "mixer": ((20.0, 30.0), (11, 23), 0.3),
    "conveyor": ((8.0, 20.0), (0, 0), 0.6),
    "blower": ((35.0, 55.0), (9, 14), 0.9),
}


@dataclass
class Control:
    """Speed (fraction of nominal, 0 = stopped) and load (0..1) every 10 ms, and one-shot events."""

    speed: np.ndarray
    load: np.ndarray
    events: list[tuple[int, str]] = field(default_factory=list)  # (control index, event name)


def _biquad_bandpass(freq: float, q: float) -> np.ndarray:
    return butter(1, (freq / (1 + 0.5 / q), min(freq * (1 + 0.5 / q), 0.49 * SR)), btype="bandpass", fs=SR, output="sos")


class PlantMachine:
    """One machine unit of ``kind`` drawn from ``seed`` (the same seed is the same unit); ``take``
    seeds its noise, so two takes of one unit are the same machine heard at different times."""

    def __init__(self, kind: str, seed: int, take: int = 0) -> None:
        if kind not in _KIND:
            raise ValueError(f"unknown machine kind {kind!r}; expected one of {tuple(_KIND)}")
        self.kind = kind
        rng = self.rng = np.random.default_rng(seed)
        f_range, pass_range, flow = _KIND[kind]
        self.nominal_hz = float(rng.uniform(*f_range))
        self.passes = int(rng.integers(pass_range[0], pass_range[1] + 1)) if pass_range[1] else 0
        n_h = int(rng.integers(3, 8))
        self.harm = (np.arange(1, n_h + 1) ** -rng.uniform(0.5, 1.3)) * rng.uniform(0.4, 1.0, n_h)
        self.harm_phase = rng.uniform(0, 2 * np.pi, n_h)
        self.pass_amp = rng.uniform(0.2, 0.8) if self.passes else 0.0
        self.pass_sideband = rng.uniform(0.05, 0.4)
        self.flow = flow * rng.uniform(0.6, 1.4)
        # flow-noise colour: a low-pass tilt plus 2-4 resonant bands of this unit's casing
        peaks = rng.uniform(np.log(200), np.log(6000), int(rng.integers(2, 5)))
        self.flow_sos = [_biquad_bandpass(float(np.exp(p)), float(rng.uniform(1.0, 4.0))) for p in peaks]
        self.flow_w = rng.uniform(0.3, 1.0, len(peaks))
        self.tilt_sos = butter(1, rng.uniform(800, 4000), fs=SR, output="sos")
        self.speed_exp = rng.uniform(2.0, 3.0)
        self.mains = float(rng.choice([50.0, 60.0]))
        self.mains_amp = rng.uniform(0.02, 0.2)
        self.impact_freq = rng.uniform(300, 1500)
        self.impact_amp = rng.uniform(0.6, 1.5) if kind in ("compressor", "conveyor") else 0.0
        self.impacts_per_turn = 1.0 if kind == "compressor" else 1.0 / rng.uniform(20, 60)
        self.gain = 10 ** (rng.uniform(-30, -18) / 20)
        self.room_level = 10 ** (rng.uniform(-62, -50) / 20)
        self.slip = rng.uniform(0.01, 0.04)
        self.rng = np.random.default_rng([seed, take, 1])
        # state carried between blocks
        self.phase = 0.0
        self.zi_flow = [np.zeros((s.shape[0], 2)) for s in self.flow_sos]
        self.zi_tilt = np.zeros((self.tilt_sos.shape[0], 2))
        self.zi_impact = np.zeros(2)
        self.zi_room = np.zeros(1)
        self.tail = np.zeros(0)
        self.samples_done = 0

    # -- synthesis ------------------------------------------------------------------------------
    def _event(self, name: str) -> np.ndarray:
        """A one-shot sound of the machine's cycle (all normal)."""
        rng = self.rng
        if name == "blowoff":  # unloader / pneumatic valve: a high-passed hiss, fast attack
            n = int(rng.uniform(0.2, 0.8) * SR)
            env = np.exp(-np.arange(n) / (rng.uniform(0.08, 0.3) * SR))
            sos = butter(2, rng.uniform(1500, 4000), btype="highpass", fs=SR, output="sos")
            return rng.uniform(1.0, 3.0) * env * sosfilt(sos, rng.standard_normal(n))
        if name == "charge":  # a mixer's ingredients poured in: a crackle of grains hitting the bowl
            n = int(rng.uniform(0.4, 1.5) * SR)
            clicks = (rng.random(n) < rng.uniform(40, 150) / SR) * rng.uniform(0.3, 1.0, n)
            grain = np.exp(-np.arange(int(0.004 * SR)) / (0.0008 * SR)) * rng.standard_normal(int(0.004 * SR))
            sos = butter(2, sorted(rng.uniform(1000, 5000, 2) * (1.0, 1.6)), btype="bandpass", fs=SR, output="sos")
            return rng.uniform(1.5, 4.0) * sosfilt(sos, np.convolve(clicks, grain)[:n])
        if name == "bump":  # a conveyor's product knocking against a guide rail: a dull thud
            n = int(rng.uniform(0.06, 0.12) * SR)
            sos = butter(2, rng.uniform(150, 500), btype="lowpass", fs=SR, output="sos")
            return rng.uniform(4.0, 10.0) * np.exp(-np.arange(n) / (0.02 * SR)) * sosfilt(sos, rng.standard_normal(n))
        n = int(0.15 * SR)  # "clunk": check valve or clutch
        x = np.zeros(n)
        x[0] = 1.0
        return rng.uniform(3.0, 8.0) * (lfilter([1.0], [1.0, -1.9 * math.cos(2 * math.pi * rng.uniform(80, 300) / SR), 0.9025], x) * 0.05
                                          + lfilter([1.0], [1.0, -1.96 * math.cos(2 * math.pi * rng.uniform(800, 2000) / SR), 0.9604], x) * 0.02)

    def render(self, ctrl: Control, with_phase: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Audio for ``ctrl`` (continuing from the previous call); with ``with_phase`` also the
        shaft phase and frequency per sample (faults lock to them)."""
        rng = self.rng
        n = ctrl.speed.size * (SR // CTRL_HZ)
        tc = (np.arange(ctrl.speed.size) + 0.5) / CTRL_HZ
        ts = (np.arange(n) + 0.5) / SR
        speed = np.interp(ts, tc, ctrl.speed)
        load = np.interp(ts, tc, ctrl.load)
        f = self.nominal_hz * speed * (1.0 - self.slip * load)
        phase = self.phase + 2 * np.pi * np.cumsum(f) / SR
        self.phase = float(phase[-1] % (2 * np.pi * 1e6))
        run = np.clip(speed, 0.0, 1.2)
        audio = np.zeros(n)
        for k, (a, p) in enumerate(zip(self.harm, self.harm_phase), start=1):
            audio += a * np.sin(k * phase + p) * np.where(k * f < 0.45 * SR, 1.0, 0.0)
        audio *= run * (0.6 + 0.4 * load)
        if self.passes:
            mesh = self.passes * phase
            am = 1.0 + self.pass_sideband * np.sin(phase)
            audio += self.pass_amp * (0.5 + 0.8 * load) * run * am * (np.sin(mesh) + 0.35 * np.sin(2 * mesh + 0.7))
        white = rng.standard_normal(n)
        flow = np.zeros(n)
        for i, (sos, w) in enumerate(zip(self.flow_sos, self.flow_w)):
            y, self.zi_flow[i] = sosfilt(sos, white, zi=self.zi_flow[i])
            flow += w * y
        tilt, self.zi_tilt = sosfilt(self.tilt_sos, white, zi=self.zi_tilt)
        audio += self.flow * (run ** self.speed_exp) * (0.7 + 0.5 * load) * (2.0 * flow + tilt)
        audio += self.mains_amp * (run > 0.05) * np.sin(2 * np.pi * 2 * self.mains * ts + 0.3)
        if self.impact_amp:
            hits = np.zeros(n)
            k = np.floor(phase * self.impacts_per_turn / (2 * np.pi))
            at = np.nonzero(np.diff(np.concatenate([[k[0]], k])) > 0)[0]
            hits[at] = self.impact_amp * (0.4 + 0.6 * load[at]) * rng.uniform(0.8, 1.0, at.size) * run[at]
            ring, self.zi_impact = lfilter(
                [1.0], [1.0, -2 * 0.995 * math.cos(2 * math.pi * self.impact_freq / SR), 0.995**2], hits, zi=self.zi_impact)
            audio += 0.08 * ring
        audio *= self.gain
        for idx, name in ctrl.events:
            shot = self._event(name) * self.gain
            a = idx * (SR // CTRL_HZ)
            end = min(n, a + shot.size)
            audio[a:end] += shot[: end - a]
            if a + shot.size > n:
                self.tail = _mix(self.tail, shot[end - a :])
        if self.tail.size:  # events that began in an earlier block
            m = min(n, self.tail.size)
            audio[:m] += self.tail[:m]
            self.tail = self.tail[m:]
        room, self.zi_room = lfilter([0.05], [1.0, -0.95], rng.standard_normal(n), zi=self.zi_room)
        audio += self.room_level * (room / 0.16 + 0.3 * rng.standard_normal(n))
        self.samples_done += n
        audio = audio.astype(np.float32)
        return (audio, phase, f) if with_phase else audio

    def stream(self, life: "NormalLife", seconds: float, block_s: float = 10.0):
        """``seconds`` of normal life in blocks of ``block_s`` (continuous)."""
        done = 0.0
        while done < seconds - 1e-9:
            step = min(block_s, seconds - done)
            yield self.render(life.next(step))
            done += step


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(max(a.size, b.size))
    out[: a.size] += a
    out[: b.size] += b
    return out


class NormalLife:
    """The control timeline of a machine's normal life, continuous across calls to :meth:`next`.

    Spells of 4-40 s: loaded (load 0.6-1.0) or idle (0.05-0.35), changing by a ramp of up to 3 s;
    a speed-controlled kind (:data:`VFD_KINDS`) also moves between its unit's three speed set
    points (nominal, 80-90 %, 105-112 %, the same for every take of the unit); slow speed drift
    around the set point (±1.5 %) and slip under load (the machine's); with ``stops`` a spell is a stop of 3-20 s one time in eight (ramp
    down and up over 1-4 s; never two in a row; ``first_stop_s``: at least one stop by then, as a
    user records a start and a stop for learning).  Events: a compressor blows off when it unloads, a pump's check
    valve clunks at each stop, a gearbox's clutch at each load change; and on the development kinds (so the
    normal-only model's options are chosen on machines with rare normal sounds too) a mixer's charge of
    ingredients crackles once it is loaded up, a product bumps a conveyor's guide rail after a load change.

    With ``tour_s``, the first ``tour_s`` seconds visit every operating state once, in a random
    order and for random shares of the time: each set point loaded and idle, and one stop (not
    first).  That is what a user is asked to record for ``learn acoustic`` (README: each speed and
    load the machine runs at, a stop and a start); a random stretch of a few minutes misses states
    (a set point never run while recording), which the model then rightly calls unknown.
    """

    def __init__(self, kind: str, seed: int, stops: bool = True, steady: bool = False,
                 first_stop_s: float | None = None, unit: int = 0, tour_s: float | None = None) -> None:
        self.kind, self.stops, self.steady = kind, stops, steady
        urng = np.random.default_rng([unit, 99])
        self.setpoints = (1.0, float(urng.uniform(0.8, 0.9)), float(urng.uniform(1.05, 1.12))) \
            if kind in VFD_KINDS else (1.0,)
        self.rng = np.random.default_rng([seed, sum(map(ord, kind))])
        self.stop_due = None if first_stop_s is None else int(first_stop_s * CTRL_HZ)  # a stop by then
        self.was_stop = True  # the first spell runs
        self.planned = 0  # control steps planned so far
        self.speed, self.load, self.drift = 1.0, 0.8, 0.0
        self.plan: list[tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]] = []
        self.buf_speed = np.zeros(0)
        self.buf_load = np.zeros(0)
        self.buf_events: list[tuple[int, str]] = []
        self.tour: list[tuple[float, float | None, int]] = []  # (set point, load or None = stop, steps)
        if tour_s is not None:
            states: list[tuple[float, float | None]] = [(sp, ld) for sp in self.setpoints for ld in (0.8, 0.2)]
            order = [states[i] for i in self.rng.permutation(len(states))]
            order.insert(int(self.rng.integers(1, len(order) + 1)), (1.0, None))
            shares = self.rng.uniform(0.6, 1.4, len(order))
            running = max(1.0, tour_s - 30.0) * CTRL_HZ / shares.sum()  # a stop takes up to 28 s of its own
            self.tour = [(sp, ld, int(running * w)) for (sp, ld), w in zip(order, shares)]

    def _spell(self) -> None:
        rng = self.rng
        n = int(rng.uniform(4, 40) * CTRL_HZ)
        events: list[tuple[int, str]] = []
        toured = self.tour.pop(0) if self.tour else None
        if toured is not None:
            n = toured[2]
        due = self.stop_due is not None and self.planned + n >= self.stop_due
        if toured is not None and toured[1] is None or toured is None and \
                self.stops and not self.steady and not self.was_stop and (due or rng.random() < 0.125):
            self.was_stop, self.stop_due = True, None
            down, off, up = (int(rng.uniform(1, 4) * CTRL_HZ) for _ in range(3))
            off = int(rng.uniform(3, 20) * CTRL_HZ)
            speed = np.concatenate([np.linspace(self.speed, 0, down), np.zeros(off), np.linspace(0, 1.0, up)])
            load = np.concatenate([np.linspace(self.load, 0, down), np.zeros(off), np.linspace(0, 0.3, up)])
            if self.kind == "pump":
                events.append((down, "clunk"))
            self.speed, self.load = 1.0, 0.3
        else:
            self.was_stop = False
            target = rng.uniform(0.6, 1.0) if rng.random() < 0.6 else rng.uniform(0.05, 0.35)
            if toured is not None:  # a state of the tour: loaded or idle at its set point
                target = rng.uniform(0.6, 1.0) if toured[1] > 0.5 else rng.uniform(0.05, 0.35)  # type: ignore[operator]
            if self.steady:
                target = self.load
            ramp = int(rng.uniform(0.05, 3.0) * CTRL_HZ)
            load = np.concatenate([np.linspace(self.load, target, ramp), np.full(n if toured is None else max(0, n - ramp), target)])
            setpoint = toured[0] if toured is not None else self.setpoints[0] if self.steady or rng.random() < 0.5 else \
                self.setpoints[int(rng.integers(len(self.setpoints)))]
            walk = np.clip(self.drift + np.cumsum(rng.standard_normal(load.size)) * 0.00015, -0.015, 0.015)
            self.drift = float(walk[-1])
            approach = np.minimum(1.0, np.arange(load.size) / max(1, ramp))
            speed = (self.speed + (setpoint - self.speed) * approach) * (1.0 + walk)
            if abs(target - self.load) > 0.2:
                if self.kind == "compressor" and target < self.load:
                    events.append((0, "blowoff"))
                if self.kind == "gearbox":
                    events.append((0, "clunk"))
                if self.kind == "mixer" and target > self.load:
                    events.append((ramp, "charge"))
                if self.kind == "conveyor":
                    events.append((int(rng.integers(0, max(1, n // 2))), "bump"))
            self.load = float(target)
            self.speed = float(setpoint)
        base = self.buf_speed.size
        self.buf_events += [(base + i, e) for i, e in events]
        self.planned += speed.size
        self.buf_speed = np.concatenate([self.buf_speed, speed])
        self.buf_load = np.concatenate([self.buf_load, load])

    def next(self, seconds: float) -> Control:
        n = int(round(seconds * CTRL_HZ))
        while self.buf_speed.size < n:
            self._spell()
        ctrl = Control(self.buf_speed[:n].copy(), self.buf_load[:n].copy(),
                       [(i, e) for i, e in self.buf_events if i < n])
        self.buf_speed, self.buf_load = self.buf_speed[n:], self.buf_load[n:]
        self.buf_events = [(i - n, e) for i, e in self.buf_events if i >= n]
        return ctrl
