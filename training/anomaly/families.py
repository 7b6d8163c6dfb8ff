"""Product families for the anomaly model: which exist, which are held out, and how a set is drawn.

Two groups that never mix:

* :data:`DEVELOPMENT` (families_dev.py): everything about the anomaly model -- feature
  extractor, grid, bank size, score and box rules -- was chosen on these;
* :data:`HELD_OUT` (families_heldout.py: heldout_printed.py, heldout_machined.py): only ever
  evaluated, for the model card.  Nothing was trained or tuned on them.

A family draws one *product* per seed (the part a line makes all day), then parts of it: good
ones with their manufacturing variation, defective ones with one defect of a kind the shipped
classifier has no label for, all through the same line nuisances (scene.on_the_line).
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol

import numpy as np

from training.anomaly.scene import CANVAS, Nuisance, Part, on_the_line

# SeedSequence split ids: good parts to learn from, and the test parts
SPLIT_LEARN, SPLIT_TEST = 1, 2
# A defect must change its pixels by this many grey levels on average (before the line's
# nuisances); fainter draws are redrawn, as an inspector could not have labelled them either.
MIN_CHANGE = 10.0
MAX_REDRAWS = 8


class Family(Protocol):
    name: str
    defects: tuple[str, ...]
    nuisance: Nuisance

    def design(self, rng: np.random.Generator) -> Any:
        """The product: what every part of it shares."""

    def part(self, design: Any, rng: np.random.Generator) -> np.ndarray:
        """One good part on the canvas (CANVAS x CANVAS float32 BGR, 0..255)."""

    def flaw(self, kind: str, design: Any, canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw a ``kind`` defect into ``canvas``; return its coverage (0..1) on the canvas."""


def _registry() -> tuple[dict[str, Family], dict[str, Family]]:
    from training.anomaly import families_dev, families_heldout

    return ({f.name: f for f in families_dev.FAMILIES}, {f.name: f for f in families_heldout.FAMILIES})


DEVELOPMENT, HELD_OUT = _registry()
ALL: dict[str, Family] = {**DEVELOPMENT, **HELD_OUT}


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def make_part(family: str, product: int, split: int, index: int, defect: str = "") -> Part:
    """Part ``index`` of ``split`` of product ``product`` of ``family``; deterministic."""
    fam = ALL[family]
    design = fam.design(np.random.default_rng([_seed(family), product]))
    rng = np.random.default_rng([_seed(family), product, split, index])
    canvas = fam.part(design, rng).astype(np.float32)
    mask = np.zeros((CANVAS, CANVAS), np.float32)
    if defect:
        if defect not in fam.defects:
            raise ValueError(f"{family} has no defect {defect!r}; expected one of {', '.join(fam.defects)}")
        np.clip(canvas, 0, 255, out=canvas)
        clean = canvas.copy()
        for _ in range(MAX_REDRAWS):  # a defect nobody could see is no defect: draw it again
            canvas[...] = clean
            mask = fam.flaw(defect, design, canvas, rng)
            np.clip(canvas, 0, 255, out=canvas)  # judged as the camera will get it: a brightening past white is lost
            if visibility(clean, canvas, mask) >= MIN_CHANGE:
                break
        else:
            raise RuntimeError(f"{family}/{defect}: no visible defect in {MAX_REDRAWS} draws")
    part = on_the_line(rng, np.clip(canvas, 0, 255), mask, fam.nuisance, family, defect)
    if defect and not part.mask.any():
        raise RuntimeError(f"{family}/{defect}: the defect fell outside the frame")
    return part


def visibility(clean: np.ndarray, drawn: np.ndarray, mask: np.ndarray) -> float:
    """Mean change over the defect's pixels (coverage above 0.3), in grey levels of the colour
    channel that changed most at each pixel (a stain of another hue at the same brightness counts)."""
    on = mask > 0.3
    if not on.any():
        return 0.0
    return float(np.abs(drawn - clean).max(axis=2)[on].mean())


def good_parts(family: str, product: int, n: int, split: int = SPLIT_LEARN, start: int = 0) -> list[Part]:
    return [make_part(family, product, split, i) for i in range(start, start + n)]


def test_parts(family: str, product: int, n_good: int, n_bad: int) -> list[Part]:
    """``n_good`` good parts, then ``n_bad`` defective ones cycling through the family's kinds."""
    kinds = ALL[family].defects
    parts = [make_part(family, product, SPLIT_TEST, i) for i in range(n_good)]
    parts += [make_part(family, product, SPLIT_TEST, n_good + i, kinds[i % len(kinds)]) for i in range(n_bad)]
    return parts
