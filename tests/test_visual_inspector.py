"""The visual inspector's two threads: model calls and verdict delivery (real ONNX model)."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.values import Verdict
from edge_inspector.inspectors.visual import VisualInspector
from edge_inspector.inspectors.visual_model import VisualModelRunner
from edge_inspector.manifest import load_manifest
from edge_inspector.inspectors.factory import engine_opener, open_visual
from edge_inspector.sources.base import BoundedQueue, Frame
from edge_inspector.synthetic.surfaces import make_surface

ENGINES = Path(__file__).resolve().parents[1] / "engines"


@pytest.fixture(scope="module")
def runner() -> VisualModelRunner:
    manifest = load_manifest(ENGINES)
    return open_visual(manifest, engine_opener("onnxruntime"), 4)


def _file_camera(n: int) -> BoundedQueue[Frame]:
    """A finished file camera: ``n`` frames queued, then closed."""
    queue: BoundedQueue[Frame] = BoundedQueue(n, "block")
    for i in range(n):
        image = make_surface(np.random.default_rng([99, i]), "painted", "ok").image
        queue.put(Frame("cam0", i, time.time(), time.monotonic(), image))
    queue.close()
    return queue


def test_every_frame_is_delivered_in_order_even_when_delivery_is_slow(runner: VisualModelRunner) -> None:
    delivered: list[tuple[int, str]] = []

    def slow(v: Verdict) -> None:  # a journal that takes its time: the model must not lose frames
        time.sleep(0.005)
        delivered.append((v.frame or 0, threading.current_thread().name))

    inspector = VisualInspector(runner, {"cam0": _file_camera(37)}, slow, max_batch=4, lockstep=True)
    inspector.start()
    inspector.join(30)
    assert not inspector.is_alive() and inspector.error is None
    assert [f for f, _ in delivered] == list(range(37))
    assert {name for _, name in delivered} == {"visual-delivery"}
    assert inspector.stats.frames == 37 and sum(inspector.stats.batch_sizes.values()) == 10


def test_a_failing_delivery_stops_the_inspector_with_its_error(runner: VisualModelRunner) -> None:
    seen: list[int] = []

    def broken(v: Verdict) -> None:
        seen.append(v.frame or 0)
        if len(seen) == 6:
            raise OSError("journal disk full")

    inspector = VisualInspector(runner, {"cam0": _file_camera(200)}, broken, max_batch=4, lockstep=True)
    inspector.start()
    inspector.join(30)
    assert not inspector.is_alive()
    assert isinstance(inspector.error, OSError) and "journal disk full" in str(inspector.error)
    assert seen == list(range(6))  # nothing delivered after the failure
    assert inspector.stats.frames < 200  # the model stopped soon after, instead of running on


class _Jittery:
    """The runner with each call held for a random while: later batches often finish first."""

    def __init__(self, runner: VisualModelRunner) -> None:
        self.inner, self.rng, self.lock = runner, np.random.default_rng(3), threading.Lock()
        self.threads: set[str] = set()

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the real runner's
        return getattr(self.inner, name)

    def run(self, x: np.ndarray):  # noqa: ANN201
        with self.lock:
            pause = float(self.rng.uniform(0.0, 0.02))
            self.threads.add(threading.current_thread().name)
        time.sleep(pause)
        return self.inner.run(x)


def test_workers_side_by_side_deliver_the_same_verdicts_in_capture_order(runner: VisualModelRunner) -> None:
    results = {}
    for workers in (1, 3):
        got: list[Verdict] = []
        jittery = _Jittery(runner)
        inspector = VisualInspector(jittery, {"cam0": _file_camera(41)}, got.append, max_batch=4, lockstep=True,
                                    workers=workers)
        inspector.start()
        inspector.join(60)
        assert not inspector.is_alive() and inspector.error is None
        assert [v.frame for v in got] == list(range(41))
        assert inspector.stats.frames == 41 and dict(inspector.stats.batch_sizes) == {4: 10, 1: 1}
        assert len(jittery.threads) == workers  # every worker ran batches
        results[workers] = [(v.label, round(v.score, 6), v.extra["batch"]) for v in got]
    assert results[1] == results[3]  # the same batches, the same verdicts


def test_a_failing_worker_stops_every_worker(runner: VisualModelRunner) -> None:
    calls = []

    class Failing(_Jittery):
        def run(self, x: np.ndarray):  # noqa: ANN201
            calls.append(1)
            if len(calls) == 5:
                raise RuntimeError("injected engine fault")
            return super().run(x)

    got: list[Verdict] = []
    inspector = VisualInspector(Failing(runner), {"cam0": _file_camera(200)}, got.append, max_batch=2,
                                lockstep=True, workers=2)
    inspector.start()
    inspector.join(30)
    assert not inspector.is_alive() and "injected engine fault" in str(inspector.error)
    assert len(calls) < 20 and [v.frame for v in got] == list(range(len(got)))  # in order up to the failure


@pytest.mark.parametrize("decoder", ["opencv", pytest.param("pyav", marks=pytest.mark.skipif(
    importlib.util.find_spec("av") is None, reason="PyAV is not installed (./setup.sh installs the video extra)"))])
@pytest.mark.parametrize("threads", [1, 3])
def test_file_camera_decodes_with_the_configured_thread_count(tmp_path: Path, threads: int, decoder: str) -> None:
    """``decode_threads`` reaches FFmpeg, whichever library drives it, and every frame still arrives in order."""
    from conftest import write_video

    from edge_inspector.sources.registry import open_source, source_settings

    frames = [np.full((96, 128, 3), 10 * i, np.uint8) for i in range(12)]
    clip = write_video(tmp_path / "clip.mp4", frames)
    cfg = source_settings("camera", name="cam0", uri=f"file://{clip}", realtime=False, decode_threads=threads,
                          decoder=decoder)
    camera, queue = open_source(cfg, min_file_size=64)
    camera.start()
    camera.join(20)
    assert not camera.is_alive()
    got = [queue.get_nowait() for _ in range(len(queue))]
    assert [f.index for f in got if f is not None] == list(range(12))
    camera.open()  # what the thread opened, reopened here to read FFmpeg's setting back
    assert camera.cap is not None and camera.cap.get(cv2.CAP_PROP_N_THREADS) == threads
    camera.release()
