"""The learnt model's card: what it learnt from, how its threshold was set, and a histogram.

Written next to the model by ``edge-inspector learn`` with the runtime's own libraries (the
picture is drawn with OpenCV: a line machine has no plotting library), so a person can see at a
glance how far the threshold sits above the good audio's scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


def histogram_png(path: Path, scores: np.ndarray, threshold: float, offset_raw: float | None, title: str,
                  caption: str = "smoothed score of held-out good audio (frames, log count)") -> None:
    """A histogram (log counts) of held-out good scores with the threshold (and offset) marked."""
    w, h, left, bottom, top = 720, 360, 60, 50, 40
    img = np.full((h, w, 3), 255, np.uint8)
    hi = max(float(np.max(scores)) if scores.size else 1.0, threshold) * 1.15
    lo = min(float(np.min(scores)) if scores.size else 0.0, 0.0)
    bins = 60
    counts, edges = np.histogram(scores, bins=bins, range=(lo, hi))
    logc = np.log10(counts + 1.0)
    top_c = max(float(logc.max()), 1.0)
    pw, ph = w - left - 20, h - bottom - top

    def x_of(v: float) -> int:
        return int(left + (v - lo) / (hi - lo) * pw)

    for i, c in enumerate(logc):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1]) - 1
        y0 = int(h - bottom - c / top_c * ph)
        cv2.rectangle(img, (x0, y0), (max(x0, x1), h - bottom), (180, 120, 40), -1)
    cv2.line(img, (left, h - bottom), (w - 20, h - bottom), (0, 0, 0), 1)
    cv2.line(img, (left, top), (left, h - bottom), (0, 0, 0), 1)
    for v, colour, name in ((threshold, (0, 0, 220), "threshold"), (offset_raw, (0, 140, 255), "offset")):
        if v is None:
            continue
        x = x_of(v)
        cv2.line(img, (x, top), (x, h - bottom), colour, 2)
        cv2.putText(img, f"{name} {v:.2f}", (min(x + 4, w - 150), top + 14 + (18 if name == "offset" else 0)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    for v in np.linspace(lo, hi, 6):
        cv2.putText(img, f"{v:.1f}", (x_of(v) - 12, h - bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k in range(int(top_c) + 1):
        y = int(h - bottom - k / top_c * ph)
        cv2.putText(img, f"1e{k}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, caption, (left, h - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def card_markdown(entry: Any, info: dict[str, Any]) -> str:
    """The model card of a learnt acoustic model (``info``: what ``learn`` measured)."""
    p = entry.learnt_from
    return f"""# {entry.name}: learnt on the line

`{entry.file}` (sha256 `{entry.sha256[:12]}…`), made by `edge-inspector learn acoustic` on {p.date}.

**Learnt from** {p.items} file(s), {info['seconds']:.0f} s of audio in {info['segments']} contiguous segment(s)
(data sha256 `{p.sha256[:12]}…`): {", ".join(f"`{s}`" for s in p.sources)}.

**Method**: {entry.method}. Features: the daemon's log-mel ({entry.n_mels} bands, {entry.sample_rate} Hz,
hop {entry.hop_length}); context of {entry.context_frames} frames carried between chunks (`ctx_in`/`ctx_out`).

**Threshold** (raw smoothed score {entry.threshold:.3f}, normalised 0.5): set on held-out good audio (each third of
the recording scored by a model fitted on the other two) for at most {entry.max_false_alarms_per_hour:g} false
episode(s) per hour by an extreme-value law of 1 s maxima, kept between 0.5 and 0.75 times the held-out spread
above the 99.9th percentile of held-out scores; that law's own estimate at this threshold: {entry.false_alarms_per_hour:.2g} per hour
(pessimistic when a state of the recording was held out of its fold's model). Typical good
score {info['typical']:.3f}; offset {entry.offset:.3f} on the normalised scale (raw {info['offset_raw']:.3f}); score scale
{entry.score_scale:.3f}; smoothing {entry.smoothing_s:g} s, episodes of at least {entry.min_duration_s:g} s, gaps under
{entry.hold_s:g} s bridged, first {entry.warmup_s:g} s after a reset not scored. Learning took {info['learn_s']:.0f} s.

![held-out scores]({info['histogram']})

**Limits**: it knows only what it heard. A normal state missing from the recording (a product change, a
speed never run, a neighbour's machine switched on later) will be flagged `anomaly`; record more of the
machine's life and learn again, or raise `anomaly_threshold` for the microphone.
"""
