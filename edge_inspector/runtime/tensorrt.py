"""TensorRT backend: a cached plan behind the same :class:`Engine` protocol as ONNX Runtime.

The ONNX file is compiled (or found in the plan cache) by :mod:`edge_inspector.runtime.build`,
then deserialized once.  Pinned host buffers and device buffers are allocated once, sized for
the profile's maximum shapes, so a call costs two copies and one ``execute_async_v3`` and never
allocates.  Each call sets the actual input shapes (dynamic batch, the GRU's time axis).

Device memory and streams go through :mod:`edge_inspector.runtime.cuda`: pycuda (on the primary
context, ``pycuda.autoprimaryctx``) or cuda-python's runtime API, whichever is installed, behind
one small interface.

Written against the TensorRT 10 tensor-name API (``num_io_tensors``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``); nothing here exists only in TensorRT 8/9.
``tensorrt`` and ``cuda`` are imported when an engine is created, never at module import.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import numpy as np
from rich.console import Console

from edge_inspector.errors import UserError
from edge_inspector.runtime.base import TensorSpec
from edge_inspector.runtime.cuda import CudaMemory, open_memory
from edge_inspector.runtime.build import (
    InputRange,
    ShapeProfile,
    default_cache_dir,
    default_profile,
    find_cached_plan,
    key_parts_for_device,
    load_or_build,
    make_logger,
    require_tensorrt,
    resolve_inputs,
    tensorrt_available,
)

__all__ = ["TensorRTEngine", "check_feeds", "tensorrt_available"]


class _Buffer:
    """One tensor's pinned host memory (as a flat numpy array) and device memory, max-sized."""

    def __init__(self, cuda: CudaMemory, name: str, dtype: np.dtype, max_shape: tuple[int, ...]) -> None:
        self.name, self.dtype, self.max_shape = name, np.dtype(dtype), max_shape
        count = int(np.prod(max_shape)) if max_shape else 1
        self.nbytes = count * self.dtype.itemsize
        self.cuda = cuda
        self.device = cuda.malloc(self.nbytes)
        self.host_ptr = cuda.malloc_host(self.nbytes)
        raw = (ctypes.c_ubyte * max(self.nbytes, 1)).from_address(self.host_ptr)
        self.host = np.frombuffer(raw, dtype=np.uint8)[: self.nbytes].view(self.dtype)

    def free(self) -> None:
        if self.device:
            self.cuda.free(self.device)
            self.cuda.free_host(self.host_ptr)
            self.device = self.host_ptr = 0
            self.host = np.empty(0, self.dtype)


def check_feeds(
    feeds: Mapping[str, np.ndarray], ranges: Mapping[str, InputRange], dtypes: Mapping[str, np.dtype],
    max_batch: int | None = None,
) -> dict[str, np.ndarray]:
    """Validate names, dtypes, ranks, shape ranges and a common batch size; one clear line per problem.

    ``max_batch`` can be below the plan's batch maximum (a larger cached plan serves a smaller engine).
    """
    missing = [n for n in ranges if n not in feeds]
    unknown = [n for n in feeds if n not in ranges]
    if missing or unknown:
        what = [f"missing input(s): {', '.join(missing)}"] * bool(missing) + [f"unknown input(s): {', '.join(unknown)}"] * bool(unknown)
        raise UserError(f"{'; '.join(what)} (the model takes: {', '.join(ranges)})")
    arrays: dict[str, np.ndarray] = {}
    batch: tuple[str, int] | None = None
    for name, rng in ranges.items():
        arr = np.asarray(feeds[name])
        if arr.dtype != dtypes[name]:
            raise UserError(f"input {name!r}: dtype {arr.dtype}, expected {np.dtype(dtypes[name])}")
        if arr.ndim != len(rng.max):
            raise UserError(f"input {name!r}: shape {arr.shape} has {arr.ndim} axes, expected {len(rng.max)} (max {rng.max})")
        for axis, (size, lo, hi) in enumerate(zip(arr.shape, rng.min, rng.max)):
            if axis in rng.batch_axes and max_batch is not None:
                hi = min(hi, max_batch)
            if not lo <= size <= hi:
                accepted = f"exactly {lo}" if lo == hi else f"{lo}..{hi}"
                role = "batch axis" if axis in rng.batch_axes else f"axis {axis}"
                raise UserError(f"input {name!r}: {role} is {size}, this engine accepts {accepted} (shape {arr.shape})")
        for axis in rng.batch_axes:
            if batch is None:
                batch = (name, arr.shape[axis])
            elif arr.shape[axis] != batch[1]:
                raise UserError(f"input {name!r}: batch {arr.shape[axis]} differs from the batch of {batch[0]!r} ({batch[1]})")
        arrays[name] = np.ascontiguousarray(arr)
    return arrays


def _cached_plan_covering(onnx_path: Path, cache: Path, precision: str, max_batch: int) -> tuple[Path | None, ShapeProfile]:
    """A cached plan for ``max_batch`` or, failing that, one built for a larger batch.

    ``build-engines`` builds for batch 1..8 by default; an inspector that asks for batch 1..2 can
    use that plan instead of compiling another one at start-up.
    """
    for batch in [max_batch, *(b for b in (8, 16, 32, 64) if b > max_batch)]:
        profile = default_profile(onnx_path, batch)
        plan = find_cached_plan(cache, key_parts_for_device(onnx_path, precision, profile))
        if plan is not None:
            return plan, profile
    return None, default_profile(onnx_path, max_batch)


class TensorRTEngine:
    """A TensorRT execution context with its own stream and buffers; one call at a time."""

    backend = "tensorrt"

    def __init__(
        self,
        model_path: Path,
        max_batch: int = 8,
        precision: str = "fp16",
        cache_dir: Path | None = None,
        workspace_mb: int = 1024,
        profile: ShapeProfile | None = None,
        progress: bool = True,
        console: Console | None = None,
    ) -> None:
        trt, device = require_tensorrt()  # probes the CUDA device before any TensorRT object exists
        self.model_path = str(model_path)
        self.max_batch = max_batch
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        plan: Path | None = None
        if profile is None:
            plan, profile = _cached_plan_covering(Path(model_path), cache, precision, max_batch)
        self._profile = profile
        if plan is None:
            plan = load_or_build(Path(model_path), cache, precision, self._profile, max_batch, workspace_mb, progress, console)
        self._ranges = resolve_inputs(Path(model_path), self._profile)
        self._lock = threading.Lock()
        self._buffers: dict[str, _Buffer] = {}
        self._stream: Any = None
        self._cuda = open_memory(device.index)
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise UserError(f"{plan}: TensorRT cannot load this plan ({'; '.join(self._logger.errors) or 'unknown reason'}); delete it to rebuild")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"{plan}: TensorRT could not create an execution context: {self._last_error()}")
        try:
            self._setup(trt)
        except BaseException:
            self.close()
            raise

    def _setup(self, trt: ModuleType) -> None:
        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(input_names) != sorted(self._ranges):
            raise UserError(f"{self.model_path}: plan inputs {input_names} differ from the ONNX inputs {list(self._ranges)}")
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        for name in input_names:  # max shapes first, so output shapes below are their maxima
            context.set_input_shape(name, self._ranges[name].max)
        specs: dict[str, TensorSpec] = {}
        for name in names:
            shape = tuple(engine.get_tensor_shape(name))
            max_shape = self._ranges[name].max if name in self._ranges else tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in max_shape):
                raise UserError(f"{self.model_path}: output {name!r} has a data-dependent shape {max_shape}; not supported")
            specs[name] = TensorSpec(name, tuple(int(d) for d in shape[1:]), self._dtypes[name].name)
            self._buffers[name] = _Buffer(self._cuda, name, self._dtypes[name], max_shape)
            context.set_tensor_address(name, self._buffers[name].device)
        self.inputs = tuple(specs[n] for n in names if n in self._ranges)
        self.outputs = tuple(specs[n] for n in names if n not in self._ranges)
        self._stream = self._cuda.stream_create()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy in, execute, copy out; outputs are fresh numpy arrays the caller may keep."""
        arrays = check_feeds(feeds, self._ranges, {n: self._dtypes[n] for n in self._ranges}, self.max_batch)
        with self._lock:
            if self._stream is None:
                raise RuntimeError(f"{self.model_path}: TensorRT engine used after close()")
            for name, arr in arrays.items():
                buf = self._buffers[name]
                buf.host[: arr.size] = arr.reshape(-1)
                if not self._context.set_input_shape(name, arr.shape):
                    raise UserError(f"input {name!r}: shape {arr.shape} rejected by TensorRT: {self._last_error()}")
                self._cuda.copy_to_device(buf.device, buf.host_ptr, arr.nbytes, self._stream)
            shapes = {s.name: tuple(self._context.get_tensor_shape(s.name)) for s in self.outputs}
            if any(d < 0 for shape in shapes.values() for d in shape):
                raise UserError(f"inconsistent input shapes {[a.shape for a in arrays.values()]}: {self._last_error()}")
            if not self._context.execute_async_v3(self._cuda.handle(self._stream)):
                raise RuntimeError(f"{self.model_path}: TensorRT execution failed: {self._last_error()}")
            sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
            for name, count in sizes.items():
                buf = self._buffers[name]
                self._cuda.copy_to_host(buf.host_ptr, buf.device, count * buf.dtype.itemsize, self._stream)
            self._cuda.synchronize(self._stream)
            return {n: self._buffers[n].host[: sizes[n]].reshape(shapes[n]).copy() for n in shapes}

    def _last_error(self) -> str:
        return self._logger.errors[-1] if self._logger.errors else "no detail from TensorRT"

    def close(self) -> None:
        """Free device and pinned memory and the stream; safe to call twice."""
        with self._lock:
            if self._stream is not None:
                self._cuda.synchronize(self._stream)
                self._cuda.stream_destroy(self._stream)
                self._stream = None
            for buf in self._buffers.values():
                buf.free()
            self._buffers.clear()
            self._context = self._engine = self._runtime = None  # context before engine before runtime

    def __enter__(self) -> "TensorRTEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
