"""Microphones through the whole daemon: a real PulseAudio device, WAV files, ZeroMQ events."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io.wavfile

from audio_fixtures import PulseServer, pulse_server_fixture  # noqa: F401 - fixture
from conftest import ENGINES, DaemonConfig, Subscriber, epoch, journal_events, start_daemon

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")


def fault_clip(seed: int, label: str, start_s: float, end_s: float, duration_s: float = 10.0) -> Any:
    from edge_inspector.synthetic.machines import make_clip

    return make_clip(np.random.default_rng(seed), duration_s=duration_s, label=label, snr_db=3.0,
                     rotation_hz=25.0, fault_start_s=start_s, fault_end_s=end_s)


def fault_window(event: dict, started: tuple[float, float], fault_s: float) -> tuple[float, float]:
    """Where in the daemon's stream (offsets, as ``event``'s) a fault ``fault_s`` into a clip
    that began within ``started`` (wall times) lies: earliest and latest."""
    stream_start = epoch(event["ts"]) - event["offset_s"]
    earliest, latest = (t - stream_start + fault_s for t in started)
    return earliest, latest


def play_to_daemon(pulse_server: PulseServer, cfg: DaemonConfig, mic: str, wav: Path,
                   quiet_after_s: float) -> tuple[Subscriber, tuple[float, float]]:
    """Start the daemon on ``cfg``, wait until ``mic`` delivers, play ``wav`` into the null sink,
    wait for a closing episode (and ``quiet_after_s`` more), stop it with SIGTERM (exit 0).
    Returns the subscriber (closed, events kept) and the window in which the sound began
    (``Playback.start_window``: one instant on an idle machine, wider on a busy one)."""
    sub = Subscriber(cfg.endpoint)
    daemon = start_daemon(cfg.path, env=pulse_server.env)
    try:
        assert sub.wait_for(lambda ev: len([t for t, _ in ev if t == f"verdict.{mic}"]) >= 2, timeout=40), \
            daemon.stderr.read() if daemon.poll() is not None else "no window verdicts"
        player = pulse_server.play(wav)
        started = player.start_window()
        assert player.wait(30) == 0 and player.gaps == 0, f"the sound played was not the file: {player.report()}"
        ok = sub.wait_for(lambda ev: any(t == f"defect.acoustic.{mic}" and not e["extra"]["ongoing"] for t, e in ev),
                          timeout=10)
        time.sleep(quiet_after_s)  # after the sound stopped nothing may be reported either
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
    finally:
        daemon.kill()
        sub.close()
    assert ok, f"no closing acoustic defect event; got {[t for t, _ in sub.events]}"
    assert daemon.returncode == 0
    return sub, started


@pytest.mark.slow
def test_pulse_device_fault_is_published_at_the_right_offset(pulse_server: PulseServer, tmp_path: Path) -> None:
    clip = fault_clip(41, "bearing", 4.0, 7.0)
    stereo = np.repeat(clip.samples[:, None], 2, axis=1)
    wav = tmp_path / "line.wav"
    scipy.io.wavfile.write(wav, 16000, (np.clip(stereo, -1, 1) * 32767).astype(np.int16))
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "gearbox", "uri": "pulse"}],
                       publisher={"publish_verdicts": True})
    sub, started = play_to_daemon(pulse_server, cfg, "gearbox", wav, quiet_after_s=3.0)
    events = sub.topics("defect.acoustic.gearbox")
    summary = [(e["label"], e["offset_s"], e["duration_s"], e["score"], e["extra"]["ongoing"]) for e in events]
    # one fault = one episode (an early "ongoing" report and its closing event share the id)
    assert len({e["extra"]["episode"] for e in events}) == 1, (summary, started)
    closing = [e for e in events if not e["extra"]["ongoing"]]
    assert len(closing) == 1, summary
    event = closing[0]
    assert event["label"] == "bearing" and event["kind"] == "acoustic"
    assert all(e["label"] == "bearing" and e["offset_s"] == event["offset_s"] for e in events), summary
    # the classifier waits ~0.3 s for evidence (it ignores transients)
    earliest, latest = fault_window(event, started, 4.0)
    assert earliest - 0.75 <= event["offset_s"] <= latest + 0.75, (event, earliest, latest)
    assert 2.0 <= event["duration_s"] <= 4.0, event


def test_wav_file_microphone_matches_offline_inspect(tmp_path: Path) -> None:
    """The daemon's streaming path and `inspect` agree on the same clip."""
    from edge_inspector.cli import main

    clip = fault_clip(42, "squeal", 3.0, 6.0, duration_s=9.0)
    wav = tmp_path / "clip.wav"
    scipy.io.wavfile.write(wav, 16000, (clip.samples * 32767).astype(np.int16))
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "m", "uri": f"file://{wav}", "realtime": False}])
    daemon = start_daemon(cfg.path)
    _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-2000:]
    # the journal, not a subscriber: a file read faster than its clock may be done before a SUB socket
    # has (re)connected to the freshly bound PUB, and PUB drops what no subscriber is connected for
    episodes = [e for t, e in journal_events(cfg.journal)
                if t.startswith("defect.acoustic.m") and not e["extra"]["ongoing"]]
    assert [e["label"] for e in episodes] == ["squeal"], episodes
    assert abs(episodes[0]["offset_s"] - 3.0) <= 0.5

    out = tmp_path / "inspect.jsonl"
    with open(out, "w") as fh:
        import contextlib

        with contextlib.redirect_stdout(fh):
            assert main(["inspect", str(wav)]) == 0
    offline = json.loads(out.read_text())
    assert offline["label"] == "squeal" and offline["kind"] == "acoustic"
    assert episodes[0]["score"] >= offline["score"] - 0.05  # the episode peak is at least the clip score
