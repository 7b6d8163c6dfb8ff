"""ONNX Runtime backend: the default everywhere, CPU unless a GPU provider is installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort

from edge_inspector.errors import UserError
from edge_inspector.runtime.base import TensorSpec

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    dims = tuple(d if isinstance(d, int) else -1 for d in arg.shape[1:])
    return TensorSpec(arg.name, dims, _DTYPES.get(arg.type, arg.type))


class OnnxEngine:
    """An ``onnxruntime.InferenceSession`` behind the :class:`Engine` protocol.

    Threads: by default ONNX Runtime would use every core for one call, which fights with the
    capture and decode threads on a small CPU; ``intra_op_threads`` (0 = all cores but one) bounds it.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        max_batch: int = 8,
        intra_op_threads: int = 0,
        providers: list[str] | None = None,
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # 0 = all cores but one: capture, decode and preprocessing run beside inference, and an
        # engine call that took every core would stall them (measured: +40 % frames/s on 2 cores)
        threads = intra_op_threads or int(os.environ.get("EDGE_INSPECTOR_ORT_THREADS", "0"))
        self.intra_op_threads = threads or max(1, (os.cpu_count() or 2) - 1)
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        # Idle ORT worker threads otherwise spin for work and steal the cores that capture and
        # decode threads need (measured: engine and daemon throughput both rise without it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(model_path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise UserError(f"{model_path}: ONNX Runtime cannot load this model: {exc}") from exc
        self.model_path = str(model_path)
        self.max_batch = max_batch
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, results))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
