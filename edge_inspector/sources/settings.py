"""The keys every camera and every microphone has, whatever its kind.

A source kind (a module under ``sources/kinds``) subclasses :class:`CameraSettings` or
:class:`MicrophoneSettings` with the keys only it understands, so a V4L2 capture size is not
offered to a video file and a GigE packet size is not offered to a microphone.  Every model
rejects unknown keys: a misspelt ``treshold`` is an error, not a silently ignored line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[A-Za-z0-9_\-]+$"


class Settings(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def uri_scheme(uri: str) -> str:
    """``gst:…`` / ``pulse`` / ``pyaudio:2`` have no ``//``; everything else is a URL."""
    if uri == "pulse" or uri.startswith("pulse:"):
        return "pulse"
    if uri.startswith("gst:"):
        return "gst"
    if uri.startswith("pyaudio:"):
        return "pyaudio"
    return urlparse(uri).scheme


def file_path(uri: str) -> Path:
    """The local path of a ``file://`` URI, percent-decoded (``file:///data/a%20b.mp4``).

    ``file://localhost/abs`` is the same as ``file:///abs``; anything else in the host part
    (``file://rel/x``) yields a relative path, which the checks reject by name.
    """
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if parsed.netloc in ("", "localhost"):
        return Path(path)
    return Path(unquote(parsed.netloc) + path)


Rect = tuple[int, int, int, int]  # [x, y, w, h] in pixels


def checked_rect(rect: Rect | None, key: str) -> Rect | None:
    """A crop or a sensor region as pydantic validators return it; ValueError when it is empty or negative."""
    if rect is not None and (rect[0] < 0 or rect[1] < 0 or rect[2] < 1 or rect[3] < 1):
        raise ValueError(f"{key} must be [x >= 0, y >= 0, w >= 1, h >= 1]")
    return rect


class SourceSettings(Settings):
    name: str = Field(pattern=NAME_PATTERN, description="unique source name, used in topics")
    uri: str
    queue_size: int = Field(4, ge=1, le=1024)
    enabled: bool = True


class CameraSettings(SourceSettings):
    """What inspection needs of any camera: its rate, the crop and the decision thresholds."""

    fps_limit: float = Field(0.0, ge=0.0, description="0 = no limit")
    roi: Rect | None = Field(None, description="[x, y, w, h] crop in pixels")
    threshold: float | None = Field(None, ge=0.0, le=1.0)  # overrides the classifier's threshold (on 1 - p(ok))
    anomaly_threshold: float | None = Field(None, ge=0.0, le=1.0)  # overrides the anomaly model's (0.5 = learnt)

    def paced_by_inspector(self) -> bool:
        """True for a file read as fast as it is inspected: the inspector may wait for full batches."""
        return False

    @field_validator("roi")
    @classmethod
    def _roi(cls, roi: Rect | None) -> Rect | None:
        return checked_rect(roi, "roi")


class LiveStream(Settings):
    """A live camera that can go quiet: how long until it is reported offline and reopened."""

    # nothing received for this long -> offline (status, /readyz, heartbeat), reconnect
    stall_timeout_s: float = Field(2.0, ge=0.2, le=60.0)


class FFmpegDecoder(Settings):
    """A stream FFmpeg decodes (files, rtsp, http)."""

    # One thread is the cheapest per frame and adds no frame of delay; 0 lets FFmpeg use one per
    # core (only for streams one core cannot decode).
    decode_threads: int = Field(1, ge=0, le=64, description="0 = FFmpeg's choice")
    # pyav: frames stay YUV and the model's input is made from them at its size (the full-size BGR
    # frame only for snapshots, the preview and record); opencv: cv2.VideoCapture, full-size BGR;
    # auto: pyav where PyAV is installed (./setup.sh installs it)
    decoder: Literal["auto", "pyav", "opencv"] = "auto"


class FilePlayback(Settings):
    """A file played as a source."""

    loop: bool = False  # start again at the end
    realtime: bool = True  # pace at the file's timing (False: as fast as inspected, never skipping)


def check_file(uri: str, suffixes: set[str], what: str) -> str | None:
    """Why a ``file://`` URI cannot be read as a source (``what``: "a video", "a WAV"), or None."""
    path = file_path(uri)
    if not path.is_absolute():
        return f"file URIs need an absolute path (file:///abs/path), got {uri!r}"
    if not path.exists():
        return f"file not found: {path}"
    if not path.is_file():
        return f"not a regular file: {path}"
    if path.suffix.lower() not in suffixes:
        return f"{path.name} does not look like {what} file (expected one of {', '.join(sorted(suffixes))})"
    return None


class MicrophoneSettings(SourceSettings):
    """What inspection needs of any microphone; any device rate is resampled to the model's rate."""

    queue_size: int = Field(64, ge=1, le=10000)
    channel: int | None = Field(None, ge=0, description="None = downmix all channels")
    chunk_s: float = Field(0.1, gt=0.0, le=2.0)
    onset: float | None = Field(None, ge=0.0, le=1.0)  # the classifier's episode hysteresis
    offset: float | None = Field(None, ge=0.0, le=1.0)
    anomaly_threshold: float | None = Field(None, ge=0.0, le=1.0)  # the learnt model's onset (0.5 = learnt)
