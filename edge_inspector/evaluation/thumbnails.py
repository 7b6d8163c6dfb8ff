"""Thumbnails of false rejects and misses: the frame, the model's heatmap over it, its box.

Frames are read back from the video after the replay (one sequential pass per camera,
``grab()`` skips frames without decoding them into Python), so nothing but the mismatches'
small heatmaps is held during the replay.  OpenCV only: matplotlib is not a runtime dependency.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

THUMB_WIDTH = 240


def overlay(image: np.ndarray, heatmap: np.ndarray | None, bbox: Sequence[int] | None,
            roi: Sequence[int] | None = None, box_colour: tuple[int, int, int] = (40, 40, 230)) -> np.ndarray:
    """The frame with the heatmap blended over the inspected region (ROI) and the box drawn."""
    out = image.copy()
    x0, y0 = (int(roi[0]), int(roi[1])) if roi else (0, 0)
    w, h = (int(roi[2]), int(roi[3])) if roi else (image.shape[1], image.shape[0])
    region = out[y0 : y0 + h, x0 : x0 + w]
    if heatmap is not None and region.size:
        heat = cv2.resize(np.asarray(heatmap, np.float32), (region.shape[1], region.shape[0]), interpolation=cv2.INTER_CUBIC)
        heat = np.clip(heat, 0.0, 1.0)
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
        alpha = (0.15 + 0.55 * heat)[..., None]
        region[:] = (region.astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
    if bbox is not None:
        bx, by, bw, bh = (int(v) for v in bbox)
        thickness = max(2, image.shape[1] // 160)
        cv2.rectangle(out, (bx, by), (bx + bw - 1, by + bh - 1), box_colour, thickness)
    return out


def png_base64(image: np.ndarray, width: int = THUMB_WIDTH) -> str:
    scale = width / image.shape[1]
    small = cv2.resize(image, (width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", small)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    frames: dict[int, np.ndarray] = {}
    if not wanted:
        return frames
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        last = max(wanted)
        index = 0
        while index <= last and cap.isOpened():
            if not cap.grab():
                break
            if index in wanted:
                ok, image = cap.retrieve()
                if ok:
                    frames[index] = image
            index += 1
    finally:
        cap.release()
    return frames


def render_thumbnails(mismatches: Sequence[Any], videos: dict[str, Path], rois: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``{kind, source, frame, truth, predicted, score, png}`` per kept mismatch, in frame order."""
    out: list[dict[str, Any]] = []
    for source, path in videos.items():
        mine = sorted((m for m in mismatches if m.source == source), key=lambda m: m.frame)
        frames = _read_frames(path, {m.frame for m in mine})
        for m in mine:
            image = frames.get(m.frame)
            if image is None:
                log.warning("%s: frame %d could not be read back for the report", path, m.frame)
                continue
            colour = (40, 40, 230) if m.kind == "false_reject" else (30, 170, 250)
            picture = overlay(image, m.heatmap, m.bbox, rois.get(source), colour)
            out.append({"kind": m.kind, "source": source, "frame": m.frame, "truth": m.truth, "predicted": m.predicted,
                        "score": m.score, "png": png_base64(picture)})
    return out
