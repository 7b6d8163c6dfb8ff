"""The acoustic inspector: every acoustic model per microphone, one event per fault episode.

One thread serves every microphone.  Each microphone has its own
:class:`~edge_inspector.inspectors.acoustic_model.AcousticStreamRunner` (feature buffer and each
model's carried state), so interleaved chunks from several microphones never mix, and its own
:class:`~edge_inspector.inspectors.episodes.EpisodeTracker`: per 10 ms frame, each model's score
is smoothed and put through its hysteresis, and a fault *episode* lasts while any model hears it
(a dip shorter than ``hold_s`` does not end it).  Every episode becomes ONE closing
:class:`~edge_inspector.values.Verdict`, so a PLC gets one event per fault, not one
hundred per second; one still open ``report_after_s`` after its onset is also reported once
while it lasts (``extra["ongoing"] = True``), its closing verdict following with
``extra["ongoing"] = False`` and the same ``extra["episode"]`` id (``<mic>-<start frame>``,
frames counted from the start of the stream).  The classifier names the fault where it knows it,
else the label is ``anomaly``; with a learnt model events carry ``anomaly_score``.

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
from typing import Any, Sequence

import numpy as np

from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.inspectors.acoustic_trace import TraceRing
from edge_inspector.inspectors.episodes import Episode, EpisodeTracker, Smoother, Track
from edge_inspector.inspectors.heads import InferenceBatch, anomaly_score, decide
from edge_inspector.runtime.base import Engine
from edge_inspector.sources.base import BoundedQueue
from edge_inspector.supervision import log_failure
from edge_inspector.values import Chunk, Verdict

log = logging.getLogger(__name__)


@dataclass
class AcousticStats:
    chunks: int = 0
    frames: int = 0
    audio_s: float = 0.0
    infer_ms_total: float = 0.0
    resets: int = 0  # discontinuities (flagged or detected from offsets)


@dataclass
class _Mic:
    """Everything the inspector keeps per microphone."""

    name: str
    runner: am.AcousticStreamRunner
    episodes: EpisodeTracker
    base_offset_s: float = 0.0  # stream offset / capture times of frame 0 since the last reset
    frames_before: int = 0  # frames seen before the last reset (episode ids stay unique)
    base_ts: float = 0.0
    base_mono: float = 0.0
    next_offset_s: float | None = None  # where the next contiguous chunk must start
    period_probs: list[np.ndarray] = field(default_factory=list)
    period_scores: list[float] = field(default_factory=list)  # smoothed anomaly scores (raw)
    period_start_frame: int = 0
    frame_log: list[np.ndarray] | None = None  # per-frame classifier probs, when kept for inspection
    trace: TraceRing | None = None  # recent spectrogram and scores, when episodes are to be drawn
    audio_s: float = 0.0  # seconds of audio inspected


def _frames(n: float, entry: Any) -> int:
    return max(1, int(round(n * entry.sample_rate / entry.hop_length)))


class AcousticInspector(threading.Thread):
    def __init__(
        self,
        models: Sequence[am.LoadedModel] | Engine,
        model: Any,
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
        """``models``: the directory's acoustic models (``open_acoustic``), with ``model`` None; or
        an engine and its manifest entry.  ``overrides`` maps a microphone name to ``{"onset",
        "offset"}`` (the classifier's hysteresis) and/or ``{"anomaly_threshold"}`` (the learnt
        model's onset on its normalised score).  ``report_after_s`` (default: the models') is when a
        still-open episode is reported early.  With ``verdict_every_s``, a per-window verdict (ok or
        not) for every that many seconds of audio goes to ``on_window`` (default ``on_verdict``).
        With ``trace_s``, the last that many seconds are kept per microphone and each episode's
        verdict carries its spectrogram and score curve (``Verdict.trace``) for snapshots.
        ``on_chunk(mic, latency_s, inference_s)`` follows every inspected chunk (metrics): the time
        from its last sample's capture to the end of its inspection, and the engine's share."""
        super().__init__(name="acoustic-inspector", daemon=True)
        if not queues:
            raise ValueError("the acoustic inspector needs at least one microphone queue")
        self.models = list(models) if model is None else [am.LoadedModel(model, am.head_for(model), models)]  # type: ignore[arg-type]
        probe = am.AcousticStreamRunner(self.models)
        self.model = probe.model  # the feature contract (and the classifier when there is one)
        self.labels = probe.classifier.entry.labels if probe.classifier is not None else ("normal",)
        self.queues = queues
        self.on_verdict = on_verdict
        self.on_window = on_window or on_verdict
        self.on_chunk = on_chunk
        self.verdict_every_s = verdict_every_s
        self.frame_s = self.model.hop_length / self.model.sample_rate
        self.warmup = probe.warmup
        after = min(m.entry.report_after_s for m in self.models) if report_after_s is None else float(report_after_s)
        if after <= 0:
            raise ValueError(f"report_after_s must be > 0, got {after}")
        self.report_after_s = after
        self.mics: dict[str, _Mic] = {}
        for name in queues:
            runner = probe if not self.mics else am.AcousticStreamRunner(self.models)
            self.mics[name] = _Mic(name, runner, self._tracker(name, (overrides or {}).get(name, {})),
                                   frame_log=[] if keep_frame_probs else None,
                                   trace=TraceRing(int(trace_s / self.frame_s)) if trace_s > 0 else None)
        self.stop_event = threading.Event()
        self.stats = AcousticStats()
        self.error: BaseException | None = None
        wakeups = {id(q.wakeup) for q in queues.values()}
        self._shared_wakeup = next(iter(queues.values())).wakeup if len(wakeups) == 1 else None

    def _tracker(self, name: str, o: dict[str, float]) -> EpisodeTracker:
        tracks = []
        for m in self.models:
            e = m.entry
            if m.head.kind == "classifier":
                onset, offset = float(o.get("onset", e.onset)), float(o.get("offset", e.offset))
            else:
                onset = float(o.get("anomaly_threshold", e.onset))
                offset = min(float(e.offset), onset)
            if offset > onset:
                raise ValueError(f"microphone {name}: offset {offset} must not exceed onset {onset}")
            tracks.append(Track(m.head.kind, onset, offset, Smoother(_frames(e.smoothing_s, e))))
        lead = self.models[0].entry
        return EpisodeTracker(
            tracks, self.labels, self.warmup, hold=int(round(max(m.entry.hold_s for m in self.models) / self.frame_s)),
            min_frames=int(round(min(m.entry.min_duration_s for m in self.models) / self.frame_s)),
            report_after=max(1, int(round(self.report_after_s / self.frame_s))),
            lag=(_frames(lead.smoothing_s, lead) - 1) // 2, name=name)

    @property
    def name_sha(self) -> tuple[str, str]:
        runner = next(iter(self.mics.values())).runner
        return runner.name, runner.sha256

    def stop(self) -> None:
        """Finish: inspect what is still queued, close open episodes, then exit."""
        self.stop_event.set()
        if self._shared_wakeup is not None:
            with self._shared_wakeup:
                self._shared_wakeup.notify_all()

    def frame_probs(self, mic: str) -> np.ndarray:
        """All per-frame classifier probabilities seen for ``mic`` (``keep_frame_probs=True`` only)."""
        log_ = self.mics[mic].frame_log
        if log_ is None:
            raise RuntimeError("frame probabilities are kept only with keep_frame_probs=True")
        return np.concatenate(log_) if log_ else np.zeros((0, len(self.labels)), np.float32)

    # -- per-chunk processing ---------------------------------------------------------------
    def _reset(self, mic: _Mic, chunk: Chunk) -> None:
        self._emit(mic, mic.episodes.finish(mic.runner.frames_seen))
        self._flush_window(mic)
        mic.frames_before += mic.runner.frames_seen
        mic.runner.reset()
        mic.episodes.reset(mic.frames_before)
        if mic.trace is not None:
            mic.trace.clear()
        mic.base_offset_s, mic.base_ts, mic.base_mono = chunk.offset_s, chunk.ts, chunk.mono
        mic.period_probs, mic.period_scores, mic.period_start_frame = [], [], 0

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
        frames = mic.runner.push(samples)
        self.stats.chunks += 1
        self.stats.frames += frames.n
        self.stats.audio_s += samples.size / chunk.sample_rate
        mic.audio_s += samples.size / chunk.sample_rate
        self.stats.infer_ms_total += mic.runner.inference_ms - before_ms
        if frames.n:
            self._frames(mic, k0, frames)
        if self.on_chunk is not None:
            end_mono = chunk.mono + samples.size / chunk.sample_rate
            self.on_chunk(mic.name, time.monotonic() - end_mono, (mic.runner.inference_ms - before_ms) / 1000.0)

    def _frames(self, mic: _Mic, k0: int, frames: am.Frames) -> None:
        if mic.frame_log is not None and frames.probs is not None:
            mic.frame_log.append(frames.probs)
        per_kind: dict[str, np.ndarray] = {}
        if frames.probs is not None:
            per_kind["classifier"] = am.anomaly_scores(frames.probs)
        anomaly = mic.runner.anomaly
        if frames.raw is not None and anomaly is not None:
            per_kind["anomaly"] = anomaly_score(frames.raw, anomaly.entry.threshold, anomaly.entry.score_scale)
        for i in range(frames.n):
            k = k0 + i
            probs = None if frames.probs is None else frames.probs[i]
            self._emit(mic, mic.episodes.frame(k, {kind: float(v[i]) for kind, v in per_kind.items()}, probs))
            if mic.trace is not None:
                mic.trace.add(k, mic.runner.last_mel[i], mic.episodes.value())
            if k >= self.warmup:
                if probs is not None:
                    mic.period_probs.append(probs)
                if frames.raw is not None:
                    mic.period_scores.append(float(frames.raw[i]))
            if self.verdict_every_s and (k + 1 - mic.period_start_frame) * self.frame_s >= self.verdict_every_s - 1e-9:
                self._flush_window(mic, end_frame=k + 1)

    def _frame_time(self, k: int) -> float:
        """Seconds from the last reset to the centre of frame ``k``."""
        return (k * self.model.hop_length + self.model.win_length / 2) / self.model.sample_rate

    def _emit(self, mic: _Mic, episodes: list[Episode]) -> None:
        for ep in episodes:
            duration = (ep.end_frame - ep.start_frame) * self.frame_s
            t = self._frame_time(ep.start_frame)
            name, sha = mic.runner.name, mic.runner.sha256
            probs = ep.probs
            # where in the stream the decision fell: minus offset_s, how long after the onset the
            # event came in the audio's own time (a replay at full speed can measure it)
            extra: dict[str, Any] = {"episode": ep.id, "ongoing": ep.ongoing,
                                     "decided_at_s": round(mic.base_offset_s + self._frame_time(ep.decided), 4)}
            if probs is not None:
                extra["probs"] = {n: round(float(p), 4) for n, p in zip(self.labels, probs)}
            onset, offset = mic.episodes.levels()
            extra.update({"onset": onset, "offset": offset})  # on the scale of score (see episodes.py)
            extra.update({f"{t_.kind}_onset": t_.onset for t_ in mic.episodes.tracks})
            trace = mic.trace.episode(ep.start_frame, ep.end_frame, self.frame_s, onset, offset) if mic.trace else None
            self.on_verdict(Verdict(
                source=mic.name, kind="acoustic", label=ep.label, score=float(ep.score), defect=True,
                ts=mic.base_ts + t, mono=mic.base_mono + t, model=name, model_sha256=sha,
                offset_s=round(mic.base_offset_s + t, 4), duration_s=round(duration, 4),
                anomaly_score=None if ep.anomaly_score is None else float(ep.anomaly_score), extra=extra,
                trace=trace))

    def _flush_window(self, mic: _Mic, end_frame: int | None = None) -> None:
        """Emit the periodic verdict for the frames since the last one (if enabled)."""
        if not self.verdict_every_s:
            return
        start, probs, raws = mic.period_start_frame, mic.period_probs, mic.period_scores
        mic.period_probs, mic.period_scores = [], []
        mic.period_start_frame = end_frame if end_frame is not None else mic.runner.frames_seen
        if not probs and not raws:
            return
        opinions = []
        runner = mic.runner
        if runner.classifier is not None and probs:
            agg = am.top_fraction_probs(np.stack(probs), len(self.labels))
            opinions.append(runner.classifier.head.opinion(InferenceBatch(1.0 - agg[None, 0], probs=agg[None]), 0))
        if runner.anomaly is not None and raws:
            raw = float(np.max(am.smoothed(np.asarray(raws), runner.anomaly.entry)))
            over = {"anomaly_threshold": mic.episodes.tracks[-1].onset} if mic.episodes.tracks[-1].kind == "anomaly" else {}
            opinions.append(runner.anomaly.head.opinion(InferenceBatch(np.array([raw], np.float32)), 0,
                                                        over.get("anomaly_threshold")))
        d = decide(opinions, self.labels[0])
        t = self._frame_time(start)
        n = max(len(probs), len(raws))
        self.on_window(Verdict(
            source=mic.name, kind="acoustic", label=d.label, score=d.score, defect=d.defect,
            ts=mic.base_ts + t, mono=mic.base_mono + t, model=runner.name, model_sha256=runner.sha256,
            offset_s=round(mic.base_offset_s + t, 4), duration_s=round(n * self.frame_s, 4),
            anomaly_score=d.anomaly_score,
            extra={"window": True, "probs": {k: round(float(v), 4) for k, v in d.probs.items()}}))
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
            self._emit(mic, mic.episodes.finish(mic.runner.frames_seen))
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
            "episodes": sum(m.episodes.stats["episodes"] for m in self.mics.values()),
            "short_episodes": sum(m.episodes.stats["short_episodes"] for m in self.mics.values()), "resets": s.resets,
        }
