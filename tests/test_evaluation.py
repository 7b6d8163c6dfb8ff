"""Evaluation: labels CSV, metrics, and the HTML report from a real replay (opened in Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ENGINES, ROOT, DaemonConfig, write_video
from edge_inspector.errors import InputError
from edge_inspector.evaluation.labels import Interval, load_labels
from edge_inspector.evaluation.metrics import Confusion, match_episodes, percentiles

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_labels_csv_frames_ranges_intervals(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("source,frame|start_s,end_s,label\n# comment\ncam0,3,,scratch\ncam0,10-12,,spot\n\nmic0,1.5,2.25,knock\n")
    labels = load_labels(path, {"cam0"}, {"mic0"})
    assert labels.visual == {"cam0": {3: "scratch", 10: "spot", 11: "spot", 12: "spot"}}
    assert labels.frame_label("cam0", 4) == "ok" and labels.frame_label("cam0", 11) == "spot"
    assert labels.acoustic == {"mic0": [Interval(1.5, 2.25, "knock")]}


@pytest.mark.parametrize("body, message", [
    ("frame,label\n", "expected the header row"),
    ("source,frame|start_s,end_s,label\ncam9,1,,spot\n", ":2: unknown source 'cam9'"),
    ("source,frame|start_s,end_s,label\ncam0,1,2,spot\n", ":2: visual rows leave end_s empty"),
    ("source,frame|start_s,end_s,label\nmic0,2.0,1.0,knock\n", ":2: need 0 <= start_s < end_s"),
    ("source,frame|start_s,end_s,label\ncam0,5-2,,spot\n", ":2: bad frame or range"),
    ("source,frame|start_s,end_s,label\ncam0,1,spot\n", ":2: expected 4 columns"),
])
def test_labels_csv_errors_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=message.replace("|", r"\|")):
        load_labels(path, {"cam0"}, {"mic0"})


def test_confusion_metrics_by_hand() -> None:
    c = Confusion(["ok", "scratch", "spot"])
    for truth, pred, n in (("ok", "ok", 8), ("ok", "spot", 2), ("scratch", "scratch", 3), ("scratch", "ok", 1), ("spot", "spot", 4)):
        c.add(truth, pred, n)
    assert c.matrix() == [[8, 0, 2], [1, 3, 0], [0, 0, 4]]
    m = c.per_class()
    assert m["ok"]["precision"] == pytest.approx(8 / 9) and m["ok"]["recall"] == pytest.approx(0.8)
    assert m["spot"]["precision"] == pytest.approx(4 / 6) and m["spot"]["recall"] == 1.0
    assert m["spot"]["f1"] == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    assert c.accuracy() == pytest.approx(15 / 18)
    assert percentiles([1.0, 2.0, 3.0, 4.0])["p50"] == 2.5 and percentiles([])["p50"] is None


def test_acoustic_episode_matching() -> None:
    intervals = [Interval(1.0, 2.0, "knock"), Interval(5.0, 6.0, "bearing")]
    episodes = [{"offset_s": 1.2, "duration_s": 0.5, "label": "knock", "score": 0.9},
                {"offset_s": 8.0, "duration_s": 0.4, "label": "squeal", "score": 0.7}]
    confusion, rows = match_episodes(intervals, episodes)
    assert confusion.counts == {("knock", "knock"): 1, ("bearing", "normal"): 1, ("normal", "squeal"): 1}
    assert [r["predicted"] for r in rows] == ["knock", "normal", "squeal"]


@pytest.mark.slow
@pytest.mark.skipif(not (ENGINES / "manifest.toml").is_file(), reason="engines/manifest.toml not built yet")
def test_report_of_a_clip_with_known_defects(tmp_path: Path, surfaces: Any) -> None:
    truth = ["ok"] * 12 + ["scratch", "crack", "spot", "dent"] * 3
    frames = [surfaces(500 + i, label).image for i, label in enumerate(truth)]
    clip = write_video(tmp_path / "cam7.mp4", frames, fps=10)
    labels = tmp_path / "labels.csv"
    labels.write_text("source,frame|start_s,end_s,label\n"
                      + "".join(f"cam7,{i},,{label}\n" for i, label in enumerate(truth) if label != "ok"))
    cfg = DaemonConfig(tmp_path, publisher={"publish_verdicts": True})
    report, events = tmp_path / "out" / "eval.html", tmp_path / "events.jsonl"
    report.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "replay", str(clip), "--config", str(cfg.path),
                           "--labels", str(labels), "--report", str(report), "--events", str(events)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "precision" in proc.stdout and "false rejects" in proc.stdout  # summary on the terminal
    figures = json.loads((report.parent / "eval.json").read_text())["visual"]
    classes, matrix = figures["classes"], figures["confusion"]
    assert sum(map(sum, matrix)) == figures["frames"] == len(truth)
    expected = [[0] * len(classes) for _ in classes]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    verdicts = [e["event"] for e in lines if e["topic"] == "verdict.cam7"]
    assert sorted(v["frame"] for v in verdicts) == list(range(len(truth)))
    for v in verdicts:
        predicted = v["label"] if v["defect"] else "ok"
        expected[classes.index(truth[v["frame"]])][classes.index(predicted)] += 1
    assert matrix == expected
    assert figures["accuracy"] >= 0.75 and figures["good_vs_defective"]["accuracy"] >= 0.85
    fr, miss = figures["good_vs_defective"]["false_rejects"], figures["good_vs_defective"]["misses"]
    html = report.read_text()
    assert html.count("data:image/png;base64,") == fr + miss and "<svg" in html and "threshold" in html
    assert figures["latency_ms"]["p50"] is not None
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (setup.sh --dev installs it): cannot render the report")
    shot = tmp_path / "report.png"
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chrome'}", f"--screenshot={shot}", "--window-size=1280,2000",
                          "--enable-logging=stderr", "--v=0", report.as_uri()],
                         capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)})
    assert run.returncode == 0 and shot.stat().st_size > 20_000, run.stderr[-2000:]
    assert "CONSOLE(" not in run.stderr and "Uncaught" not in run.stderr  # no page errors
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
