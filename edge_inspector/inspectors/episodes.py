"""From frame scores to fault episodes: smoothing, hysteresis, holding over gaps, one report each.

Per model that runs on a microphone (the classifier, the learnt anomaly model, or both), each
10 ms frame's score is smoothed by a causal moving average over the model's ``smoothing_s`` and
fed to that model's hysteresis: *on* from ``onset``, *off* below ``offset``.  The classifier's
score is ``1 - p(normal)``; the anomaly model's is its normalised anomaly score
(:func:`~edge_inspector.inspectors.heads.anomaly_score`, 0.5 at its learnt threshold).

An *episode* opens when any model's smoothed score reaches its ``onset`` and lasts while any is
at or above its ``offset`` (hysteresis).  When all fall below it is not closed at once: a score
back above its offset within ``hold_s`` continues it, so a sparse fault (a knock every 0.5-2 s, a
rattle that comes and goes) is ONE episode.  Its end is the frame where the last score fell
below.  Episodes shorter than ``min_duration_s`` are dropped.  Every
kept episode is reported once when it ends, and once early (``ongoing``) if it is still open
``report_after_s`` after its onset.

Label and score follow the scoring contract of :mod:`~edge_inspector.inspectors.heads`: the
classifier's fault type when the classifier was on during the episode, else ``anomaly``; with
one model the score is its peak smoothed score, with two the peak of the larger of the two
mapped so each onset lands on 0.5; ``anomaly_score`` is the anomaly model's peak.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_inspector.inspectors.heads import ANOMALY_LABEL, lift


class Smoother:
    """Causal moving average over the last ``n`` values."""

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self.values: deque[float] = deque()
        self.total = 0.0

    def push(self, value: float) -> float:
        self.values.append(value)
        self.total += value
        if len(self.values) > self.n:
            self.total -= self.values.popleft()
        return self.total / len(self.values)

    def reset(self) -> None:
        self.values.clear()
        self.total = 0.0


@dataclass
class Track:
    """One model's smoothed score and its two levels."""

    kind: str  # "classifier" | "anomaly"
    onset: float
    offset: float
    smoother: Smoother
    value: float = 0.0  # the last smoothed score

    def step(self, score: float) -> float:
        self.value = self.smoother.push(score)
        return self.value


@dataclass
class Episode:
    """An open or reported episode; frames are counted from the last reset."""

    start_frame: int
    id: str
    end_frame: int = 0
    label: str = ""
    score: float = 0.0  # peak (see module docstring)
    anomaly_score: float | None = None  # the anomaly model's peak normalised score
    probs_sum: np.ndarray | None = None  # classifier probabilities summed over the episode
    frames: int = 0
    classifier_on: bool = False
    reported: bool = False  # the early "ongoing" report went out
    below_since: int | None = None  # all models off since this frame (held)
    ongoing: bool = False
    decided: int = 0  # the frame at which this report was decided

    @property
    def probs(self) -> np.ndarray | None:
        return None if self.probs_sum is None or not self.frames else self.probs_sum / self.frames


@dataclass
class EpisodeTracker:
    """Episodes of one microphone's stream (module docstring); frames are fed one by one."""

    tracks: list[Track]
    labels: tuple[str, ...]  # the classifier's labels ((normal,) without a classifier)
    warmup: int  # frames after a reset that are not scored
    hold: int  # frames
    min_frames: int
    report_after: int
    lag: int  # frames the moving average lags by (start and end are dated back by it)
    name: str = ""
    frames_before: int = 0  # frames before the last reset (episode ids stay unique)
    episode: Episode | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"episodes": 0, "short_episodes": 0})

    def reset(self, frames_before: int) -> None:
        self.frames_before = frames_before
        self.episode = None
        for t in self.tracks:
            t.smoother.reset()
            t.value = 0.0

    def value(self) -> float:
        """The combined smoothed score of the last frame (see the module docstring)."""
        if len(self.tracks) == 1:
            return self.tracks[0].value
        return max(lift(t.value, t.onset) for t in self.tracks)

    def levels(self) -> tuple[float, float]:
        """``(onset, offset)`` on the scale of :meth:`value`."""
        if len(self.tracks) == 1:
            return self.tracks[0].onset, self.tracks[0].offset
        return 0.5, min(lift(t.offset, t.onset) for t in self.tracks)

    def frame(self, k: int, scores: dict[str, float], probs: np.ndarray | None) -> list[Episode]:
        """Feed frame ``k``; ``scores`` maps a track kind to its frame score.  Returns the
        episodes to report now (an early ``ongoing`` one and/or a closed one)."""
        out: list[Episode] = []
        for t in self.tracks:
            t.step(scores[t.kind] if k >= self.warmup else 0.0)
        above_onset = any(t.value >= t.onset for t in self.tracks)
        above_offset = any(t.value >= t.offset for t in self.tracks)
        ep = self.episode
        if ep is not None and ep.below_since is not None:
            if above_offset:  # back within the hold: the same fault
                ep.below_since = None
            elif k - ep.below_since >= self.hold:
                out += self._close(ep.below_since, k)
                ep = None
        if ep is None:
            if not above_onset:
                return out
            start = max(self.warmup, k - self.lag)
            ep = self.episode = Episode(start, f"{self.name}-{self.frames_before + start}")
        if above_offset:
            ep.score = max(ep.score, self.value())
            for t in self.tracks:
                if t.kind == "anomaly":
                    ep.anomaly_score = max(ep.anomaly_score or 0.0, t.value)
                elif t.value >= t.onset:
                    ep.classifier_on = True
            if probs is not None:
                ep.probs_sum = probs.astype(np.float64) if ep.probs_sum is None else ep.probs_sum + probs
            ep.frames += 1
        elif ep.below_since is None:
            ep.below_since = k
        if not ep.reported and ep.below_since is None and k - ep.start_frame >= self.report_after:
            ep.reported = True
            out.append(self._report(ep, k + 1, ongoing=True, decided=k + 1))
        return out

    def finish(self, k: int) -> list[Episode]:
        """The stream ended (or was reset) at frame ``k``: close what is open."""
        ep = self.episode
        if ep is None:
            return []
        return self._close(ep.below_since if ep.below_since is not None else k, k)

    def _label(self, ep: Episode) -> str:
        p = ep.probs
        if ep.classifier_on and p is not None and len(self.labels) > 1:
            return self.labels[1 + int(np.argmax(p[1:]))]
        return ANOMALY_LABEL

    def _report(self, ep: Episode, end: int, ongoing: bool, decided: int) -> Episode:
        return Episode(ep.start_frame, ep.id, end_frame=end, label=self._label(ep), score=ep.score,
                       anomaly_score=ep.anomaly_score, probs_sum=ep.probs_sum, frames=ep.frames,
                       classifier_on=ep.classifier_on, reported=ep.reported, ongoing=ongoing, decided=decided)

    def _close(self, below: int, now: int) -> list[Episode]:
        ep, self.episode = self.episode, None
        if ep is None or ep.frames == 0:
            return []
        end = max(ep.start_frame + 1, below - self.lag)
        if end - ep.start_frame < self.min_frames and not ep.reported:
            self.stats["short_episodes"] += 1
            return []
        self.stats["episodes"] += 1
        return [self._report(ep, end, ongoing=False, decided=now)]
