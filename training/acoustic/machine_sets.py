"""The per-machine data of the normal-only model's evaluation: learn, clips, an hour of streaming.

For one machine unit (kind + seed): :func:`learn_audio` is what a user would record on the line
for ``edge-inspector learn acoustic`` (3 minutes of its normal life); :func:`test_clips` are 4 s
clips from *another* stretch of that life, half of them with a fault (over the whole clip or a
part of at least 1 s, while the machine runs) at an audibility drawn from :data:`LEVELS_DB`;
:func:`normal_stream` is an hour (or any length) of fault-free life for false-episode counts.
Each uses its own noise and timeline seed, so no sample of the test audio was heard in learning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from training.acoustic.audibility import broadband_snr_db, scale_to_audibility
from training.acoustic.faults import make_plant_fault
from training.acoustic.plant import SR, NormalLife, PlantMachine

CLIP_S = 4.0
LEVELS_DB = (0.0, 3.0, 6.0, 10.0)  # fault audibility (0 dB = barely audible)
SNR_LEVELS_DB = (-6.0, -2.0, 2.0, 6.0)  # broadband SNR of the fault against the machine
SCALES = {"snr": SNR_LEVELS_DB, "audibility": LEVELS_DB}

FAULTS_OF = {
    "fan": ("blade_rub", "rattle", "bearing", "squeal"),
    "pump": ("cavitation", "rattle", "bearing", "knock"),
    "compressor": ("valve_flutter", "rattle", "knock", "squeal"),
    "gearbox": ("broken_tooth", "rattle", "bearing", "squeal"),
    "motor": ("misalignment", "electrical", "bearing"),
    "mixer": ("looseness", "misalignment", "knock"),
    "conveyor": ("looseness", "electrical", "squeal"),
    "blower": ("looseness", "blade_rub", "electrical", "squeal"),
}


@dataclass
class TestClip:
    samples: np.ndarray
    fault: str | None  # None: normal
    level_db: float | None  # on the set's scale (broadband SNR or audibility)
    snr_db: float | None  # broadband SNR over the fault's interval
    start_s: float = 0.0
    end_s: float = 0.0
    transient: bool = False  # the machine starts, stops or is stopped during the clip


def learn_audio(kind: str, seed: int, seconds: float = 180.0, tour: bool = True) -> np.ndarray:
    """``seconds`` of the unit's normal life, as recorded for learning: as the user is asked to
    record, it visits each operating state (each set point loaded and idle, a stop and a start:
    :class:`NormalLife`'s ``tour_s``) in a random order and for random spells; with ``tour``
    False, a random stretch of its life with one stop (which may miss states)."""
    machine = PlantMachine(kind, seed, take=1)
    life = NormalLife(kind, seed * 1000 + 1, unit=seed, **({"tour_s": seconds} if tour else {"first_stop_s": 0.6 * seconds}))
    return np.concatenate(list(machine.stream(life, seconds)))


def normal_stream(kind: str, seed: int, seconds: float, block_s: float = 10.0, take: int = 3) -> Iterator[np.ndarray]:
    """Fault-free life of the unit in blocks (another stretch than learning and the clips)."""
    machine = PlantMachine(kind, seed, take=take)
    return machine.stream(NormalLife(kind, seed * 1000 + take, unit=seed), seconds, block_s)


def scale_to_snr(fault: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """``fault`` scaled so that its RMS over its extent is ``snr_db`` against the background's there."""
    now = broadband_snr_db(fault, background)
    if not np.isfinite(now):
        return np.zeros_like(fault)
    return fault * 10.0 ** ((snr_db - now) / 20.0)


def test_clips(kind: str, seed: int, n: int = 100, take: int = 2, scale: str = "audibility") -> list[TestClip]:
    """``n`` clips of 4 s, every other one with a fault at a level of ``scale`` (module docstring)."""
    levels = SCALES[scale]
    rng = np.random.default_rng([seed, take, 7] if scale == "audibility" else [seed, take, 7, 1])
    machine = PlantMachine(kind, seed, take=take)
    life = NormalLife(kind, seed * 1000 + take, unit=seed)
    faults = FAULTS_OF[kind]
    clips: list[TestClip] = []
    while len(clips) < n:
        machine.render(life.next(float(rng.uniform(2.0, 8.0))))  # space the clips apart
        ctrl = life.next(CLIP_S)
        audio, phase, freq = machine.render(ctrl, with_phase=True)
        if len(clips) % 2 == 0:
            clips.append(TestClip(audio, None, None, None, transient=bool(ctrl.speed.min() < 0.9)))
            continue
        if ctrl.speed.min() < 0.5:  # a fault is heard while the machine runs: take the next stretch
            continue
        j = (len(clips) // 2) % (len(faults) * len(levels))
        kind_f, level = faults[j % len(faults)], levels[j // len(faults)]
        a, b = 0, audio.size
        if rng.random() < 0.5:
            length = rng.uniform(1.0, CLIP_S - 0.5)
            a = int(rng.uniform(0, CLIP_S - length) * SR)
            b = a + int(length * SR)
        fault = np.zeros(audio.size)
        fault[a:b] = make_plant_fault(rng, kind_f, phase[a:b], freq[a:b])
        fault = scale_to_audibility(fault, audio, level) if scale == "audibility" else scale_to_snr(fault, audio, level)
        clips.append(TestClip((audio + fault).astype(np.float32), kind_f, level, broadband_snr_db(fault, audio),
                              a / SR, b / SR))
    return clips


def fault_in_stream(kind: str, seed: int, fault: str, level_db: float, before_s: float, fault_s: float,
                    fade_s: float = 0.0, take: int = 4) -> tuple[np.ndarray, float, np.ndarray]:
    """Normal running for ``before_s``, then ``fault`` for ``fault_s`` (faded in over ``fade_s``
    from 30 dB below its level): ``(audio, fault_start_s, fault_alone)``."""
    rng = np.random.default_rng([seed, take, 11])
    machine = PlantMachine(kind, seed, take=take)
    life = NormalLife(kind, seed * 1000 + take, stops=False, steady=True, unit=seed)
    audio, phase, freq = machine.render(life.next(before_s + fault_s), with_phase=True)
    a = int(before_s * SR)
    signal = np.zeros(audio.size)
    signal[a:] = make_plant_fault(rng, fault, phase[a:], freq[a:])
    signal = scale_to_audibility(signal, audio, level_db)
    if fade_s > 0:
        ramp_db = np.clip(np.arange(audio.size - a) / (fade_s * SR), 0.0, 1.0) * 30.0 - 30.0
        signal[a:] *= 10 ** (ramp_db / 20)
    return (audio + signal).astype(np.float32), before_s, signal


def describe(clips: list[TestClip]) -> str:
    kinds = sorted({c.fault for c in clips if c.fault})
    snr = [c.snr_db for c in clips if c.snr_db is not None]
    return (f"{len(clips)} clips, {sum(c.fault is None for c in clips)} normal; faults {', '.join(kinds)}; "
            f"audibility {', '.join(f'{x:g}' for x in LEVELS_DB)} dB; broadband SNR {min(snr):.0f}..{max(snr):.0f} dB")

