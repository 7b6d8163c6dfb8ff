"""The README's `inspect` example: its sample files exist, come from tools/make_examples.py, and
the shipped models find what was put in them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ENGINES, ROOT

EXAMPLES = ROOT / "examples"
COMMAND = ".venv/bin/edge-inspector inspect examples/part.png examples/machine.wav"


def _iou(a: list[int], b: list[int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / float(aw * ah + bw * bh - w * h)


def test_the_readme_shows_the_command_on_the_shipped_samples() -> None:
    assert COMMAND in (ROOT / "README.md").read_text()


def test_the_samples_are_what_make_examples_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_examples.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    assert (tmp_path / "machine.wav").read_bytes() == (EXAMPLES / "machine.wav").read_bytes()
    # the pixels, not the PNG bytes (zlib versions compress differently)
    assert np.array_equal(cv2.imread(str(tmp_path / "part.png")), cv2.imread(str(EXAMPLES / "part.png")))
    assert max((EXAMPLES / name).stat().st_size for name in ("part.png", "machine.wav")) < 64_000


@pytest.mark.skipif(not (ENGINES / "manifest.toml").is_file(), reason="engines/manifest.toml not built")
def test_inspect_finds_the_scratch_and_the_bearing_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from make_examples import part_sample  # the true box, from the generator that drew it

    true_box = part_sample().bbox
    assert true_box is not None
    proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "inspect", "examples/part.png",
                           "examples/machine.wav"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    part, machine = (json.loads(line) for line in proc.stdout.splitlines())
    assert part["label"] == "scratch" and part["score"] >= 0.9
    assert _iou(part["bbox"], true_box) > 0.2, part["bbox"]
    assert machine["label"] == "bearing" and machine["score"] >= 0.9
