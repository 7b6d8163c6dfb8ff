"""Benchmarks of the daemon itself: replay at max speed, latency at 30 fps, cameras at scale.

All three run :class:`edge_inspector.service.Service` in-process with a config built here, so
what is measured is exactly the pipeline ``edge-inspector run`` / ``replay`` builds (camera
threads, batching inspector, journal, ZeroMQ PUB); only the observers are the benchmark's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from bench_common import CpuMeter, free_port, median_fps_run, percentiles

Progress = Callable[[str], None]


def daemon_config(tmp: Path, engines: Path, cameras: list[dict[str, Any]], max_batch: int | None, port: int,
                  precision: str | None = None, policy: dict[str, Any] | None = None) -> Any:
    """The daemon's config for one scenario: the defaults (measured policy, default precision)
    unless ``max_batch`` / ``precision`` are given."""
    from edge_inspector.config import parse_config

    runtime: dict[str, Any] = {"backend": "onnxruntime", "engines_dir": str(engines)}
    runtime.update({k: v for k, v in (("max_batch", max_batch), ("precision", precision)) if v is not None})
    if policy:  # a fixed inference policy: {"batch", "workers", "threads"} as a replay reports it
        runtime.update(max_batch=policy["batch"], inference_workers=policy["workers"], intra_op_threads=policy["threads"])
    return parse_config({
        "camera": cameras,
        "runtime": runtime,
        "publisher": {"endpoint": f"tcp://127.0.0.1:{port}", "catchup_endpoint": None,
                      "journal": str(tmp / "journal.sqlite3"), "publish_verdicts": True},
        "health": {"listen": None},
        "snapshots": {"enabled": False},  # as `replay`; what pictures cost is the views scenario's
    })


def _stage_summary(verdicts: list[Any]) -> dict[str, Any]:
    """Per-frame stage timings carried in ``Verdict.extra["timing_ms"]``."""
    timing = [v.extra.get("timing_ms", {}) for v in verdicts]
    out = {k: percentiles(t[k] for t in timing if k in t) for k in ("queue_wait", "preprocess", "inference", "inspect_total")}
    out["batch"] = percentiles(v.extra.get("batch", 1) for v in verdicts)
    return out


def replay_max(clip: Path, engines: Path, max_batch: int | None, precision: str | None = None,
               progress: Progress | None = None, decoder: str = "auto", policy: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """``replay --speed max``: one file camera (realtime = false), every frame inspected, verdicts/s;
    ``decoder``: the camera's ``decoder`` key; ``policy``: a fixed inference policy (default: measured).
    ``decisions``: each frame's verdict in order, 1 defective, 0 good."""
    from edge_inspector.service import Service

    if progress:
        progress(f"daemon end to end (replay --speed max, {precision or 'default precision'}, decoder {decoder})")
    stamps: list[float] = []
    verdicts: list[Any] = []
    cpu_at: list[Any] = []  # the process's CPU times at the first and at the latest verdict

    def on_verdict(v: Any) -> None:
        stamps.append(time.monotonic())
        verdicts.append(v)
        now = os.times()
        cpu_at[min(1, len(cpu_at)):] = [now]

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        cfg = daemon_config(Path(tmp), engines, [{"name": "cam0", "uri": f"file://{clip}", "realtime": False, "decoder": decoder}],
                      max_batch, free_port(), precision, policy)
        svc = Service(cfg, on_verdict=on_verdict)
        meter = CpuMeter()
        t0 = time.monotonic()
        code = svc.run()
        cpu = meter.stop()
        stats = svc.visual.stats if svc.visual is not None else None
        policy, models = svc.policy, svc.model_info()
    if code != 0 or not stamps:
        raise RuntimeError(f"daemon replay failed (exit {code}): {svc.failure}")
    # Timed like the naive loop: from the first decoded frame to the last verdict, so neither
    # figure counts loading the model or opening the file.
    elapsed = stamps[-1] - verdicts[0].mono
    return {
        "window": _cpu_window(cpu_at, stamps),
        "fps": round(len(stamps) / elapsed, 1), "verdicts": len(stamps), "seconds": round(elapsed, 3),
        "startup_s": round(verdicts[0].mono - t0, 3),
        "batch_sizes": {str(k): n for k, n in sorted(stats.batch_sizes.items())} if stats else {},
        "ms_per_frame": {
            "preprocess": round(stats.preprocess_ms_total / max(1, stats.frames), 3) if stats else None,
            "inference": round(stats.infer_ms_total / max(1, stats.frames), 3) if stats else None,
        },
        "stages": _stage_summary(verdicts), "cpu": cpu,
        "policy": {"batch": policy.batch, "workers": policy.workers, "threads": policy.threads, "how": policy.how},
        "models": models,
        "decisions": "".join("1" if v.defect else "0" for v in sorted(verdicts, key=lambda v: v.frame)),
    }


def paired_replays(clip: Path, engines: Path, precision: str, max_batch: int | None, repeats: int, engine_s: float,
                   decode_cpu_ms: float | None, progress: Progress | None = None, decoder: str = "opencv") -> dict[str, Any]:
    """``repeats`` daemon replays at ``precision``, each followed at once by its own measurement of
    the CPU per frame of the work every frame needs, at the batch the daemon ran.

    A shared VM's speed drifts by 10-15 % over minutes, so each run gets its own CPU ceiling: every
    usable core busy with a one-thread decode -> preprocess -> inference loop over the same clip
    (:func:`~bench_engine.pipeline_cpu_ms`, its process CPU per frame), and its own share of it.
    Beside it, each run's **CPU share**: that loop's CPU per frame over the whole daemon process's
    CPU per frame in the same run, i.e. its share of the ceiling per core it was given.  On a
    machine shared with other work the frames/s ratio also measures how many cores the neighbours
    left (a fair scheduler gives a session its share, whatever it needs); the CPU share measures
    only the daemon.  The parts are also timed each alone (inference on one input, preprocessing
    on the clip's own distinct frames, ``decode_cpu_ms`` measured earlier in the run with the same
    decoder): ``runs_parts_cpu_ms`` is their sum, below the loop's by what the three cost each other
    in the caches.  ``decoder`` is the camera's (``pyav``: frames kept YUV, the model's input made
    from them).
    """
    from bench_common import clip_frames
    from bench_engine import ceiling_fps, inference_cpu_ms, pipeline_cpu_ms, preprocess_cpu_ms

    from edge_inspector.inspectors.policy import usable_cores

    frames = clip_frames(clip, 24, decoder)
    runs, ceilings, ratios, infer, prep, loops, parts, shares = [], [], [], [], [], [], [], []
    for _ in range(max(1, repeats)):
        replay = replay_max(clip, engines, max_batch, precision, progress=progress, decoder=decoder)
        replay.pop("decisions")
        batch = replay["policy"]["batch"]
        if progress:
            progress(f"decode -> preprocess -> inference on one thread, and each alone, at batch {batch} ({precision}) "
                     "right after the replay")
        loop_ms = pipeline_cpu_ms(clip, engines, precision, batch, engine_s, decoder)
        cpu_ms = inference_cpu_ms(engines, precision, batch, engine_s)
        prep_ms = preprocess_cpu_ms(engines, frames, batch, engine_s / 2)
        runs.append(replay)
        loops.append(loop_ms)
        infer.append(cpu_ms)
        prep.append(prep_ms)
        if decode_cpu_ms is not None:
            parts.append(round(decode_cpu_ms + prep_ms + cpu_ms, 3))
        ceilings.append(ceiling_fps(usable_cores(), loop_ms))
        ratios.append(round(replay["fps"] / ceilings[-1], 3))
        if replay["window"]:  # the ceiling's CPU per frame over the daemon's
            shares.append(round(loop_ms / replay["window"]["cpu_ms_per_frame"], 3))
    out = median_fps_run(runs)  # runs_fps in run order, beside the ceiling of each
    out["precision"] = precision
    out["decoder"] = decoder
    out["runs_pipeline_cpu_ms"] = loops
    out["runs_parts_cpu_ms"] = parts
    out["runs_inference_cpu_ms"] = infer
    out["runs_preprocess_cpu_ms"] = prep
    out["runs_ceiling_fps"] = ceilings
    out["runs_vs_ceiling"] = ratios
    out["vs_ceiling_median"] = round(statistics.median(ratios), 3) if ratios else None
    out["runs_cpu_ms_per_frame"] = [r["window"].get("cpu_ms_per_frame") for r in runs]
    out["runs_cores_busy"] = [r["window"].get("cores_busy") for r in runs]
    out["runs_cpu_share"] = shares
    out["cpu_share_median"] = round(statistics.median(shares), 3) if shares else None
    return out


def _cpu_window(cpu_at: list[Any], stamps: list[float]) -> dict[str, Any]:
    """The whole process's CPU from the first verdict to the last: per frame, and cores busy.

    Load-independent where frames/s is not: a neighbour's work takes cores from the daemon, not
    CPU time from each of its frames.
    """
    if len(cpu_at) < 2 or len(stamps) < 2:
        return {}
    first, last = cpu_at
    cpu_s = (last.user - first.user) + (last.system - first.system)
    return {"cpu_ms_per_frame": round(1000.0 * cpu_s / (len(stamps) - 1), 3),
            "cores_busy": round(cpu_s / max(1e-6, stamps[-1] - stamps[0]), 2)}


def terminate(servers: list[subprocess.Popen[bytes]]) -> None:
    for s in servers:
        s.terminate()
    for s in servers:
        try:
            s.wait(5)
        except subprocess.TimeoutExpired:
            s.kill()
            s.wait()


def serve_mjpeg(clip: Path, port: int) -> subprocess.Popen[bytes]:
    """A live HTTP MJPEG camera: ffmpeg paces the clip at its frame rate, stream copy (no re-encode)."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c:v", "copy", "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def scale_live(mjpeg: Path, engines: Path, max_batch: int | None, counts: list[int], fps: int, seconds: float,
               warmup_s: float, progress: Progress | None = None) -> dict[str, Any]:
    """N live HTTP MJPEG cameras at ``fps``: inspected rate, drops, latency and CPU per thread."""
    results = []
    for n in counts:
        if progress:
            progress(f"scale: {n} live camera(s) at {fps} fps")
        results.append(_scale_one(mjpeg, engines, max_batch, n, fps, seconds, warmup_s))
    sustained = [r["cameras"] for r in results if r["sustained"]]
    best = max(sustained) if sustained else 0
    limiting = next((r["limiting_stage"] for r in results if not r["sustained"]), None)
    return {"fps": fps, "seconds": seconds, "runs": results, "max_sustained_cameras": best, "limiting_stage": limiting}


def _scale_one(mjpeg: Path, engines: Path, max_batch: int | None, n: int, fps: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    from edge_inspector.service import Service

    ports = [free_port() for _ in range(n)]
    servers = [serve_mjpeg(mjpeg, p) for p in ports]
    verdicts: list[tuple[float, Any]] = []
    recording = threading.Event()

    def on_verdict(v: Any) -> None:
        if recording.is_set():
            verdicts.append((time.monotonic(), v))

    try:
        time.sleep(0.5)  # let ffmpeg bind before the cameras connect (they retry anyway)
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            cams = [{"name": f"cam{i}", "uri": f"http://127.0.0.1:{p}/"} for i, p in enumerate(ports)]
            svc = Service(daemon_config(Path(tmp), engines, cams, max_batch, free_port()), on_verdict=on_verdict)
            svc.start()
            try:
                time.sleep(warmup_s)
                before = {r["source"]: r for r in svc.source_rows()}
                dec0 = {k: v.thread.decode_ms_total for k, v in svc.sources.items()}
                meter = CpuMeter({f"ffmpeg server {i}": s.pid for i, s in enumerate(servers)})
                recording.set()
                t0 = time.monotonic()
                time.sleep(seconds)
                recording.clear()
                elapsed = time.monotonic() - t0
                cpu = meter.stop()
                after = {r["source"]: r for r in svc.source_rows()}
                dec1 = {k: v.thread.decode_ms_total for k, v in svc.sources.items()}
                backlog = {k: len(v.queue) for k, v in svc.sources.items()}
            finally:
                svc.stop()
    finally:
        terminate(servers)
    per_cam = {}
    for name, a in after.items():
        b = before[name]
        captured = a["captured"] - b["captured"]
        per_cam[name] = {
            "captured_fps": round(captured / elapsed, 2),
            "inspected_fps": round((a["inspected"] - b["inspected"]) / elapsed, 2),
            "dropped": a["dropped"] - b["dropped"], "dropped_total": a["dropped"],
            "read_ms_per_frame": round((dec1[name] - dec0[name]) / max(1, captured), 3),
            "queue_backlog": backlog[name], "state": a["state"],
        }
    lat = [(t - v.mono) * 1000.0 for t, v in verdicts]
    ok = all(c["dropped"] == 0 and c["inspected_fps"] >= 0.95 * fps and c["captured_fps"] >= 0.95 * fps
             for c in per_cam.values())
    stages = _stage_summary([v for _, v in verdicts])
    return {"cameras": n, "sustained": ok, "per_camera": per_cam,
            "inspected_fps_total": round(sum(c["inspected_fps"] for c in per_cam.values()), 1),
            "dropped": sum(c["dropped"] for c in per_cam.values()),
            "capture_to_verdict_ms": percentiles(lat), "stages_ms": stages, "cpu": cpu,
            "limiting_stage": None if ok else _limiting_stage(per_cam, stages, cpu, elapsed, fps)}


def _limiting_stage(per_cam: dict[str, Any], stages: dict[str, Any], cpu: dict[str, Any], elapsed: float, fps: int) -> str:
    """Name the stage that bounds the rate, from the shares of CPU and of the inspector's time."""
    shares = cpu["percent_of_one_core"]
    cores = cpu["cores"] or 1
    total = sum(shares.values())
    decode = sum(v for k, v in shares.items() if k == "camera")
    inspector = sum(v for k, v in shares.items() if k.startswith("visual-inspector"))  # every worker
    delivery = shares.get("visual-delivery", 0.0)
    native = shares.get("native", 0.0)
    servers = sum(v for k, v in shares.items() if k.startswith("ffmpeg"))
    batch = stages["batch"]["mean"] or 1.0
    pre = (stages["preprocess"]["mean"] or 0.0) / batch
    inf = (stages["inference"]["mean"] or 0.0) / batch
    rate = sum(c["inspected_fps"] for c in per_cam.values())
    busy = rate * (pre + inf) / 10.0  # % of one worker's wall time spent in the model
    parts = {"decode (camera threads)": decode, "inference (ONNX Runtime incl. its pool)": inf * rate / 10.0,
             "preprocess": pre * rate / 10.0, "inspector workers other (batching, hand-off)":
             max(0.0, inspector - (pre + inf) * rate / 10.0), "verdict delivery (postprocess, journal, publish)": delivery}
    top = max(parts, key=lambda k: parts[k])
    saturated = total >= 0.9 * 100.0 * cores
    return (f"{top}: CPU {'saturated' if saturated else 'not saturated'} ({total:.0f}% of {100 * cores}%, "
            f"of which ffmpeg servers {servers:.0f}%, camera decode {decode:.0f}%, inspector workers {inspector:.0f}%, "
            f"verdict delivery {delivery:.0f}%, "
            f"native pools {native:.0f}%); model busy {busy:.0f}% of one inspector worker; "
            f"per frame: preprocess {pre:.1f} ms, inference {inf:.1f} ms")



def microphone_cpu(engines: Path, seconds: float, progress: Progress | None = None) -> dict[str, Any]:
    """CPU use of the whole microphone path in the daemon: a 16 kHz source in real time,
    chunking, log-mel features, the streaming GRU, hysteresis and publishing."""
    from edge_inspector.config import parse_config
    from edge_inspector.service import Service

    if progress:
        progress(f"microphone path CPU ({seconds:g} s of live 16 kHz audio)")
    with tempfile.TemporaryDirectory(prefix="bench-mic-") as tmp:
        cfg = parse_config({
            "microphone": [{"name": "mic0", "uri": "synthetic://machine?seed=5&fault_rate=0.2"}],
            "runtime": {"backend": "onnxruntime", "engines_dir": str(engines)},
            "publisher": {"endpoint": f"tcp://127.0.0.1:{free_port()}", "catchup_endpoint": None,
                          "journal": str(Path(tmp) / "journal.sqlite3"), "publish_verdicts": True},
            "health": {"listen": None},
        })
        svc = Service(cfg)
        svc.start()
        try:
            time.sleep(1.0)  # model warm-up and the first chunks
            meter = CpuMeter()
            time.sleep(seconds)
            cpu = meter.stop()
            audio_s = svc.acoustic.stats.audio_s if svc.acoustic is not None else 0.0
        finally:
            svc.stop()
    groups = cpu["percent_of_one_core"]
    path = {k: v for k, v in groups.items() if k.startswith(("microphone", "acoustic"))}
    return {"sample_rate": 16000, "seconds": seconds, "audio_s_inspected": round(audio_s, 2),
            "percent_of_one_core": path, "path_total_percent": round(sum(path.values()), 2),
            "process_percent": cpu["process_percent"]}
