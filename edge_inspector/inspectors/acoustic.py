"""The acoustic inspector: streaming GRU per microphone, smoothing, hysteresis, one event per episode.

One thread serves every microphone.  Each microphone has its own
:class:`~edge_inspector.inspectors.acoustic_model.AcousticStreamRunner` (feature buffer and GRU
state), so interleaved chunks from several microphones never mix.  Per frame (10 ms) the
anomaly score ``1 - p(normal)`` is smoothed by a causal moving average over ``smoothing_s``;
an *episode* opens when the smoothed score reaches ``onset`` and closes when it falls below
``offset`` (hysteresis, so a fault hovering near one threshold does not flap).  Episodes shorter
than ``min_duration_s`` are discarded; every other episode becomes ONE
:class:`~edge_inspector.inspectors.verdict.Verdict` when it closes, so a PLC gets one event per
fault, not one hundred per second.  A fault that persists must not stay silent until it ends:
an episode still open ``report_after_s`` after its onset is also reported once while it lasts
(``extra["ongoing"] = True``, duration and peak so far); its closing verdict follows with
``extra["ongoing"] = False`` and the same ``extra["episode"]`` id (``<mic>-<start frame>``,
frames counted from the start of the stream), so every episode still ends in exactly one
closing event.

State is reset when a chunk says ``discontinuity`` or when its ``offset_s`` does not follow the
previous chunk (a chunk was dropped by a ``drop_oldest`` queue): the GRU must not glue two
unrelated pieces of sound together.  The first ``warmup_s`` after a reset are not scored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.inspectors.acoustic_trace import TraceRing
from edge_inspector.inspectors.verdict import Verdict
from edge_inspector.manifest import AcousticModel
from edge_inspector.runtime.base import Engine
from edge_inspector.sources.base import BoundedQueue, Chunk
from edge_inspector.supervision import log_failure

log = logging.getLogger(__name__)


@dataclass
class AcousticStats:
    chunks: int = 0
    frames: int = 0
    audio_s: float = 0.0
    infer_ms_total: float = 0.0
    episodes: int = 0
    short_episodes: int = 0  # discarded: shorter than min_duration_s
    resets: int = 0  # discontinuities (flagged or detected from offsets)


@dataclass
class _Episode:
    start_frame: int
    id: str = ""
    reported: bool = False  # the early "ongoing" verdict went out
    peak: float = 0.0
    probs_sum: np.ndarray | None = None
    frames: int = 0


@dataclass
class _Mic:
    """Everything the inspector keeps per microphone."""

    name: str
    runner: am.AcousticStreamRunner
    onset: float
    offset: float
    base_offset_s: float = 0.0  # stream offset / capture times of frame 0 since the last reset
    frames_before: int = 0  # frames seen before the last reset (episode ids stay unique)
    base_ts: float = 0.0
    base_mono: float = 0.0
    next_offset_s: float | None = None  # where the next contiguous chunk must start
    window: list[float] = field(default_factory=list)  # last smoothing-window frame scores
    window_sum: float = 0.0
    episode: _Episode | None = None
    period_probs: list[np.ndarray] = field(default_factory=list)
    period_start_frame: int = 0
    frame_log: list[np.ndarray] | None = None  # per-frame probs, when kept for inspection
    trace: TraceRing | None = None  # recent spectrogram and scores, when episodes are to be drawn
    audio_s: float = 0.0  # seconds of audio inspected


class AcousticInspector(threading.Thread):
    def __init__(
        self,
        engine: Engine,
        model: AcousticModel,
        queues: dict[str, BoundedQueue[Chunk]],
        on_verdict: Callable[[Verdict], None],
        overrides: dict[str, dict[str, float]] | None = None,
        verdict_every_s: float | None = None,
        on_window: Callable[[Verdict], None] | None = None,
        keep_frame_probs: bool = False,
        report_after_s: float | None = None,
        trace_s: float = 0.0,
        on_chunk: Callable[[str, float, float], None] | None = None,
    ) -> None:
        """``overrides`` maps a microphone name to ``{"onset": x, "offset": y}``.
        ``report_after_s`` (default: the model's) is when a still-open episode is reported early.
        With ``verdict_every_s``, a per-window verdict (ok or not) for every that many seconds
        of audio goes to ``on_window`` (default ``on_verdict``) in addition to episodes.
        With ``trace_s``, the last that many seconds are kept per microphone and each episode's
        verdict carries its spectrogram and score curve (``Verdict.trace``) for snapshots.
        ``on_chunk(mic, latency_s, inference_s)`` follows every inspected chunk (metrics): the time
        from its last sample's capture to the end of its inspection, and the engine's share."""
        super().__init__(name="acoustic-inspector", daemon=True)
        if not queues:
            raise ValueError("the acoustic inspector needs at least one microphone queue")
        self.engine = engine
        self.model = model
        self.queues = queues
        self.on_verdict = on_verdict
        self.on_window = on_window or on_verdict
        self.on_chunk = on_chunk
        self.verdict_every_s = verdict_every_s
        self.frame_s = model.hop_length / model.sample_rate
        self.smooth_frames = max(1, int(round(model.smoothing_s / self.frame_s)))
        self.warmup = am.warmup_frames(model)
        after = model.report_after_s if report_after_s is None else float(report_after_s)
        if after <= 0:
            raise ValueError(f"report_after_s must be > 0, got {after}")
        self.report_after_frames = max(1, int(round(after / self.frame_s)))
        self.mics: dict[str, _Mic] = {}
        for name in queues:
            o = (overrides or {}).get(name, {})
            onset, offset = float(o.get("onset", model.onset)), float(o.get("offset", model.offset))
            if offset > onset:
                raise ValueError(f"microphone {name}: offset {offset} must not exceed onset {onset}")
            self.mics[name] = _Mic(name, am.AcousticStreamRunner(engine, model), onset, offset,
                                   frame_log=[] if keep_frame_probs else None,
                                   trace=TraceRing(int(trace_s / self.frame_s)) if trace_s > 0 else None)
        self.stop_event = threading.Event()
        self.stats = AcousticStats()
        self.error: BaseException | None = None
        wakeups = {id(q.wakeup) for q in queues.values()}
        self._shared_wakeup = next(iter(queues.values())).wakeup if len(wakeups) == 1 else None

    def stop(self) -> None:
        """Finish: inspect what is still queued, close open episodes, then exit."""
        self.stop_event.set()
        if self._shared_wakeup is not None:
            with self._shared_wakeup:
                self._shared_wakeup.notify_all()

    def frame_probs(self, mic: str) -> np.ndarray:
        """All per-frame probabilities seen for ``mic`` (``keep_frame_probs=True`` only)."""
        log_ = self.mics[mic].frame_log
        if log_ is None:
            raise RuntimeError("frame probabilities are kept only with keep_frame_probs=True")
        return np.concatenate(log_) if log_ else np.zeros((0, len(self.model.labels)), np.float32)

    # -- per-chunk processing ---------------------------------------------------------------
    def _reset(self, mic: _Mic, chunk: Chunk) -> None:
        self._close_episode(mic, mic.runner.frames_seen)
        self._flush_window(mic)
        mic.frames_before += mic.runner.frames_seen
        mic.runner.reset()
        mic.base_offset_s, mic.base_ts, mic.base_mono = chunk.offset_s, chunk.ts, chunk.mono
        mic.window, mic.window_sum = [], 0.0
        if mic.trace is not None:
            mic.trace.clear()
        mic.period_probs, mic.period_start_frame = [], 0

    def process(self, chunk: Chunk) -> None:
        """Inspect one chunk (called by the thread; usable directly for synchronous use)."""
        mic = self.mics[chunk.source]
        if chunk.sample_rate != self.model.sample_rate:
            raise ValueError(f"microphone {chunk.source}: chunk at {chunk.sample_rate} Hz, model needs {self.model.sample_rate} Hz")
        samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
        first = mic.next_offset_s is None
        gap = not first and abs(chunk.offset_s - mic.next_offset_s) > 0.5 * max(samples.size / chunk.sample_rate, self.frame_s)
        if first or chunk.discontinuity or gap:
            if not first:
                self.stats.resets += 1
            self._reset(mic, chunk)
        mic.next_offset_s = chunk.offset_s + samples.size / chunk.sample_rate
        before_ms = mic.runner.inference_ms
        k0 = mic.runner.frames_seen
        scores, probs = mic.runner.push(samples)
        self.stats.chunks += 1
        self.stats.frames += scores.size
        self.stats.audio_s += samples.size / chunk.sample_rate
        mic.audio_s += samples.size / chunk.sample_rate
        self.stats.infer_ms_total += mic.runner.inference_ms - before_ms
        if mic.frame_log is not None and scores.size:
            mic.frame_log.append(probs)
        mel = mic.runner.last_mel
        for i in range(scores.size):
            self._frame(mic, k0 + i, float(scores[i]), probs[i], mel[i] if mic.trace is not None else None)
        if self.on_chunk is not None:
            end_mono = chunk.mono + samples.size / chunk.sample_rate
            self.on_chunk(mic.name, time.monotonic() - end_mono, (mic.runner.inference_ms - before_ms) / 1000.0)

    def _frame(self, mic: _Mic, k: int, score: float, probs: np.ndarray, mel_row: np.ndarray | None = None) -> None:
        if k < self.warmup:
            score = 0.0  # not scored: the GRU has heard too little since the reset
        else:
            mic.period_probs.append(probs)
        mic.window.append(score)
        mic.window_sum += score
        if len(mic.window) > self.smooth_frames:
            mic.window_sum -= mic.window.pop(0)
        smooth = mic.window_sum / len(mic.window)
        if mic.trace is not None and mel_row is not None:
            mic.trace.add(k, mel_row, smooth)
        ep = mic.episode
        if ep is None and smooth >= mic.onset:
            # A moving average lags by half its window: date the start back by that much.
            start = max(self.warmup, k - (self.smooth_frames - 1) // 2)
            ep = mic.episode = _Episode(start_frame=start, id=f"{mic.name}-{mic.frames_before + start}",
                                        probs_sum=np.zeros_like(probs, dtype=np.float64))
        if ep is not None:
            if smooth < mic.offset:
                self._close_episode(mic, k)
            else:
                ep.peak = max(ep.peak, smooth)
                ep.probs_sum += probs
                ep.frames += 1
                if not ep.reported and k - ep.start_frame >= self.report_after_frames:
                    ep.reported = True
                    self._emit_episode(mic, ep, k + 1, ongoing=True)
        if self.verdict_every_s and (k + 1 - mic.period_start_frame) * self.frame_s >= self.verdict_every_s - 1e-9:
            self._flush_window(mic, end_frame=k + 1)

    def _frame_time(self, k: int) -> float:
        """Seconds from the last reset to the centre of frame ``k``."""
        return (k * self.model.hop_length + self.model.win_length / 2) / self.model.sample_rate

    def _close_episode(self, mic: _Mic, end_frame: int) -> None:
        ep, mic.episode = mic.episode, None
        if ep is None or ep.frames == 0:
            return
        end = max(ep.start_frame + 1, end_frame - (self.smooth_frames - 1) // 2)
        if (end - ep.start_frame) * self.frame_s < self.model.min_duration_s and not ep.reported:
            self.stats.short_episodes += 1
            return
        self.stats.episodes += 1
        self._emit_episode(mic, ep, end, ongoing=False, decided=end_frame)

    def _emit_episode(self, mic: _Mic, ep: _Episode, end: int, ongoing: bool, decided: int | None = None) -> None:
        """One episode verdict: the early "ongoing" one (``end`` = now) or the closing one.

        ``extra["decided_at_s"]`` is where in the stream the decision fell (frame ``decided``,
        default ``end``): minus ``offset_s`` it is how long after the onset the event came, in
        the audio's own time, which a replay at full speed can measure (its clock runs ahead)."""
        duration = (end - ep.start_frame) * self.frame_s
        mean = ep.probs_sum / ep.frames
        label = self.model.labels[1 + int(np.argmax(mean[1:]))]
        t = self._frame_time(ep.start_frame)
        trace = mic.trace.episode(ep.start_frame, end, self.frame_s, mic.onset, mic.offset) if mic.trace else None
        self.on_verdict(
            Verdict(
                source=mic.name, kind="acoustic", label=label, score=float(ep.peak), defect=True,
                ts=mic.base_ts + t, mono=mic.base_mono + t, model=self.model.name,
                model_sha256=self.model.sha256, offset_s=round(mic.base_offset_s + t, 4),
                duration_s=round(duration, 4),
                extra={"probs": {n: round(float(p), 4) for n, p in zip(self.model.labels, mean)},
                       "onset": mic.onset, "offset": mic.offset, "episode": ep.id, "ongoing": ongoing,
                       "decided_at_s": round(mic.base_offset_s + self._frame_time(end if decided is None else decided), 4)},
                trace=trace,
            )
        )

    def _flush_window(self, mic: _Mic, end_frame: int | None = None) -> None:
        """Emit the periodic verdict for the frames since the last one (if enabled)."""
        if not self.verdict_every_s:
            return
        start, probs = mic.period_start_frame, mic.period_probs
        mic.period_probs = []
        mic.period_start_frame = end_frame if end_frame is not None else mic.runner.frames_seen
        if not probs:
            return
        agg = am.top_fraction_probs(np.stack(probs), len(self.model.labels))
        score, label = am.decide(agg, self.model.threshold, self.model.labels)
        t = self._frame_time(start)
        self.on_window(
            Verdict(
                source=mic.name, kind="acoustic", label=label, score=score, defect=label != self.model.labels[0],
                ts=mic.base_ts + t, mono=mic.base_mono + t, model=self.model.name, model_sha256=self.model.sha256,
                offset_s=round(mic.base_offset_s + t, 4), duration_s=round(len(probs) * self.frame_s, 4),
                extra={"window": True, "probs": {n: round(float(p), 4) for n, p in zip(self.model.labels, agg)}},
            )
        )

    # -- thread -----------------------------------------------------------------------------
    def _take(self) -> bool:
        got = False
        for queue in self.queues.values():
            chunk = queue.get_nowait()
            if chunk is not None:
                self.process(chunk)
                got = True
        return got

    def _wait(self) -> None:
        if self._shared_wakeup is not None:
            with self._shared_wakeup:
                if not any(len(q) for q in self.queues.values()):
                    self._shared_wakeup.wait(0.1)
        else:
            self.stop_event.wait(0.005)  # queues with separate conditions: poll briefly

    def finish(self) -> None:
        """Close every open episode (end of stream or stop) and flush periodic windows."""
        for mic in self.mics.values():
            self._close_episode(mic, mic.runner.frames_seen)
            self._flush_window(mic)

    def run(self) -> None:
        try:
            while True:
                if self._take():
                    continue
                if all(q.exhausted for q in self.queues.values()):
                    break
                if self.stop_event.is_set() and not any(len(q) for q in self.queues.values()):
                    break
                self._wait()
            self.finish()
        except BaseException as exc:  # surfaced by the service as a runtime failure
            self.error = exc
            log_failure("acoustic-inspector", exc, 1, restarting=False)

    def summary(self) -> dict[str, float]:
        s = self.stats
        return {
            "chunks": s.chunks, "frames": s.frames, "audio_s": round(s.audio_s, 3),
            "inference_ms_total": round(s.infer_ms_total, 3),
            "inference_ms_per_audio_s": round(s.infer_ms_total / s.audio_s, 3) if s.audio_s else 0.0,
            "episodes": s.episodes, "short_episodes": s.short_episodes, "resets": s.resets,
        }
