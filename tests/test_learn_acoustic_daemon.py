"""Learn a machine through a real microphone path, then run the daemon on what was learnt.

A private PulseAudio null sink is the microphone: `record` captures the healthy machine played
with `paplay`, `learn acoustic` learns from that recording directory, and `run` with the learnt
directory (and the shipped classifier beside it) hears a healthy stretch and then a fault: one
event, at the right time, nothing over the healthy part.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import PulseServer, pulse_server_fixture  # noqa: F401 - fixture
from conftest import DaemonConfig
from test_acoustic_daemon import fault_window, play_to_daemon
from test_learn_acoustic import SR, machine, run_cli, with_fault, write

pytestmark = pytest.mark.slow


def test_record_learn_run_on_a_pulse_device(pulse_server: PulseServer, tmp_path: Path) -> None:
    audio = machine(52.0, seed=12)
    learn_wav = write(tmp_path / "healthy.wav", audio[: 36 * SR])
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "press", "uri": "pulse"}], publisher={"publish_verdicts": True})
    rec = tmp_path / "rec"
    recorder = subprocess.Popen([sys.executable, "-m", "edge_inspector.cli", "record", "--out", str(rec), "--config",
                                 str(cfg.path), "--duration", "38"], env=pulse_server._env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    player = pulse_server.play(learn_wav)
    player.wait(60)
    _, err = recorder.communicate(timeout=60)
    assert recorder.returncode == 0, err[-2000:]

    learnt = tmp_path / "learnt"
    code, out, err = run_cli("learn", "acoustic", str(rec), "--out", str(learnt))
    assert code == 0, err

    run_cfg = DaemonConfig(tmp_path, microphones=[{"name": "press", "uri": "pulse"}],
                           publisher={"publish_verdicts": True}, runtime={"engines_dir": str(learnt)})
    line = write(tmp_path / "line.wav", with_fault(audio[40 * SR :], 6.0, 10.0, snr_db=6.0, label="squeal"))
    sub, started = play_to_daemon(pulse_server, run_cfg, "press", line, quiet_after_s=2.5)
    events = sub.topics("defect.acoustic.press")
    summary = [(e["label"], e["offset_s"], e["duration_s"], e.get("anomaly_score"), e["extra"]["ongoing"]) for e in events]
    closing = [e for e in events if not e["extra"]["ongoing"]]
    assert len(closing) == 1 and len({e["extra"]["episode"] for e in events}) == 1, summary
    event = closing[0]
    assert event["label"] in ("squeal", "anomaly") and "anomaly_score" in event, summary
    earliest, latest = fault_window(event, started, 6.0)
    assert earliest - 0.7 <= event["offset_s"] <= latest + 0.7, (summary, earliest, latest)
    windows = [e for e in sub.topics("verdict.press") if e["offset_s"] < earliest - 1.0]
    assert windows and all("anomaly_score" in e for e in windows)
