"""The one interface every inference backend implements.

Inspectors only ever see an :class:`Engine`: a named-tensor-in, named-tensor-out callable with
a fixed per-sample shape and a maximum batch.  That keeps ONNX Runtime (CPU, everywhere) and
TensorRT (Jetson, dGPU) interchangeable behind one config key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, per-sample shape (batch axis excluded; ``-1`` = dynamic) and dtype of a tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@runtime_checkable
class Engine(Protocol):
    """A compiled model ready to run."""

    backend: str  # "onnxruntime" | "tensorrt"
    model_path: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int  # the most samples one call accepts

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Every feed has a leading batch axis of the same size <= max_batch."""
        ...

    def close(self) -> None:
        """Release device memory / sessions."""
        ...
