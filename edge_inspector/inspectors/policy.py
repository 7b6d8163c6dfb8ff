"""How the visual models run on this machine: batch size, inference workers, threads per call.

Which batch size is fastest per frame, and whether cores are better used by one engine call on
several threads or by several calls side by side, depends on the model, its precision, the
backend and the CPU or GPU; no default is right everywhere (on a 2-core Xeon the shipped model is
faster per frame at batch 1 than at 8, and two single-threaded calls side by side do ~1.8x the
frames of one call on two threads).  So the daemon measures, the first time a set of model files
runs on a machine, and keeps the answer:

1. **batch**: the runner at each candidate batch size (1, 2, 4, 8, up to ``runtime.max_batch``
   when set), on one thread; the smallest batch within 5 % of the fastest per frame whose call
   takes at most ``runtime.max_call_ms`` (a live frame never waits behind a longer call);
2. **workers x threads** (ONNX Runtime): W calls side by side (one session, ONNX Runtime runs
   concurrent calls in parallel) of T threads each, for W x T = every usable core, and one call
   on one thread; the most frames/s wins, ties (within 5 %) going to the earlier candidate, most
   workers first.  TensorRT runs one call at a time on the GPU: one worker.

The choice is cached as JSON beside the TensorRT plans (``default_cache_dir()``) under a key of
everything it depends on: each model file's sha256, backend, precision, device, usable cores,
library versions, the candidates and the bound; a new model, a new library or another machine
measures again.  ``runtime.max_batch``, ``intra_op_threads`` and ``inference_workers`` override
what they name (all three set: nothing is measured).  ``build-engines`` measures the TensorRT
batch once the plans exist, so the first start does not have to.  Every start logs the choice
and where it came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

POLICY_SCHEMA = "edge-inspector/policy/1"
BATCHES = (1, 2, 4, 8)
TIE = 0.05  # within 5 %: the simpler choice (smaller batch, earlier candidate)


@dataclass(frozen=True)
class Policy:
    """How the visual runner runs; ``how`` is "measured", "cached" or "configured"."""

    batch: int
    workers: int
    threads: int  # ONNX Runtime intra-op threads per call (TensorRT: 1, meaning nothing)
    how: str = "configured"
    figures: dict[str, Any] = field(default_factory=dict)  # what was measured, for the log and the cache
    cache_file: str = ""

    def describe(self) -> str:
        text = f"batch {self.batch}, {self.workers} worker(s) x {self.threads} thread(s) ({self.how}"
        per_frame = self.figures.get("ms_per_frame")
        if per_frame:
            text += "; ms/frame at batch " + ", ".join(f"{b}: {ms:.2f}" for b, ms in per_frame.items())
        parallel = self.figures.get("frames_per_s")
        if parallel:
            text += "; frames/s " + ", ".join(f"{k}: {v:.0f}" for k, v in parallel.items())
        if "load_1min" in self.figures:
            text += f"; load {self.figures['load_1min']}"
        return text + (f"; {self.cache_file}" if self.cache_file else "") + ")"


def usable_cores() -> int:
    """Cores this process may run on (a container's or systemd's CPU affinity, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_plans(cores: int, backend: str) -> list[tuple[int, int]]:
    """(workers, threads per call) candidates, most workers first."""
    if backend == "tensorrt":
        return [(1, 1)]
    plans = [(cores, 1), (1, cores)]
    if cores >= 4:
        plans.append((cores // 2, 2))
    plans.append((1, 1))
    return list(dict.fromkeys(plans))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def policy_key(shas: list[str], backend: str, precision: str, device: str, cores: int,
               batches: tuple[int, ...], max_call_ms: float) -> dict[str, Any]:
    """Everything the measured choice depends on."""
    from importlib import metadata

    versions = {}
    for dist in ("onnxruntime", "tensorrt"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"schema": POLICY_SCHEMA, "models": sorted(shas), "backend": backend, "precision": precision,
            "device": device, "cores": cores, "versions": versions, "batches": list(batches),
            "max_call_ms": max_call_ms}


def cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / f"policy-{digest[:20]}.json"


def busy(load: float, cores: int) -> bool:
    """Was the machine busy with other work (1-minute load above half its cores)?"""
    return load > 0.5 * cores


def load_cached(path: Path, key: dict[str, Any]) -> Policy | None:
    """The cached choice for exactly ``key``; None when absent, damaged, or measured while the machine
    was busy with other work (a crowded machine can make the wrong plan look best: measure again)."""
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        if busy(float(data.get("figures", {}).get("load_1min", 0.0)), int(key.get("cores", 1))):
            log.info("the cached inference policy was measured under load %.1f: measuring again",
                     data["figures"]["load_1min"])
            return None
        return Policy(int(data["batch"]), int(data["workers"]), int(data["threads"]), "cached", data.get("figures", {}),
                      str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: measure again


def save(path: Path, key: dict[str, Any], policy: Policy) -> str:
    """Write the choice atomically; returns the path, or "" when the cache is not writable (logged)."""
    data = {"key": key, "batch": policy.batch, "workers": policy.workers, "threads": policy.threads,
            "figures": policy.figures, "measured_at": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
        return str(path)
    except OSError as exc:
        log.warning("inference policy not cached (%s): it will be measured again at the next start", exc)
        return ""


# ------------------------------------------------------------------------------ measuring
Run = Callable[[np.ndarray], object]


def ms_per_frame(run: Run, x: np.ndarray, seconds: float) -> tuple[float, float]:
    """(median ms per call, median ms per frame) of ``run(x)`` over ``seconds`` (after a warm-up)."""
    for _ in range(2):
        run(x)
    calls: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(calls) < 3:
        t = time.perf_counter()
        run(x)
        calls.append(time.perf_counter() - t)
    call = 1000.0 * float(np.median(calls))
    return call, call / len(x)


def parallel_fps(run: Run, x: np.ndarray, workers: int, seconds: float) -> float:
    """Frames/s of ``workers`` threads calling ``run(x)`` back to back for ``seconds``."""
    run(x)
    counts = [0] * workers
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            run(x)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,), name=f"policy-probe-{i}", daemon=True) for i in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) * len(x) / (time.perf_counter() - start)


def choose_batch(run: Run, make_input: Callable[[int], np.ndarray], batches: tuple[int, ...], max_call_ms: float,
                 seconds: float) -> tuple[int, dict[int, float]]:
    """The smallest batch within ``TIE`` of the fastest per frame whose call fits ``max_call_ms``."""
    timed = {b: ms_per_frame(run, make_input(b), seconds) for b in batches}
    fitting = {b: per for b, (call, per) in timed.items() if call <= max_call_ms or b == min(batches)}
    best = min(fitting.values())
    return min(b for b, per in fitting.items() if per <= best * (1 + TIE)), {b: per for b, (_, per) in timed.items()}


def choose_plan(runs: dict[int, Run], x: np.ndarray, plans: list[tuple[int, int]],
                seconds: float, rounds: int = 3) -> tuple[tuple[int, int], dict[str, float]]:
    """The (workers, threads) plan with the most frames/s (``runs[threads]`` calls with that many
    threads): the plans in turn within each of ``rounds`` rounds, the median round of each, so a
    burst of other work lands on every plan alike."""
    per: dict[tuple[int, int], list[float]] = {plan: [] for plan in plans}
    for _ in range(max(1, rounds)):
        for plan in plans:
            per[plan].append(parallel_fps(runs[plan[1]], x, plan[0], seconds / rounds))
    fps = {plan: float(np.median(v)) for plan, v in per.items()}
    best = max(fps.values())
    choice = next(plan for plan in plans if fps[plan] >= best * (1 - TIE))
    return choice, {f"{w}x{t}": v for (w, t), v in fps.items()}


def as_dict(policy: Policy) -> dict[str, Any]:
    return asdict(policy)


# ------------------------------------------------------------------------------ the daemon's entry point
def resolve(manifest: Any, backend: str, precision: str | None, *, max_batch: int | None = None,
            workers: int | None = None, threads: int | None = None, max_call_ms: float = 33.0,
            cache_dir: Path | None = None, remeasure: bool = False, seconds: float = 0.25) -> Policy:
    """The policy for the directory's visual models: configured, cached, or measured now (and cached)."""
    cores = usable_cores()
    if threads == 0:  # the historical meaning of intra_op_threads = 0
        threads = max(1, cores - 1)
    if backend == "tensorrt":
        workers, threads = 1, 1
    if max_batch is not None and workers is not None and threads is not None:
        return Policy(max_batch, workers, threads, "configured")
    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.precision import model_file
    from edge_inspector.runtime.build import default_cache_dir

    files = [model_file(manifest.directory, e, precision, backend) for e in manifest.entries("visual")]
    batches = (max_batch,) if max_batch is not None else BATCHES
    plans = [(w, t) for w, t in thread_plans(cores, backend) if workers in (None, w) and threads in (None, t)]
    if not plans:  # one of the two given: the other fills the cores
        plans = [(workers or max(1, cores // (threads or 1)), threads or max(1, cores // (workers or 1)))]
    key = policy_key([f.sha256 for f in files], backend, "+".join(f.precision for f in files), _device(backend),
                     cores, batches, max_call_ms)
    key["plans"] = [list(p) for p in plans]
    path = cache_path(Path(cache_dir) if cache_dir is not None else default_cache_dir(), key)
    cached = None if remeasure else load_cached(path, key)
    if cached is not None:
        return cached
    log.info("measuring how the visual models run fastest here (once per model set and machine; %d batch "
             "size(s), %d thread plan(s))", len(batches), len(plans))
    runners: dict[int, Any] = {}
    try:
        for t in sorted({t for _, t in plans} | {1}):
            options = {} if backend == "tensorrt" else {"intra_op_threads": t}
            runners[t] = open_visual(manifest, engine_opener(backend, **options), max(batches), precision=precision)
        one = runners[1]
        image = np.random.default_rng(0).integers(0, 256, (one.height, one.width, 3), dtype=np.uint8)
        make_input = lambda b: one.preprocess([image] * b)  # noqa: E731
        batch, per_frame = choose_batch(one.run, make_input, batches, max_call_ms, seconds)
        (w, t), fps = choose_plan({k: r.run for k, r in runners.items()}, make_input(batch), plans, 3 * seconds)
    finally:
        for r in runners.values():
            r.close()
    load = os.getloadavg()[0]
    figures = {"ms_per_frame": {str(b): round(v, 3) for b, v in per_frame.items()},
               "frames_per_s": {k: round(v, 1) for k, v in fps.items()}, "load_1min": round(load, 2)}
    if busy(load, cores):
        log.warning("inference policy measured while the machine is busy (load %.1f on %d cores): it will be "
                    "measured again at the next start", load, cores)
    measured = Policy(batch, w, t, "measured", figures)
    return Policy(batch, w, t, "measured", figures, save(path, key, measured))


def _device(backend: str) -> str:
    if backend == "tensorrt":
        from edge_inspector.runtime.device import probe_cuda_device

        d = probe_cuda_device()
        return f"{d.name} (compute {d.compute_capability})"
    return cpu_model()
