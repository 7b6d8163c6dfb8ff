"""What an operator meets first: honest latencies in replays, pictures from `inspect`, quiet
`check-config`, logs journald understands, and a daemon that says which backend it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io.wavfile

from conftest import ENGINES, ROOT, DaemonConfig, write_video
from edge_inspector.manifest import load_manifest

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")


def cli(*args: str, env: dict[str, str] | None = None, stderr: object = subprocess.PIPE,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_inspector.cli", *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=stderr, timeout=timeout, env={**os.environ, **(env or {})})


def squeal_wav(path: Path, start_s: float = 3.0, end_s: float = 6.0, duration_s: float = 8.0) -> Path:
    from edge_inspector.synthetic.machines import make_clip

    clip = make_clip(np.random.default_rng(42), duration_s=duration_s, label="squeal", snr_db=3.0, rotation_hz=25.0,
                     fault_start_s=start_s, fault_end_s=end_s)
    scipy.io.wavfile.write(path, 16000, (clip.samples * 32767).astype(np.int16))
    return path


@pytest.mark.slow
def test_max_speed_replay_reports_latencies_that_mean_something(tmp_path: Path, surfaces: object) -> None:
    """At --speed max the audio is read faster than its clock: latency from the recording's own
    timing (not the wall clock, which once gave -6414 ms); frames count from leaving the queue."""
    wav = squeal_wav(tmp_path / "gear.wav")
    frames = [surfaces(800 + i, "scratch" if i % 4 == 1 else "ok", "metal").image for i in range(12)]  # type: ignore[operator]
    video = write_video(tmp_path / "belt.mp4", frames, fps=10)
    labels = tmp_path / "truth.csv"
    labels.write_text("source,frame|start_s,end_s,label\ngear,3.0,6.0,squeal\n"
                      + "".join(f"belt,{i},,scratch\n" for i in range(12) if i % 4 == 1))
    report = tmp_path / "eval.html"
    cfg = DaemonConfig(tmp_path)  # free ports: never the default ones another daemon may hold
    run = cli("replay", str(video), str(wav), "--config", str(cfg.path), "--speed", "max", "--labels", str(labels),
              "--report", str(report))
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads((tmp_path / "eval.json").read_text())
    acoustic, visual = figures["acoustic"]["latency_ms"], figures["visual"]["latency_ms"]
    assert acoustic["count"] >= 1 and acoustic["min"] >= 0.0, acoustic
    # the early "ongoing" report comes 2 s into the fault; the closing one after it ends (3 s long) and the
    # shipped model's hold_s has passed without the fault coming back, plus at most one second of windows
    hold_ms = 1000.0 * load_manifest(ENGINES).acoustic[0].hold_s
    assert 1500.0 <= acoustic["min"] and acoustic["max"] <= 3000.0 + hold_ms + 1000.0, acoustic
    assert "audio time" in figures["acoustic"]["latency_measure"]
    assert visual["min"] >= 0.0 and "processing" in figures["visual"]["latency_measure"]
    assert "reported after onset" in run.stdout and "processing" in run.stdout  # the terminal says which
    assert "processing" in report.read_text()


def test_inspect_overlay_writes_a_picture_per_input(tmp_path: Path, surfaces: object) -> None:
    image = surfaces(321, "spot", "painted").image  # type: ignore[operator]
    cv2.imwrite(str(tmp_path / "part.png"), image)
    (tmp_path / "again").mkdir()
    cv2.imwrite(str(tmp_path / "again" / "part.png"), image[:, ::-1])
    wav = squeal_wav(tmp_path / "gear.wav", 1.0, 2.5, 3.0)
    out = tmp_path / "pictures"
    run = cli("inspect", str(tmp_path / "part.png"), str(tmp_path / "again" / "part.png"), str(wav), "--overlay", str(out))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [Path(line["overlay"]).name for line in lines] == ["part.overlay.jpg", "part-2.overlay.jpg", "gear.spectrogram.png"]
    picture = cv2.imread(lines[0]["overlay"])
    assert picture.shape == image.shape and np.abs(picture.astype(int) - image).mean() > 3  # drawn on, same size
    x, y, w, h = lines[0]["bbox"]
    edge = picture[y + h // 2, max(0, x - 1) : x + 3].astype(int)
    assert (edge[:, 2] - edge[:, 1]).max() > 80, "a red box at the reported bbox"
    spectrogram = cv2.imread(lines[2]["overlay"])
    assert spectrogram.shape[1] == 960 and spectrogram.shape[0] > 300
    assert cli("inspect", str(tmp_path / "part.png"), "--overlay", str(tmp_path / "part.png")).returncode == 2


def test_check_config_with_a_pyaudio_microphone_prints_only_its_own_lines(tmp_path: Path) -> None:
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "m", "uri": "pyaudio:no such microphone"}])
    run = cli("check-config", str(cfg.path), "--no-bind")
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines and all(line.startswith("edge-inspector: ") for line in lines), run.stderr[:2000]
    assert any("microphone[0].uri" in line for line in lines)


@pytest.mark.slow
def test_under_systemd_log_lines_carry_journald_priorities_and_the_backend_choice(tmp_path: Path) -> None:
    wav = squeal_wav(tmp_path / "gear.wav", 1.0, 2.0, 3.0)
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "gear", "uri": f"file://{wav}", "realtime": False}],
                       runtime={"backend": "auto"})
    log_file = tmp_path / "stderr.log"
    with open(log_file, "w") as stderr:
        st = os.fstat(stderr.fileno())
        run = cli("run", "--config", str(cfg.path), stderr=stderr, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert run.returncode == 0
    lines = log_file.read_text().splitlines()
    assert lines and all(line[:3] in ("<6>", "<4>", "<3>", "<7>", "<2>") for line in lines), lines[:20]
    assert any(line.startswith("<6>INFO edge_inspector.service: runtime.backend = auto: using onnxruntime (")
               for line in lines), lines[:20]
    # not under systemd: the same daemon logs plain lines with their time
    run = cli("run", "--config", str(cfg.path), env={"JOURNAL_STREAM": "1:2"})
    assert run.returncode == 0 and not any(line.startswith("<") for line in run.stderr.splitlines())
    assert run.stderr.splitlines()[0][:2] == "20"


@pytest.mark.slow
def test_tail_reads_the_daemons_config_hides_heartbeats_and_marks_episodes(tmp_path: Path) -> None:
    """`tail --config` reaches a daemon bound on every interface with CURVE, using only its config."""
    import time

    from conftest import free_port, journal_events, start_daemon

    assert cli("keys", "new", "station", "--dir", str(tmp_path)).returncode == 0
    wav = squeal_wav(tmp_path / "press.wav", 1.0, 4.0, 6.0)
    pub, catchup = free_port(), free_port()
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "press", "uri": f"file://{wav}", "loop": True}],
                       publisher={"endpoint": f"tcp://*:{pub}", "catchup_endpoint": f"tcp://0.0.0.0:{catchup}",
                                  "curve_secret_key": str(tmp_path / "station.key_secret"), "curve_allowed_clients": "*"})
    daemon = start_daemon(cfg.path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                t.startswith("defect.acoustic.") and not e["extra"]["ongoing"] for t, e in
                (journal_events(cfg.journal) if cfg.journal.exists() else [])):
            assert daemon.poll() is None, daemon.communicate()[1][-2000:]
            time.sleep(0.3)
        people = cli("tail", "--config", str(cfg.path), "--since", "0", "--count", "3", timeout=60)
        with_beats = cli("tail", "--config", str(cfg.path), "--since", "0", "--count", "6", "--heartbeats", timeout=60)
        only_beats = cli("tail", "--config", str(cfg.path), "--topic", "heartbeat", "--count", "2", "--json", timeout=60)
    finally:
        daemon.terminate()
        _, log = daemon.communicate(timeout=30)
    # bound on every interface, any key pair let in: the daemon says so at start, for each endpoint
    for key, endpoint in (("publisher.endpoint", f"tcp://*:{pub}"),
                          ("publisher.catchup_endpoint", f"tcp://0.0.0.0:{catchup}")):
        assert any("WARNING" in line and f"{key}: {endpoint} lets any CURVE client in" in line
                   for line in log.splitlines()), log[-2000:]
    assert people.returncode == 0, people.stderr
    lines = people.stdout.splitlines()
    assert len(lines) == 3 and not any("heartbeat" in line for line in lines), lines
    assert "status.press" in lines[0] and "online" in lines[0]
    episode = lines[1].split("ONGOING episode ")[1].split()[0]
    assert "defect.acoustic.press" in lines[1] and "so far" in lines[1], lines[1]
    assert f"closed episode {episode}" in lines[2] and "so far" not in lines[2], lines[2]
    assert with_beats.returncode == 0 and any(" heartbeat " in line for line in with_beats.stdout.splitlines())
    beats = [json.loads(line) for line in only_beats.stdout.splitlines()]
    assert [b["topic"] for b in beats] == ["heartbeat", "heartbeat"], only_beats.stderr


def test_every_cli_option_has_help_that_shows_its_default() -> None:
    import argparse

    from edge_inspector.cli import build_parser

    def parsers(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
        found = [(name, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    found += parsers(sub, f"{name} {sub_name}")
        return found

    missing = []
    for name, parser in parsers(build_parser(), "edge-inspector"):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{label}: no help")
                continue
            flag = action.nargs == 0  # store_true: off unless given
            if action.option_strings and not flag and not action.required:
                helptext = " ".join(parser._get_formatter()._expand_help(action).split())  # type: ignore[attr-defined]
                if "default" not in helptext:
                    missing.append(f"{label}: help does not say its default")
                elif action.default not in (None, False) and str(action.default) not in helptext:
                    missing.append(f"{label}: help does not show {action.default!r}")
        assert "(default: None)" not in text, name
    assert not missing, missing
