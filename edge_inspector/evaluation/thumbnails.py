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

from edge_inspector.pictures import DEFECT_BGR, MISS_BGR, overlay

log = logging.getLogger(__name__)

THUMB_WIDTH = 240


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
            colour = DEFECT_BGR if m.kind == "false_reject" else MISS_BGR
            picture = overlay(image, m.heatmap, m.bbox, rois.get(source), colour)
            out.append({"kind": m.kind, "source": source, "frame": m.frame, "truth": m.truth, "predicted": m.predicted,
                        "score": m.score, "png": png_base64(picture)})
    return out
