"""Registration of aligned products (inspectors.alignment) and the per-position layout of the learnt
visual model: a frame moved and turned as on a conveyor comes back onto the reference, a score map
goes back to the frame's pixels, and the written graph computes what learn fitted."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edge_inspector.cli import main
from edge_inspector.inspectors.alignment import SIDE, Aligner, apply, grey_views
from edge_inspector.learn.visual import LearnOptions, learn, numpy_scores
from edge_inspector.learn.visual_graph import write_graph
from edge_inspector.manifest import ImageInput, load_manifest
from training.anomaly.families import SPLIT_TEST, good_parts, make_part

CONTRACT = ImageInput(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def board(side: int, rng: np.random.Generator, shift: tuple[float, float] = (0, 0), turn: float = 0.0) -> np.ndarray:
    """An aligned part: pads, a trace and a mark on a plain ground, moved by ``shift`` and turned
    by ``turn`` degrees about the centre, as the input tensor [3, side, side]."""
    big = np.full((side, side), 0.75, np.float32)
    k = side / 256
    for i in range(5):
        cv2.rectangle(big, (int((40 + 40 * i) * k), int(70 * k)), (int((60 + 40 * i) * k), int(95 * k)), 0.2, -1)
    cv2.line(big, (int(50 * k), int(170 * k)), (int(210 * k), int(150 * k)), 0.35, max(1, int(6 * k)))
    cv2.circle(big, (int(190 * k), int(200 * k)), int(18 * k), 0.1, -1)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), turn, 1.0)
    m[:, 2] += shift
    moved = cv2.warpAffine(big, m, (side, side), borderMode=cv2.BORDER_REFLECT)
    moved += rng.normal(0, 0.01, moved.shape).astype(np.float32)
    return np.repeat(((moved - 0.5) / 0.25)[None], 3, axis=0)


def test_a_moved_and_turned_frame_is_brought_back_onto_the_reference() -> None:
    rng = np.random.default_rng(3)
    aligner = Aligner(board(256, rng))
    reference = aligner.reference
    moved = board(256, rng, shift=(9.0, -6.0), turn=3.0)[None]
    registered, warps = aligner.register(moved)
    before = np.abs(grey_views(moved)[0] - reference)[16:-16, 16:-16].mean()
    after = np.abs(grey_views(registered)[0] - reference)[16:-16, 16:-16].mean()
    assert after < 0.25 * before
    angle = math.degrees(math.atan2(warps[0][1, 0], warps[0][0, 0]))
    assert abs(abs(angle) - 3.0) < 0.5
    # a map peak found in registered coordinates lands where the thing is in the frame
    grid = 32
    peak = np.zeros((1, 1, grid, grid), np.float32)
    peak[0, 0, 25, 23] = 1.0  # the dark disc at (190, 200) of the reference, in 8-px cells
    back = Aligner.unwarp_maps(peak, warps)[0, 0]
    y, x = np.unravel_index(int(np.argmax(back)), back.shape)
    disc = np.argwhere(grey_views(moved)[0] < grey_views(moved)[0].min() + 0.3) * (256 / SIDE)  # its pixels
    cy, cx = disc.mean(axis=0)
    assert abs((x + 0.5) * 8 - cx) <= 12 and abs((y + 0.5) * 8 - cy) <= 12
    assert np.allclose(apply(moved, [np.eye(2, 3)]), moved, atol=1e-5)


def test_an_aligned_part_gets_the_per_position_layout_and_its_graph_computes_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    side = 64
    inputs = np.stack([board(side, rng, tuple(rng.uniform(-2, 2, 2)), rng.uniform(-2, 2)) for _ in range(20)])
    opts = LearnOptions(components=8, bank=64, patches=4000, candidates=2000, scales=((1, 8, 8), (2, 8, 4)), grid=8,
                        layout="auto")
    learnt = learn(inputs.astype(np.float32), CONTRACT, opts)
    assert learnt.model.aligned and learnt.reference is not None and "per-position" in learnt.choice
    path = tmp_path / "m.onnx"
    write_graph(learnt.model, path, (3, side, side))
    probe = np.stack([board(side, rng, (1.0, 1.0), 1.0), board(side, rng)]).astype(np.float32)
    registered, _ = Aligner(learnt.reference).register(probe)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, amap = sess.run(["score", "anomaly_map"], {"image": registered})
    codes_path = tmp_path / "codes.onnx"
    write_graph(learnt.model, codes_path, (3, side, side), stage="codes")
    codes = ort.InferenceSession(str(codes_path), providers=["CPUExecutionProvider"]).run(None, {"image": registered})
    maps, scores = numpy_scores(learnt.model, codes)
    np.testing.assert_allclose(score, scores, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(amap[:, 0], maps, rtol=1e-3, atol=1e-3)


@pytest.mark.slow  # learns a model from 24 parts (about 20 s)
def test_learnt_aligned_product_finds_a_missing_pin_where_it_is(tmp_path: Path) -> None:
    """A pin header (a development product): learn chooses the aligned layout, ships its reference,
    and ``inspect`` flags a part with a pin missing -- dark wells are everywhere on a good part, only
    there is one wrong -- with the box on the missing pin, in the frame's pixels."""
    good = tmp_path / "good"
    good.mkdir()
    for i, part in enumerate(good_parts("connector", 0, 24)):
        cv2.imwrite(str(good / f"{i:03d}.png"), part.image)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["learn", "visual", str(good), "--out", str(tmp_path / "learnt"), "--no-classifier"]) == 0
    entry = load_manifest(tmp_path / "learnt").anomaly("visual")  # the reference's sha256 verified too
    assert entry.alignment is not None and "per-position" in entry.method
    parts = [make_part("connector", 0, SPLIT_TEST, 0), make_part("connector", 0, SPLIT_TEST, 7, "missing_pin")]
    paths = []
    for i, part in enumerate(parts):
        paths.append(str(tmp_path / f"probe{i}.png"))
        cv2.imwrite(paths[-1], part.image)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", "--engines", str(tmp_path / "learnt"), *paths]) == 0
    ok, bad = (json.loads(line) for line in out.getvalue().splitlines())
    assert ok["label"] == "ok" and bad["label"] == "anomaly" and bad["anomaly_score"] >= 0.5
    x, y, w, h = bad["bbox"]
    mx, my, mw, mh = parts[1].bbox
    assert x < mx + mw and mx < x + w and y < my + mh and my < y + h
