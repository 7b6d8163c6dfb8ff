"""Pictures of what the models saw: heatmap overlays, captions, spectrograms, JPEG/PNG bytes.

One place for every picture the product draws (defect snapshots, the live preview, ``inspect
--overlay``, the evaluation report's thumbnails), so an operator sees the same heatmap colours
and boxes everywhere.  OpenCV only: matplotlib is not a runtime dependency.  Every function
works on BGR ``uint8`` images and is cheap enough to run beside inspection on a small CPU (an
overlay of a 1280x720 frame costs about 7 ms: the blend runs in OpenCV's C++, not in numpy
floats).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

DEFECT_BGR = (40, 40, 230)  # red: a defect box / a false reject
MISS_BGR = (30, 170, 250)  # amber: a missed defect (evaluation report)
OK_BGR = (60, 180, 60)  # green: an ok verdict (preview caption)


def fit_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` shrunk to at most ``width`` pixels wide (never enlarged), aspect kept.

    Down to half size bilinear is enough and five times cheaper than area averaging (which a
    thumbnail needs, or thin scratches alias away)."""
    h, w = image.shape[:2]
    if width <= 0 or w <= width:
        return image
    method = cv2.INTER_LINEAR if width * 2 >= w else cv2.INTER_AREA
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=method)


def blend_heatmap(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """``image`` with ``heatmap`` (any size, values 0-1) stretched over it in the JET colours.

    The heat's own strength is its opacity (15 % where cold, 70 % where hot), so a clean part
    stays readable under a cold map and the defect stands out under a hot one.
    """
    h, w = image.shape[:2]
    heat = cv2.resize(np.asarray(heatmap, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    np.clip(heat, 0.0, 1.0, out=heat)
    colour = cv2.applyColorMap(cv2.convertScaleAbs(heat, alpha=255.0), cv2.COLORMAP_JET)
    alpha = heat * 0.55 + 0.15
    return cv2.blendLinear(colour, np.ascontiguousarray(image), alpha, 1.0 - alpha)


def overlay(image: np.ndarray, heatmap: np.ndarray | None, bbox: Sequence[int] | None,
            roi: Sequence[int] | None = None, box_colour: tuple[int, int, int] = DEFECT_BGR) -> np.ndarray:
    """The frame with the heatmap blended over the inspected region (``roi``) and the box drawn.

    ``bbox`` is in ``image``'s pixels; ``roi`` ``[x, y, w, h]`` is where the heatmap belongs
    (the whole image when None).  Returns a new image; ``image`` is not changed.
    """
    out = image.copy()
    x0, y0 = (int(roi[0]), int(roi[1])) if roi else (0, 0)
    w, h = (int(roi[2]), int(roi[3])) if roi else (image.shape[1], image.shape[0])
    region = out[y0 : y0 + h, x0 : x0 + w]
    if heatmap is not None and region.size:
        region[:] = blend_heatmap(region, heatmap)
    if bbox is not None:
        draw_box(out, bbox, box_colour)
    return out


def draw_box(image: np.ndarray, bbox: Sequence[int], colour: tuple[int, int, int] = DEFECT_BGR) -> None:
    """Draw ``bbox`` ``[x, y, w, h]`` on ``image`` in place, thick enough to see when shrunk."""
    bx, by, bw, bh = (int(v) for v in bbox)
    thickness = max(2, image.shape[1] // 160)
    cv2.rectangle(image, (bx, by), (bx + bw - 1, by + bh - 1), colour, thickness)


def draw_caption(image: np.ndarray, text: str, colour: tuple[int, int, int] = DEFECT_BGR) -> None:
    """A readable caption (``scratch 0.97``) on a solid bar in the top-left corner, in place."""
    scale = max(0.5, image.shape[1] / 1400.0)
    thickness = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(4, int(6 * scale))
    cv2.rectangle(image, (0, 0), (tw + 2 * pad, th + base + 2 * pad), colour, -1)
    cv2.putText(image, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def verdict_picture(image: np.ndarray, heatmap: np.ndarray | None, bbox: Sequence[int] | None,
                    caption: str, defect: bool, width: int = 0) -> np.ndarray:
    """What the model decided, drawn: shrunk to ``width`` (0 keeps the size), heatmap, box, caption.

    Shrinking first keeps the blend cheap; ``bbox`` is in ``image``'s pixels and scaled along.
    """
    small = fit_width(image, width)
    scale = small.shape[1] / image.shape[1]
    out = blend_heatmap(small, heatmap) if heatmap is not None else small.copy()
    if bbox is not None:
        draw_box(out, [round(v * scale) for v in bbox], DEFECT_BGR)
    draw_caption(out, caption, DEFECT_BGR if defect else OK_BGR)
    return out


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def spectrogram_picture(mel: np.ndarray, scores: np.ndarray, frame_s: float, span: tuple[int, int] | None,
                        onset: float | None = None, offset: float | None = None, title: str = "",
                        width: int = 960) -> np.ndarray:
    """A log-mel spectrogram (low frequencies at the bottom) above the anomaly score curve.

    ``mel`` is ``[T, n_mels]`` (log power), ``scores`` ``[T]`` (0-1, the smoothed score the
    hysteresis decided on), ``span`` the frames of the episode (shaded), ``onset``/``offset``
    the thresholds (dashed lines).  Time runs left to right, in seconds from the episode's onset,
    with a tick every second (every five beyond 20 s).
    """
    t = int(mel.shape[0])
    spec_h, curve_h, axis_h, title_h = 200, 110, 22, 26 if title else 0
    out = np.full((title_h + spec_h + curve_h + axis_h, width, 3), 255, np.uint8)
    if t == 0:
        return out
    lo, hi = np.percentile(mel, 2), np.percentile(mel, 99.5)
    norm = np.clip((mel.T[::-1] - lo) / max(1e-6, hi - lo), 0.0, 1.0)  # [n_mels, T], high bins on top
    img = cv2.applyColorMap(cv2.convertScaleAbs(norm.astype(np.float32), alpha=255.0), cv2.COLORMAP_INFERNO)
    out[title_h : title_h + spec_h] = cv2.resize(img, (width, spec_h), interpolation=cv2.INTER_LINEAR)
    top = title_h + spec_h
    curve = out[top : top + curve_h]
    x_of = (lambda k: int(round(k * (width - 1) / max(1, t - 1))))  # noqa: E731
    y_of = (lambda s: int(round((1.0 - float(np.clip(s, 0.0, 1.0))) * (curve_h - 8) + 4)))  # noqa: E731
    if span is not None:
        a, b = max(0, span[0]), min(t, span[1])
        if b > a:
            cv2.rectangle(curve, (x_of(a), 0), (x_of(b - 1), curve_h - 1), (215, 215, 250), -1)
            for x in (x_of(a), x_of(b - 1)):  # the span on the spectrogram too
                cv2.line(out, (x, title_h), (x, top - 1), (255, 255, 255), 1)
    for level, colour in ((onset, (40, 40, 200)), (offset, (200, 120, 40))):
        if level is not None:
            y = y_of(level)
            for x in range(0, width, 12):
                cv2.line(curve, (x, y), (min(width - 1, x + 6), y), colour, 1)
    step = max(1, int(np.ceil(t / (2 * width))))
    points = np.array([[x_of(k), y_of(scores[k])] for k in range(0, t, step)], np.int32)
    cv2.polylines(curve, [points], False, (20, 20, 20), 2, cv2.LINE_AA)
    for name, level in (("onset", onset), ("offset", offset)):
        if level is not None:
            cv2.putText(curve, name, (width - 52, max(10, y_of(level) - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(curve, "score", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    axis_y = top + curve_h
    zero = span[0] if span is not None else 0  # ticks count from the episode's onset
    tick = 1.0 if t * frame_s <= 20 else 5.0
    first = -np.floor(zero * frame_s / tick) * tick
    s = first
    while (zero + s / frame_s) < t:
        x = x_of(zero + s / frame_s)
        cv2.line(out, (x, axis_y), (x, axis_y + 5), (80, 80, 80), 1)
        cv2.putText(out, f"{s:+g}s" if s and span is not None else f"{s:g}s", (min(x + 2, width - 34), axis_y + 17), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (60, 60, 60), 1, cv2.LINE_AA)
        s += tick
    if title:
        cv2.putText(out, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
    return out
