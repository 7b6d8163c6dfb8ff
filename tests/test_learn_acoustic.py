"""`edge-inspector learn acoustic`: real WAV files and recordings in, a complete engines directory
out; the learnt model through `inspect`, and bad input refused with one line naming the file."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from edge_inspector.cli import main
from edge_inspector.manifest import load_manifest

SR = 16000


def machine(seconds: float, seed: int = 5) -> np.ndarray:
    """A running machine without faults (the demo microphone's generator)."""
    from edge_inspector.synthetic.machines import machine_stream

    stream = machine_stream(seed, 1.0, fault_rate=0.0)
    return np.concatenate([next(stream) for _ in range(int(np.ceil(seconds)))])[: int(seconds * SR)]


def with_fault(audio: np.ndarray, start_s: float, end_s: float, snr_db: float = 6.0, label: str = "squeal") -> np.ndarray:
    from edge_inspector.synthetic.machines import make_fault

    a, b = int(start_s * SR), int(end_s * SR)
    fault = make_fault(np.random.default_rng(3), label, b - a, SR, 25.0)
    seg = audio[a:b].astype(np.float64)
    out = audio.astype(np.float64).copy()
    out[a:b] += fault * np.sqrt(np.mean(seg**2)) * 10 ** (snr_db / 20) / np.sqrt(np.mean(fault**2))
    return np.clip(out, -1, 1).astype(np.float32)


def write(path: Path, audio: np.ndarray, rate: int = SR) -> Path:
    scipy.io.wavfile.write(path, rate, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def learnt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A directory learnt from two WAV files of one machine (65 s), and its working folder."""
    work = tmp_path_factory.mktemp("learn")
    audio = machine(65.0)
    a = write(work / "healthy-a.wav", audio[: 40 * SR])
    b = write(work / "healthy-b.wav", audio[40 * SR :])
    code, out, err = run_cli("learn", "acoustic", str(a), str(b), "--out", str(work / "learnt"))
    assert code == 0, err
    assert "learnt acoustic_anomaly" in out and "learn: held-out fold 3/3" in err  # progress shown
    return work / "learnt", work


@pytest.mark.slow  # learns a model (about 10 s, once per module)
def test_learnt_directory_is_complete(learnt: tuple[Path, Path]) -> None:
    directory, _ = learnt
    manifest = load_manifest(directory)  # every sha256 verified
    kinds = sorted(e.kind for e in manifest.entries("acoustic"))
    assert kinds == ["anomaly", "classifier"]
    assert manifest.classifier("visual") is not None  # the shipped models come along
    entry = manifest.anomaly("acoustic")
    assert entry.learnt_from.items == 2 and len(entry.learnt_from.sources) == 2
    assert entry.max_false_alarms_per_hour == 1.0 and 0.0 < entry.offset < entry.onset == 0.5
    assert entry.threshold > 0 and entry.score_scale > 0
    card = (directory / "acoustic_anomaly.md").read_text()
    assert "healthy-a.wav" in card and "false" in card
    png = (directory / "acoustic_anomaly_scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


@pytest.mark.slow  # learns a model (about 10 s, once per module)
def test_inspect_one_line_per_file_with_anomaly_score(learnt: tuple[Path, Path]) -> None:
    directory, work = learnt
    later = machine(80.0)[70 * SR :]  # the same machine, ten seconds it never heard
    healthy = write(work / "later.wav", later)
    faulty = write(work / "faulty.wav", with_fault(later, 3.0, 8.0, snr_db=0.0, label="bearing"))
    code, out, err = run_cli("inspect", "--engines", str(directory), str(healthy), str(faulty))
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["path"] for x in lines] == [str(healthy), str(faulty)]
    assert lines[0]["label"] == "normal" and lines[0]["anomaly_score"] < 0.5, lines[0]
    assert lines[1]["label"] != "normal" and lines[1]["score"] >= 0.5, lines[1]
    assert lines[1]["anomaly_score"] > lines[0]["anomaly_score"]


def _bad_wavs(work: Path) -> dict[str, tuple[Path, str]]:
    bad: dict[str, tuple[Path, str]] = {}
    empty = work / "empty.wav"
    scipy.io.wavfile.write(empty, SR, np.zeros(0, np.int16))
    bad["empty"] = (empty, "no samples")
    eight = work / "eight.wav"
    scipy.io.wavfile.write(eight, SR, (np.full(SR * 70, 128)).astype(np.uint8))
    bad["8-bit"] = (eight, "8-bit")
    truncated = write(work / "truncated.wav", machine(70.0))
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    bad["truncated"] = (truncated, "truncated")
    bad["silence"] = (write(work / "silence.wav", np.zeros(70 * SR, np.float32)), "silence")
    return bad


@pytest.mark.slow  # learns a model (about 10 s, once per module)
def test_bad_input_is_one_line_naming_the_file_and_leaves_the_directory(learnt: tuple[Path, Path]) -> None:
    directory, work = learnt
    before = tree(directory)
    good = work / "healthy-a.wav"
    cases = {name: ([str(good), str(path)], path.name, words) for name, (path, words) in _bad_wavs(work).items()}
    short = write(work / "two-seconds.wav", machine(2.0))
    cases["2 s only"] = ([str(short)], "two-seconds.wav", "only 2.0 s")
    other_rate = work / "at-48k.wav"
    scipy.io.wavfile.write(other_rate, 48000, (machine(70.0).repeat(3) * 32767).astype(np.int16))
    cases["mixed rates"] = ([str(good), str(other_rate)], "at-48k.wav", "48000 Hz")
    cases["missing"] = ([str(work / "nope.wav")], "nope.wav", "no such file")
    for name, (sources, file_name, words) in cases.items():
        code, out, err = run_cli("learn", "acoustic", *sources, "--out", str(directory))
        problem = [x for x in err.splitlines() if not x.startswith("learn:")]
        assert code in (1, 2) and len(problem) == 1, (name, err)
        assert file_name in problem[0] and words in problem[0], (name, problem)
        assert "Traceback" not in err
        assert tree(directory) == before, name  # never half-overwritten
    assert not list(directory.parent.glob(".learnt.*")), "a staging directory was left behind"


@pytest.mark.slow  # learns a model (about 10 s, once per module)
def test_relearning_replaces_only_the_learnt_model(learnt: tuple[Path, Path], tmp_path: Path) -> None:
    directory, work = learnt
    copy = tmp_path / "engines"
    import shutil

    shutil.copytree(directory, copy)
    old = load_manifest(copy)
    code, _, err = run_cli("learn", "acoustic", str(work / "healthy-a.wav"), str(work / "healthy-b.wav"),
                           "--out", str(copy), "--max-false-alarms-per-hour", "0.1")
    assert code == 0, err
    new = load_manifest(copy)
    assert new.classifier("acoustic") == old.classifier("acoustic")
    assert new.anomaly("acoustic").max_false_alarms_per_hour == 0.1
    assert new.anomaly("acoustic").threshold >= old.anomaly("acoustic").threshold


def test_out_that_is_not_an_engines_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    code, _, err = run_cli("learn", "acoustic", str(tmp_path / "x.wav"), "--out", str(tmp_path / "photos"))
    assert code == 2 and "not an engines directory" in err
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"x"


@pytest.mark.slow  # learns a model (about 10 s, once per module)
def test_streaming_graph_equals_whole_recording(learnt: tuple[Path, Path]) -> None:
    """The exported graph, fed in 0.1 s pushes with its context carried, scores every frame as
    the NumPy model does on the whole recording."""
    from edge_inspector.inspectors.acoustic_model import AcousticStreamRunner
    from edge_inspector.inspectors.factory import engine_opener, open_acoustic

    directory, _ = learnt
    models = open_acoustic(load_manifest(directory), engine_opener("onnxruntime"), kinds=("anomaly",))
    runner = AcousticStreamRunner(models)
    audio = machine(12.0, seed=9)
    parts = [runner.push(audio[a : a + 1600]).raw for a in range(0, audio.size, 1600)]
    streamed = np.concatenate(parts)
    runner.reset()
    whole = runner.push(audio).raw
    assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-3
