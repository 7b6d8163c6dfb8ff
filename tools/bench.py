#!/usr/bin/env python3
"""Benchmark edge-inspector against its own parts and against the naive OpenCV loop, in one run.

Measures on this machine, on the same 1280x720 clip and the shipped models:

1. the model alone at each precision (int8, fp32) and batch (1, 2, 4, 8) on one thread, and with
   every core busy (ONNX Runtime; TensorRT where available); a learnt visual anomaly model of
   ``--engines`` (``learn visual``) alone, at batch 1 on one thread
2. decode-only throughput (``cv2.VideoCapture`` read loop, and PyAV's decoder as the daemon uses it)
3. the daemon end to end at ``replay --speed max`` (file camera, realtime = false) at each
   precision, against the CPU ceiling (every core busy with decode + preprocess + inference, with
   the daemon's own decoder); and (``decoders``) its file camera decoded by OpenCV against PyAV,
   alternating runs
4. peers on the same clip: the naive tutorial loop (read, resize, normalise, batch-1 ONNX Runtime,
   print) and a threaded two-stage loop (decode thread + inference thread)
5. latency of a live 30 fps HTTP MJPEG camera into a real ZeroMQ subscriber, per stage
6. 1, 2, 4 live HTTP MJPEG cameras (ffmpeg, 1280x720, 30 fps): rate, drops, CPU per thread
7. audio real-time factor and event bus throughput
8. plant integrations: MQTT QoS 1 events/s through the journal and a local mosquitto, a broker
   outage at 100 events/s (events lost, backlog drain time), PLC decision latency to a Modbus client

Prints a table and PASS/FAIL lines for the product targets, writes JSON (with commit, machine
and versions, to track figures across commits) and a PNG chart next to it.

    python3 tools/bench.py                      # full run, a few minutes
    python3 tools/bench.py --quick              # under a minute
    python3 tools/bench.py --only engine,decode --out /tmp/b.json
    python3 tools/bench.py --only mqtt,outage,plc            # the plant integrations alone
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import ROOT, clip_frames, make_clips, machine_info, median_fps_run  # noqa: E402
from edge_inspector.config import RuntimeConfig  # noqa: E402

SCENARIOS = ("engine", "anomaly", "decode", "daemon", "decoders", "views", "naive", "threaded", "latency", "scale", "audio", "bus",
             "mqtt", "outage", "plc")
BATCHES = [1, 2, 4, 8]
PLANT = {"mqtt", "outage", "plc"}  # need mosquitto (setup.sh --dev) and the mqtt/plc extras, no model

# quick / full: seconds per engine batch, decode seconds, clip frames, latency seconds,
# scale seconds per camera count (+ warm-up), audio repeats, bus events, runs of the daemon and
# naive loop over the clip (the median run is reported: one 300-frame run lasts ~1.5 s, short
# enough for a neighbour's burst of work to move it by 15 %), seconds of the engine-only
# measurement taken right before each daemon run (the efficiency ratio compares the two)
PLANS: dict[str, dict[str, Any]] = {
    "quick": {"engine_s": 1.0, "decode_s": 1.0, "frames": 90, "distinct": 6, "latency_s": 4.0,
              "scale_s": 3.0, "scale_warmup_s": 1.5, "scale_counts": [1, 2, 4], "audio_repeats": 1, "bus_events": 500,
              "repeats": 1, "pair_engine_s": 0.5, "mqtt_events": 2000, "outage_s": 10.0, "plc_decisions": 100,
              "views_pairs": 2, "decoder_pairs": 1},  # alternating runs without / with snapshots and a preview viewer
    "full": {"engine_s": 4.0, "decode_s": 3.0, "frames": 300, "distinct": 24, "latency_s": 20.0,
             "scale_s": 12.0, "scale_warmup_s": 3.0, "scale_counts": [1, 2, 4], "audio_repeats": 5, "bus_events": 5000,
             "repeats": 5, "pair_engine_s": 1.5, "mqtt_events": 20000, "outage_s": 60.0, "plc_decisions": 500,
             "views_pairs": 7, "decoder_pairs": 5},
}


def median_run(measure: Callable[[], dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Run ``measure`` ``repeats`` times; the run with the median fps, plus every run's fps."""
    return median_fps_run(sorted((measure() for _ in range(max(1, repeats))), key=lambda r: r["fps"]))


def _parse_only(text: str | None) -> list[str]:
    if not text:
        return list(SCENARIOS)
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        raise SystemExit(f"bench.py: error: --only: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return [s for s in SCENARIOS if s in wanted]  # in the fixed order: the daemon's ratio needs decode first


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from bench_daemon import microphone_cpu, paired_replays, scale_live
    from bench_decoders import decoders_compared
    from bench_latency import live_latency
    from bench_engine import anomaly_cost, engine_precisions
    from bench_parts import (acoustic_path_rtf, audio_rtf, bus_throughput, decode_throughput, naive_loop, preprocess_cost,
                             threaded_loop)
    from bench_plant import mqtt_outage, mqtt_throughput, plc_latency
    from bench_report import evaluate_targets, print_report, write_chart
    from bench_speed import summarise
    from bench_views import views_cost
    from edge_inspector.errors import UserError
    from edge_inspector.manifest import load_manifest
    from edge_inspector.precision import default_precision, model_file
    from edge_inspector.runtime import available_backends
    from edge_inspector.sources.pyav_capture import pyav_available

    console = Console(stderr=True)
    plan = PLANS["quick" if args.quick else "full"]
    only = _parse_only(args.only)
    engines = args.engines.resolve()
    try:
        manifest = load_manifest(engines)
    except UserError as exc:
        raise SystemExit(f"bench.py: error: {exc}") from None
    vis = manifest.classifier("visual")
    needs_visual = set(only) - {"audio", "bus"} - PLANT
    if needs_visual and vis is None:
        raise SystemExit(f"bench.py: error: {engines}/manifest.toml has no visual classifier")
    precisions = ["int8", "fp32"] if vis is not None and vis.int8 else ["fp32"]
    default = model_file(engines, vis, default_precision("onnxruntime"), "onnxruntime").precision if vis else "fp32"
    decoder = "pyav" if pyav_available() else "opencv"  # what a file camera's decoder = "auto" picks
    results: dict[str, Any] = {
        "machine": machine_info(), "mode": "quick" if args.quick else "full", "scenarios": only,
        "config": {"max_batch": args.max_batch, "backend_default": "onnxruntime", "policy": "measured in this run",
                   "precisions": precisions, "decoder": decoder},
        "default_precision": default,
        "models": {k: {"file": m["file"], "sha256": m["sha256"][:12]} for k, m in manifest.summary().items()},
    }
    load = results["machine"]["load_average_at_start"][0]
    if load > 0.5 * (results["machine"]["cpu_cores"] or 1):
        console.print(f"[yellow]warning:[/] load average {load} on {results['machine']['cpu_cores']} cores: "
                      "other work is running, figures will be low and noisy")
    t_start = time.monotonic()
    cache_before = os.environ.get("EDGE_INSPECTOR_CACHE")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        task = progress.add_task("preparing", total=len(only))

        def step(text: str) -> None:
            progress.update(task, description=text)

        clips = None
        if needs_visual:
            step(f"encoding the {plan['frames']}-frame 1280x720 test clip")
            clips = make_clips(Path(tmp), plan["frames"], distinct=plan["distinct"])
            results["clip"] = {"width": clips.width, "height": clips.height, "fps": clips.fps, "frames": clips.frames,
                               "h264_bytes": clips.h264.stat().st_size, "mjpeg_bytes": clips.mjpeg.stat().st_size}
        # the daemon measures its inference policy in this run (once per precision), not from an older cache
        os.environ["EDGE_INSPECTOR_CACHE"] = str(Path(tmp) / "cache")
        model_path = manifest.path_of(vis) if vis else None
        if {"engine", "daemon"} & set(only):
            results["preprocess_ms_per_frame"] = preprocess_cost(engines, clip_frames(clips.h264, 24), 8,
                                                                 plan["engine_s"] / 2, progress=step)
        for name in only:
            if name == "engine":
                backends = [b for b in ("onnxruntime", "tensorrt") if b in available_backends()]
                results["engine"] = {b: engine_precisions(engines, b, precisions, BATCHES, plan["engine_s"], progress=step)
                                     for b in backends}
            elif name == "anomaly":
                results["anomaly"] = anomaly_cost(engines, plan["engine_s"], progress=step)
            elif name == "decode":
                results["decode"] = decode_throughput(clips.h264, plan["decode_s"], progress=step)
                if decoder == "pyav":
                    results["decode_pyav"] = decode_throughput(clips.h264, plan["decode_s"], progress=step, decoder="pyav")
            elif name == "daemon":  # its ceiling counts the daemon's own decoder
                decode_cpu = (results.get("decode_pyav" if decoder == "pyav" else "decode") or {}).get("cpu_ms_per_frame")
                results["daemon_replay"] = {p: paired_replays(clips.h264, engines, p, args.max_batch, plan["repeats"],
                                                              plan["pair_engine_s"], decode_cpu, progress=step,
                                                              decoder=decoder)
                                            for p in precisions}
            elif name == "decoders":
                if decoder == "pyav":
                    results["decoders"] = decoders_compared(clips.h264, engines, args.max_batch, plan["decoder_pairs"],
                                                            progress=step)
                else:
                    console.print("[yellow]decoders: PyAV is not installed (pip install av): skipped[/]")
            elif name == "views":
                results["views"] = views_cost(clips.h264, engines, args.max_batch, plan["views_pairs"], progress=step)
            elif name in ("naive", "threaded"):  # the naive loop as the tutorials write it: the float model
                loop = naive_loop if name == "naive" else threaded_loop
                files = {"fp32": model_path} if name == "naive" else {
                    p: model_file(engines, vis, p, "onnxruntime").path for p in precisions}
                results[name] = {p: median_run(lambda f=f, loop=loop: loop(clips.h264, f, vis.mean, vis.std,
                                                                           vis.input_shape[1:], vis.labels, progress=step),
                                               plan["repeats"]) for p, f in files.items()}
            elif name == "latency":
                results["latency"] = live_latency(clips.mjpeg, engines, args.max_batch, plan["latency_s"], clips.fps, progress=step)
            elif name == "scale":
                results["scale"] = scale_live(clips.mjpeg, engines, args.max_batch, plan["scale_counts"], clips.fps,
                                              plan["scale_s"], plan["scale_warmup_s"], progress=step)
            elif name == "audio":
                results["audio"] = audio_rtf(engines, 10.0, plan["audio_repeats"], progress=step)
                results["audio"]["microphone_path"] = microphone_cpu(engines, 3.0 if args.quick else 10.0, progress=step)
                results["audio"]["whole_path"] = acoustic_path_rtf(engines, 20.0 if args.quick else 120.0,
                                                                   plan["audio_repeats"], progress=step)
            elif name == "bus":
                results["bus"] = bus_throughput(plan["bus_events"], progress=step)
            elif name == "mqtt":
                results["mqtt"] = mqtt_throughput(plan["mqtt_events"], progress=step)
            elif name == "outage":
                results["mqtt_outage"] = mqtt_outage(100.0, plan["outage_s"], progress=step)
            elif name == "plc":
                results["plc"] = plc_latency(plan["plc_decisions"], progress=step)
            progress.advance(task)
        step("done")
    if cache_before is None:
        os.environ.pop("EDGE_INSPECTOR_CACHE", None)
    else:
        os.environ["EDGE_INSPECTOR_CACHE"] = cache_before
    results.update(summarise(results))
    results["targets"] = evaluate_targets(results)
    results["duration_s"] = round(time.monotonic() - t_start, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    chart = write_chart(results, out.with_suffix(".png")) if not args.no_chart else "chart skipped"
    print_report(results, Console())
    console.print(f"results written to {out}; {chart}; {results['duration_s']} s")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short clips, fewer repetitions (under a minute)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench.json", help="JSON output (PNG written next to it)")
    ap.add_argument("--engines", type=Path, default=ROOT / "engines", help="engines directory with manifest.toml")
    ap.add_argument("--max-batch", type=int, default=RuntimeConfig().max_batch,
                    help="runtime.max_batch for the daemon scenarios (default: unset, the policy the daemon measures)")
    ap.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    args = ap.parse_args(argv)
    if args.max_batch is not None and args.max_batch < 1:
        ap.error("--max-batch must be >= 1")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
