"""Machine-sound synthesis, log-mel features, WAV loading, and the shipped acoustic GRU."""

from __future__ import annotations

import importlib.util

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from scipy.signal import resample_poly

from edge_inspector.errors import InputError
from edge_inspector.features import LogMelParams, LogMelStream, load_wav, logmel
from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.manifest import load_manifest
from edge_inspector.inspectors.factory import engine_opener, open_acoustic
from edge_inspector.synthetic.machines import LABELS, machine_stream, make_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped():
    manifest = load_manifest(ROOT / "engines")
    assert manifest.classifier("acoustic") is not None, "engines/manifest.toml has no acoustic model"
    (loaded,) = open_acoustic(manifest, engine_opener("onnxruntime"), max_batch=8)
    return loaded.engine, loaded.entry


# ----------------------------------------------------------------------------- synthesis
def test_make_clip_is_deterministic_and_labelled() -> None:
    a = make_clip(np.random.default_rng(5), 2.0, label="squeal", snr_db=3.0)
    b = make_clip(np.random.default_rng(5), 2.0, label="squeal", snr_db=3.0)
    assert np.array_equal(a.samples, b.samples)
    assert a.samples.dtype == np.float32 and a.samples.shape == (32000,)
    assert np.abs(a.samples).max() <= 1.0
    assert (a.label, a.sample_rate, a.snr_db) == ("squeal", 16000, 3.0)
    assert LABELS == ("normal", "bearing", "knock", "squeal")
    normal = make_clip(np.random.default_rng(5), 2.0, label="normal")
    assert normal.snr_db is None and normal.fault_start_s == normal.fault_end_s


def test_fault_occupies_only_its_interval() -> None:
    kw = dict(duration_s=3.0, rotation_hz=25.0)
    base = make_clip(np.random.default_rng(9), label="normal", **kw).samples
    for label in LABELS[1:]:
        clip = make_clip(np.random.default_rng(9), label=label, snr_db=0.0, fault_start_s=1.0, fault_end_s=2.0, **kw)
        diff = np.abs(clip.samples - base)
        assert diff[:16000].max() == 0.0 and diff[32000:].max() == 0.0, label
        assert diff[16000:32000].max() > 0.01, label
        # SNR 0 dB: the fault carries about as much energy as the background in its interval
        ratio = np.sqrt(np.mean((clip.samples - base)[16000:32000] ** 2) / np.mean(base[16000:32000] ** 2))
        assert 0.7 < ratio < 1.3, (label, ratio)


def test_machine_stream_is_deterministic_and_continuous() -> None:
    s1, s2 = machine_stream(3, block_s=0.5, fault_rate=0.3), machine_stream(3, block_s=0.5, fault_rate=0.3)
    blocks = [next(s1) for _ in range(20)]
    assert all(np.array_equal(b, next(s2)) for b in blocks)
    assert all(b.dtype == np.float32 and b.shape == (8000,) for b in blocks)
    audio = np.concatenate(blocks)
    steps = np.abs(np.diff(audio))
    boundary = steps[np.arange(1, 20) * 8000 - 1]
    assert boundary.max() <= np.quantile(steps, 0.9999)  # no click where blocks meet


# ----------------------------------------------------------------------------- features
def test_logmel_shape_and_params() -> None:
    p = LogMelParams()
    assert (p.n_fft, p.win_length, p.hop_length, p.n_mels) == (512, 400, 160, 64)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    mel = logmel(x)
    assert mel.shape == (1 + (16000 - 400) // 160, 64) and mel.dtype == np.float32
    assert logmel(x[:399]).shape == (0, 64)
    # a 1 kHz tone lights the mel band containing 1 kHz
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    band = int(np.argmax(logmel(tone).mean(0)))
    mel_hz = 700 * (10 ** (np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 66) / 2595) - 1)
    assert mel_hz[band] < 1000 < mel_hz[band + 2]


def test_logmel_stream_equals_whole_clip_exactly() -> None:
    x = make_clip(np.random.default_rng(1), 3.0, label="knock").samples
    whole = logmel(x)
    stream, rng, parts, i = LogMelStream(), np.random.default_rng(2), [], 0
    while i < x.size:
        n = int(rng.integers(1, 2500))
        parts.append(stream.push(x[i : i + n]))
        i += n
    assert np.array_equal(np.concatenate(parts), whole)
    stream.reset()
    assert np.array_equal(stream.push(x), whole)


def _write_pcm(path: Path, data: np.ndarray, rate: int, width: int) -> None:
    """Integer PCM WAV of any sample width (24-bit included) via the wave module."""
    frames = np.atleast_2d(data.T).T
    ints = np.round(np.clip(frames, -1, 1 - 2.0 ** (1 - 8 * width)) * 2 ** (8 * width - 1)).astype("<i4")
    raw = ints.reshape(-1, 1).view(np.uint8).reshape(-1, 4)[:, :width].tobytes() if width != 1 else (ints + 128).astype(np.uint8).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


@pytest.mark.parametrize("width", [2, 3, 4])
def test_load_wav_integer_pcm(tmp_path: Path, width: int) -> None:
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    _write_pcm(tmp_path / "a.wav", x, 16000, width)
    y, rate, channels = load_wav(tmp_path / "a.wav", 16000)
    assert (rate, channels, y.dtype) == (16000, 1, np.float32)
    assert np.abs(y - x).max() < 2.0 ** (1 - 8 * width) * 2


def test_load_wav_stereo_48k_float(tmp_path: Path) -> None:
    x = make_clip(np.random.default_rng(4), 1.0, label="squeal").samples
    up = resample_poly(x.astype(np.float64), 3, 1)
    stereo = np.stack([1.2 * up, 0.8 * up], axis=1).astype(np.float32)
    scipy.io.wavfile.write(tmp_path / "s.wav", 48000, stereo)
    y, rate, channels = load_wav(tmp_path / "s.wav", 16000)
    assert (rate, channels, y.size) == (48000, 2, 16000)
    assert np.abs(y - x)[200:-200].max() < 0.02


def test_load_wav_errors_name_the_file(tmp_path: Path) -> None:
    cases = {}
    cases["missing"] = tmp_path / "nope.wav"
    (tmp_path / "text.wav").write_text("not a wav at all")
    cases["not a WAV"] = tmp_path / "text.wav"
    scipy.io.wavfile.write(tmp_path / "empty.wav", 16000, np.zeros(0, np.int16))
    cases["empty"] = tmp_path / "empty.wav"
    _write_pcm(tmp_path / "u8.wav", np.zeros(100), 16000, 1)
    cases["8-bit"] = tmp_path / "u8.wav"
    messages = {}
    for case, path in cases.items():
        with pytest.raises(InputError) as err:
            load_wav(path, 16000)
        messages[case] = str(err.value)
        assert str(path) in messages[case] and "\n" not in messages[case]
    assert "not found" in messages["missing"]
    assert "no samples" in messages["empty"]
    assert "8-bit" in messages["8-bit"] and "not supported" in messages["8-bit"]


# ----------------------------------------------------------------------------- shipped model
def test_manifest_matches_model_io(shipped) -> None:
    engine, model = shipped
    names = {s.name: s.shape for s in engine.inputs}
    assert names[model.input] == (-1, model.n_mels)
    assert model.labels == LABELS and model.onset > model.offset
    assert 0.0 < model.threshold < 1.0 and model.chunk_frames == 50


def test_streaming_equals_whole_clip(shipped) -> None:
    engine, model = shipped
    clip = make_clip(np.random.default_rng(11), 5.0, label="bearing", snr_db=0.0, fault_start_s=2.0, fault_end_s=4.0)
    whole, _ = am.run_frames(engine, model, am.normalise(logmel(clip.samples), model)[None])
    runner = am.AcousticStreamRunner(engine, model)
    rng, parts, i = np.random.default_rng(0), [], 0
    while i < clip.samples.size:
        n = int(rng.integers(100, 9000))
        parts.append(runner.push(clip.samples[i : i + n]).probs)
        i += n
    streamed = np.concatenate(parts)
    assert streamed.shape == whole[0].shape and runner.frames_seen == whole.shape[1]
    assert np.abs(streamed - whole[0]).max() < 1e-5


@pytest.mark.parametrize("label", LABELS)
def test_clip_decisions_at_6db(shipped, label: str) -> None:
    engine, model = shipped
    runner = am.AcousticStreamRunner(engine, model)
    right = 0
    for seed in range(5):
        clip = make_clip(np.random.default_rng(1000 + seed), 4.0, label=label, snr_db=6.0)
        score, predicted = am.clip_score(am.inspect_samples(runner, clip.samples), model)
        assert 0.0 <= score <= 1.0
        right += predicted == label
    assert right >= 4, f"{label}: {right}/5 clips right"


def test_inspect_wav_result(shipped, tmp_path: Path) -> None:
    engine, model = shipped
    clip = make_clip(np.random.default_rng(21), 3.0, label="squeal", snr_db=6.0)
    scipy.io.wavfile.write(tmp_path / "c.wav", 16000, (clip.samples * 32767).astype(np.int16))
    result = am.inspect_wav(tmp_path / "c.wav", engine, model)
    assert set(result) == {"path", "kind", "label", "score", "duration_s", "sample_rate", "probs"}
    assert (result["kind"], result["label"], result["sample_rate"], result["duration_s"]) == ("acoustic", "squeal", 16000, 3.0)
    assert abs(result["score"] - (1 - result["probs"]["normal"])) < 1e-5
    with pytest.raises(InputError):
        am.inspect_wav(tmp_path / "missing.wav", engine, model)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
def test_training_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "engines"
    proc = subprocess.run([sys.executable, "-m", "training.acoustic.train", "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = load_manifest(out)
    assert manifest.classifier("acoustic") is not None and manifest.classifier("acoustic").labels == LABELS
    assert (out / "acoustic_confusion.png").stat().st_size > 1000
    assert "<!-- BEGIN acoustic -->" in (out / "README.md").read_text()
