"""IP cameras: ``rtsp://`` and ``rtsps://`` (H.264/H.265 over RTP) and ``http(s)://`` (MJPEG).

Opened by FFmpeg with short timeouts so a dead stream is noticed quickly: through PyAV, frames
kept YUV and the model's input made from them at its size (``decoder = "auto"`` where PyAV is
installed, or ``"pyav"``), or through ``cv2.VideoCapture`` (``"opencv"``). Each frame's capture
time comes from the stream's own clock (:class:`~edge_inspector.sources.stream_clock.StreamClock`)
and a frame that arrives too late is dropped as stale rather than inspected as if captured now.
``check-config`` asks each camera for its stream (``sources/probe.py``) and says why not.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import cv2
from pydantic import Field

from edge_inspector.sources.base import BoundedQueue, Frame, StatusCallback
from edge_inspector.sources.camera import Capture, CameraSource, ffmpeg_decoder_params
from edge_inspector.sources.pyav_capture import PYAV_MISSING, AvCapture, decodes_with_pyav, pyav_available
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import CameraSettings, FFmpegDecoder, LiveStream, uri_scheme


class NetworkCameraSettings(FFmpegDecoder, LiveStream, CameraSettings):
    """An ``rtsp``/``rtsps``/``http``/``https`` camera."""

    rtsp_transport: Literal["tcp", "udp"] = "tcp"  # rtsp: RTP over the RTSP connection, or UDP
    # a frame older than this when it arrives is dropped as stale, not inspected
    max_frame_age_s: float = Field(1.0, ge=0.05, le=60.0)


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


def open_network_av(uri: str, transport: str, read_timeout_s: float, threads: int) -> AvCapture:
    """The stream through PyAV, with the same transport and timeouts as :func:`open_network_capture`."""
    options = {"rtsp_transport": transport} if uri_scheme(uri) in ("rtsp", "rtsps") else {}
    return AvCapture(uri, threads, options=options, timeout=(OPEN_TIMEOUT_MS / 1000.0, max(0.1, read_timeout_s)))


def open_network_camera(s: NetworkCameraSettings, queue: BoundedQueue[Frame], on_status: StatusCallback | None,
                        context: OpenContext) -> CameraSource:
    use_pyav = decodes_with_pyav(s.decoder, s.name)

    def open_capture() -> Any:
        if use_pyav:
            return open_network_av(s.uri, s.rtsp_transport, s.stall_timeout_s, s.decode_threads)
        return open_network_capture(s.uri, s.rtsp_transport, s.stall_timeout_s, ffmpeg_decoder_params(s.decode_threads))

    # RTP carries real capture timestamps; MJPEG over HTTP has none (FFmpeg numbers its frames at an
    # assumed 25 fps), so http streams are judged by their read times
    capture = Capture(open_capture, live=True, stall_timeout_s=s.stall_timeout_s, max_frame_age_s=s.max_frame_age_s,
                      stream_pts=uri_scheme(s.uri) in ("rtsp", "rtsps"))
    return CameraSource(s, queue, on_status, context.prepare, capture=capture)


def check(s: NetworkCameraSettings, devices: bool) -> list[str]:
    """Ask the camera for its stream (a 3 s timeout): refused, no answer, 404, 401..."""
    from edge_inspector.sources.probe import probe_stream

    problem = probe_stream(s.uri) if devices else None
    problems = [f"uri: {problem}"] if problem else []
    if s.decoder == "pyav" and not pyav_available():
        problems.append(PYAV_MISSING)
    return problems


KINDS = (SourceKind("camera", ("rtsp", "rtsps", "http", "https"), NetworkCameraSettings, open_network_camera,
                    "rtsp://…, http://… (MJPEG)", check=check, parallel_check=True),)
