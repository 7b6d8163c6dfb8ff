"""A GStreamer pipeline ending in an appsink as a camera: ``gst:<pipeline>`` (JetPack's OpenCV)."""

from __future__ import annotations

import cv2

from edge_inspector.errors import UserError
from edge_inspector.sources.base import BoundedQueue, Frame, StatusCallback
from edge_inspector.sources.camera import Capture, CameraSource, opencv_has_gstreamer
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import CameraSettings, LiveStream

NO_GSTREAMER = ("this OpenCV build has no GStreamer support (pip's opencv-python-headless never has it); "
                "use JetPack's system OpenCV (python3-opencv) or a file/rtsp/http/v4l2 URI")


class GstSettings(LiveStream, CameraSettings):
    """A ``gst:`` camera."""


def open_gst(s: GstSettings, queue: BoundedQueue[Frame], on_status: StatusCallback | None,
             context: OpenContext) -> CameraSource:
    def open_capture() -> cv2.VideoCapture:
        if not opencv_has_gstreamer():
            raise UserError(f"camera {s.name}: {NO_GSTREAMER}")
        return cv2.VideoCapture(s.uri[len("gst:"):], cv2.CAP_GSTREAMER)

    return CameraSource(s, queue, on_status, context.prepare,
                        capture=Capture(open_capture, live=True, stall_timeout_s=s.stall_timeout_s))


def check(_s: GstSettings, _devices: bool) -> list[str]:
    return [] if opencv_has_gstreamer() else [f"uri: {NO_GSTREAMER}"]


KINDS = (SourceKind("camera", ("gst",), GstSettings, open_gst, "gst:<pipeline>", check=check),)
