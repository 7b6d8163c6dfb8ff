"""What an inspector decides about one frame or one sound episode.

Inspectors produce :class:`Verdict` objects and know nothing about ZeroMQ; the event bus turns
verdicts into numbered, journalled events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


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
