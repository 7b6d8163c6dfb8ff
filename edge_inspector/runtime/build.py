"""ONNX -> TensorRT plan, cached under a key that makes a stale plan impossible to load.

A TensorRT plan is only valid for the TensorRT version, GPU model and compute capability it was
built on, and it bakes in the precision and the shape ranges (batch, the GRU's time axis) it
accepts.  All of these, plus the sha256 of the ONNX file, go into :func:`plan_cache_key`; the key
is part of the plan's file name and is repeated, with its parts, in a JSON sidecar.  A plan copied
from another device, or left behind by a TensorRT upgrade or a retrained model, never matches.

``tensorrt`` is imported only inside functions, so importing this module on a CPU-only machine
costs nothing.  The CUDA device is probed through the driver library with ``ctypes`` (no Python
package needed, works the same on Jetson and x86) *before* TensorRT touches the GPU, because
creating a TensorRT runtime or builder without a usable device can crash the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edge_inspector.errors import UserError
from edge_inspector.manifest import load_manifest, sha256_of
from edge_inspector.runtime.device import (  # noqa: F401 - re-exported for callers of build
    CudaDevice,
    CudaUnavailable,
    import_tensorrt,
    probe_cuda_device,
    require_tensorrt,
    tensorrt_available,
)

PLAN_SCHEMA = "edge-inspector/plan/1"
PRECISIONS = ("int8", "fp16", "fp32")
#: min/opt/max of a dynamic axis other than batch (the GRU's time axis T) unless told otherwise
DEFAULT_EXTRA_RANGE = (1, 50, 400)

Range = tuple[int, int, int]


# --------------------------------------------------------------------------- shape profiles
@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max of the batch axis, and of every other dynamic axis by its ONNX dim name."""

    batch: Range
    extra: tuple[tuple[str, Range], ...] = ()
    default_extra: Range = DEFAULT_EXTRA_RANGE

    @classmethod
    def for_batch(cls, max_batch: int, opt_batch: int | None = None, extra: Mapping[str, Range] | None = None,
                  default_extra: Range = DEFAULT_EXTRA_RANGE) -> "ShapeProfile":
        """Batch 1..max_batch tuned for ``opt_batch`` (default: max_batch, the busy case)."""
        if max_batch < 1:
            raise UserError(f"max_batch must be >= 1, got {max_batch}")
        opt = max_batch if opt_batch is None else min(max(opt_batch, 1), max_batch)
        for name, rng in [*(extra or {}).items(), ("default", default_extra)]:
            if not 1 <= rng[0] <= rng[1] <= rng[2]:
                raise UserError(f"shape range for {name!r} must satisfy 1 <= min <= opt <= max, got {tuple(rng)}")
        extras = tuple(sorted((k, tuple(int(x) for x in v)) for k, v in (extra or {}).items()))
        return cls((1, opt, max_batch), extras, tuple(int(x) for x in default_extra))  # type: ignore[arg-type]

    def range_of(self, dim_name: str | None) -> Range:
        return dict(self.extra).get(dim_name or "", self.default_extra)

    def as_dict(self) -> dict[str, Any]:
        return {"batch": list(self.batch), "extra": {k: list(v) for k, v in self.extra}, "default_extra": list(self.default_extra)}


@dataclass(frozen=True)
class InputRange:
    """Shapes one input accepts: TensorRT's min/opt/max and which axes are the batch axis."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    batch_axes: tuple[int, ...] = field(default=())


def resolve_inputs(onnx_path: Path, profile: ShapeProfile) -> dict[str, InputRange]:
    """Expand ``profile`` into per-input shapes, reading the ONNX inputs' (symbolic) dims.

    The batch symbol is the name of the first dynamic axis of the first input; every axis with
    that name is batch (so the GRU's ``h_in`` [layers, N, hidden] gets its N right).  An input
    with no axis of that name has its first dynamic axis taken as batch.  Any other dynamic
    axis gets ``profile.range_of(its name)``.
    """
    import onnxruntime as ort  # noqa: PLC0415 - a runtime dependency anyway; only needed here

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UserError(f"{onnx_path}: not a loadable ONNX model: {exc}") from exc
    args = session.get_inputs()
    batch_symbol = next((d for a in args for d in a.shape[:1] if isinstance(d, str)), None)
    result: dict[str, InputRange] = {}
    for arg in args:
        dyn = [i for i, d in enumerate(arg.shape) if not isinstance(d, int) or d < 0]
        batch_axes = [i for i in dyn if batch_symbol is not None and arg.shape[i] == batch_symbol] or dyn[:1]
        shapes: list[list[int]] = [[], [], []]
        for i, d in enumerate(arg.shape):
            rng = profile.batch if i in batch_axes else (profile.range_of(d) if i in dyn else (d, d, d))
            for k in range(3):
                shapes[k].append(int(rng[k]))
        result[arg.name] = InputRange(arg.name, *(tuple(s) for s in shapes), batch_axes=tuple(batch_axes))
    return result


def default_profile(onnx_path: Path, max_batch: int) -> ShapeProfile:
    """The profile both ``build-engines`` and the runtime use, so their cache keys agree.

    The GRU's time axis gets opt = the manifest's ``chunk_frames`` (what streaming feeds it) when
    ``manifest.toml`` next to the model describes it; a broken manifest is the inspectors' concern.
    """
    try:
        acoustic = load_manifest(Path(onnx_path).parent, verify=False).classifier("acoustic")
    except UserError:
        acoustic = None
    if acoustic is not None and acoustic.file == Path(onnx_path).name:
        lo, _, hi = DEFAULT_EXTRA_RANGE
        opt = max(acoustic.chunk_frames, 1)
        return ShapeProfile.for_batch(max_batch, default_extra=(lo, opt, max(hi, opt)))
    return ShapeProfile.for_batch(max_batch)


# --------------------------------------------------------------------------- cache key and cache
def plan_key_parts(
    onnx_path: Path, trt_version: str, gpu_name: str, compute_capability: str, precision: str, profile: ShapeProfile
) -> dict[str, Any]:
    """Everything a plan depends on; equal parts <=> interchangeable plans."""
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"schema": PLAN_SCHEMA, "model": Path(onnx_path).name, "model_sha256": sha256_of(Path(onnx_path)),
            "tensorrt": trt_version, "gpu": gpu_name, "compute_capability": compute_capability,
            "precision": precision, "profile": profile.as_dict()}


def plan_cache_key(
    onnx_path: Path, trt_version: str, gpu_name: str, compute_capability: str, precision: str, profile: ShapeProfile
) -> str:
    """sha256 (hex) of the model file's hash and every other part of :func:`plan_key_parts`."""
    return key_digest(plan_key_parts(onnx_path, trt_version, gpu_name, compute_capability, precision, profile))


def key_digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$EDGE_INSPECTOR_CACHE``, else systemd's ``$CACHE_DIRECTORY``/plans, else ~/.cache/edge-inspector/plans."""
    if os.environ.get("EDGE_INSPECTOR_CACHE"):
        return Path(os.environ["EDGE_INSPECTOR_CACHE"]).expanduser()
    if os.environ.get("CACHE_DIRECTORY"):  # set by systemd's CacheDirectory=; may list several
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "plans"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-inspector" / "plans"


def plan_paths(cache_dir: Path, parts: Mapping[str, Any]) -> tuple[Path, Path]:
    """``<model stem>-<key[:20]>.plan`` and its ``.json`` sidecar."""
    stem = f"{Path(parts['model']).stem}-{key_digest(parts)[:20]}"
    return Path(cache_dir) / f"{stem}.plan", Path(cache_dir) / f"{stem}.json"


def find_cached_plan(cache_dir: Path, parts: Mapping[str, Any]) -> Path | None:
    """The cached plan for exactly these parts, or None (missing, other key, or damaged file)."""
    plan, sidecar = plan_paths(cache_dir, parts)
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key_digest(parts) or not plan.is_file():
        return None
    if meta.get("plan_bytes") != plan.stat().st_size or meta.get("plan_sha256") != sha256_of(plan):
        return None  # truncated or overwritten: rebuild rather than feed TensorRT garbage
    return plan


# --------------------------------------------------------------------------- building
def make_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps the last errors for our messages (TensorRT's own are terse)."""

    class _Logger(trt.ILogger):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=20)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)

    return _Logger()


def _make_progress_monitor(trt: ModuleType, progress: Progress) -> Any:
    """TensorRT's build phases (``IProgressMonitor``, TensorRT >= 10.0) as rich progress bars."""

    class _Monitor(trt.IProgressMonitor):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.tasks: dict[str, Any] = {}
            self.depth: dict[str, int] = {}

        # Called from inside TensorRT's C++ builder: an exception must not escape, and a display
        # problem must never cancel a build, hence the suppress() around each body.
        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with contextlib.suppress(Exception):
                depth = self.depth.get(parent_phase or "", -1) + 1
                self.depth[phase_name] = depth
                self.tasks[phase_name] = progress.add_task("  " * depth + phase_name, total=max(num_steps, 1))

        def step_complete(self, phase_name: str, step: int) -> bool:
            with contextlib.suppress(Exception):
                progress.update(self.tasks[phase_name], completed=step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with contextlib.suppress(Exception):
                task = self.tasks.pop(phase_name)
                if self.depth.get(phase_name, 0) > 0:
                    progress.remove_task(task)
                else:
                    progress.update(task, completed=progress.tasks[task].total)

    return _Monitor()


def build_plan(
    onnx_path: Path, out_path: Path, precision: str, profile: ShapeProfile, progress: bool = True,
    workspace_mb: int = 1024, console: Console | None = None,
) -> Path:
    """Compile ``onnx_path`` with TensorRT's builder and write the plan (atomically) to ``out_path``.

    fp16 is enabled only where the GPU has fast fp16 (every Jetson Orin and recent dGPU does);
    elsewhere the plan is fp32 and a warning says so.  ``int8`` is for a QDQ graph (the model's INT8
    file for TensorRT): explicit quantization, where the Q/DQ nodes say what runs in INT8 and the
    layers around them may use fp16; TensorRT 10.3 (JetPack 6) still needs the INT8 flag for a Q/DQ
    graph in a weakly typed network, and no calibrator is involved (implicit calibration is deprecated).
    """
    trt, _device = require_tensorrt()
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    console = console or Console(stderr=True)
    ranges = resolve_inputs(onnx_path, profile)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "; ".join(logger.errors)
        raise UserError(f"{onnx_path}: TensorRT's ONNX parser rejected the model: {problems}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == "int8":
        if not any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers)):
            raise UserError(f"{onnx_path}: int8 needs a QDQ model (python -m training.visual.quantize makes one); "
                            "this one has no QuantizeLinear node")
        config.set_flag(trt.BuilderFlag.INT8)
    if precision in ("fp16", "int8") and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp16":
        console.print(f"[yellow]{Path(onnx_path).name}: this GPU has no fast fp16; building fp32[/yellow]")
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in ranges:
            raise UserError(f"{onnx_path}: TensorRT sees input {name!r} that ONNX Runtime does not")
        opt_profile.set_shape(name, ranges[name].min, ranges[name].opt, ranges[name].max)
    config.add_optimization_profile(opt_profile)
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not progress)
    with bars:
        if progress:
            config.progress_monitor = _make_progress_monitor(trt, bars)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT could not build a plan: {'; '.join(logger.errors) or 'no reason given'}")
    _write_atomic(Path(out_path), memoryview(serialized))
    return Path(out_path)


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write to a temporary name and rename, so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_sidecar(plan: Path, sidecar: Path, parts: Mapping[str, Any], build_seconds: float) -> None:
    """Record the key, its parts and the plan's size and hash beside the plan (after the plan)."""
    meta = {"key": key_digest(parts), "parts": dict(parts), "plan_bytes": plan.stat().st_size,
            "plan_sha256": sha256_of(plan), "build_seconds": round(build_seconds, 2), "built_at": time.time()}
    _write_atomic(sidecar, json.dumps(meta, indent=2).encode())


def key_parts_for_device(onnx_path: Path, precision: str, profile: ShapeProfile) -> dict[str, Any]:
    """:func:`plan_key_parts` for this machine's TensorRT and GPU (needs TensorRT)."""
    trt, device = require_tensorrt()
    return plan_key_parts(onnx_path, trt.__version__, device.name, device.compute_capability, precision, profile)


def load_or_build(
    onnx_path: Path, cache_dir: Path | None = None, precision: str = "fp16", profile: ShapeProfile | None = None,
    max_batch: int = 8, workspace_mb: int = 1024, progress: bool = True, console: Console | None = None,
) -> Path:
    """The cached plan for this model, device, TensorRT, precision and profile; built on a miss."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parts = key_parts_for_device(onnx_path, precision, profile or default_profile(onnx_path, max_batch))
    hit = find_cached_plan(cache, parts)
    if hit is not None:
        return hit
    plan, sidecar = plan_paths(cache, parts)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"plan cache {cache} is not writable ({exc}); set EDGE_INSPECTOR_CACHE") from exc
    started = time.monotonic()
    build_plan(onnx_path, plan, precision, profile or default_profile(onnx_path, max_batch), progress, workspace_mb, console)
    write_sidecar(plan, sidecar, parts, time.monotonic() - started)
    return plan
