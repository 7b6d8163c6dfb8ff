"""The recording format, and the thread that writes one source into its files.

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

import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge_inspector.errors import UserError
from edge_inspector.redact import redact_text, redact_uri
from edge_inspector.sources.base import BoundedQueue, Chunk, Frame, SourceThread
from edge_inspector.sources.decoded import pixels
from edge_inspector.sources.recording_files import (
    AUDIO_HEADER,
    AUDIO_TIMESTAMPS,
    FRAME_HEADER,
    FRAME_TIMESTAMPS,
    VIDEO_SUFFIX,
    CsvWriter,
    RecordingError,
    VideoWriter,
    WavWriter,
)

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
        self._video.write(pixels(frame.image))  # a decoded file's frame is converted only here
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
