"""USB and CSI cameras through Video4Linux2: ``v4l2:///dev/video0``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import cv2
from pydantic import Field

from edge_inspector.sources.base import BoundedQueue, Frame, StatusCallback
from edge_inspector.sources.camera import Capture, CameraSource
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import CameraSettings, LiveStream


class V4l2Settings(LiveStream, CameraSettings):
    """A ``v4l2://`` camera; the capture size is a request the driver may round."""

    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)


def device_of(uri: str) -> str:
    return urlparse(uri).path or "/dev/video0"


def open_v4l2(s: V4l2Settings, queue: BoundedQueue[Frame], on_status: StatusCallback | None,
              context: OpenContext) -> CameraSource:
    def open_capture() -> cv2.VideoCapture:
        cap = cv2.VideoCapture(device_of(s.uri), cv2.CAP_V4L2)
        if s.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        if s.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        return cap

    return CameraSource(s, queue, on_status, context.prepare,
                        capture=Capture(open_capture, live=True, stall_timeout_s=s.stall_timeout_s))


def check(s: V4l2Settings, devices: bool) -> list[str]:
    device = Path(s.uri.split("://", 1)[1] or "/dev/video0")
    if devices and not device.exists():
        return [f"uri: video device {device} does not exist (is the camera plugged in?)"]
    return []


KINDS = (SourceKind("camera", ("v4l2",), V4l2Settings, open_v4l2, "v4l2:///dev/video0", check=check),)
