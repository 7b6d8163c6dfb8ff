"""The OpenCV capture thread that video files, V4L2, RTSP, HTTP MJPEG and GStreamer cameras share.

Each camera is a :class:`~edge_inspector.sources.base.SourceThread` that stamps every frame
with its wall-clock and monotonic capture time and its index in the stream.  Its kind (a module
under ``sources/kinds``) says how to open the ``VideoCapture`` and how the stream behaves
(:class:`Capture`): live cameras reconnect with backoff when they fail; file cameras end with
the file (or loop) and never skip a frame.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2

from edge_inspector.errors import SourceError
from edge_inspector.redact import redact_uri
from edge_inspector.sources.base import BoundedQueue, Frame, SourceThread, StatusCallback, sleep_until
from edge_inspector.sources.frames import Pacer, Prepare, crop_roi, prepared
from edge_inspector.sources.settings import CameraSettings, file_path
from edge_inspector.sources.stream_clock import StreamClock

log = logging.getLogger(__name__)


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def recorded_timestamps(video: Path) -> list[tuple[float, float]]:
    """``(ts, mono)`` per frame from ``<video stem>.timestamps.csv`` written by ``record``, or [].

    A replayed recording keeps each frame's original capture time (events carry yesterday's
    ``ts``) and, at real time, its original spacing.  The sidecar format is
    ``index,ts,mono`` (see ``sources/recording_files.py``); a row cut short by a hard stop is
    ignored.
    """
    sidecar = video.with_name(video.stem + ".timestamps.csv")
    try:
        lines = sidecar.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    if not lines or lines[0].strip() != "index,ts,mono":
        return []
    out = []
    for line in lines[1:]:
        parts = line.split(",")
        try:
            out.append((float(parts[1]), float(parts[2])))
        except (IndexError, ValueError):
            break
    return out


def ffmpeg_decoder_params(threads: int) -> list[int]:
    """``VideoCapture`` open parameters for FFmpeg's decoder thread count (0 = FFmpeg's choice).

    Cameras default to 1: multi-threaded H.264 decoding costs ~25 % more CPU per frame and
    holds frames back, and inference needs the other cores.
    """
    return [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []


@dataclass(frozen=True)
class Capture:
    """How a kind opens its ``VideoCapture`` and how the thread treats the stream."""

    open: Callable[[], cv2.VideoCapture]
    live: bool
    stall_timeout_s: float | None = None  # live: nothing received for this long -> offline
    max_frame_age_s: float | None = None  # network streams: frames stamped by the stream's clock, stale ones dropped
    stream_pts: bool = False  # the stream's timestamps are capture times (RTP), not invented by FFmpeg
    realtime: bool = True  # files: pace at the file's (or the recorded) timing
    loop: bool = False  # files: start again at the end


class CameraSource(SourceThread[Frame]):
    """An OpenCV ``VideoCapture`` in its own thread, opened as its kind's :class:`Capture` says."""

    kind = "camera"

    def __init__(
        self,
        cfg: CameraSettings,
        queue: BoundedQueue[Frame],
        on_status: StatusCallback | None = None,
        prepare: Prepare | None = None,
        *,
        capture: Capture,
    ) -> None:
        self.prepare = prepare
        self.cfg = cfg
        self.capture = capture
        super().__init__(cfg.name, cfg.uri, queue, on_status, live=capture.live)
        self.cap: cv2.VideoCapture | None = None
        self.next_index = 0
        self.file_fps = 0.0
        self.decode_ms_total = 0.0
        self.recorded: list[tuple[float, float]] = []  # (ts, mono) per frame from `record`'s sidecar
        self.stall_after_s = capture.stall_timeout_s if capture.live else None
        # network streams: capture times from the stream's own timestamps, stale frames dropped
        self.clock = StreamClock(capture.max_frame_age_s) if capture.max_frame_age_s is not None else None
        self._stale_run = 0  # stale frames dropped since the last fresh one
        self._stale_reason = ""  # why the first of them was

    def open(self) -> None:
        self.release()
        cap = self.capture.open()
        if not cap.isOpened():
            reason = getattr(cap, "open_error", "")  # PyAV says why; OpenCV cannot
            cap.release()
            raise SourceError(f"cannot open {redact_uri(self.cfg.uri)}" + (f": {reason}" if reason else ""))
        self.cap = cap
        self.file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if self.clock is not None:
            self.clock.reset(self.file_fps)
        if not self.live:
            self.recorded = recorded_timestamps(file_path(self.cfg.uri))

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def read_items(self) -> Iterator[Frame]:
        assert self.cap is not None
        realtime = self.capture.realtime
        recorded = self.recorded if realtime and not self.cfg.fps_limit else []
        pacing_fps = self.cfg.fps_limit or (self.file_fps if not self.live and realtime and not recorded else 0.0)
        pacer = Pacer(pacing_fps)
        position, start_mono = 0, time.monotonic()  # frame in the file, for recorded timing
        while not self.stop_event.is_set():
            if not self.live and pacer.wait(self.stop_event):
                return
            if position < len(recorded):  # pace as recorded (sleep_until returns True when stopped)
                if sleep_until(start_mono + recorded[position][1] - recorded[0][1], self.stop_event):
                    return
            t0 = time.monotonic()
            ok, image = self.cap.read()
            if not ok or image is None:
                if not self.live and self.capture.loop and self.next_index > 0:
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    position, start_mono = 0, time.monotonic()
                    continue
                if not self.live:
                    return  # end of file: every frame was delivered
                raise SourceError("no frame from camera (disconnected?)")
            mono = time.monotonic()
            ts = self.recorded[position][0] if position < len(self.recorded) else time.time()
            position += 1
            self.decode_ms_total += (mono - t0) * 1000.0
            if self.clock is not None:
                # RTP carries real capture timestamps; MJPEG over HTTP has none (FFmpeg numbers its
                # frames at an assumed 25 fps), so http streams are judged by their read times
                pts = self.cap.get(cv2.CAP_PROP_POS_MSEC) if self.capture.stream_pts else None
                stamp = self.clock.stamp(pts, mono - t0, mono, ts)
                if stamp.stale:
                    self._drop_stale(stamp.age_s, stamp.reason)
                    continue
                ts, mono = stamp.ts, stamp.mono
                self._report_stale()
            self.progress()
            if self.live and pacer.skip():
                continue
            index = self.next_index
            self.next_index += 1
            crop, origin = crop_roi(image, self.cfg.roi, self.source_name)
            yield prepared(Frame(self.source_name, index, ts, mono, crop, origin), self.prepare)

    def _drop_stale(self, age_s: float, reason: str) -> None:
        """Count a stale frame; warn once per run of them, unless it is the connect backlog."""
        self.counters.stale += 1
        if self._stale_run == 0 and not reason.startswith("connect"):
            log.warning("camera %s: dropped a stale frame (%s); it is not inspected as if captured now",
                        self.source_name, reason)
        self._stale_run += 1
        self._stale_reason = self._stale_reason or reason

    def _report_stale(self) -> None:
        if self._stale_run:
            log.info("camera %s: %d stale frame(s) dropped before this one (first: %s)", self.source_name,
                     self._stale_run, self._stale_reason)
            self._stale_run, self._stale_reason = 0, ""
