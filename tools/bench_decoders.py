"""Benchmark: the daemon decoding its file camera with OpenCV (full-size BGR) against PyAV (the
model's input made from the YUV planes), in one run.

The ``daemon`` scenario's replay (the bench clip at ``replay --speed max``, the shipped default
precision), once per decoder and alternating (opencv/pyav, then pyav/opencv, ...) so that a shared
machine's drift over minutes hits both alike, all with the inference policy the first run measured.  Figures: each decoder's median frames/s and the
whole process's CPU time per frame (which other programs' load disturbs less), the median of the
pairs' ratios, and how many frames' verdicts differ between the two (the two paths shrink the
frame in a different order; the model must not notice).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

Progress = Callable[[str], None]
DECODERS = ("opencv", "pyav")


def decoders_compared(clip: Path, engines: Path, max_batch: int | None, pairs: int,
                      progress: Progress | None = None) -> dict[str, Any]:
    """``pairs`` replays with each decoder, alternating; medians, ratios, verdict agreement."""
    from bench_daemon import replay_max

    runs: dict[str, list[dict[str, Any]]] = {d: [] for d in DECODERS}
    policy = None  # measured by the first run, then fixed: both decoders run the same batches and workers
    for i in range(max(1, pairs)):
        for decoder in (DECODERS if i % 2 == 0 else DECODERS[::-1]):
            if progress:
                progress(f"decoders: pair {i + 1}/{pairs}, {decoder}")
            run = replay_max(clip, engines, max_batch, None, decoder=decoder, policy=policy)
            policy = policy or run["policy"]
            runs[decoder].append(run)
    reference = runs["opencv"][0]["decisions"]
    differ = [sum(a != b for a, b in zip(reference, r["decisions"])) for r in runs["pyav"]]
    out: dict[str, Any] = {"pairs": max(1, pairs), "frames": len(reference), "defects": reference.count("1"),
                           "verdicts_differ": differ}
    for decoder, rs in runs.items():
        cpu = [r["window"].get("cpu_ms_per_frame") for r in rs if r["window"]]
        out[decoder] = {
            "fps": statistics.median(r["fps"] for r in rs), "runs_fps": [r["fps"] for r in rs],
            "cpu_ms_per_frame": statistics.median(cpu) if cpu else None, "runs_cpu_ms_per_frame": cpu,
            "preprocess_ms_per_frame": statistics.median(r["ms_per_frame"]["preprocess"] for r in rs),
            "models": rs[0]["models"],
        }
    out["policy"] = policy
    ratios = [round(p["fps"] / o["fps"], 3) for p, o in zip(runs["pyav"], runs["opencv"])]
    out["runs_fps_ratio"] = ratios
    out["fps_ratio_median"] = round(statistics.median(ratios), 3)
    cpu_o, cpu_p = out["opencv"]["cpu_ms_per_frame"], out["pyav"]["cpu_ms_per_frame"]
    out["cpu_ratio"] = round(cpu_o / cpu_p, 3) if cpu_o and cpu_p else None  # > 1: PyAV needs less CPU per frame
    return out
