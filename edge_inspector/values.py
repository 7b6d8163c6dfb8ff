"""The values that flow through the daemon: what sources capture and what inspectors decide.

Sources make :class:`Frame` and :class:`Chunk` objects, inspectors turn them into
:class:`Verdict` objects, and the event bus, sinks and views read verdicts.  They live here, at
the bottom, so each layer can name what it receives and hands on without importing the layer
that made it (the event bus knows a verdict, not an inspector).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(slots=True)
class Frame:
    """One camera image as captured."""

    source: str
    index: int  # frame index in the stream, from 0
    ts: float  # capture time, seconds since the epoch (UTC)
    mono: float  # time.monotonic() at capture: latency is measured against this
    # H x W x 3, BGR, uint8 (after the optional ROI crop); from a PyAV-decoded file, a DecodedPicture
    # that converts to it on demand (sources.decoded.pixels)
    image: Any
    origin: tuple[int, int] = (0, 0)  # (x, y) of the ROI in the full frame, for bbox mapping
    tensor: np.ndarray | None = None  # the model input (C x H x W float32), made in the capture thread
    prep_ms: float = 0.0  # time spent making ``tensor``


@dataclass(slots=True)
class Chunk:
    """A block of mono audio at the model's sample rate."""

    source: str
    offset_s: float  # start of this chunk in seconds from stream start
    ts: float  # capture time of the first sample, seconds since the epoch
    mono: float
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    discontinuity: bool = False  # True: audio before this chunk is not contiguous (reset state)


@dataclass(slots=True)
class Verdict:
    source: str
    kind: Literal["visual", "acoustic"]
    label: str  # "ok"/"normal", the defect type, or "anomaly"
    score: float  # in [0, 1], higher = worse (the scoring contract: inspectors/heads.py)
    defect: bool  # score crossed this source's threshold
    ts: float  # capture time (epoch seconds) of the frame / episode start
    mono: float  # monotonic capture time, for latency_ms
    model: str  # model name
    model_sha256: str
    frame: int | None = None  # visual: frame index in the stream
    bbox: list[int] | None = None  # visual: [x, y, w, h] in source-frame pixels
    offset_s: float | None = None  # acoustic: episode start from stream start
    duration_s: float | None = None  # acoustic: episode length
    anomaly_score: float | None = None  # when an anomaly model ran: its normalised score (0.5 = its threshold)
    extra: dict[str, Any] = field(default_factory=dict)  # probs, stage timings, ... (published)
    heatmap: Any = None  # visual: the model's defect heatmap (reports only, never published)
    # What the model looked at, for snapshots and the live preview (never published; the service
    # lets go of them once it has handed them on, so observers never hold frames):
    image: Any = None  # visual: the inspected image (the ROI crop when one is set), BGR uint8
    image_origin: tuple[int, int] = (0, 0)  # visual: (x, y) of ``image`` in the full frame
    trace: Any = None  # acoustic: the episode's spectrogram and score curve (an ``EpisodeTrace``)
