"""The learnt visual anomaly model as ONE ONNX graph (written with the ``onnx`` package).

Input ``image [N, 3, H, W]``, normalised as every visual model of the directory is (the
classifier's contract, so one tensor feeds both); outputs ``score [N]`` (raw image score,
higher = further from the good parts) and ``anomaly_map [N, 1, G, G]`` (raw score per cell).

1. **Light**: back to 0..1 RGB, then each pixel relative to the local brightness of the grey
   image (2x2-cell means smoothed over ``9 x 8`` pixels, upsampled):
   ``(x - L) / (L + offset)``.  Gain, gradients, vignetting and slow gamma drift cancel; the
   offset keeps a dark background's sensor noise from being blown up.
2. **Patch codes** at three scales (the image, its half and its quarter): a strided Conv whose
   filters are the leading principal components of the good parts' own 8x8 patches, half-whitened
   (:mod:`edge_inspector.learn.visual`): every scale gives a ``G x G`` map of ``d``-dimensional codes.
3. **Nearest good patch**: per scale, the distance of each code to the nearest of ``K``
   remembered good codes (MatMul + ReduceMin: ``|y|^2 - 2 y.b + |b|^2``); or, for an aligned
   product (frames registered before the graph), the Mahalanobis distance to the good codes'
   Gaussian *at that cell* (Sub + one MatMul batched over cells + ReduceSum).
4. **Per position**: each distance in units of the spread of held-out good parts' distances
   *at that position* (``(d - mean) * inv_std``): borders, edges and busy regions of the part
   count no more than flat ones.
5. The three scales' maxima per cell, a 3x3 mean (one stray cell is not a defect), and the
   image score is the map's maximum.

Thresholding stays outside the graph (manifest + anomaly head), so a re-calibration never
touches the model.  Only opset-17 operators TensorRT runs: Mul, Add, Sub, Div, ReduceMean,
AveragePool, Pad, Resize, Conv, Reshape, Transpose, MatMul, ReduceSum, ReduceMin, ReduceMax,
Max, Sqrt.  Every constant is an initializer, so a quantizer sees plain Conv and MatMul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OPSET = 17


@dataclass
class ScaleCodes:
    """One scale: how its patch codes are made and what good codes look like."""

    down: int  # the image averaged down by this factor first
    patch: int  # patch side (pixels of the downscaled image)
    stride: int
    weight: np.ndarray  # [d, 3, patch, patch] scaled principal components
    bias: np.ndarray  # [d]
    residual: float = 0.0  # weight of the extra code: what the components leave unexplained (0: none)
    centre: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [C*patch*patch] mean patch
    variance: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [d] patch energy per unit of each code
    noise: float = 1.0  # mean variance of the left-out components
    bank: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [K, d(+1)]
    # aligned products instead of the bank: per position the good codes' mean and a Cholesky factor
    # of their inverse covariance (distance = |(y - mean) @ chol|, a Mahalanobis distance)
    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [P, d]
    chol: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))  # [P, d, d]
    mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [G, G] held-out distances
    inv_std: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @property
    def pad(self) -> int:
        return (self.patch - self.stride) // 2


@dataclass
class PatchKnn:
    """The numbers of a learnt model."""

    mean: tuple[float, float, float]  # the input contract's normalisation (per input channel)
    std: tuple[float, float, float]
    offset: float  # light normalisation: (x - L) / (L + offset)
    grid: int  # G
    scales: list[ScaleCodes]
    smooth: int = 3  # side of the mean over the final map (1: none)

    @property
    def aligned(self) -> bool:
        """Per-position statistics (frames registered to a reference first) rather than a memory."""
        return bool(self.scales) and self.scales[0].chol.size > 0


class _Graph:
    """Collects nodes and initializers; names are unique by construction."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, value: np.ndarray | float | list, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self._n += 1
        name = f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype)), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        self._n += 1
        out = output or f"t{self._n}_{op_type.lower()}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _light(g: _Graph, model: PatchKnn, image: str) -> str:
    """Input tensor -> light-normalised RGB (step 1)."""
    std = np.asarray(model.std, np.float32).reshape(1, 3, 1, 1)  # per input channel, whatever its colour
    mean = np.asarray(model.mean, np.float32).reshape(1, 3, 1, 1)
    x = g.op("Add", [g.op("Mul", [image, g.const(std)]), g.const(mean)])
    grey = g.op("ReduceMean", [x], axes=[1], keepdims=1)
    cells = g.op("AveragePool", [grey], kernel_shape=[8, 8], strides=[8, 8])
    padded = g.op("Pad", [cells, g.const([0, 0, 4, 4, 0, 0, 4, 4], np.int64)], mode="edge")
    smooth = g.op("AveragePool", [padded], kernel_shape=[9, 9], strides=[1, 1])
    level = g.op("Resize", [smooth, "", g.const([1.0, 1.0, 8.0, 8.0])], mode="linear",
                 coordinate_transformation_mode="half_pixel")
    return g.op("Div", [g.op("Sub", [x, level]), g.op("Add", [level, g.const(model.offset)])])


def _codes(g: _Graph, light: str, s: ScaleCodes) -> str:
    """Light-normalised image -> [N, d, G, G] patch codes of one scale (step 2)."""
    v = light if s.down == 1 else g.op("AveragePool", [light], kernel_shape=[s.down] * 2, strides=[s.down] * 2)
    if s.pad:
        v = g.op("Pad", [v, g.const([0, 0, s.pad, s.pad, 0, 0, s.pad, s.pad], np.int64)], mode="reflect")
    conv = dict(kernel_shape=[s.patch] * 2, strides=[s.stride] * 2)
    codes = g.op("Conv", [v, g.const(s.weight), g.const(s.bias)], **conv)
    if not s.residual:
        return codes
    # |x - m|^2 - sum_i c_i^2 (eigenvalue_i + noise): the patch's energy outside the components
    d, c = s.weight.shape[0], s.weight.shape[1]
    energy = g.op("Conv", [g.op("Mul", [v, v]), g.const(np.ones((1, c, s.patch, s.patch), np.float32))], **conv)
    along = g.op("Conv", [v, g.const(s.centre.reshape(1, c, s.patch, s.patch) * -2.0)], **conv)
    explained = g.op("Conv", [g.op("Mul", [codes, codes]), g.const(s.variance.reshape(1, d, 1, 1))], kernel_shape=[1, 1])
    rest = g.op("Sub", [g.op("Add", [g.op("Add", [energy, along]), g.const(float(np.sum(s.centre.astype(np.float64) ** 2)))]),
                        explained])
    free = s.centre.size - d
    level = g.op("Sqrt", [g.op("Mul", [g.op("Max", [rest, g.const(0.0)]), g.const(1.0 / (s.noise * free))])])
    return g.op("Concat", [codes, g.op("Mul", [level, g.const(s.residual)])], axis=1)


def _distance(g: _Graph, codes: str, s: ScaleCodes, grid: int) -> str:
    """[N, d, g, g] codes -> [N, 1, G, G] per-position normalised nearest-good distance (steps 3-4);
    a scale with a finer map (``g = k G``) keeps the largest of each ``k x k`` cells, a coarser one
    (``G = k g``) is repeated over them."""
    side = s.mean.shape[-1]
    d = s.weight.shape[0] + (1 if s.residual else 0)
    flat = g.op("Transpose", [g.op("Reshape", [codes, g.const([0, d, -1], np.int64)])], perm=[0, 2, 1])  # [N,P,d]
    if s.chol.size:  # per position: |(y - mean_p) L_p|, one batched MatMul over positions
        diff = g.op("Sub", [g.op("Transpose", [flat], perm=[1, 0, 2]), g.const(s.centres[:, None, :])])  # [P,N,d]
        z = g.op("MatMul", [diff, g.const(s.chol)])  # [P,N,d]
        mahal = g.op("ReduceSum", [g.op("Mul", [z, z]), g.const([-1], np.int64)], keepdims=0)  # [P,N]
        dist = g.op("Sqrt", [g.op("Max", [g.op("Transpose", [mahal], perm=[1, 0]), g.const(0.0)])])  # [N,P]
    else:
        dist = _nearest(g, flat, s)
    dmap = g.op("Reshape", [dist, g.const([-1, 1, side, side], np.int64)])
    z = g.op("Mul", [g.op("Sub", [dmap, g.const(s.mean[None, None])]), g.const(s.inv_std[None, None])])
    if side > grid:
        k = side // grid
        z = g.op("MaxPool", [z], kernel_shape=[k, k], strides=[k, k])
    elif side < grid:  # a coarser scale: each cell repeated over the grid cells it covers
        k = float(grid // side)
        z = g.op("Resize", [z, "", g.const([1.0, 1.0, k, k])], mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return z


def _nearest(g: _Graph, flat: str, s: ScaleCodes) -> str:
    """[N,P,d] codes -> [N,P] distance to the nearest remembered good code."""
    sq = g.op("ReduceSum", [g.op("Mul", [flat, flat]), g.const([-1], np.int64)], keepdims=0)  # [N,P]
    # min_k |y - b_k|^2 = |y|^2 + min_k (|b_k|^2 - 2 y.b_k): one MatMul over [y, 1] and [-2 b; |b|^2],
    # so no [P, K] tensor is touched twice
    ones = g.op("Add", [g.op("Mul", [g.op("ReduceSum", [flat, g.const([-1], np.int64)], keepdims=1), g.const(0.0)]),
                        g.const(1.0)])  # [N,P,1] of ones, whatever N
    augmented = g.op("Concat", [flat, ones], axis=2)  # [N,P,d+1]
    bank_sq = np.sum(s.bank.astype(np.float64) ** 2, axis=1)
    table = np.concatenate([-2.0 * s.bank.T.astype(np.float64), bank_sq[None]], axis=0).astype(np.float32)  # [d+1,K]
    nearest = g.op("ReduceMin", [g.op("MatMul", [augmented, g.const(table)])], axes=[-1], keepdims=0)  # [N,P]
    return g.op("Sqrt", [g.op("Max", [g.op("Add", [nearest, sq]), g.const(0.0)])])


def write_graph(model: PatchKnn, path: Path, input_shape: tuple[int, int, int], name: str = "visual_anomaly",
                stage: str = "full") -> None:
    """Write ``model`` as the graph of the module docstring.  ``stage="light"`` stops after step 1
    (output ``light``) and ``stage="codes"`` after step 2 (outputs ``codes0``, ``codes1``, ...):
    ``learn`` runs those to fit the later steps with exactly the daemon's arithmetic."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    light = _light(g, model, "image")
    outputs: list = []
    if stage == "light":
        g.op("Identity", [light], "light")
        outputs = [helper.make_tensor_value_info("light", TensorProto.FLOAT, ["N", 3, input_shape[1], input_shape[2]])]
    elif stage == "codes":
        for i, s in enumerate(model.scales):
            g.op("Identity", [_codes(g, light, s)], f"codes{i}")
            outputs.append(helper.make_tensor_value_info(f"codes{i}", TensorProto.FLOAT, ["N", "d", "g", "g"]))
    else:
        maps = [_distance(g, _codes(g, light, s), s, model.grid) for s in model.scales]
        top = maps[0] if len(maps) == 1 else g.op("Max", maps)
        k = model.smooth
        smooth = top if k <= 1 else g.op("AveragePool", [top], kernel_shape=[k, k], strides=[1, 1],
                                         pads=[k // 2] * 4, count_include_pad=0)
        g.op("Identity", [smooth], "anomaly_map")
        g.op("ReduceMax", [smooth], "score", axes=[1, 2, 3], keepdims=0)
        outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
                   helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, model.grid, model.grid])]
    graph = helper.make_graph(g.nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *input_shape])],
                              outputs, g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-inspector learn")
    proto.ir_version = 8  # readable by ONNX Runtime >= 1.14 and TensorRT 10
    onnx.checker.check_model(proto)
    Path(path).write_bytes(proto.SerializeToString())
