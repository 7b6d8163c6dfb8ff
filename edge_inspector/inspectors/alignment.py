"""Register each frame to a product's learnt reference view before its anomaly model sees it.

A part that arrives the same way up every time (a printed label, a pin header, a stamped gear)
is best judged *position by position*: a missing pin is a dark well, and dark wells are
everywhere on a good part; only at that place is it wrong.  The line moves every part a little
(a few pixels, a few degrees), so the frame is first brought onto the reference view learnt
from the good parts (``learn visual`` decides per product whether to, and stores the reference
beside the model: ``alignment`` in the manifest, the mean registered good input tensor).

Registration runs in NumPy/OpenCV before the ONNX graph, on a grey 128 x 128 copy of the model's
input tensor: phase correlation for the shift (a global FFT estimate, robust to the part's own
repetitive detail), then OpenCV's ECC refinement to a rigid motion (shift and turn) at 64 x 64.
The tensor is warped once at full size; the model's map comes back in registered coordinates and
is warped back, so boxes stay in the frame's pixels.  About 1-2 ms per frame on one core.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SIDE = 128  # registration resolution (phase correlation)
FINE = 64  # ECC refinement resolution: enough for a sub-pixel fit, cheap
ECC_STEPS = 30
_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_STEPS, 1e-4)


def grey_views(x: np.ndarray) -> np.ndarray:
    """[N, C, H, W] input tensors -> [N, SIDE, SIDE] float32 grey views (channel mean, area-resized)."""
    g = x.mean(axis=1, dtype=np.float32)
    return np.stack([cv2.resize(a, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for a in g])


def _window() -> np.ndarray:
    return cv2.createHanningWindow((SIDE, SIDE), cv2.CV_64F)


def estimate(view: np.ndarray, reference: np.ndarray, window: np.ndarray, fine: np.ndarray | None = None) -> np.ndarray:
    """The rigid warp ``W`` (2 x 3, SIDE pixels) with ``view(W p) ~ reference(p)``."""
    (dx, dy), _ = cv2.phaseCorrelate(reference.astype(np.float64), view.astype(np.float64), window)
    f = FINE / SIDE
    w = np.float32([[1, 0, dx * f], [0, 1, dy * f]])
    small_ref = fine if fine is not None else cv2.resize(reference, (FINE, FINE), interpolation=cv2.INTER_AREA)
    try:
        _, w = cv2.findTransformECC(small_ref, cv2.resize(view, (FINE, FINE), interpolation=cv2.INTER_AREA), w,
                                    cv2.MOTION_EUCLIDEAN, _CRITERIA, None, 1)
    except cv2.error:  # no convergence (a blank or foreign frame): the shift alone
        pass
    w = np.array(w, np.float64)
    w[:, 2] /= f
    return w


def to_side(w: np.ndarray, side: int) -> np.ndarray:
    """A warp in SIDE pixels -> the same warp in pixels of a ``side`` x ``side`` image (pixel centres kept)."""
    f = side / SIDE
    a = w[:, :2]
    out = np.empty((2, 3), np.float64)
    out[:, :2] = a
    out[:, 2] = f * w[:, 2] + (f - 1) / 2 * (np.ones(2) - a.sum(axis=1))
    return out


class Aligner:
    """Brings input tensors onto a reference view and maps score maps back.

    ``reference`` is the mean registered good input tensor [C, H, W]: its grey view is what frames
    are registered to, and where a warped frame has nothing to show (beyond the frame's edge) it
    shows the reference -- a typical good part -- so a shifted border never looks like a defect."""

    def __init__(self, reference: np.ndarray) -> None:
        self.tensor = np.ascontiguousarray(reference, np.float32)
        if self.tensor.ndim != 3 or self.tensor.shape[1] != self.tensor.shape[2] or self.tensor.shape[1] < SIDE // 2:
            raise ValueError(f"expected a [C, H, W] square reference tensor, got shape {self.tensor.shape}")
        self.reference = grey_views(self.tensor[None])[0]
        self._window = _window()
        self._fine = cv2.resize(self.reference, (FINE, FINE), interpolation=cv2.INTER_AREA)
        self._hwc = np.ascontiguousarray(self.tensor.transpose(1, 2, 0))
        self._ones = np.ones(self.tensor.shape[1:], np.float32)

    def warps(self, x: np.ndarray) -> list[np.ndarray]:
        return [estimate(v, self.reference, self._window, self._fine) for v in grey_views(x)]

    def register(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``x`` [N, C, H, W] warped onto the reference; the warps (SIDE pixels) to map results back."""
        if x.shape[1:] != self.tensor.shape:
            raise ValueError(f"input tensors of shape {x.shape[1:]}, the alignment reference is {self.tensor.shape}")
        warps = self.warps(x)
        return self.warp(x, warps), warps

    def warp(self, x: np.ndarray, warps: list[np.ndarray]) -> np.ndarray:
        """``x`` resampled at ``warps``, the reference shown where the frame has nothing."""
        out = np.empty_like(x)
        h, w = x.shape[2:]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        for i, warp in enumerate(warps):
            m = to_side(warp, w).astype(np.float32)
            moved = cv2.warpAffine(np.ascontiguousarray(x[i].transpose(1, 2, 0)), m, (w, h), flags=flags,
                                   borderMode=cv2.BORDER_CONSTANT).reshape(h, w, -1)
            seen = cv2.warpAffine(self._ones, m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)[..., None]
            out[i] = (moved + (1.0 - seen) * self._hwc).transpose(2, 0, 1)  # moved is already weighted by seen
        return out

    @staticmethod
    def unwarp_maps(maps: np.ndarray, warps: list[np.ndarray]) -> np.ndarray:
        """Score maps [N, 1, G, G] of registered frames -> the same maps in the frames' coordinates."""
        out = np.empty_like(maps)
        side = maps.shape[-1]
        for i, w in enumerate(warps):
            out[i, 0] = cv2.warpAffine(maps[i, 0], to_side(w, side), (side, side), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
        return out


def apply(x: np.ndarray, warps: list[np.ndarray]) -> np.ndarray:
    """Each [C, H, W] tensor of ``x`` resampled at its warp (border reflected)."""
    out = np.empty_like(x)
    h, w = x.shape[2:]
    for i, warp in enumerate(warps):
        m = to_side(warp, w).astype(np.float32)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        # OpenCV warps up to 4 channels at once: [H, W, C] in one call
        out[i] = cv2.warpAffine(np.ascontiguousarray(x[i].transpose(1, 2, 0)), m, (w, h), flags=flags,
                                borderMode=cv2.BORDER_REFLECT).reshape(h, w, -1).transpose(2, 0, 1)
    return out


def learn_reference(x: np.ndarray, passes: int = 2) -> np.ndarray:
    """The reference view of good input tensors ``x``: their mean once registered [C, H, W].

    First pass against one part; the mean grey view is then moved to where parts typically lie
    (the median shift and turn), so the reference is centred in the frame; a second pass against
    it gives the warps the mean is taken with."""
    views = grey_views(x)
    window = _window()
    reference = views[len(views) // 2]
    warps: list[np.ndarray] = []
    for n in range(passes):
        warps = [estimate(v, reference, window) for v in views]
        if n == passes - 1:
            break
        reference = np.mean([cv2.warpAffine(v, w.astype(np.float32), (SIDE, SIDE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                            borderMode=cv2.BORDER_REFLECT) for v, w in zip(views, warps)], axis=0)
        if n == 0:
            angle = float(np.median([math.atan2(w[1, 0], w[0, 0]) for w in warps]))
            shift = np.median([w[:, 2] for w in warps], axis=0)
            c, s = math.cos(angle), math.sin(angle)
            typical = np.array([[c, -s, shift[0]], [s, c, shift[1]]], np.float32)
            reference = cv2.warpAffine(reference, typical, (SIDE, SIDE), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    return apply(x, warps).mean(axis=0).astype(np.float32)
