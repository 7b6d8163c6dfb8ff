"""The learnt acoustic model's start/stop gate: frames where the machine starts, stops or is
stopped are not scored (a few minutes of recording rarely cover a ramp, and a fault is heard
while the machine runs).  Used by the daemon's stream runner and by ``learn acoustic``, which
sets its threshold on held-out audio gated the same way."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_inspector.features import LOG_EPS

QUIET = float(np.log(LOG_EPS))  # log-mel of digital silence (a learnt model's context after a reset)
DB_PER_NEPER = 10.0 / math.log(10.0)  # log-mel (natural log of power) -> dB


class LevelGate:
    """Suspends a learnt model while the machine starts or stops (its manifest's ``gate_*``).

    Per frame the level is the median log-mel over bands: a start or a stop moves every band, a
    fault only its own (a squeal, a bearing's band: still scored while it sets in).  Its running
    *median* over ``gate_window_s`` follows a start or a stop (a level that moves and stays)
    within a few tenths of a second, while a knock or a rattle, loud for a few frames, does not
    move it (a sparse fault stays scored).  A frame is gated when that median differs by more than
    ``gate_db`` from its value ``gate_window_s`` earlier, or is digital silence (a microphone
    delivering zeros: learning leaves such audio out too), or when that median is under
    ``gate_floor_db`` (the machine is stopped or still slow: a slow start sounds like nothing
    the machine does while it runs), and for ``gate_hold_s`` after.  State is carried, so chunks give what the whole recording gives.
    """

    def __init__(self, entry: Any) -> None:
        per_s = entry.sample_rate / entry.hop_length
        self.window = max(1, int(round(entry.gate_window_s * per_s)))
        self.hold = int(round(entry.gate_hold_s * per_s))
        self.limit = float(entry.gate_db) / DB_PER_NEPER
        floor = getattr(entry, "gate_floor_db", None)
        self.floor = -math.inf if floor is None else float(floor) / DB_PER_NEPER
        self.reset()

    def reset(self) -> None:
        self.levels = np.zeros(0)  # the last window - 1 frame levels
        self.median = np.zeros(0)  # the last ``window`` running medians
        self.since = 1 << 30  # frames since the level last moved too much

    def push(self, mel: np.ndarray) -> np.ndarray:
        if self.limit <= 0 or not mel.shape[0]:
            return np.zeros(mel.shape[0], bool)
        n, w = mel.shape[0], self.window
        lv = np.concatenate([self.levels, np.median(mel, axis=1).astype(np.float64)])
        first = lv.size - n  # index in lv of the first new frame
        full = max(first, w - 1)  # new frames from here have a whole window behind them
        med = [float(np.median(lv[: i + 1])) for i in range(first, min(full, lv.size))]  # after a reset
        if lv.size > full:
            med_full = np.median(np.lib.stride_tricks.sliding_window_view(lv, w), axis=1)[full - w + 1:]
            med = np.concatenate([np.asarray(med, np.float64), med_full])
        hist = np.concatenate([self.median, np.asarray(med, np.float64)])
        j = np.arange(self.median.size, hist.size)
        moved = np.zeros(n, bool)
        ok = j >= w
        moved[ok] = np.abs(hist[j[ok]] - hist[j[ok] - w]) > self.limit
        moved |= mel.max(axis=1) < QUIET + 1.0  # digital silence: a microphone delivering zeros
        moved |= hist[j] < self.floor  # stopped, or starting and still far from running
        gated = np.zeros(n, bool)
        for i in range(n):
            self.since = 0 if moved[i] else self.since + 1
            gated[i] = self.since <= self.hold
        self.levels = lv[max(0, lv.size - (w - 1)):] if w > 1 else lv[:0]
        self.median = hist[-w:]
        return gated
