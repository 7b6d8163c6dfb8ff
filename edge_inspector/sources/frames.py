"""What every camera kind does to a captured image before it is queued: crop it, prepare it.

Both run in the camera's own capture thread, so resizing and normalising happen in parallel
across cameras instead of on the single inspector thread.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Union

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.sources.base import Frame
from edge_inspector.sources.decoded import DecodedPicture

#: a captured image: BGR pixels, or a decoded frame that makes them on demand
Image = Union[np.ndarray, DecodedPicture]
#: turns one captured image into the model input (C x H x W float32)
Prepare = Callable[[Image], np.ndarray]


def prepared(frame: Frame, prepare: Prepare | None) -> Frame:
    """``frame`` with its model input made (and the time that took), when ``prepare`` is given."""
    if prepare is not None:
        t0 = time.monotonic()
        frame.tensor = prepare(frame.image)
        frame.prep_ms = (time.monotonic() - t0) * 1000.0
    return frame


def crop_roi(image: Image, roi: tuple[int, int, int, int] | None, camera: str) -> tuple[Image, tuple[int, int]]:
    """The ``roi`` ([x, y, w, h]) of ``image`` and its origin; the whole image when ``roi`` is None.

    A region reaching past the frame's edge is cut at the edge (as slicing an array does)."""
    if roi is None:
        return image, (0, 0)
    x, y, w, h = roi
    height, width = image.shape[:2]
    w, h = max(0, min(w, width - x)), max(0, min(h, height - y))
    if w == 0 or h == 0:
        raise UserError(f"camera {camera}: roi {list(roi)} lies outside the {width}x{height} frame")
    if isinstance(image, DecodedPicture):
        return image.crop((x, y, w, h)), (x, y)
    return image[y : y + h, x : x + w], (x, y)


class Pacer:
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
