"""Benchmarks of the parts on their own: engine, decode, the naive tutorial loop, audio, event bus.

Each function returns a plain dict (JSON-ready).  They are the yardsticks the daemon's end to
end figures are judged against, so they measure the parts the same way the daemon uses them:
the same engine factory, the same clip, the same model files.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench_common import percentiles

Progress = Callable[[str], None]


def decode_throughput(clip: Path, seconds: float, progress: Progress | None = None,
                      threads: int | None = None, decoder: str = "opencv") -> dict[str, Any]:
    """Frames/s of a bare decoding loop (rewinding until ``seconds`` passed): ``cv2.VideoCapture.read``
    (full-size BGR, what the peers and OpenCV-decoded cameras get), or ``pyav``: PyAV's decoder as
    the daemon's file cameras use it (frames left YUV; the model's input is made in preprocessing).

    The decoder gets ``threads`` threads, by default what a camera's ``decode_threads`` gives
    the daemon; the CPU time per frame is recorded too (the process does nothing else
    meanwhile), since a multi-threaded decoder spends more CPU than wall time.
    """
    import cv2

    from edge_inspector.sources.camera import ffmpeg_decoder_params
    from edge_inspector.sources.pyav_capture import AvCapture
    from edge_inspector.sources.settings import FFmpegDecoder

    if threads is None:
        threads = int(FFmpegDecoder.model_fields["decode_threads"].default)
    if progress:
        progress(f"decode only ({decoder})")
    params = ffmpeg_decoder_params(threads)
    per_frame: list[float] = []
    t_start, cpu_start = time.perf_counter(), os.times()
    while time.perf_counter() - t_start < seconds or not per_frame:
        cap = AvCapture(clip, threads) if decoder == "pyav" else cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, params)
        try:
            while True:
                t0 = time.perf_counter()
                ok, _ = cap.read()
                if not ok:
                    break
                per_frame.append((time.perf_counter() - t0) * 1000.0)
        finally:
            cap.release()
    cpu_end = os.times()
    cpu_s = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    total_s = sum(per_frame) / 1000.0
    return {"fps": round(len(per_frame) / total_s, 1), "frames": len(per_frame), "threads": threads,
            "ms_per_frame": percentiles(per_frame), "cpu_ms_per_frame": round(1000.0 * cpu_s / len(per_frame), 3),
            "clip": clip.name, "decoder": decoder}


def _tutorial_preprocess(frame: np.ndarray, size: tuple[int, int], m: np.ndarray, s: np.ndarray) -> np.ndarray:
    import cv2

    h, w = size
    img = cv2.cvtColor(cv2.resize(frame, (w, h)), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(((img.astype(np.float32) / 255.0 - m) / s).transpose(2, 0, 1)[None])


def _infer_and_print(sess: Any, input_name: str, x: np.ndarray, labels: tuple[str, ...], frame: int, sink: Any) -> int:
    """One frame as the tutorials do it: run, take the arg-max, print a JSON line; the next frame's index."""
    probs, _heat = sess.run(None, {input_name: x})
    k = int(np.argmax(probs[0]))
    print(json.dumps({"frame": frame, "label": labels[k], "score": float(1.0 - probs[0][0])}), file=sink)
    return frame + 1


def _loop_result(frames: int, elapsed: float, model_path: Path) -> dict[str, Any]:
    return {"fps": round(frames / elapsed, 1), "frames": frames, "seconds": round(elapsed, 3), "model": model_path.name}


def naive_loop(clip: Path, model_path: Path, mean: tuple[float, ...], std: tuple[float, ...],
               size: tuple[int, int], labels: tuple[str, ...], progress: Progress | None = None) -> dict[str, Any]:
    """The loop from the tutorials: read, resize, normalise, run at batch 1, print JSON.

    One ``InferenceSession`` with default options, one frame at a time, results printed
    (to /dev/null) as each frame is done.  This is the baseline the daemon must beat.
    """
    import cv2
    import onnxruntime as ort

    if progress:
        progress(f"naive OpenCV + ONNX Runtime loop ({model_path.name})")
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    cap = cv2.VideoCapture(str(clip))
    frames = 0
    with open(os.devnull, "w") as sink:
        t0 = time.perf_counter()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames = _infer_and_print(sess, input_name, _tutorial_preprocess(frame, size, m, s), labels, frames, sink)
        elapsed = time.perf_counter() - t0
    cap.release()
    return _loop_result(frames, elapsed, model_path)


def threaded_loop(clip: Path, model_path: Path, mean: tuple[float, ...], std: tuple[float, ...],
                  size: tuple[int, int], labels: tuple[str, ...], progress: Progress | None = None) -> dict[str, Any]:
    """What a careful user writes next: a decode thread (read, resize, normalise) feeding a bounded
    queue, and an inference thread running the session (default options: every core per call) at
    batch 1 and printing JSON; decoding the next frame overlaps inferring this one."""
    import queue
    import threading

    import cv2
    import onnxruntime as ort

    if progress:
        progress(f"threaded two-stage loop ({model_path.name})")
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    frames_q: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=8)

    def decode() -> None:
        cap = cv2.VideoCapture(str(clip))
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames_q.put(_tutorial_preprocess(frame, size, m, s))
        finally:
            cap.release()
            frames_q.put(None)

    frames = 0
    with open(os.devnull, "w") as sink:
        t0 = time.perf_counter()
        reader = threading.Thread(target=decode, name="bench-decode", daemon=True)
        reader.start()
        while (x := frames_q.get()) is not None:
            frames = _infer_and_print(sess, input_name, x, labels, frames, sink)
        elapsed = time.perf_counter() - t0
        reader.join()
    return _loop_result(frames, elapsed, model_path)


def audio_rtf(engines_dir: Path, seconds_of_audio: float, repeats: int, progress: Progress | None = None) -> dict[str, Any]:
    """Seconds of compute per second of audio: log-mel features + streaming GRU, 0.1 s chunks."""
    from edge_inspector.inspectors.acoustic_model import AcousticStreamRunner
    from edge_inspector.inspectors.factory import engine_opener, open_acoustic
    from edge_inspector.manifest import load_manifest
    from edge_inspector.synthetic.machines import make_clip

    if progress:
        progress("audio real-time factor")
    manifest = load_manifest(engines_dir)
    if not manifest.entries("acoustic"):
        return {"skipped": f"{engines_dir}/manifest.toml has no acoustic model"}
    models = open_acoustic(manifest, engine_opener("onnxruntime"))
    model = models[0].entry
    clip = make_clip(np.random.default_rng(3), duration_s=seconds_of_audio, label="bearing", sample_rate=model.sample_rate)
    chunk = int(round(0.1 * model.sample_rate))
    runner = AcousticStreamRunner(models)
    runs: list[float] = []
    infer_ms: list[float] = []
    try:
        for _ in range(repeats + 1):  # the first pass warms up
            runner.reset()
            runner.inference_ms = 0.0
            t0 = time.perf_counter()
            for a in range(0, clip.samples.size, chunk):
                runner.push(clip.samples[a : a + chunk])
            runs.append(time.perf_counter() - t0)
            infer_ms.append(runner.inference_ms)
    finally:
        for m in models:
            m.engine.close()
    best = float(np.median(runs[1:]))
    inference_s = float(np.median(infer_ms[1:])) / 1000.0
    return {"audio_s": seconds_of_audio, "chunk_s": 0.1, "compute_s": round(best, 4),
            "rtf": round(best / seconds_of_audio, 5), "inference_rtf": round(inference_s / seconds_of_audio, 5),
            "features_rtf": round((best - inference_s) / seconds_of_audio, 5), "repeats": repeats}


def acoustic_path_rtf(engines_dir: Path, seconds_of_audio: float, repeats: int,
                      progress: Progress | None = None) -> dict[str, Any]:
    """The whole acoustic path on one core: features, the classifier, a model learnt by
    ``learn acoustic`` (from 60 s of a synthetic machine, made here) and the inspector's episode
    logic, 0.1 s chunks, ONNX Runtime with one thread.  CPU seconds (this thread) per audio second."""
    import shutil
    import tempfile

    from edge_inspector.inspectors.acoustic import AcousticInspector
    from edge_inspector.inspectors.factory import engine_opener, open_acoustic
    from edge_inspector.manifest import load_manifest
    from edge_inspector.sources.base import BoundedQueue, Chunk
    from edge_inspector.synthetic.machines import machine_stream

    if progress:
        progress("whole acoustic path (classifier + learnt model) on one core")
    manifest = load_manifest(engines_dir)
    if manifest.classifier("acoustic") is None:
        return {"skipped": f"{engines_dir}/manifest.toml has no acoustic classifier"}
    stream = machine_stream(11, 1.0, fault_rate=0.0)
    good = np.concatenate([next(stream) for _ in range(60)])
    work = Path(tempfile.mkdtemp(prefix="bench-learn-"))
    try:
        learnt = _learn_quietly(good, engines_dir, work / "learnt")
        models = open_acoustic(load_manifest(learnt), engine_opener("onnxruntime", intra_op_threads=1))
        audio = np.concatenate([next(stream) for _ in range(int(seconds_of_audio))])
        chunk = 1600
        runs = []
        for _ in range(repeats + 1):  # the first pass warms up
            inspector = AcousticInspector(models, None, {"m": BoundedQueue(1, "block")}, lambda v: None)
            t0 = time.thread_time()
            for i, a in enumerate(range(0, audio.size, chunk)):
                inspector.process(Chunk("m", i * 0.1, 0.0, 0.0, audio[a : a + chunk], 16000))
            inspector.finish()
            runs.append(time.thread_time() - t0)
        for m in models:
            m.engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = float(np.median(runs[1:]))
    return {"audio_s": round(audio.size / 16000, 1), "cpu_s": round(best, 4), "rtf": round(best / (audio.size / 16000), 5),
            "models": [m.entry.name for m in models], "repeats": repeats, "threads": 1}


def _learn_quietly(samples: np.ndarray, base: Path, out: Path) -> Path:
    """What ``learn acoustic`` writes, without its progress lines (the benchmark has its own)."""
    import argparse
    import contextlib
    import io

    import scipy.io.wavfile

    from edge_inspector.commands.learn import learn_acoustic

    wav = out.parent / "good.wav"
    scipy.io.wavfile.write(wav, 16000, (np.clip(samples, -1, 1) * 32767).astype(np.int16))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        learn_acoustic(argparse.Namespace(sources=[wav], out=out, engines=base, max_false_alarms_per_hour=1.0,
                                          microphone=None))
    return out


def bus_throughput(n_events: int, progress: Progress | None = None) -> dict[str, Any]:
    """Events/s through EventBus (SQLite journal + PUB) to a SUB on loopback, first to last."""
    import zmq

    from edge_inspector.events.bus import EventBus
    from edge_inspector.events.journal import Journal
    from edge_inspector.values import Verdict

    if progress:
        progress("event bus")
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        journal = Journal(Path(tmp) / "journal.sqlite3")
        bus = EventBus("tcp://127.0.0.1:*", journal, catchup_endpoint=None, heartbeat_s=60.0, linger_ms=0)
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"verdict.")
        sub.connect(bus.endpoint)
        try:
            probe = Verdict("bench", "visual", "ok", 0.01, False, time.time(), time.monotonic(), "visual_cnn", "0" * 64, frame=0)
            deadline = time.monotonic() + 5.0
            while not sub.poll(50):  # slow joiner: publish until the subscription is live
                bus.publish_verdict(probe, "verdict")
                if time.monotonic() > deadline:
                    raise RuntimeError("subscriber never connected to the event bus")
            while sub.poll(50):
                sub.recv_multipart()
            extra = {"probs": {"ok": 0.99, "scratch": 0.01}, "batch": 8,
                     "timing_ms": {"queue_wait": 1.0, "preprocess": 2.0, "inference": 10.0}}
            received = 0
            t0 = time.perf_counter()
            for i in range(n_events):
                bus.publish_verdict(Verdict("bench", "visual", "ok", 0.01, False, time.time(), time.monotonic(),
                                            "visual_cnn", "0" * 64, frame=i, extra=extra), "verdict")
                while sub.poll(0):
                    sub.recv_multipart()
                    received += 1
            t_pub = time.perf_counter() - t0
            while received < n_events and sub.poll(1000):
                sub.recv_multipart()
                received += 1
            t_all = time.perf_counter() - t0
        finally:
            sub.close(0)
            ctx.term()
            bus.close(timeout_s=2.0)
            journal.close()
    return {"events": n_events, "received": received, "publish_per_s": round(n_events / t_pub, 1),
            "events_per_s": round(received / t_all, 1), "seconds": round(t_all, 3)}


def preprocess_cost(engines_dir: Path, clip_frames: list[np.ndarray], batch: int, seconds: float,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Where the daemon's preprocessing time goes for one frame size (ms per frame).

    ``runner_preprocess`` is :meth:`VisualModelRunner.preprocess` exactly as the inspector
    calls it, on the clip's distinct frames in turn (as the daemon gets them); ``resize`` and
    ``normalise_layout`` split it into its two passes (on one frame); ``resize_area``
    is one plain INTER_AREA resize (what :func:`resize_to` approximates, faster) and
    ``resize_linear`` what the naive loop does instead.
    """
    import cv2

    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.inspectors.visual_model import resize_to
    from edge_inspector.manifest import load_manifest

    if progress:
        progress("preprocess cost breakdown")
    manifest = load_manifest(engines_dir)
    runner = open_visual(manifest, engine_opener("onnxruntime", intra_op_threads=1), batch, precision="fp32")
    h, w = runner.height, runner.width
    frame = clip_frames[0]
    batches = itertools.cycle([[clip_frames[(i + k) % len(clip_frames)] for k in range(batch)]
                               for i in range(0, len(clip_frames), batch)])

    def runner_preprocess() -> np.ndarray:
        return runner.preprocess(next(batches))
    small = np.stack([cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)] * batch)

    def normalise() -> np.ndarray:
        return runner.preprocess(list(small))  # already model-sized: no resize happens

    def per_frame(fn: Callable[[], object], n_frames: int, cpu: bool = False) -> float:
        """Wall ms per frame, or with ``cpu`` the process's CPU ms (OpenCV may use more than one thread)."""
        fn()
        calls, t_end = 0, time.perf_counter() + seconds
        t0, c0 = time.perf_counter(), os.times()
        while time.perf_counter() < t_end or calls < 3:
            fn()
            calls += 1
        c1 = os.times()
        spent = (c1.user - c0.user + c1.system - c0.system) if cpu else time.perf_counter() - t0
        return round(spent * 1000.0 / (calls * n_frames), 3)

    try:
        return {
            "frame": [int(frame.shape[1]), int(frame.shape[0])], "batch": batch,
            "runner_preprocess": per_frame(runner_preprocess, batch),
            "runner_preprocess_cpu": per_frame(runner_preprocess, batch, cpu=True),
            "distinct_frames": len(clip_frames),
            "resize": per_frame(lambda: resize_to(frame, w, h), 1),
            "resize_area": per_frame(lambda: cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), 1),
            "resize_linear": per_frame(lambda: cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), 1),
            "normalise_layout": per_frame(normalise, batch),
        }
    finally:
        runner.close()
