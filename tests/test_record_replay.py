"""record and replay with real sources, ffmpeg, OpenCV, ONNX Runtime, ZeroMQ and SQLite."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io.wavfile

from conftest import ENGINES, ROOT, DaemonConfig, write_video

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").is_file(), reason="engines/manifest.toml not built yet")


def _has_acoustic() -> bool:
    from edge_inspector.tomlcompat import tomllib

    try:
        import edge_inspector.inspectors.acoustic  # noqa: F401
        import edge_inspector.sources.microphone  # noqa: F401
    except ImportError:
        return False
    return "acoustic" in tomllib.loads((ENGINES / "manifest.toml").read_text())


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_inspector.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(lines: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """Per-topic sequences of the fields two max-speed replays must agree on."""
    from edge_inspector.replay import comparable as key

    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for line in lines:
        if line["topic"] != "heartbeat":
            out[line["topic"]].append(key(line["event"]))
    return dict(out)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rec")
    mics = [{"name": "mic0", "uri": "synthetic://machine?seed=4&fault_rate=0.3"}] if _has_acoustic() else []
    cfg = DaemonConfig(tmp, cameras=[{"name": "cam0", "uri": "synthetic://surface?fps=20&seed=5"}], microphones=mics)
    proc = cli("record", "--out", str(tmp / "rec"), "--config", str(cfg.path), "--duration", "2")
    assert proc.returncode == 0, proc.stderr
    return tmp / "rec"


def replay_config(tmp: Path, name: str) -> Path:
    d = tmp / name
    d.mkdir()
    return DaemonConfig(d, publisher={"publish_verdicts": True}).path


@pytest.mark.slow
def test_record_then_replay_twice_gives_identical_events(recording: Path, tmp_path: Path) -> None:
    manifest = json.loads((recording / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stopped_by"] == "duration"
    assert manifest["versions"]["edge-inspector"] and manifest["models"]["visual"]["sha256"]
    frames = manifest["cameras"]["cam0"]["frames"]
    rows = (recording / "cam0.timestamps.csv").read_text().splitlines()
    assert rows[0] == "index,ts,mono" and len(rows) - 1 == frames and frames >= 5
    # the duration is kept (a loaded machine may generate fewer than the nominal 40 frames, never later ones)
    monos = [float(r.split(",")[2]) for r in rows[1:]]
    assert monos[-1] - monos[0] <= 2.5 and frames <= 45
    runs = []
    for i in range(2):
        events = tmp_path / f"events{i}.jsonl"
        proc = cli("replay", str(recording), "--config", str(replay_config(tmp_path, f"c{i}")), "--speed", "max",
                   "--events", str(events))
        assert proc.returncode == 0, proc.stderr
        runs.append(read_events(events))
    first, second = comparable(runs[0]), comparable(runs[1])
    assert first == second
    verdicts = [e["event"] for e in runs[0] if e["topic"] == "verdict.cam0"]
    assert [v["frame"] for v in verdicts] == list(range(frames))
    recorded_ts = [float(r.split(",")[1]) for r in rows[1:]]
    from edge_inspector.events.schema import iso_utc

    assert [v["ts"] for v in verdicts] == [iso_utc(t) for t in recorded_ts]  # original capture times
    if "mic0" in manifest["microphones"]:
        assert any(t.startswith("status.mic0") for t in first)


def test_record_stopped_by_sigterm_leaves_valid_files(tmp_path: Path) -> None:
    mics = [{"name": "mic0", "uri": "synthetic://machine?seed=1"}]
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam0", "uri": "synthetic://surface?fps=20&seed=2"}], microphones=mics)
    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspector.cli", "record", "--out", str(out), "--config",
                             str(cfg.path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    csv = out / "cam0.timestamps.csv"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not csv.exists() or len(csv.read_text().splitlines()) < 15):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stopped_by"] == "SIGTERM"
    frames = manifest["cameras"]["cam0"]["frames"]
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames,codec_name", "-of", "json", str(out / "cam0.mkv")],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "mjpeg" and int(stream["nb_read_frames"]) == frames >= 14
    assert len(csv.read_text().splitlines()) - 1 == frames
    rate, audio = scipy.io.wavfile.read(out / "mic0.wav")
    assert rate == manifest["microphones"]["mic0"]["sample_rate"] and audio.dtype == np.int16
    assert len(audio) == manifest["microphones"]["mic0"]["samples"] > rate // 2


def test_record_disk_full_names_the_file(tmp_path: Path) -> None:
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam0", "uri": "synthetic://surface?fps=20"}])
    out = tmp_path / "rec"
    out.mkdir()
    (out / "cam0.mkv").symlink_to("/dev/full")  # every write fails with ENOSPC, like a full disk
    proc = cli("record", "--out", str(out), "--config", str(cfg.path), "--duration", "3")
    assert proc.returncode == 1
    assert "disk full" in proc.stderr and "cam0.mkv" in proc.stderr and "Traceback" not in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and "disk full" in manifest["errors"][0]
    assert (out / "cam0.timestamps.csv").read_text().startswith("index,ts,mono")


@pytest.mark.slow
def test_truncated_video_replays_the_valid_part_then_fails(recording: Path, tmp_path: Path) -> None:
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(recording, cut)
    video = cut / "cam0.mkv"
    with open(video, "r+b") as fh:
        fh.truncate(video.stat().st_size // 2)
    events = tmp_path / "events.jsonl"
    proc = cli("replay", str(cut), "--config", str(replay_config(tmp_path, "c")), "--events", str(events))
    assert proc.returncode == 1
    total = json.loads((cut / "manifest.json").read_text())["cameras"]["cam0"]["frames"]
    frames = [e["event"]["frame"] for e in read_events(events) if e["topic"] == "verdict.cam0"]
    assert frames == list(range(len(frames))) and total // 3 <= len(frames) < total
    assert f"cam0.mkv: truncated or corrupt at frame {len(frames)}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plain_video_file_is_replayed_under_its_stem(tmp_path: Path, surfaces: Any) -> None:
    clip = write_video(tmp_path / "line-3.mp4", [surfaces(i, "ok").image for i in range(6)], fps=10)
    events = tmp_path / "events.jsonl"
    proc = cli("replay", str(clip), "--config", str(replay_config(tmp_path, "c")), "--events", str(events))
    assert proc.returncode == 0, proc.stderr
    frames = [e["event"]["frame"] for e in read_events(events) if e["topic"] == "verdict.line-3"]
    assert frames == list(range(6))


def test_wav_header_checks_and_repair(tmp_path: Path) -> None:
    from edge_inspector.sources.recording_files import WavCheck, wav_header

    audio = (np.sin(np.arange(16000) / 5.0) * 10000).astype("<i2").tobytes()
    stale = tmp_path / "stale.wav"
    stale.write_bytes(wav_header(16000, 8000) + audio)  # header rewritten last after 4000 samples
    check = WavCheck(stale)
    assert check.stale and not check.truncated
    fixed = check.repaired_copy(tmp_path / "out" if (tmp_path / "out").mkdir() is None else tmp_path)
    rate, data = scipy.io.wavfile.read(fixed)
    assert rate == 16000 and len(data) == 16000
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav_header(16000, len(audio)) + audio[: len(audio) // 2 + 1])
    check = WavCheck(cut)
    assert check.truncated and check.available == len(audio) // 2
    good = tmp_path / "good.wav"
    good.write_bytes(wav_header(16000, len(audio)) + audio + b"LIST" + struct.pack("<I", 4) + b"INFO")
    assert not WavCheck(good).stale and not WavCheck(good).truncated
