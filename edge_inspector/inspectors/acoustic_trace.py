"""The recent past of one microphone, kept so a fault episode can be shown, not only reported.

An acoustic event says "bearing, 0.91, 3.2 s"; a person deciding whether to stop a machine wants
to see it: the spectrogram around the episode and the score curve the hysteresis decided on.
The inspector keeps the last ``seconds`` of log-mel frames and smoothed scores per microphone
(64 mel bins x 100 frames/s x 30 s = 770 kB) and hands an :class:`EpisodeTrace` with each
episode's verdict; the snapshot writer draws it.  Nothing is kept unless snapshots are on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTEXT_S = 1.0  # audio shown before the episode's onset


@dataclass
class EpisodeTrace:
    """What an episode looked like: ``mel [T, n_mels]``, ``scores [T]`` and the episode's frames."""

    mel: np.ndarray
    scores: np.ndarray  # the smoothed anomaly score per frame (what onset/offset compare to)
    frame_s: float
    span: tuple[int, int]  # [start, end) of the episode within ``mel``
    onset: float
    offset: float


class TraceRing:
    """The last ``capacity`` frames of log-mel rows and smoothed scores, by frame number.

    Frame numbers count from the microphone's last reset (as the inspector's do); :meth:`clear`
    starts again after a discontinuity, because audio before it does not belong to what follows.
    Rows live in arrays twice the capacity; when full, the newest half is moved to the front
    (one copy per ``capacity`` frames).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._mel: np.ndarray | None = None  # [2 * capacity, n_mels]
        self._scores = np.zeros(2 * self.capacity, np.float32)
        self._first = 0  # frame number of row 0
        self._rows = 0

    def clear(self) -> None:
        self._first = self._rows = 0

    def add(self, frame: int, mel_row: np.ndarray, score: float) -> None:
        """Frame number ``frame`` (consecutive after the first) with its log-mel row and score."""
        if self._mel is None:
            self._mel = np.zeros((2 * self.capacity, mel_row.shape[0]), np.float32)
        if self._rows == 0:
            self._first = frame
        if self._rows == 2 * self.capacity:
            keep = self.capacity
            self._mel[:keep] = self._mel[self._rows - keep : self._rows]
            self._scores[:keep] = self._scores[self._rows - keep : self._rows]
            self._first += self._rows - keep
            self._rows = keep
        self._mel[self._rows] = mel_row
        self._scores[self._rows] = score
        self._rows += 1

    def episode(self, start: int, end: int, frame_s: float, onset: float, offset: float) -> EpisodeTrace | None:
        """The frames from ``CONTEXT_S`` before ``start`` to the newest one, the episode
        ``[start, end)`` marked; None when nothing of it is held."""
        if self._mel is None or self._rows == 0:
            return None
        last = self._first + self._rows  # exclusive
        first = max(self._first, last - self.capacity, start - int(round(CONTEXT_S / frame_s)))
        if first >= last or end <= first:
            return None
        a, b = first - self._first, last - self._first
        span = (max(0, start - first), min(end, last) - first)
        return EpisodeTrace(self._mel[a:b].copy(), self._scores[a:b].copy(), frame_s, span, onset, offset)
