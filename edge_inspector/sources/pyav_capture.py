"""Video files decoded with PyAV: the frames stay YUV until someone needs their pixels.

:class:`AvCapture` offers the part of ``cv2.VideoCapture`` the camera thread uses (``isOpened``,
``read``, ``get``, ``set``, ``release``), so :class:`~edge_inspector.sources.camera.CameraSource`
runs it unchanged; ``read`` gives a :class:`~edge_inspector.sources.decoded.DecodedPicture`
instead of a full-size BGR array, and the model's input is made from the YUV planes (see
``decoded.py`` for what that saves).  PyAV ships FFmpeg in its wheel (also for aarch64 and
Python 3.10); without it, or with ``decoder = "opencv"``, files are read with OpenCV as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import cv2

from edge_inspector.sources.decoded import DecodedPicture

log = logging.getLogger(__name__)


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class AvCapture:
    """A video file read with PyAV, behind the ``cv2.VideoCapture`` calls the camera thread makes."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import av

        self._av = av
        self.path, self.threads = path, threads
        self.corrupt_packets = 0  # packets FFmpeg could not decode (skipped, as OpenCV skips them)
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[Any] = iter(())
        self._last_ms = 0.0
        self._open()

    def _open(self) -> None:
        av = self._av
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:
            log.debug("PyAV cannot open %s: %s", self.path, exc)
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
            log.warning("decoding %s stopped: %s", self.path, exc)
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
