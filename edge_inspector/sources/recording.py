"""``edge-inspector record``: the recording format and the recorder.

A recording is a directory::

    manifest.json             format, versions, config snapshot, models (name + sha256),
                              start/end, how it stopped, per-source files and counts
    <cam>.mkv                 Matroska, MJPEG (quality 95; ``--codec ffv1``: lossless FFV1)
    <cam>.timestamps.csv      index,ts,mono      one row per frame written (epoch s, monotonic s)
    <mic>.wav                 16-bit PCM mono at the acoustic model's sample rate
    <mic>.chunks.csv          sample,ts,mono,discontinuity   one row per audio chunk

Why Matroska with intra-only frames written through an ``ffmpeg`` pipe: the header is at the
front and every cluster is self-delimiting, so a file cut short by a full disk, SIGKILL or power
loss is still readable up to its last complete frame (MP4 keeps its index at the *end* and is
unreadable without it).  ffmpeg runs in its own session: Ctrl-C on a terminal does not reach
it, and if this process dies it sees end-of-input on the pipe and finalises the file itself.
The timestamp sidecar is flushed every frame, so a replay can tell a complete file from a
truncated one (decoded frames vs rows) and pace by the recorded timing.

The WAV header is rewritten every second, so after a hard stop the header is at most a second
stale; ``replay`` notices a header that disagrees with the file size and repairs a copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_inspector import __version__
from edge_inspector.config import Config, load_config
from edge_inspector.redact import redact_config, redact_text, redact_uri
from edge_inspector.errors import UserError
from edge_inspector.sources.base import BoundedQueue, Chunk, Frame, SourceThread
from edge_inspector.sources.registry import OpenContext, open_source
from edge_inspector.sources.recording_files import (
    AUDIO_HEADER,
    AUDIO_TIMESTAMPS,
    FORMAT,
    FRAME_HEADER,
    FRAME_TIMESTAMPS,
    MANIFEST,
    VIDEO_SUFFIX,
    CsvWriter,
    RecordingError,
    VideoWriter,
    WavWriter,
    utc_iso,
    write_error,
)
from edge_inspector.stop_signals import on_stop_signals

log = logging.getLogger(__name__)


# -- one thread per source ---------------------------------------------------------------------
class SourceRecorder(threading.Thread):
    """Drains one source's queue into its files; stops the whole recording on a write error."""

    def __init__(self, kind: str, name: str, source: SourceThread[Any], queue: BoundedQueue[Any],
                 out: Path, on_error: Any, codec: str = "mjpeg", sample_rate: int = 16000, fps: float = 0.0) -> None:
        super().__init__(name=f"record:{name}", daemon=True)
        self.kind, self.source_name, self.source, self.queue = kind, name, source, queue
        self.out, self.on_error, self.codec, self.sample_rate, self.fps = out, on_error, codec, sample_rate, fps
        self.items = 0
        self.samples = 0
        self.width = self.height = 0
        self.error: str | None = None
        self.start_ts: float | None = None
        self.abort = threading.Event()
        self._video: VideoWriter | None = None
        self._wav: WavWriter | None = None
        self._csv: CsvWriter | None = None

    @property
    def media_path(self) -> Path:
        return self.out / (self.source_name + (VIDEO_SUFFIX if self.kind == "camera" else ".wav"))

    @property
    def sidecar_path(self) -> Path:
        return self.out / (self.source_name + (FRAME_TIMESTAMPS if self.kind == "camera" else AUDIO_TIMESTAMPS))

    def _write_frame(self, frame: Frame) -> None:
        if self._video is None:
            self.height, self.width = frame.image.shape[:2]
            fps = self.fps or getattr(self.source, "file_fps", 0.0) or getattr(self.source, "fps", 0.0) or 30.0
            self.fps = float(fps)
            self._csv = CsvWriter(self.sidecar_path, FRAME_HEADER)
            self._video = VideoWriter(self.media_path, self.codec, self.fps, self.width, self.height)
        self._video.write(frame.image)
        self._csv.row(f"{self.items},{frame.ts:.6f},{frame.mono:.6f}")  # type: ignore[union-attr]

    def _write_chunk(self, chunk: Chunk) -> None:
        if self._wav is None:
            self.start_ts = chunk.ts
            self._csv = CsvWriter(self.sidecar_path, AUDIO_HEADER)
            self._wav = WavWriter(self.media_path, self.sample_rate)
        self._csv.row(f"{self.samples},{chunk.ts:.6f},{chunk.mono:.6f},{int(chunk.discontinuity)}")  # type: ignore[union-attr]
        self._wav.write(chunk.samples)
        self.samples += len(chunk.samples)

    def run(self) -> None:
        write = self._write_frame if self.kind == "camera" else self._write_chunk
        try:
            while not self.abort.is_set():
                item = self.queue.get_nowait()
                if item is None:
                    if self.queue.exhausted:
                        break
                    with self.queue.wakeup:
                        self.queue.wakeup.wait(0.1)
                    continue
                write(item)
                self.items += 1
        except (RecordingError, UserError) as exc:
            self.error = str(exc)
            self.on_error(self.error)
        finally:
            self._close()

    def _close(self) -> None:
        for writer in (self._csv, self._wav):
            if writer is not None:
                writer.close()
        if self._video is not None:
            try:
                self._video.close()
            except RecordingError as exc:
                if self.error is None:
                    self.error = str(exc)
                    self.on_error(self.error)

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {"uri": redact_uri(self.source.uri), "file": self.media_path.name,
                               "timestamps": self.sidecar_path.name, "dropped": self.queue.stats.dropped,
                               "error": redact_text(self.error) if self.error else self.error}
        if self.kind == "camera":
            row.update(frames=self.items, codec=self.codec, fps=self.fps, width=self.width, height=self.height)
        else:
            row.update(chunks=self.items, samples=self.samples, sample_rate=self.sample_rate,
                       seconds=round(self.samples / self.sample_rate, 4), start_ts=self.start_ts)
        return row


# -- the recording -------------------------------------------------------------------------------
def _versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"edge-inspector": __version__, "opencv": cv2.__version__, "onnxruntime": version("onnxruntime"),
            "numpy": np.__version__, "python": sys.version.split()[0]}


def _models(cfg: Config) -> dict[str, Any]:
    """Names and sha256 of the models the config would use (from ``engines/manifest.toml``)."""
    from edge_inspector.manifest import load_manifest

    try:
        manifest = load_manifest(cfg.runtime.engines_dir, verify=False)
    except UserError:
        return {}
    return manifest.summary()


def acoustic_rate(cfg: Config) -> int:
    """The acoustic model's sample rate (recording needs no model, only its rate; default 16 kHz)."""
    from edge_inspector.manifest import load_manifest

    try:
        manifest = load_manifest(cfg.runtime.engines_dir, verify=False)
    except UserError:
        return 16000
    acoustic = manifest.classifier("acoustic")
    return acoustic.sample_rate if acoustic else 16000


class Recorder:
    """Opens the configured sources (no models), records each into its files, writes the manifest."""

    def __init__(self, cfg: Config, out: Path, codec: str = "mjpeg") -> None:
        self.cfg, self.out = cfg, out
        self.stop_requested = threading.Event()
        self.errors: list[str] = []
        self.stopped_by = "end of sources"
        self.started = time.time()
        self.recorders: list[SourceRecorder] = []
        rate = acoustic_rate(cfg) if cfg.microphones else 16000
        for cam in cfg.cameras:
            full = cam.model_copy(update={"roi": None})  # full frames: replay applies the ROI again
            thread, queue = open_source(full, self._on_status, min_size=64)
            self.recorders.append(SourceRecorder("camera", cam.name, thread, queue, out, self._on_error,
                                                 codec=codec, fps=cam.fps_limit))
        for mic in cfg.microphones:
            mthread, mqueue = open_source(mic, self._on_status, OpenContext(sample_rate=rate), min_size=256)
            self.recorders.append(SourceRecorder("microphone", mic.name, mthread, mqueue, out, self._on_error,
                                                 sample_rate=rate))

    def _on_status(self, source: str, state: str, detail: str) -> None:
        log.info("source %s %s%s", source, state, f": {detail}" if detail else "")

    def _on_error(self, message: str) -> None:
        self.errors.append(message)
        self.stopped_by = "error"
        self.stop_requested.set()

    def manifest(self, ended: float | None) -> dict[str, Any]:
        return {
            "format": FORMAT, "versions": _versions(), "started": utc_iso(self.started), "started_ts": self.started,
            "ended": utc_iso(ended) if ended else None, "complete": ended is not None and not self.errors,
            "stopped_by": self.stopped_by if ended else None, "errors": [redact_text(e) for e in self.errors],
            "config": redact_config(self.cfg.model_dump(mode="json")), "models": _models(self.cfg),
            "cameras": {r.source_name: r.summary() for r in self.recorders if r.kind == "camera"},
            "microphones": {r.source_name: r.summary() for r in self.recorders if r.kind == "microphone"},
        }

    def write_manifest(self, ended: float | None) -> None:
        path = self.out / MANIFEST
        tmp = path.with_name(".manifest.json.tmp")
        try:
            tmp.write_text(json.dumps(self.manifest(ended), indent=2, default=str) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            err = write_error(path, exc)
            if str(err) not in self.errors:
                self.errors.append(str(err))

    def start(self) -> None:
        self.write_manifest(None)
        for r in self.recorders:
            r.start()
            r.source.start()
        self.started = time.time()

    def finished(self) -> bool:
        return all(not r.is_alive() for r in self.recorders)

    def stop(self) -> None:
        """Stop capturing, write what is queued, close every file, then the final manifest."""
        for r in self.recorders:
            r.source.stop()
        for r in self.recorders:
            r.source.join(5.0)
            if self.errors:
                r.abort.set()
            r.join(60.0)
        for r in self.recorders:
            if r.source.fatal_error and r.source.fatal_error not in self.errors:
                self.errors.append(r.source.fatal_error)
        self.write_manifest(time.time())


class RecordProgress:
    """A rich table on a terminal (stderr), one log line every 5 s otherwise."""

    def __init__(self, recorders: list[SourceRecorder], interval_s: float = 5.0) -> None:
        self.recorders, self.interval_s = recorders, interval_s
        self.started = self.last_log = time.monotonic()
        self.live: Any = None

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"recording · {time.monotonic() - self.started:.0f} s · Ctrl-C stops", title_justify="left")
        for col in ("source", "state", "recorded", "dropped", "file"):
            table.add_column(col)
        for r in self.recorders:
            amount = f"{r.items} frames" if r.kind == "camera" else f"{r.samples / r.sample_rate:.1f} s"
            table.add_row(r.source_name, r.source.counters.state, amount, str(r.queue.stats.dropped), r.media_path.name)
        return table

    def __enter__(self) -> "RecordProgress":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
        elif time.monotonic() - self.last_log >= self.interval_s:
            self.last_log = time.monotonic()
            for r in self.recorders:
                amount = f"frames={r.items}" if r.kind == "camera" else f"seconds={r.samples / r.sample_rate:.1f}"
                log.info("recording source=%s state=%s %s dropped=%d", r.source_name, r.source.counters.state,
                         amount, r.queue.stats.dropped)


def record_command(args: argparse.Namespace) -> int:
    """``edge-inspector record --out DIR [--config FILE] [--duration S]``."""
    from edge_inspector.console import setup_logging

    setup_logging("text")
    cfg = load_config(args.config)
    from edge_inspector.checks import check_environment
    from edge_inspector.config import ConfigError

    problems = [p for p in check_environment(cfg, check_devices=True, bind=False) if not p.startswith("runtime.")]
    if problems:  # a recording of a device that is not there would be empty
        raise ConfigError(problems, args.config)
    out: Path = args.out
    if (out / MANIFEST).exists():
        raise UserError(f"{out} already holds a recording ({MANIFEST}); choose another --out directory")
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration must be > 0 seconds, got {args.duration}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"cannot create {out}: {exc.strerror}") from None
    recorder = Recorder(cfg, out, codec=getattr(args, "codec", None) or "mjpeg")

    def on_signal(signum: int, _frame: object) -> None:
        recorder.stopped_by = signal.Signals(signum).name
        recorder.stop_requested.set()

    with on_stop_signals(on_signal):
        recorder.start()
        log.info("recording %d source(s) into %s%s", len(recorder.recorders), out,
                 f" for {args.duration:g} s" if args.duration else " until Ctrl-C / SIGTERM")
        deadline = time.monotonic() + args.duration if args.duration else None
        with RecordProgress(recorder.recorders) as progress:
            while not recorder.stop_requested.wait(0.1):
                progress.tick()
                if deadline is not None and time.monotonic() >= deadline:
                    recorder.stopped_by = "duration"
                    break
                if recorder.finished():
                    break
            recorder.stop()
            progress.tick()
    for r in recorder.recorders:
        log.info("%s: %s", r.media_path, f"{r.items} frames" if r.kind == "camera" else f"{r.samples / r.sample_rate:.2f} s")
    empty = [str(r.media_path) for r in recorder.recorders if (r.items if r.kind == "camera" else r.samples) == 0]
    for path in empty:
        log.error("%s: nothing was recorded (the source never delivered)", path)
    if recorder.errors:
        for message in recorder.errors:
            log.error("%s", message)
    return 1 if recorder.errors or empty else 0
