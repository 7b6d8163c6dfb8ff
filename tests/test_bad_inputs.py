"""``inspect`` on hostile files: a bomb header and a cut-short WAV are errors, the other files still run."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io.wavfile

from conftest import ENGINES, ROOT

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines not built")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bomb_header_and_truncated_wav_are_errors_and_the_rest_is_inspected(tmp_path: Path, surfaces) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))
    good = tmp_path / "part.png"
    cv2.imwrite(str(good), surfaces(7, "ok").image)
    rate = 16000
    wav = tmp_path / "clip.wav"
    scipy.io.wavfile.write(wav, rate, (np.sin(np.arange(rate * 2) / 10) * 8000).astype(np.int16))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[: 44 + rate])  # the header still promises 2 s, the file holds 0.5 s
    proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "inspect", str(bomb), str(good), str(cut),
                           str(wav)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["path"]).name for r in results] == ["part.png", "clip.wav"]
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "bomb.png" in errors[0] and "100000x100000" in errors[0] and "megapixels" in errors[0]
    assert "cut.wav" in errors[1] and "truncated WAV" in errors[1]


def test_declared_sizes_of_each_format() -> None:
    from edge_inspector.image_header import declared_size, size_problem

    image = np.zeros((40, 30, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp"):
        ok, data = cv2.imencode(ext, image)
        assert ok and declared_size(data.tobytes()) == (30, 40), ext
        assert size_problem(data.tobytes()) is None
    assert "empty image" in (size_problem(png_claiming(0, 10)) or "")
