"""Video files as cameras: ``file:///abs/clip.mp4``.

A file is not live: it never reconnects and never skips a frame (its queue blocks), it ends
with the file or loops, and it is paced at its own frame rate or at the timing ``record`` wrote
beside it, or read as fast as it is inspected (``realtime = false``: deterministic replays).
"""

from __future__ import annotations

import logging
from typing import Any

import cv2

from edge_inspector.errors import UserError
from edge_inspector.sources.base import BoundedQueue, Frame, StatusCallback
from edge_inspector.sources.camera import Capture, CameraSource, ffmpeg_decoder_params
from edge_inspector.sources.pyav_capture import PYAV_MISSING, AvCapture, decodes_with_pyav, pyav_available
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import CameraSettings, FFmpegDecoder, FilePlayback, check_file, file_path

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".ts"}


class VideoFileSettings(FFmpegDecoder, FilePlayback, CameraSettings):
    """A ``file://`` camera."""

    def paced_by_inspector(self) -> bool:
        return not self.realtime


def open_video_file(s: VideoFileSettings, queue: BoundedQueue[Frame], on_status: StatusCallback | None,
                    context: OpenContext) -> CameraSource:
    path = file_path(s.uri)

    use_pyav = decodes_with_pyav(s.decoder, s.name)
    log.info("camera %s: %s decodes %s", s.name, "PyAV" if use_pyav else "OpenCV", path.name)

    def open_capture() -> Any:
        if not path.is_file():
            raise UserError(f"camera {s.name}: video file not found: {path}")
        if use_pyav:
            return AvCapture(path, s.decode_threads)
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, ffmpeg_decoder_params(s.decode_threads))

    return CameraSource(s, queue, on_status, context.prepare,
                        capture=Capture(open_capture, live=False, realtime=s.realtime, loop=s.loop))


def check(s: VideoFileSettings, _devices: bool) -> list[str]:
    problems = []
    problem = check_file(s.uri, VIDEO_SUFFIXES, "a video")
    if problem:
        problems.append(f"uri: {problem}")
    if s.decoder == "pyav" and not pyav_available():
        problems.append(PYAV_MISSING)
    return problems


KINDS = (SourceKind("camera", ("file",), VideoFileSettings, open_video_file, "file:///abs/clip.mp4",
                    check=check, live=False),)
