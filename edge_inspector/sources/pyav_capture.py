"""Video files and network streams decoded with PyAV: the frames stay YUV until someone needs their pixels.

:class:`AvCapture` offers the part of ``cv2.VideoCapture`` the camera thread uses (``isOpened``,
``read``, ``get``, ``set``, ``release``), so :class:`~edge_inspector.sources.camera.CameraSource`
runs it unchanged; ``read`` gives a :class:`~edge_inspector.sources.decoded.DecodedPicture`
instead of a full-size BGR array, and the model's input is made from the YUV planes (see
``decoded.py`` for what that saves).  PyAV ships FFmpeg in its wheel (also for aarch64 and
Python 3.10); without it, or with ``decoder = "opencv"``, cameras are read with OpenCV as before.
A network stream (rtsp, http) is opened with FFmpeg's demuxer options and an open and a read
timeout: a stream that stops sending ends the read, and the camera thread reconnects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Literal

import cv2

from edge_inspector.errors import UserError
from edge_inspector.redact import redact_text, redact_uri
from edge_inspector.sources.decoded import DecodedPicture

log = logging.getLogger(__name__)


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


_log_routed = False


def route_ffmpeg_log() -> None:
    """FFmpeg's warnings and errors inside PyAV into logging (``libav.<component>`` loggers, through
    the same handler, redaction and JSON format as every other line, ``origin`` "ffmpeg"); PyAV
    drops them by default, and with them the reason a stream would not open.  Once per process."""
    global _log_routed
    if _log_routed:
        return
    import av.logging

    av.logging.set_level(av.logging.WARNING)
    _log_routed = True


Decoder = Literal["auto", "pyav", "opencv"]
PYAV_MISSING = 'decoder: "pyav" needs PyAV (pip install av, or ./setup.sh); "auto" falls back to OpenCV'


def decodes_with_pyav(decoder: Decoder, camera: str) -> bool:
    """Whether a camera with this ``decoder`` key reads through PyAV (``auto``: where installed);
    ``pyav`` without PyAV installed is a :class:`UserError` naming the camera."""
    if decoder == "pyav" and not pyav_available():
        raise UserError(f'camera {camera}: decoder = "pyav" needs PyAV (pip install av, or ./setup.sh)')
    return decoder != "opencv" and pyav_available()


def _reason(exc: BaseException, timeout: tuple[float, float] | None) -> str:
    """FFmpeg's reason for a failed open, without the URI it names (``Server returned 401
    Unauthorized (authorization failed)``, ``Connection refused``, no answer in time)."""
    import av

    if isinstance(exc, av.error.ExitError) and timeout is not None:
        return f"no answer within {timeout[0]:g} s"
    return redact_text(str(getattr(exc, "strerror", None) or exc))


class AvCapture:
    """A video file or network stream read with PyAV, behind the ``cv2.VideoCapture`` calls the
    camera thread makes.  ``options``: FFmpeg's demuxer options (``rtsp_transport``...);
    ``timeout``: (open, read) seconds, for streams."""

    def __init__(self, path: Path | str, threads: int = 1, options: dict[str, str] | None = None,
                 timeout: tuple[float, float] | None = None) -> None:
        import av

        route_ffmpeg_log()
        self._av = av
        self.path, self.threads = path, threads
        self.options, self.timeout = dict(options or {}), timeout
        self.name = redact_uri(str(path))  # for logs: no password of a stream's URI
        self.corrupt_packets = 0  # packets FFmpeg could not decode (skipped, as OpenCV skips them)
        self.open_error = ""  # why the last open failed, credentials masked ("" when it did not)
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[Any] = iter(())
        self._last_ms = 0.0
        self._open()

    def _open(self) -> None:
        av = self._av
        try:
            container = av.open(str(self.path), options=self.options, timeout=self.timeout)
        except (av.FFmpegError, OSError) as exc:
            log.debug("PyAV cannot open %s: %s", self.name, redact_text(str(exc)))
            self.open_error = _reason(exc, self.timeout)
            return
        if not container.streams.video:
            container.close()
            return
        stream = container.streams.video[0]
        if self.threads == 1:  # one thread: cheapest per frame, no frame held back (as for OpenCV)
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
        else:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads  # 0: FFmpeg's choice
        self._container, self._stream = container, stream
        self._frames = self._decoded()

    def _decoded(self) -> Iterator[Any]:
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()  # the empty packet at the end flushes the decoder
            except self._av.error.InvalidDataError:
                self.corrupt_packets += 1
                continue
            yield from frames

    # -- the cv2.VideoCapture calls CameraSource makes -------------------------------------------
    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self._container is not None

    def read(self) -> tuple[bool, DecodedPicture | None]:
        try:
            frame = next(self._frames)
        except StopIteration:
            return False, None
        except self._av.FFmpegError as exc:
            log.warning("decoding %s stopped: %s", self.name, redact_text(str(exc)))
            return False, None
        if frame.time is not None:
            self._last_ms = frame.time * 1000.0
        return True, DecodedPicture(frame)

    def get(self, prop: int) -> float:
        if self._stream is None:
            return 0.0
        if prop == cv2.CAP_PROP_FPS:
            rate = self._stream.average_rate or self._stream.guessed_rate
            return float(rate) if rate else 0.0
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self._last_ms
        if prop == cv2.CAP_PROP_N_THREADS:
            return float(self._stream.codec_context.thread_count)
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self._stream.codec_context.width)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self._stream.codec_context.height)
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """Only rewinding to the first frame (a looping file camera) is supported."""
        if prop != cv2.CAP_PROP_POS_FRAMES or value != 0:
            return False
        self.release()
        self._open()
        return self.isOpened()

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = self._stream = None
            self._frames = iter(())
