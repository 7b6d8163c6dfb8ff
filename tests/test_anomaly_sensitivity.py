"""The measuring tools behind the learnt visual model's stated limits (what size of defect it sees)."""

from __future__ import annotations

import numpy as np

from training.anomaly.evaluate import found_by_size
from training.anomaly.scene import Part
from training.anomaly.sensitivity import MARGIN, spotted


def test_a_spot_has_the_asked_size_and_contrast_inside_the_margin() -> None:
    image = np.full((256, 256, 3), 128, np.uint8)
    out = spotted(image, 8.0, -40.0, np.random.default_rng(3))
    changed = np.abs(out.astype(int) - image).max(axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.max() == 40  # the core reaches the full contrast, darker
    assert 8 * 8 * np.pi / 4 * 0.8 < (changed >= 20).sum() < 8 * 8 * np.pi / 4 * 1.25  # a disc 8 px across
    assert xs.min() >= MARGIN - 6 and xs.max() < 256 - MARGIN + 6 and ys.min() >= MARGIN - 6 and ys.max() < 256 - MARGIN + 6
    assert (spotted(image, 8.0, 40.0, np.random.default_rng(3)) >= 128).all()  # brighter: never darker anywhere


def test_defects_found_are_counted_per_size() -> None:
    def part(side: int) -> Part:
        mask = np.zeros((256, 256), np.uint8)
        mask[:side, :side] = 1
        return Part(np.zeros((256, 256, 3), np.uint8), "spot" if side else "", mask, "test")

    parts = [part(0), part(3), part(5), part(6), part(40)]
    sizes = found_by_size(parts, np.array([True, True, False, True, False]))
    assert sizes == {"0-4 px": [1.0, 1], "4-8 px": [0.5, 2], ">=32 px": [0.0, 1]}
