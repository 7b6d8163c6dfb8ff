"""The acoustic inspector thread: episodes, hysteresis, resets, parity with ``inspect``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from scipy.signal import resample_poly

from edge_inspector.features import load_wav
from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.inspectors.acoustic import AcousticInspector
from edge_inspector.values import Verdict
from edge_inspector.manifest import load_manifest
from edge_inspector.inspectors.factory import engine_opener, open_acoustic
from edge_inspector.sources.base import BoundedQueue, Chunk
from edge_inspector.synthetic.machines import make_clip

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0  # capture time of the first sample


@pytest.fixture(scope="module")
def shipped():
    manifest = load_manifest(ROOT / "engines")
    assert manifest.classifier("acoustic") is not None
    (loaded,) = open_acoustic(manifest, engine_opener("onnxruntime"))
    return loaded.engine, loaded.entry


# The classifier learnt to let neighbours' knocks and valve puffs pass, so it waits for a little
# more evidence of a fault (about 0.3 s) than the smoothing lag the episode start is dated back by.
ONSET_TOLERANCE_S = 0.75

def chunks_of(name: str, samples: np.ndarray, chunk_s: float = 0.1, start_s: float = 0.0) -> list[Chunk]:
    n = int(chunk_s * 16000)
    return [
        Chunk(name, start_s + a / 16000, T0 + start_s + a / 16000, 50.0 + start_s + a / 16000, samples[a : a + n], 16000)
        for a in range(0, samples.size, n)
    ]


def run(shipped, streams: dict[str, list[Chunk]], **kw) -> tuple[list[Verdict], AcousticInspector]:
    """Feed each microphone's chunks from its own producer thread through 'block' queues."""
    engine, model = shipped
    queues = {name: BoundedQueue[Chunk](4, "block") for name in streams}
    verdicts: list[Verdict] = []
    inspector = AcousticInspector(engine, model, queues, verdicts.append, **kw)
    inspector.start()

    def produce(name: str) -> None:
        for chunk in streams[name]:
            queues[name].put(chunk)
        queues[name].close()

    producers = [threading.Thread(target=produce, args=(n,)) for n in streams]
    for p in producers:
        p.start()
    for p in producers:
        p.join(30)
    inspector.join(30)
    assert not inspector.is_alive() and inspector.error is None
    return verdicts, inspector


def closing(verdicts: list[Verdict]) -> list[Verdict]:
    """The one-per-episode closing verdicts (early "ongoing" reports left out)."""
    return [v for v in verdicts if not v.extra["ongoing"]]


@pytest.mark.parametrize("label", ["bearing", "knock", "squeal"])
def test_one_verdict_per_fault_episode(shipped, label: str) -> None:
    clip = make_clip(np.random.default_rng(40), 10.0, label=label, snr_db=3.0, fault_start_s=3.0, fault_end_s=6.0)
    everything, inspector = run(shipped, {"mic0": chunks_of("mic0", clip.samples)})
    verdicts = closing(everything)
    assert len(verdicts) == 1, [(v.label, v.offset_s, v.duration_s) for v in everything]
    assert {v.extra["episode"] for v in everything} == {verdicts[0].extra["episode"]}
    v = verdicts[0]
    assert (v.source, v.kind, v.label, v.defect) == ("mic0", "acoustic", label, True)
    assert abs(v.offset_s - 3.0) <= 0.5
    assert 2.0 <= v.duration_s <= 4.0
    assert v.ts == pytest.approx(T0 + v.offset_s, abs=1e-3) and v.mono == pytest.approx(50.0 + v.offset_s, abs=1e-3)
    _, model = shipped
    assert model.onset <= v.score <= 1.0 and v.model_sha256 == model.sha256
    assert inspector.stats.chunks == 100 and inspector.stats.audio_s == pytest.approx(10.0)
    assert inspector.stats.frames == 998 and inspector.stats.infer_ms_total > 0


def test_normal_machine_gives_no_verdict(shipped) -> None:
    streams = {f"mic{i}": chunks_of(f"mic{i}", make_clip(np.random.default_rng(50 + i), 10.0, label="normal").samples) for i in range(3)}
    verdicts, inspector = run(shipped, streams)
    assert verdicts == []
    assert inspector.stats.chunks == 300


def test_microphones_keep_separate_state(shipped) -> None:
    fault = make_clip(np.random.default_rng(60), 8.0, label="squeal", snr_db=6.0, fault_start_s=2.0, fault_end_s=5.0)
    normal = make_clip(np.random.default_rng(61), 8.0, label="normal")
    verdicts, inspector = run(shipped, {"a": chunks_of("a", fault.samples), "b": chunks_of("b", normal.samples)},
                              keep_frame_probs=True)
    assert [(v.source, v.label) for v in closing(verdicts)] == [("a", "squeal")]
    engine, model = shipped
    alone = am.inspect_samples(am.AcousticStreamRunner(engine, model), normal.samples)
    assert np.abs(inspector.frame_probs("b") - alone).max() < 1e-5


def test_discontinuity_resets_state_and_closes_episode(shipped) -> None:
    engine, model = shipped
    a = make_clip(np.random.default_rng(70), 5.0, label="knock", snr_db=6.0, fault_start_s=2.0)  # fault to the end
    b = make_clip(np.random.default_rng(71), 4.0, label="normal")
    chunks = chunks_of("m", a.samples) + chunks_of("m", b.samples, start_s=100.0)
    chunks[50].discontinuity = True
    verdicts, inspector = run(shipped, {"m": chunks}, keep_frame_probs=True)
    assert inspector.stats.resets == 1
    verdicts = closing(verdicts)
    assert [v.label for v in verdicts] == ["knock"]  # the open episode was closed at the reset
    assert abs(verdicts[0].offset_s - 2.0) <= 0.5 and verdicts[0].duration_s <= 3.2
    after = am.inspect_samples(am.AcousticStreamRunner(engine, model), b.samples)
    probs = inspector.frame_probs("m")
    assert np.abs(probs[-after.shape[0] :] - after).max() < 1e-5  # b was scored from a fresh state
    # without the reset, b would be scored with the knock clip's state and its leftover samples
    glued = am.inspect_samples(am.AcousticStreamRunner(engine, model), np.concatenate([a.samples, b.samples]))
    assert glued.shape[0] != probs.shape[0] or np.abs(glued - probs).max() > 1e-4


def test_dropped_chunk_is_detected_as_a_gap(shipped) -> None:
    clip = make_clip(np.random.default_rng(80), 4.0, label="normal")
    chunks = chunks_of("m", clip.samples)
    del chunks[20]  # what a drop_oldest queue does under load
    _, inspector = run(shipped, {"m": chunks})
    assert inspector.stats.resets == 1


def test_inspector_matches_inspect_wav(shipped, tmp_path: Path) -> None:
    engine, model = shipped
    clip = make_clip(np.random.default_rng(90), 6.0, label="bearing", snr_db=0.0, fault_start_s=2.0, fault_end_s=4.5)
    scipy.io.wavfile.write(tmp_path / "c.wav", 16000, clip.samples)
    _, inspector = run(shipped, {"m": chunks_of("m", clip.samples)}, keep_frame_probs=True)
    probs = inspector.frame_probs("m")
    samples, _, _ = load_wav(tmp_path / "c.wav", 16000)
    offline = am.inspect_samples(am.AcousticStreamRunner(engine, model), samples)
    assert probs.shape == offline.shape and np.abs(am.anomaly_scores(probs) - am.anomaly_scores(offline)).max() < 1e-5
    result = am.inspect_wav(tmp_path / "c.wav", engine, model)
    score, label = am.clip_score(probs, model)
    assert (result["label"], result["score"]) == (label, pytest.approx(score, abs=1e-5))
    assert label == "bearing"


def test_48k_stereo_twin_gives_the_same_verdict(shipped, tmp_path: Path) -> None:
    engine, model = shipped
    for seed, label in ((100, "squeal"), (101, "normal"), (102, "bearing")):
        clip = make_clip(np.random.default_rng(seed), 4.0, label=label, snr_db=3.0)
        scipy.io.wavfile.write(tmp_path / "mono.wav", 16000, (clip.samples * 32767).astype(np.int16))
        up = resample_poly(clip.samples.astype(np.float64), 3, 1)
        stereo = np.stack([0.9 * up, 1.1 * up], axis=1)
        scipy.io.wavfile.write(tmp_path / "stereo.wav", 48000, (np.clip(stereo, -1, 1) * 32767).astype(np.int16))
        mono = am.inspect_wav(tmp_path / "mono.wav", engine, model)
        twin = am.inspect_wav(tmp_path / "stereo.wav", engine, model)
        assert twin["sample_rate"] == 48000 and twin["duration_s"] == pytest.approx(4.0)
        assert twin["label"] == mono["label"] == label
        assert abs(twin["score"] - mono["score"]) < 0.05


def test_periodic_window_verdicts(shipped) -> None:
    clip = make_clip(np.random.default_rng(110), 6.0, label="squeal", snr_db=6.0, fault_start_s=3.0, fault_end_s=6.0)
    windows: list[Verdict] = []
    verdicts, _ = run(shipped, {"m": chunks_of("m", clip.samples)}, verdict_every_s=1.0, on_window=windows.append)
    assert [v.label for v in closing(verdicts)] == ["squeal"]
    assert [round(w.offset_s) for w in windows] == [0, 1, 2, 3, 4, 5]
    assert [w.label for w in windows[:3]] == ["normal"] * 3 and [w.label for w in windows[4:]] == ["squeal"] * 2
    assert all(w.extra["window"] for w in windows)


def test_overrides_and_stop_drains(shipped) -> None:
    engine, model = shipped
    with pytest.raises(ValueError, match="offset"):
        AcousticInspector(engine, model, {"m": BoundedQueue(4, "block")}, print, overrides={"m": {"onset": 0.3, "offset": 0.6}})
    clip = make_clip(np.random.default_rng(120), 5.0, label="knock", snr_db=6.0, fault_start_s=3.0)
    queue: BoundedQueue[Chunk] = BoundedQueue(100, "block")
    for chunk in chunks_of("m", clip.samples):
        queue.put(chunk)  # queue left open: the source is still "live"
    verdicts: list[Verdict] = []
    inspector = AcousticInspector(engine, model, {"m": queue}, verdicts.append, overrides={"m": {"onset": 0.9, "offset": 0.5}})
    track = inspector.mics["m"].episodes.tracks[0]
    assert (track.onset, track.offset) == (0.9, 0.5)
    inspector.start()
    inspector.stop()
    inspector.join(10)
    assert not inspector.is_alive() and inspector.stats.chunks == 50
    assert [v.label for v in verdicts] == ["knock"]  # open at the stop: closed and emitted


def test_demo_machine_stream_faults_are_reported(shipped) -> None:
    """The daemon's synthetic microphone: episodes appear with faults on, none with faults off."""
    engine, model = shipped
    from edge_inspector.synthetic.machines import machine_stream

    counts = {}
    for rate in (0.0, 0.3):
        found: list[Verdict] = []
        inspector = AcousticInspector(engine, model, {"m": BoundedQueue(1, "block")}, found.append)
        stream = machine_stream(1, block_s=0.1, fault_rate=rate)
        for i in range(600):  # 60 s
            inspector.process(Chunk("m", i * 0.1, T0 + i * 0.1, i * 0.1, next(stream), 16000))
        inspector.finish()
        counts[rate] = len(closing(found))
        assert all(v.offset_s >= 3.0 for v in found)  # the stream's first 3 s are always normal
    assert counts[0.0] == 0 and counts[0.3] >= 2, counts


def stream_verdicts(shipped, samples: np.ndarray, **kw) -> list[tuple[float, Verdict]]:
    """``(stream time when published, verdict)`` for ``samples`` fed synchronously in 0.1 s chunks."""
    engine, model = shipped
    out: list[tuple[float, Verdict]] = []
    now = [0.0]
    inspector = AcousticInspector(engine, model, {"m": BoundedQueue(1, "block")}, lambda v: out.append((now[0], v)), **kw)
    for c in chunks_of("m", samples):
        now[0] = c.offset_s + c.samples.size / 16000
        inspector.process(c)
    inspector.finish()
    return out


@pytest.mark.parametrize("report_after_s", [None, 1.0])
def test_persistent_fault_is_reported_while_it_lasts(shipped, report_after_s: float | None) -> None:
    """A long fault: one early "ongoing" verdict about report_after_s after onset, then ONE
    closing verdict for the same episode."""
    _, model = shipped
    after = model.report_after_s if report_after_s is None else report_after_s
    clip = make_clip(np.random.default_rng(90), 12.0, label="bearing", snr_db=3.0, fault_start_s=2.0, fault_end_s=10.0)
    got = stream_verdicts(shipped, clip.samples, report_after_s=report_after_s)
    assert [v.extra["ongoing"] for _, v in got] == [True, False], [(t, v.extra) for t, v in got]
    (t_early, early), (t_close, final) = got
    assert early.extra["episode"] == final.extra["episode"] == f"m-{round((early.offset_s - model.win_length / 32000) * 100)}"
    assert early.label == final.label == "bearing" and early.defect and final.defect
    assert abs(early.offset_s - 2.0) <= 0.5 and early.offset_s == final.offset_s
    # published within report_after_s (+ smoothing and the 0.1 s chunk) of the fault's onset
    assert t_early <= 2.0 + after + model.smoothing_s + 0.5, t_early
    assert early.duration_s == pytest.approx(after, abs=0.25)
    assert early.score <= final.score and 7.0 <= final.duration_s <= 9.0
    assert t_close >= 10.0


def test_short_fault_gives_only_the_closing_verdict(shipped) -> None:
    _, model = shipped
    clip = make_clip(np.random.default_rng(91), 8.0, label="squeal", snr_db=6.0, fault_start_s=3.0, fault_end_s=4.2)
    got = stream_verdicts(shipped, clip.samples)
    assert [(v.label, v.extra["ongoing"]) for _, v in got] == [("squeal", False)]
    assert got[0][1].duration_s < model.report_after_s


def test_silence_machine_start_and_stop_give_no_episode(shipped) -> None:
    """Digital silence, a machine starting abruptly, a fault, an abrupt stop, silence again
    (what a microphone on a sound server hears; the server's resampler rolls off the top band)."""
    from scipy.signal import butter, sosfilt

    clip = make_clip(np.random.default_rng(41), 10.0, label="bearing", snr_db=3.0, rotation_hz=25.0,
                     fault_start_s=4.0, fault_end_s=7.0)
    heard = sosfilt(butter(4, 7200, fs=16000, output="sos"), clip.samples).astype(np.float32)
    lead = 2.24
    audio = np.concatenate([np.zeros(int(lead * 16000), np.float32), heard, np.zeros(5 * 16000, np.float32)])
    got = [v for _, v in stream_verdicts(shipped, audio)]
    assert len({v.extra["episode"] for v in got}) == 1, [(v.label, v.offset_s, v.duration_s) for v in got]
    final = closing(got)[0]
    assert final.label == "bearing" and abs(final.offset_s - (lead + 4.0)) <= ONSET_TOLERANCE_S and 2.0 <= final.duration_s <= 4.0
