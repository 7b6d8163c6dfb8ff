"""Episode logic on frame scores: hysteresis, the hold that keeps a sparse fault one episode, the
contract's labels when two models run, and the learnt model's start/stop gate."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edge_inspector.inspectors.level_gate import LevelGate
from edge_inspector.inspectors.episodes import EpisodeTracker, Smoother, Track

LABELS = ("normal", "bearing", "knock", "squeal")


def tracker(kinds: tuple[str, ...] = ("anomaly",), hold: int = 200) -> EpisodeTracker:
    tracks = [Track(k, 0.5, 0.3, Smoother(1)) for k in kinds]
    return EpisodeTracker(tracks, LABELS, warmup=0, hold=hold, min_frames=5, report_after=20, lag=0, name="m")


def run(t: EpisodeTracker, scores: dict[str, np.ndarray], probs: np.ndarray | None = None) -> list:
    n = len(next(iter(scores.values())))
    out = []
    for k in range(n):
        out += t.frame(k, {kind: float(v[k]) for kind, v in scores.items()}, None if probs is None else probs[k])
    return out + t.finish(n)


def knocks(gaps: list[int], n: int) -> np.ndarray:
    """Frame scores: a 10-frame burst at frame 100 and after each gap but the last, quiet between."""
    x = np.full(n, 0.05)
    at = 100
    for g in gaps:
        x[at : at + 10] = 0.9
        at += g
    return x


def test_sparse_knocks_within_the_hold_are_one_episode() -> None:
    got = run(tracker(), {"anomaly": knocks([60, 150, 90, 190, 120], 1200)})
    closing = [e for e in got if not e.ongoing]
    assert len(closing) == 1 and closing[0].label == "anomaly"
    assert closing[0].start_frame == 100 and closing[0].end_frame == 100 + 60 + 150 + 90 + 190 + 10  # the last knock ends it
    assert len([e for e in got if e.ongoing]) == 1 and got[0].id == closing[0].id  # announced early, once


def test_a_gap_longer_than_the_hold_starts_a_new_episode() -> None:
    got = [e for e in run(tracker(hold=100), {"anomaly": knocks([300, 300], 900)}) if not e.ongoing]
    assert [e.start_frame for e in got] == [100, 400]


def test_a_blip_shorter_than_the_minimum_is_dropped() -> None:
    x = np.full(400, 0.05)
    x[100:103] = 0.9
    t = tracker()
    assert run(t, {"anomaly": x}) == [] and t.stats["short_episodes"] == 1


def test_classifier_names_the_fault_else_anomaly() -> None:
    n = 600
    classifier = np.full(n, 0.05)
    classifier[300:400] = 0.95
    anomaly = np.full(n, 0.05)
    anomaly[100:200] = 0.9
    anomaly[300:400] = 0.9
    probs = np.tile([0.9, 0.05, 0.03, 0.02], (n, 1))
    probs[300:400] = [0.05, 0.05, 0.85, 0.05]
    got = [e for e in run(tracker(("classifier", "anomaly"), hold=50), {"classifier": classifier, "anomaly": anomaly}, probs)
           if not e.ongoing]
    assert [(e.start_frame, e.label) for e in got] == [(100, "anomaly"), (300, "knock")]
    assert all(e.anomaly_score is not None and e.anomaly_score >= 0.9 for e in got)


def test_level_gate_suspends_a_start_and_streams_like_the_whole() -> None:
    entry = SimpleNamespace(sample_rate=16000, hop_length=160, gate_db=3.0, gate_window_s=1.0, gate_hold_s=1.0)
    rng = np.random.default_rng(0)
    level = np.concatenate([np.full(300, -12.0), np.linspace(-12, -4, 200), np.full(600, -4.0)])
    mel = level[:, None] + 0.2 * rng.standard_normal((level.size, 64))
    mel[900:906] += 3.0  # a knock: a few loud frames do not move the averaged level enough
    whole = LevelGate(entry).push(mel)
    gate = LevelGate(entry)
    parts = np.concatenate([gate.push(mel[a : a + 37]) for a in range(0, level.size, 37)])
    assert np.array_equal(whole, parts)
    assert not whole[:300].any() and whole[450:500].all() and not whole[850:].any()
    silent = np.full((50, 64), np.log(1e-6))
    assert LevelGate(entry).push(silent).all()  # digital silence is never scored


def test_level_gate_keeps_faults_scored_and_holds_a_slow_start() -> None:
    """A fault in a few bands, even loud and sudden, is not a start (the level is the median over
    bands); a level under the learnt floor (a stopped machine, a slow start) is not scored."""
    entry = SimpleNamespace(sample_rate=16000, hop_length=160, gate_db=1.5, gate_window_s=0.3, gate_hold_s=1.5,
                            gate_floor_db=-8.0 * 10 / np.log(10))
    rng = np.random.default_rng(1)
    mel = -4.0 + 0.2 * rng.standard_normal((800, 64))
    mel[300:, 40:46] += 4.0  # a squeal sets in: six bands 17 dB up, and stays
    mel[500:503] += 3.0  # a knock over every band, three frames
    assert not LevelGate(entry).push(mel).any()
    start = np.concatenate([np.full(200, -14.0), np.linspace(-14.0, -4.0, 300), np.full(300, -4.0)])
    mel = start[:, None] + 0.2 * rng.standard_normal((start.size, 64))
    gated = LevelGate(entry).push(mel)
    assert gated[:200].all()  # stopped: under the floor (-8 in log-mel units)
    assert gated[200:420].all()  # ramping: still under the floor, then moving
    assert not gated[700:].any()  # running again, after the hold
