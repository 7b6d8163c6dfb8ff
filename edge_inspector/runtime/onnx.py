"""ONNX Runtime backend: the default everywhere, CPU unless a GPU provider is installed."""

from __future__ import annotations

import os
import time
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
    RELEASE_INTERVAL_S = 5.0  # at most one arena release this often (see _run_options)

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

        self._smallest_batch: int | None = None
        self._grown = False  # a larger batch than the smallest ran since the last release
        self._release_after = 0.0  # monotonic time before which no release is made again
        self._release = ort.RunOptions()
        self._release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._output_names, dict(feeds), self._run_options(feeds))
        return dict(zip(self._output_names, results))

    def _run_options(self, feeds: Mapping[str, np.ndarray]) -> ort.RunOptions | None:
        """Give back what a larger batch than usual made ONNX Runtime's memory arena hold.

        The arena keeps, for good, what the largest call it ever served needed: one batch of 8
        frames (a camera's backlog after a stall) kept 25 to 60 MB more than single frames need
        (the visual model: batch 3 +10 MB, batch 8 +25 MB, a second batch of 8 +38 MB more), a
        step in RSS that never came down.  So a call with a larger batch than the smallest seen
        ends with the arena's shrinkage, which frees its unused regions (when one was made less
        than ``RELEASE_INTERVAL_S`` ago, the first call after the interval does it); the daemon's
        periodic ``malloc_trim`` then returns them.  Only then: a shrinking call costs about a third more (10.2 against 7.5
        ms for the visual model at batch 1), and without the arena every call costs page faults
        and RSS wanders with each call's freed tensors.
        """
        batch = next(iter(feeds.values())).shape[0] if feeds else 1
        if self._smallest_batch is None or batch < self._smallest_batch:
            self._smallest_batch = batch
        self._grown = self._grown or batch > self._smallest_batch
        now = time.monotonic()
        if not self._grown or now < self._release_after:
            return None
        self._grown = False
        self._release_after = now + self.RELEASE_INTERVAL_S
        return self._release

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
