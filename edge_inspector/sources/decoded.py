"""A decoded video frame kept in the decoder's YUV planes until someone needs its pixels.

A 1280x720 H.264 frame costs ~1.3 ms to decode on one core of the reference VM, then ~0.6 ms more
to convert to full-size BGR (what ``cv2.VideoCapture.read`` always does) and ~0.65 ms to shrink to
the model's 256x256: the model never looks at the full-size BGR image, and the snapshot writer,
the live preview and ``record`` need it for a few frames a second at most.  A
:class:`DecodedPicture` makes the model's input from the YUV planes directly (each plane shrunk
with the same area-preserving :func:`~edge_inspector.inspectors.visual_model.resize_to`, then
converted at the small size) and converts the full frame only when asked (:meth:`pixels`, or
``numpy.asarray(picture)``), with the same FFmpeg conversion OpenCV uses.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

#: planar YUV formats whose planes are shrunk directly; any other format is converted in full first
PLANAR_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}


def _limited_to_full(scale: float, offset: float) -> np.ndarray:
    """A uint8 lookup table from limited ("TV") range to full range."""
    x = (np.arange(256, dtype=np.float32) - offset) * scale + (128.0 if offset == 128.0 else 0.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


_LUMA_TV = _limited_to_full(255.0 / 219.0, 16.0)
_CHROMA_TV = _limited_to_full(255.0 / 224.0, 128.0)


class DecodedPicture:
    """One decoded frame (optionally a region of it), full-size BGR made only on demand.

    ``shape`` is that of the BGR image it stands for, so code that only needs the frame's size
    never converts it.
    """

    __slots__ = ("_frame", "_roi", "_bgr", "shape")

    def __init__(self, frame: Any, roi: tuple[int, int, int, int] | None = None) -> None:
        self._frame = frame  # an av.VideoFrame; its buffer stays referenced until this is dropped
        self._roi = roi
        self._bgr: np.ndarray | None = None
        w, h = (roi[2], roi[3]) if roi is not None else (frame.width, frame.height)
        self.shape = (h, w, 3)

    def crop(self, roi: tuple[int, int, int, int]) -> "DecodedPicture":
        """This frame's region ``roi`` ([x, y, w, h], already clipped to the frame)."""
        return DecodedPicture(self._frame, roi)

    def pixels(self) -> np.ndarray:
        """The full-size BGR image (of the region), as ``cv2.VideoCapture.read`` would give it."""
        if self._bgr is None:
            bgr = self._frame.to_ndarray(format="bgr24")
            if self._roi is not None:
                x, y, w, h = self._roi
                bgr = np.ascontiguousarray(bgr[y : y + h, x : x + w])
            self._bgr = bgr
        return self._bgr

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        image = self.pixels()
        return image if dtype is None else image.astype(dtype)

    def resized(self, width: int, height: int, resize: Callable[[np.ndarray, int, int], np.ndarray]) -> np.ndarray:
        """BGR uint8 at ``width`` x ``height``, made from the YUV planes without the full-size BGR;
        ``resize`` shrinks one plane (the model's own resize, so both paths give the same input)."""
        frame = self._frame
        name = frame.format.name
        if self._bgr is not None or name not in PLANAR_YUV:
            return resize(self.pixels(), width, height)
        planes = []
        for i, plane in enumerate(frame.planes[:3]):
            data = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
            if self._roi is not None:
                x, y, w, h = self._roi
                sx, sy = frame.width / plane.width, frame.height / plane.height  # chroma subsampling
                x0, y0 = int(x // sx), int(y // sy)
                data = data[y0 : y0 + max(1, round(h / sy)), x0 : x0 + max(1, round(w / sx))]
            planes.append(resize(np.ascontiguousarray(data) if i else data, width, height))
        y, u, v = planes
        if not name.startswith("yuvj"):  # limited range (what x264 and most cameras send)
            y, u, v = cv2.LUT(y, _LUMA_TV), cv2.LUT(u, _CHROMA_TV), cv2.LUT(v, _CHROMA_TV)
        return cv2.cvtColor(cv2.merge((y, v, u)), cv2.COLOR_YCrCb2BGR)  # BT.601, as FFmpeg's default


def pixels(image: Any) -> np.ndarray:
    """A frame's full-size BGR pixels, whether it is an array already or a :class:`DecodedPicture`."""
    return image.pixels() if isinstance(image, DecodedPicture) else image
