"""Inference backends behind one :class:`~edge_inspector.runtime.base.Engine` protocol.

Backends register themselves by name (a plugin registry, as Frigate does for detectors) and
are imported lazily: a CPU-only machine never imports TensorRT.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from edge_inspector.errors import UserError
from edge_inspector.runtime.base import Engine, TensorSpec

__all__ = ["Engine", "TensorSpec", "create_engine", "available_backends", "choose_backend", "BACKENDS"]

#: backend name -> "module:factory"; factory(model_path, max_batch, **options) -> Engine
BACKENDS: dict[str, str] = {
    "onnxruntime": "edge_inspector.runtime.onnx:OnnxEngine",
    "tensorrt": "edge_inspector.runtime.tensorrt:TensorRTEngine",
}


def _factory(backend: str) -> Callable[..., Engine]:
    module_name, _, attr = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def available_backends() -> list[str]:
    """Backends that can run on this machine right now (TensorRT needs a CUDA device)."""
    found = ["onnxruntime"]
    try:
        from edge_inspector.runtime.tensorrt import tensorrt_available

        if tensorrt_available()[0]:
            found.insert(0, "tensorrt")
    except ImportError:
        pass
    return found


def choose_backend(requested: str) -> tuple[str, str]:
    """``(backend, why)``: ``auto`` becomes TensorRT where it can run, else ONNX Runtime, with the
    reason in words (logged by the daemon, so nobody wonders which one a station uses)."""
    if requested != "auto":
        return requested, "runtime.backend names it"
    try:
        from edge_inspector.runtime.tensorrt import tensorrt_available

        ok, why = tensorrt_available()
    except ImportError as exc:
        ok, why = False, str(exc)
    if ok:
        return "tensorrt", "a CUDA device, TensorRT and a CUDA binding (cuda-python or pycuda) are usable"
    return "onnxruntime", f"TensorRT cannot run here: {why}"


def create_engine(model_path: Path, backend: str = "auto", max_batch: int = 8, **options) -> Engine:
    """Open ``model_path`` (an ONNX file) with the chosen backend.

    ``auto`` picks TensorRT where a CUDA device and TensorRT are present, else ONNX Runtime.
    For TensorRT the ONNX file is compiled (or loaded from the plan cache) first.
    """
    if backend == "auto":
        backend = available_backends()[0]
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    if not Path(model_path).is_file():
        raise UserError(f"model file not found: {model_path}")
    return _factory(backend)(Path(model_path), max_batch=max_batch, **options)
