"""The learnt acoustic model as ONE streaming ONNX graph (written with the ``onnx`` package).

Inputs ``mel [N, T, n_mels]`` (raw log-mel frames of :mod:`edge_inspector.features`) and
``ctx_in [N, W-1, n_mels]`` (the previous ``W - 1`` frames: the state a stream carries,
:data:`QUIET` after a reset); outputs ``score [N, T]`` (raw anomaly score per frame, higher = further from
what was learnt) and ``ctx_out`` (the state for the next chunk).  Per frame:

1. context over the last ``W`` frames (a moving average over the chunk glued to its state),
   per band: the mean of the log power, so a steady fault's
   fraction-of-a-dB rise in one band is not lost in single-frame noise, and the log of the mean
   power, where one knock among ``W`` quiet frames still counts;
2. standardise per band, project on the whitening matrix ``P`` learnt from the good audio;
3. distance to the nearest of ``K`` remembered good contexts (``bank``); with one bank row at
   the origin this is the Mahalanobis distance.

Thresholding stays outside the graph (the manifest and the anomaly head), so a re-calibration
never touches the model.  Only opset-17 operators that TensorRT also runs (Concat, Slice,
Transpose, Conv, Split, Sub, Mul, Add, Exp, Log, MatMul, ReduceSum, ReduceMin, Sqrt, Max).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPSET = 17
LOG_EPS = 1e-6
QUIET = float(np.log(LOG_EPS))  # the state after a reset: log-mel of digital silence
INT64_MAX = np.iinfo(np.int64).max


@dataclass
class ContextKnn:
    """The numbers of a learnt model (all float32)."""

    window: int  # W: frames averaged per context
    mean: np.ndarray  # [2 n_mels] per-feature mean of the contexts (mean log power, log mean power)
    inv_std: np.ndarray  # [2 n_mels]
    whiten: np.ndarray  # [2 n_mels, p]
    bank: np.ndarray  # [K, p] remembered good contexts, whitened

    def contexts(self, mel: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """NumPy twin of the graph's first step: ``(contexts [T, 2 n_mels], new state)``."""
        w = self.window
        prev = np.full((w - 1, mel.shape[1]), QUIET, np.float64) if state is None else np.asarray(state, np.float64)
        x = np.concatenate([prev, np.asarray(mel, np.float64)], axis=0)

        def box(v: np.ndarray) -> np.ndarray:  # float64 running sums: exact enough for hours
            c = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)], axis=0)
            return (c[w:] - c[: c.shape[0] - w]) / w

        feats = np.concatenate([box(x), np.log(box(np.exp(x)) + LOG_EPS)], axis=1)
        return feats, x[x.shape[0] - (w - 1):]

    def embed(self, contexts: np.ndarray) -> np.ndarray:
        return ((contexts - self.mean) * self.inv_std) @ self.whiten

    def distance(self, embedded: np.ndarray, block: int = 4096) -> np.ndarray:
        """Distance of each row to its nearest bank row (blocks keep memory flat)."""
        b2 = np.sum(self.bank.astype(np.float64) ** 2, axis=1)
        out = np.empty(embedded.shape[0])
        for a in range(0, embedded.shape[0], block):
            y = embedded[a : a + block].astype(np.float64)
            d = np.sum(y * y, axis=1)[:, None] - 2.0 * y @ self.bank.T.astype(np.float64) + b2[None]
            out[a : a + block] = np.sqrt(np.maximum(d.min(axis=1), 0.0))
        return out

    def score(self, mel: np.ndarray) -> np.ndarray:
        """Raw score per frame of a whole recording from a reset (what the graph streams)."""
        return self.distance(self.embed(self.contexts(mel)[0]))


def write_graph(model: ContextKnn, path: Path, n_mels: int, name: str = "acoustic_anomaly") -> None:
    """Write ``model`` as the streaming graph described in the module docstring."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = int(model.window)
    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    bank = f32(model.bank)
    inits = [
        numpy_helper.from_array(f32(model.mean), "band_mean"),
        numpy_helper.from_array(f32(model.inv_std), "band_inv_std"),
        numpy_helper.from_array(f32(model.whiten), "whiten"),
        numpy_helper.from_array(f32(bank.T), "bank_t"),  # [p, K]
        numpy_helper.from_array(f32(np.sum(bank.astype(np.float64) ** 2, axis=1)), "bank_sq"),  # [K]
        numpy_helper.from_array(np.array([1], np.int64), "axis_t"),
        numpy_helper.from_array(np.array([INT64_MAX], np.int64), "end"),
        numpy_helper.from_array(np.array([-(w - 1)], np.int64), "minus_w1"),
        numpy_helper.from_array(np.full((2 * n_mels, 1, w), 1.0 / w, np.float32), "box_kernel"),
        numpy_helper.from_array(np.array(-2.0, np.float32), "minus_two"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
    ]
    n = helper.make_node
    nodes = [
        n("Concat", ["ctx_in", "mel"], ["x"], axis=1),  # [N, W-1+T, M]
        n("Slice", ["x", "minus_w1", "end", "axis_t"], ["ctx_out"]),
        n("Exp", ["x"], ["power"]),
        n("Concat", ["x", "power"], ["xp"], axis=2),  # [N, W-1+T, 2M]: log power, power
        # the mean of the last W frames: a depthwise convolution over time (no running sums,
        # whose float32 cancellation would swamp the power of quiet bands)
        n("Transpose", ["xp"], ["xp_t"], perm=[0, 2, 1]),  # [N, 2M, W-1+T]
        n("Conv", ["xp_t", "box_kernel"], ["box_t"], group=2 * n_mels),  # [N, 2M, T]
        n("Transpose", ["box_t"], ["both"], perm=[0, 2, 1]),
        n("Split", ["both", "halves"], ["mean_log", "mean_power"], axis=2),
        n("Add", ["mean_power", "log_eps"], ["mean_power_eps"]),
        n("Log", ["mean_power_eps"], ["log_mean_power"]),
        n("Concat", ["mean_log", "log_mean_power"], ["context"], axis=2),
        n("Sub", ["context", "band_mean"], ["centred"]),
        n("Mul", ["centred", "band_inv_std"], ["standard"]),
        n("MatMul", ["standard", "whiten"], ["y"]),  # [N, T, p]
        n("Mul", ["y", "y"], ["y2"]),
        n("ReduceSum", ["y2", "minus_one"], ["y_sq"], keepdims=1),  # [N, T, 1]
        n("MatMul", ["y", "bank_t"], ["dot"]),  # [N, T, K]
        n("Mul", ["dot", "minus_two"], ["dot2"]),
        n("Add", ["dot2", "y_sq"], ["partial"]),
        n("Add", ["partial", "bank_sq"], ["d2"]),
        n("ReduceMin", ["d2"], ["d2_min"], axes=[-1], keepdims=0),  # [N, T]
        n("Max", ["d2_min", "zero_f"], ["d2_pos"]),
        n("Sqrt", ["d2_pos"], ["score"]),
    ]
    inits += [numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
              numpy_helper.from_array(np.array([n_mels, n_mels], np.int64), "halves"),
              numpy_helper.from_array(np.array(LOG_EPS, np.float32), "log_eps")]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["N", "T", n_mels]),
         helper.make_tensor_value_info("ctx_in", TensorProto.FLOAT, ["N", w - 1, n_mels])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", "T"]),
         helper.make_tensor_value_info("ctx_out", TensorProto.FLOAT, ["N", w - 1, n_mels])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edge-inspector learn")
    proto.ir_version = 8  # readable by ONNX Runtime >= 1.14 and TensorRT 10
    onnx.checker.check_model(proto)
    Path(path).write_bytes(proto.SerializeToString())
