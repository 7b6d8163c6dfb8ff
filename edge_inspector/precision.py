"""Which file of a model runs, and at which precision, on a given backend.

``runtime.precision`` asks for ``int8``, ``fp16`` or ``fp32``; what a model can deliver depends
on what it ships and on the backend:

============  =====================================  ==========================================
asked         ONNX Runtime (CPU)                     TensorRT
============  =====================================  ==========================================
``int8``      the model's INT8 file for ONNX         the model's INT8 file for TensorRT (explicit
              Runtime, else its float file (fp32)    quantization), else its float file in fp16
``fp16``      the float file in fp32 (a CPU has no   the float file, fp16 plan
              fp16 path faster than fp32)
``fp32``      the float file                         the float file, fp32 plan
============  =====================================  ==========================================

Unset, the precision is the one measured best for the backend (:func:`default_precision`): INT8
on ONNX Runtime, where the INT8 file is verified on the held-out sets and measured faster
(``engines/README.md``, ``docs/performance.md``); fp16 on TensorRT, the path built and measured
before INT8 existed, until INT8 plans are measured on a GPU.  What was asked and what runs are
logged at start, and a verdict's ``model.sha256`` is the sha256 of the file that ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRECISIONS = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class ModelFile:
    """The file that runs for one manifest entry, and how."""

    path: Path
    sha256: str
    precision: str  # what the engine runs: "int8", "fp16" (TensorRT only) or "fp32"
    note: str = ""  # why it differs from what was asked, for the start-up log ("" when it does not)
    entry_file: str = ""  # the manifest entry's own (float) file name: which model this is a file of


def default_precision(backend: str) -> str:
    """The precision used when ``runtime.precision`` is not set (see the module docstring)."""
    return "fp16" if backend == "tensorrt" else "int8"


def model_file(directory: Path, entry: Any, precision: str | None, backend: str) -> ModelFile:
    """The file of ``entry`` (a manifest entry in ``directory``) to run at ``precision`` on ``backend``."""
    asked = precision or default_precision(backend)
    if asked not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {asked!r}")
    target = "tensorrt" if backend == "tensorrt" else "onnxruntime"
    float_file, own = Path(directory) / entry.file, entry.file
    if asked == "int8":
        variant = next((q for q in getattr(entry, "int8", ()) if q.target == target), None)
        if variant is not None:
            return ModelFile(Path(directory) / variant.file, variant.sha256, "int8", entry_file=own)
        runs = "fp16" if target == "tensorrt" else "fp32"
        return ModelFile(float_file, entry.sha256, runs, f"{entry.name} has no INT8 file for {target}; running {runs}", own)
    if asked == "fp16" and target == "onnxruntime":
        return ModelFile(float_file, entry.sha256, "fp32", "fp16 is a TensorRT precision; ONNX Runtime on CPU runs fp32", own)
    return ModelFile(float_file, entry.sha256, asked, entry_file=own)
