"""The inference policy: batch and workers x threads chosen from measurements, cached by what they
depend on, overridden by the config.  Choices are checked on stand-in engines whose cost is a
sleep (wall time, not CPU: a loaded machine cannot turn the answer); the real model only shows
that a measurement is made, cached and reused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_inspector.config import RuntimeConfig
from edge_inspector.inspectors.policy import choose_batch, choose_plan, resolve, thread_plans, usable_cores
from edge_inspector.manifest import load_manifest

ENGINES = Path(__file__).resolve().parents[1] / "engines"


def _sleeper(ms_per_call: dict[int, float]):
    def run(x: np.ndarray) -> None:
        time.sleep(ms_per_call[len(x)] / 1000.0)
    return run


def test_the_fastest_batch_per_frame_within_the_call_bound() -> None:
    # calls of tens of ms: a loaded machine's sleep overshoot (~1 ms, once per call) cannot turn a choice
    run = _sleeper({1: 40.0, 2: 56.0, 4: 64.0, 8: 96.0})  # per frame: 40, 28, 16, 12 ms
    make = lambda b: np.zeros((b, 1), np.float32)  # noqa: E731
    assert choose_batch(run, make, (1, 2, 4, 8), 200.0, 0.05)[0] == 8
    batch, per_frame = choose_batch(run, make, (1, 2, 4, 8), 80.0, 0.05)  # a call of 96 ms is too long
    assert batch == 4 and set(per_frame) == {1, 2, 4, 8} and per_frame[8] < per_frame[1]
    flat = _sleeper({1: 40.0, 2: 80.0, 4: 160.0, 8: 320.0})  # no gain from batching: the smallest batch
    assert choose_batch(flat, make, (1, 2, 4, 8), 400.0, 0.05)[0] == 1
    slow = _sleeper({4: 50.0})  # nothing fits: the smallest candidate still runs
    assert choose_batch(slow, make, (4,), 10.0, 0.02)[0] == 4


def test_side_by_side_workers_win_when_calls_overlap() -> None:
    x = np.zeros((1, 1), np.float32)
    one_call = _sleeper({1: 20.0})  # calls overlap perfectly (a sleep, like a free core)
    plan, fps = choose_plan({1: one_call, 2: one_call}, x, [(2, 1), (1, 2), (1, 1)], 0.6)
    assert plan == (2, 1) and fps["2x1"] > 1.5 * fps["1x2"]
    assert thread_plans(2, "onnxruntime") == [(2, 1), (1, 2), (1, 1)]
    assert thread_plans(8, "onnxruntime") == [(8, 1), (1, 8), (4, 2), (1, 1)]
    assert thread_plans(8, "tensorrt") == [(1, 1)]  # one call at a time on the GPU


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's load as the policy sees it: quiet (the real one depends on the neighbours)."""
    import edge_inspector.inspectors.policy as policy

    monkeypatch.setattr(policy.os, "getloadavg", lambda: (0.1, 0.1, 0.1))


def test_measured_once_then_cached_and_measured_again_when_a_part_changes(tmp_path: Path, quiet: None) -> None:
    manifest = load_manifest(ENGINES)
    first = resolve(manifest, "onnxruntime", None, cache_dir=tmp_path, seconds=0.02)
    assert first.how == "measured" and first.batch in (1, 2, 4, 8) and first.workers * first.threads <= usable_cores()
    cached_file = Path(first.cache_file)
    key = json.loads(cached_file.read_text())["key"]
    variant = next(v for v in manifest.classifier("visual").int8 if v.target == "onnxruntime")
    assert key["models"] == [variant.sha256] and key["precision"] == "int8" and key["cores"] == usable_cores()
    again = resolve(manifest, "onnxruntime", None, cache_dir=tmp_path, seconds=0.02)
    assert (again.how, again.batch, again.workers, again.threads) == ("cached", first.batch, first.workers, first.threads)
    assert "(cached;" in again.describe() and str(cached_file) in again.describe()
    fp32 = resolve(manifest, "onnxruntime", "fp32", cache_dir=tmp_path, seconds=0.02)  # another file runs
    assert fp32.how == "measured" and fp32.cache_file != first.cache_file
    bound = resolve(manifest, "onnxruntime", None, max_call_ms=5.0, cache_dir=tmp_path, seconds=0.02)
    assert bound.how == "measured"
    cached_file.write_text("{ not json")  # damaged: measured again, never a crash
    assert resolve(manifest, "onnxruntime", None, cache_dir=tmp_path, seconds=0.02).how == "measured"


def test_config_overrides_what_it_names(tmp_path: Path) -> None:
    manifest = load_manifest(ENGINES)
    fixed = resolve(manifest, "onnxruntime", None, max_batch=3, workers=1, threads=2, cache_dir=tmp_path)
    assert (fixed.batch, fixed.workers, fixed.threads, fixed.how) == (3, 1, 2, "configured")
    assert not list(tmp_path.iterdir())  # nothing measured, nothing cached
    legacy = resolve(manifest, "onnxruntime", None, max_batch=8, workers=1, threads=0, cache_dir=tmp_path)
    assert legacy.threads == max(1, usable_cores() - 1)  # intra_op_threads = 0 keeps its old meaning
    batch_only = resolve(manifest, "onnxruntime", None, max_batch=2, cache_dir=tmp_path, seconds=0.02)
    assert batch_only.batch == 2 and batch_only.how == "measured"
    workers_only = resolve(manifest, "onnxruntime", None, workers=1, cache_dir=tmp_path, seconds=0.02)
    assert workers_only.workers == 1
    defaults = RuntimeConfig()
    assert (defaults.max_batch, defaults.intra_op_threads, defaults.inference_workers) == (None, None, None)


def test_an_unwritable_cache_still_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    policy = resolve(load_manifest(ENGINES), "onnxruntime", None, cache_dir=blocker / "sub", seconds=0.02)
    assert policy.how == "measured" and policy.cache_file == ""


def test_a_choice_measured_on_a_busy_machine_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import edge_inspector.inspectors.policy as policy

    manifest = load_manifest(ENGINES)
    monkeypatch.setattr(policy.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    with caplog.at_level("WARNING"):
        first = resolve(manifest, "onnxruntime", None, cache_dir=tmp_path, seconds=0.02)
    assert first.figures["load_1min"] == 9.0 and "measured again at the next start" in caplog.text
    monkeypatch.setattr(policy.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    second = resolve(manifest, "onnxruntime", None, cache_dir=tmp_path, seconds=0.02)
    assert second.how == "measured" and second.figures["load_1min"] == 0.1
    assert resolve(manifest, "onnxruntime", None, cache_dir=tmp_path, seconds=0.02).how == "cached"
