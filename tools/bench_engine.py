"""The model alone: each precision at each batch size on one thread, and with every core busy.

Measured through the runtime's own runner (``open_visual``: every visual model of the directory,
the file each precision runs), so the figures are what the daemon's inference workers get.
One thread per call is timed in wall time and in the thread's CPU time: with one ONNX Runtime
thread the work runs on the calling thread, so its CPU time is the model's cost per frame even
when a neighbour loads the machine, and it is what the CPU ceiling adds up.  "All cores" runs the
plans the daemon chooses between (W calls side by side on one thread each, one call on every
core) and keeps the best.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Progress = Callable[[str], None]


def _image(runner: Any) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (runner.height, runner.width, 3), dtype=np.uint8)


def time_calls(run: Callable[[np.ndarray], object], x: np.ndarray, seconds: float) -> dict[str, Any]:
    """Back-to-back calls for ``seconds``: fps, wall and thread-CPU ms per frame, ms per call."""
    from bench_common import percentiles

    for _ in range(3):  # warm-up: first calls allocate arenas and pick kernels
        run(x)
    wall: list[float] = []
    cpu: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(wall) < 5:
        t, c = time.perf_counter(), time.thread_time()
        run(x)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    n = len(x)
    return {"fps": round(n * len(wall) / sum(wall), 1), "ms_per_frame": round(1000.0 * sum(wall) / (n * len(wall)), 3),
            "cpu_ms_per_frame": round(1000.0 * float(np.median(cpu)) / n, 3),
            "ms_per_call": percentiles(1000.0 * w for w in wall), "calls": len(wall)}


def engine_precisions(engines: Path, backend: str, precisions: list[str], batches: list[int], seconds: float,
                      progress: Progress | None = None) -> dict[str, Any]:
    """``{precision: {file, batches: {b: …}, best_batch, all_cores: {plan: fps}, all_cores_fps}}``."""
    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.inspectors.policy import parallel_fps, thread_plans, usable_cores
    from edge_inspector.manifest import load_manifest

    manifest = load_manifest(engines)
    cores = usable_cores()
    out: dict[str, Any] = {}
    for precision in precisions:
        opts = {} if backend == "tensorrt" else {"intra_op_threads": 1}
        one = open_visual(manifest, engine_opener(backend, **opts), max(batches), precision=precision)
        runners = {1: one}
        try:
            m = one.models[0]
            row: dict[str, Any] = {"file": m.file.path.name, "sha256": m.sha256[:12], "runs": m.precision,
                                   "batches": {}}
            for b in batches:
                if progress:
                    progress(f"engine {backend} {precision} batch {b}")
                row["batches"][str(b)] = time_calls(one.run, one.preprocess([_image(one)] * b), seconds)
            best = max(batches, key=lambda b: row["batches"][str(b)]["fps"])
            row["best_batch"] = best
            x = one.preprocess([_image(one)] * best)
            row["all_cores"] = {}
            for workers, threads in thread_plans(cores, backend):
                if threads not in runners:
                    runners[threads] = open_visual(manifest, engine_opener(backend, intra_op_threads=threads), best,
                                                   precision=precision)
                if progress:
                    progress(f"engine {backend} {precision}: {workers} call(s) x {threads} thread(s)")
                row["all_cores"][f"{workers}x{threads}"] = round(parallel_fps(runners[threads].run, x, workers, seconds), 1)
            row["all_cores_fps"] = max(row["all_cores"].values())
            out[precision] = row
        finally:
            for r in runners.values():
                r.close()
    return out


def inference_cpu_ms(engines: Path, precision: str, batch: int, seconds: float) -> float:
    """Thread-CPU ms per frame of one call at ``batch`` on one thread (the daemon's unit of work)."""
    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.manifest import load_manifest

    runner = open_visual(load_manifest(engines), engine_opener("onnxruntime", intra_op_threads=1), batch,
                         precision=precision)
    try:
        return time_calls(runner.run, runner.preprocess([_image(runner)] * batch), seconds)["cpu_ms_per_frame"]
    finally:
        runner.close()


def preprocess_cpu_ms(engines: Path, frames: list[np.ndarray], batch: int, seconds: float) -> float:
    """Process-CPU ms per frame of :meth:`VisualModelRunner.preprocess` at ``batch`` on distinct
    ``frames`` in turn (OpenCV may use threads of its own: the process's CPU counts them)."""
    import os

    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.manifest import load_manifest

    runner = open_visual(load_manifest(engines), engine_opener("onnxruntime", intra_op_threads=1), batch,
                         precision="fp32")
    try:
        batches = [[frames[(i + k) % len(frames)] for k in range(batch)] for i in range(0, len(frames), batch)]
        runner.preprocess(batches[0])
        done, t_end, c0 = 0, time.perf_counter() + seconds, os.times()
        while time.perf_counter() < t_end or done < 3 * batch:
            for b in batches:
                runner.preprocess(b)
                done += batch
        c1 = os.times()
        return round(1000.0 * (c1.user - c0.user + c1.system - c0.system) / done, 3)
    finally:
        runner.close()


def anomaly_cost(engines: Path, seconds: float, progress: Progress | None = None) -> dict[str, Any] | None:
    """What a learnt anomaly model (``learn visual``) adds per frame: the model alone at batch 1 on
    one ONNX Runtime thread, thread CPU time (its cost on one core however busy the machine).
    None when the directory has no visual anomaly model."""
    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.manifest import load_manifest

    manifest = load_manifest(engines)
    if manifest.anomaly("visual") is None:
        return None
    if progress:
        progress("visual anomaly model, batch 1, one thread")
    runner = open_visual(manifest, engine_opener("onnxruntime", intra_op_threads=1), 1, kinds=("anomaly",))
    try:
        row = time_calls(runner.run, runner.preprocess([_image(runner)]), seconds)
    finally:
        runner.close()
    return {"file": runner.models[0].entry.file, "size": [runner.height, runner.width], **row}


def pipeline_cpu_ms(clip: Path, engines: Path, precision: str, batch: int, seconds: float, decoder: str = "opencv") -> float:
    """Process-CPU ms per frame of one thread doing exactly the work the ceiling counts, frame after
    frame: decode (``decoder``, one decoder thread, as a camera), preprocess and infer each ``batch``
    frames (one ONNX Runtime thread), nothing else.

    The parts timed each alone in a tight loop (:func:`inference_cpu_ms` on one input, the decoder
    alone) keep their data and code in the core's caches; one after the other they evict each
    other, as they do in any pipeline that takes a frame through all three: here the loop costs
    5-12 % more per frame than the parts' sum.  N such loops on N cores is the most any pipeline
    can do, so this, not the sum, is what the ceiling divides the cores by.
    """
    import os

    import cv2

    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.manifest import load_manifest
    from edge_inspector.sources.camera import ffmpeg_decoder_params
    from edge_inspector.sources.pyav_capture import AvCapture

    runner = open_visual(load_manifest(engines), engine_opener("onnxruntime", intra_op_threads=1), batch,
                         precision=precision)

    def frames() -> Any:
        while True:  # the clip over and over; opening it again counts, as in the decode-only figure
            cap = AvCapture(clip) if decoder == "pyav" else cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG,
                                                                              ffmpeg_decoder_params(1))
            try:
                while (item := cap.read())[0]:
                    yield item[1]
            finally:
                cap.release()

    try:
        stream = frames()
        runner.run(runner.preprocess([next(stream) for _ in range(batch)]))  # warm-up: arenas, kernels
        done, t_end, c0 = 0, time.perf_counter() + seconds, os.times()
        while time.perf_counter() < t_end or done < 3 * batch:
            runner.run(runner.preprocess([next(stream) for _ in range(batch)]))
            done += batch
        c1 = os.times()
        stream.close()
        return round(1000.0 * (c1.user - c0.user + c1.system - c0.system) / done, 3)
    finally:
        runner.close()


def ceiling_fps(cores: int, *cpu_ms_per_frame: float) -> float:
    """Frames/s with every core busy all the time on nothing but the work each frame needs
    (the CPU ms per frame given: one loop's, or parts added up)."""
    return round(1000.0 * cores / sum(cpu_ms_per_frame), 1)
