"""Camera capture threads: OpenCV for files, V4L2, RTSP, HTTP MJPEG and GStreamer; synthetic surfaces.

Each camera is a :class:`~edge_inspector.sources.base.SourceThread` that stamps every frame
with its wall-clock and monotonic capture time and its index in the stream.  Live cameras
(v4l2, rtsp, http, gst, synthetic) reconnect with backoff when they fail; file cameras end
with the file (or loop) and never skip a frame.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from edge_inspector.config import NETWORK_SCHEMES, CameraConfig, file_path, uri_scheme
from edge_inspector.errors import SourceError, UserError
from edge_inspector.redact import redact_uri
from edge_inspector.sources.base import BoundedQueue, Frame, SourceThread, StatusCallback, sleep_until
from edge_inspector.sources.stream_clock import StreamClock

log = logging.getLogger(__name__)

#: turns one captured image into the model input; runs in the capture thread so resizing and
#: normalising happen in parallel across cameras instead of on the single inspector thread
Prepare = Callable[[np.ndarray], np.ndarray]


def _prepared(frame: Frame, prepare: Prepare | None) -> Frame:
    if prepare is not None:
        t0 = time.monotonic()
        frame.tensor = prepare(frame.image)
        frame.prep_ms = (time.monotonic() - t0) * 1000.0
    return frame


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


class _Pacer:
    """Frame-rate limit / real-time pacing against the monotonic clock (no drift)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_due = 0.0

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next frame is due; True when stopped."""
        if not self.period:
            return stop.is_set()
        now = time.monotonic()
        if self.next_due == 0.0 or now - self.next_due > 1.0:  # first frame, or far behind
            self.next_due = now
        elif stop.wait(max(0.0, self.next_due - now)):
            return True
        self.next_due += self.period
        return False

    def skip(self) -> bool:
        """For a rate-limited live camera: True if this frame comes too early and is skipped."""
        if not self.period:
            return False
        now = time.monotonic()
        if now < self.next_due:
            return True
        self.next_due = max(self.next_due + self.period, now - self.period)
        return False


#: OpenCV reads FFmpeg's demuxer options from this variable at each open, process-wide; opens that
#: set it are serialised so each camera gets its own transport
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_open_lock = threading.Lock()
OPEN_TIMEOUT_MS = 5000


def open_network_capture(uri: str, transport: str, read_timeout_s: float, extra: list[int]) -> cv2.VideoCapture:
    """An FFmpeg ``VideoCapture`` on an rtsp/http stream with this transport and read timeout.

    The read timeout is FFmpeg's interrupt: a read blocked longer than this returns (and the
    stall is reported by the source before that, from outside the read).
    """
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(100, int(read_timeout_s * 1000))] + extra
    with _ffmpeg_open_lock:
        previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
        if uri_scheme(uri) in ("rtsp", "rtsps"):
            os.environ[_FFMPEG_OPTIONS_ENV] = f"rtsp_transport;{transport}"
        try:
            return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        finally:
            if previous is None:
                os.environ.pop(_FFMPEG_OPTIONS_ENV, None)
            else:
                os.environ[_FFMPEG_OPTIONS_ENV] = previous


def ffmpeg_decoder_params(threads: int) -> list[int]:
    """``VideoCapture`` open parameters for FFmpeg's decoder thread count (0 = FFmpeg's choice).

    Cameras default to 1: multi-threaded H.264 decoding costs ~25 % more CPU per frame and
    holds frames back, and inference needs the other cores.
    """
    return [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []


class CameraSource(SourceThread[Frame]):
    """An OpenCV ``VideoCapture`` (file, v4l2, rtsp, http, gst) in its own thread."""

    kind = "camera"

    def __init__(
        self,
        cfg: CameraConfig,
        queue: BoundedQueue[Frame],
        on_status: StatusCallback | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.prepare = prepare
        self.cfg = cfg
        self.scheme = uri_scheme(cfg.uri)
        live = self.scheme != "file"
        super().__init__(cfg.name, cfg.uri, queue, on_status, live=live)
        self.cap: cv2.VideoCapture | None = None
        self.next_index = 0
        self.file_fps = 0.0
        self.decode_ms_total = 0.0
        self.recorded: list[tuple[float, float]] = []  # (ts, mono) per frame from `record`'s sidecar
        if live and self.scheme != "synthetic":
            self.stall_after_s = cfg.stall_timeout_s
        # network streams: capture times from the stream's own timestamps, stale frames dropped
        self.clock = StreamClock(cfg.max_frame_age_s) if self.scheme in NETWORK_SCHEMES else None
        self._stale_run = 0  # stale frames dropped since the last fresh one
        self._stale_reason = ""  # why the first of them was

    def _open_capture(self) -> cv2.VideoCapture:
        scheme, uri = self.scheme, self.cfg.uri
        if scheme == "file":
            path = file_path(uri)
            if not path.is_file():
                raise UserError(f"camera {self.cfg.name}: video file not found: {path}")
            return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, ffmpeg_decoder_params(self.cfg.decode_threads))
        if scheme == "v4l2":
            device = urlparse(uri).path or "/dev/video0"
            cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
            if self.cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            if self.cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            return cap
        if scheme == "gst":
            if not opencv_has_gstreamer():
                raise UserError(
                    f"camera {self.cfg.name}: this OpenCV build has no GStreamer support "
                    "(pip's opencv-python-headless never has it); use JetPack's system OpenCV "
                    "(python3-opencv) or a file/rtsp/http/v4l2 URI"
                )
            return cv2.VideoCapture(uri[len("gst:"):], cv2.CAP_GSTREAMER)
        # rtsp / http(s): FFmpeg backend; short timeouts so a dead stream is noticed quickly
        return open_network_capture(uri, self.cfg.rtsp_transport, self.cfg.stall_timeout_s,
                                    ffmpeg_decoder_params(self.cfg.decode_threads))

    def open(self) -> None:
        self.release()
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {redact_uri(self.cfg.uri)}")
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

    def _crop(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        if self.cfg.roi is None:
            return image, (0, 0)
        x, y, w, h = self.cfg.roi
        crop = image[y : y + h, x : x + w]
        if crop.size == 0:
            raise UserError(f"camera {self.cfg.name}: roi {list(self.cfg.roi)} lies outside the {image.shape[1]}x{image.shape[0]} frame")
        return crop, (x, y)

    def read_items(self) -> Iterator[Frame]:
        assert self.cap is not None
        recorded = self.recorded if self.cfg.realtime and not self.cfg.fps_limit else []
        pacing_fps = self.cfg.fps_limit or (self.file_fps if not self.live and self.cfg.realtime and not recorded else 0.0)
        pacer = _Pacer(pacing_fps)
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
                if not self.live and self.cfg.loop and self.next_index > 0:
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
                pts = self.cap.get(cv2.CAP_PROP_POS_MSEC) if self.scheme in ("rtsp", "rtsps") else None
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
            crop, origin = self._crop(image)
            yield _prepared(Frame(self.source_name, index, ts, mono, crop, origin), self.prepare)

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


class SyntheticCamera(SourceThread[Frame]):
    """``synthetic://surface?seed=1&fps=10&defect_rate=0.2``: procedural parts on a conveyor."""

    kind = "camera"

    def __init__(
        self,
        cfg: CameraConfig,
        queue: BoundedQueue[Frame],
        on_status: StatusCallback | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.prepare = prepare
        super().__init__(cfg.name, cfg.uri, queue, on_status, live=True)
        self.cfg = cfg
        params = synthetic_camera_params(cfg.uri)
        self.seed, self.fps = int(params["seed"]), float(params["fps"])
        self.defect_rate, self.size = float(params["defect_rate"]), int(params["size"])
        self.next_index = 0
        self.truth: dict[int, str] = {}  # frame index -> generated label (for demos and tests)

    def open(self) -> None:
        from edge_inspector.synthetic.surfaces import sample_stream

        self._samples = sample_stream(self.seed, defect_rate=self.defect_rate, size=self.size)

    def read_items(self) -> Iterator[Frame]:
        pacer = _Pacer(self.cfg.fps_limit or self.fps)
        while not self.stop_event.is_set():
            if pacer.wait(self.stop_event):
                return
            sample = next(self._samples)
            index = self.next_index
            self.next_index += 1
            if len(self.truth) < 100_000:
                self.truth[index] = sample.label
            yield _prepared(Frame(self.source_name, index, time.time(), time.monotonic(), sample.image), self.prepare)


def synthetic_camera_params(uri: str) -> dict[str, float]:
    """``synthetic://surface?seed=1&fps=10&defect_rate=0.2&size=256`` -> checked values."""
    parsed = urlparse(uri)
    if parsed.netloc != "surface":
        raise UserError(f"unknown synthetic camera {parsed.netloc!r} in {uri!r}; use synthetic://surface")
    limits = {"seed": (0, 2**31 - 1, 0), "fps": (0.1, 1000.0, 10.0), "defect_rate": (0.0, 1.0, 0.2), "size": (32, 4096, 256)}
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = sorted(set(query) - set(limits))
    if unknown:
        raise UserError(f"unknown synthetic camera parameter(s) {', '.join(unknown)} in {uri!r}; known: {', '.join(limits)}")
    out = {}
    for key, (lo, hi, default) in limits.items():
        try:
            value = float(query.get(key, default))
        except ValueError:
            raise UserError(f"{key}={query[key]!r} in {uri!r} is not a number") from None
        if not lo <= value <= hi:
            raise UserError(f"{key}={query[key]} in {uri!r} is out of range [{lo}, {hi}]")
        out[key] = value
    return out


def open_camera(
    cfg: CameraConfig,
    queue: BoundedQueue[Frame],
    on_status: StatusCallback | None = None,
    prepare: Prepare | None = None,
) -> SourceThread[Frame]:
    """Pick the capture class for the camera's URI scheme."""
    if uri_scheme(cfg.uri) == "synthetic":
        return SyntheticCamera(cfg, queue, on_status, prepare)
    return CameraSource(cfg, queue, on_status, prepare)
