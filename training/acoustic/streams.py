"""Audio through the daemon's own streaming inspector, for evaluations that count episodes.

Everything runs through :class:`~edge_inspector.inspectors.acoustic.AcousticInspector` exactly as
a microphone's chunks do in the daemon (0.1 s chunks, state carried, smoothing, hysteresis,
hold), so an episode counted here is an event a line would have received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from edge_inspector.inspectors.acoustic import AcousticInspector
from edge_inspector.sources.base import BoundedQueue, Chunk
from edge_inspector.synthetic.machines import machine_stream, noise_floor


@dataclass
class Heard:
    """One verdict and when (stream seconds, end of the chunk being inspected) it was published."""

    verdict: Any
    at_s: float


def run_stream(models: list[Any], blocks: Iterable[np.ndarray], chunk_s: float = 0.1,
               sample_rate: int = 16000) -> tuple[list[Heard], float]:
    """Feed ``blocks`` of audio in ``chunk_s`` chunks; returns every episode verdict (early and
    closing) with its publication time, and the seconds of audio fed."""
    heard: list[Heard] = []
    clock = [0.0]
    inspector = AcousticInspector(models, None, {"m": BoundedQueue(1, "block")},
                                  lambda v: heard.append(Heard(v, clock[0])))
    step = int(round(chunk_s * sample_rate))
    fed = 0
    rest = np.zeros(0, np.float32)
    for block in blocks:
        audio = np.concatenate([rest, np.asarray(block, np.float32)])
        whole = audio.size // step * step
        for a in range(0, whole, step):
            clock[0] = (fed + step) / sample_rate
            inspector.process(Chunk("m", fed / sample_rate, 0.0, 0.0, audio[a : a + step], sample_rate))
            fed += step
        rest = audio[whole:]
    inspector.finish()
    return heard, fed / sample_rate


def closing(heard: list[Heard]) -> list[Any]:
    """The closing verdict of each episode (one per episode)."""
    return [h.verdict for h in heard if not h.verdict.extra.get("ongoing")]


def first_report_s(heard: list[Heard], after_s: float) -> float | None:
    """When the first event about an episode starting at or after ``after_s - 1`` was published."""
    times = [h.at_s for h in heard if h.verdict.offset_s >= after_s - 1.0]
    return min(times) if times else None


def start_stop_audio(seed: int, seconds: float, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """Fault-free line audio with the machine starting and stopping: it runs 10-60 s, stops for
    2-20 s (a noise floor or digital silence, see ``machines.noise_floor``), starts again; each
    start/stop is abrupt or a fade of up to 1.5 s (half each).  Returns (audio, starts + stops)."""
    rng = np.random.default_rng(seed)
    stream = machine_stream(seed, 0.1, fault_rate=0.0, sample_rate=sample_rate)
    n = int(seconds * sample_rate)
    machine = np.concatenate([next(stream) for _ in range(int(np.ceil(seconds * 10)))])[:n].astype(np.float64)
    knots_t, knots_g = [0.0], [0.0]  # starts with the machine off
    t, on = float(rng.uniform(1.0, 5.0)), True
    while t < seconds:
        width = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.01, 1.5))
        knots_t += [t, t + width + 1e-4]
        knots_g += [knots_g[-1], 1.0 if on else 0.0]
        t += width + (rng.uniform(10.0, 60.0) if on else rng.uniform(2.0, 20.0))
        on = not on
    env = np.interp(np.arange(n) / sample_rate, knots_t, knots_g)
    audio = np.clip(machine * env + noise_floor(rng, n), -1.0, 1.0).astype(np.float32)
    return audio, sum(1 for x in knots_t[1::2] if x < seconds)
