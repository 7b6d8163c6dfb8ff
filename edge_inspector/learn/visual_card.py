"""The learnt visual model's card: what it learnt from, how its threshold was set, and pictures.

Written next to the model by ``edge-inspector learn visual`` with OpenCV only (a line machine
has no plotting library): a histogram of the held-out good images' scores with the threshold,
and the score maps of held-out good images -- the ones closest to the threshold first, since
those show where the product varies most and where a real defect must stand out to be seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


def heatmaps_png(path: Path, images: list[np.ndarray], maps: np.ndarray, scores: np.ndarray, threshold: float,
                 typical: float, count: int = 8) -> None:
    """The ``count // 2`` highest-scoring and as many typical held-out good images, each with its
    score map over it (blue: as good parts usually are; red: at the threshold)."""
    order = np.argsort(-scores)
    picks = list(order[: count // 2]) + list(order[len(order) // 2 : len(order) // 2 + count - count // 2])
    tiles = []
    for i in picks:
        img = cv2.resize(images[i], (256, 256), interpolation=cv2.INTER_AREA)
        level = np.clip((maps[i] - typical) / max(threshold - typical, 1e-6), 0.0, 1.0)
        heat = cv2.resize(level.astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        tile = (0.55 * img + 0.45 * colour).astype(np.uint8)
        cv2.rectangle(tile, (0, 0), (256, 18), (0, 0, 0), -1)
        cv2.putText(tile, f"good #{i}: {scores[i]:.2f} (threshold {threshold:.2f})", (4, 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[a : a + 4]) for a in range(0, len(tiles), 4)]))


def card_markdown(entry: Any, info: dict[str, Any]) -> str:
    """The model card of a learnt visual model (``info``: what ``learn`` measured)."""
    p = entry.learnt_from
    classifier = info.get("classifier") or "No classifier runs beside it in this directory."
    warning = f"\n\n**Warning**: {info['warning']}." if info.get("warning") else ""
    return f"""# {entry.name}: learnt on the line

`{entry.file}` (sha256 `{entry.sha256[:12]}…`), made by `edge-inspector learn visual` on {p.date}.

**Learnt from** {p.items} good image(s) (data sha256 `{p.sha256[:12]}…`){info.get('thinned', '')}:
{", ".join(f"`{s}`" for s in p.sources)}.

**Method**: {entry.method}.

**Threshold** (raw score {entry.threshold:.3f}, anomaly_score 0.5): set on held-out good images (each fifth of
them scored by a model fitted on the other four) for at most {entry.max_false_reject:.2%} good parts rejected
by this model: {info['rate_observed']:.2%} of the held-out images reach it, and the law fitted to their scores
puts the rate at {info['rate_law']:.2%}. Typical good score {info['typical']:.3f}; score scale
{entry.score_scale:.3f} (a typical good part has anomaly_score ≈ 0.05); cells from {entry.map_threshold:.3f} make
the box. {classifier} Learning took {info['learn_s']:.0f} s.{warning}

![held-out scores]({info['histogram']})

Held-out good images with their score maps, the highest-scoring first (red: at the threshold):

![held-out maps]({info['heatmaps']})

**Limits**: it knows only the good parts it was shown. A normal variation missing from them (another batch
of material, a new light, the part turned further than before) will be flagged `anomaly`: learn again with
it included, or raise the camera's `anomaly_threshold`. It compares patches relative to the local brightness,
so a slow, uniform change of colour or brightness across the whole part is not seen as a defect. Small and
faint defects pass: on the products the method was developed on, a round spot 4 px across or smaller (at
256 x 256) was never found, a 60 grey-level spot needed 6-16 px depending on how busy the surface is, a
30 grey-level one 12 px on the plainest texture only, a 15 grey-level one none up to 16 px
(`python -m training.anomaly.sensitivity`). {_layout_limits(entry)}
"""


def _layout_limits(entry: Any) -> str:
    """What the layout ``learn`` chose for this product cannot see."""
    if getattr(entry, "alignment", None) is None:
        return ("This model compares each patch with good patches from anywhere on the part (the position-free "
                "memory), so a defect whose patches look like good ones elsewhere (a missing or misplaced print or "
                "component) is not seen; if your parts arrive the same way up every time, try `--layout aligned`.")
    return ("Each frame is first registered (shifted and turned) onto the good parts' reference view "
            f"(`{entry.alignment.file}`), then compared cell by cell with the good parts at that cell: a part "
            "turned or shifted further than the good ones, flipped, or of another variant is flagged `anomaly`; "
            "if your parts can arrive at any angle, learn again with `--layout free`.")
