"""ONNX Runtime static quantization to INT8 in QDQ form, one recipe per runtime target.

Shared by every model that ships an INT8 file (the visual classifier, and any image model whose
graph is a convolution stack): the recipes, where the float parts of a graph stay float, and
the calibration reader.  What a model is calibrated on and how it is verified belongs to the
model's own package (``training/visual/quantize.py``).

Two targets, two graphs, because the runtimes want different INT8:

- **onnxruntime** (CPU): uint8 asymmetric activations and int8 symmetric per-channel weights,
  the combination ONNX Runtime's x86 kernels run fastest (with VNNI no 7-bit weight range is
  needed); ``Relu`` is quantized too so it folds into the zero point instead of costing a
  dequantize/quantize pair per layer; the first convolution stays float, because with few input
  channels (6 here) its INT8 kernel is slower than the float one and quantizing its 256x256 input
  costs more than it saves (measured: 2.2 against 2.5 ms per frame for the whole model).
- **tensorrt**: int8 *symmetric* activations and per-channel weights on the inputs of every
  convolution and nothing else (no Q/DQ on their outputs): TensorRT's explicit quantization takes
  only signed symmetric INT8 and fuses ``Q -> Conv -> ReLU -> Q`` itself.

In both, anything that is not a convolution stack (an input front end of pooling, resizing and
division, the heads' softmax and sigmoid) stays float, so quantization error enters only where
integer arithmetic pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class Recipe:
    """How one target's INT8 file is made."""

    target: str  # "onnxruntime" | "tensorrt" (the manifest's QuantizedFile.target)
    suffix: str  # file name: <model stem><suffix>
    symmetric_activations: bool
    float_first_conv: bool  # keep the convolutions fed by no other convolution in float
    op_types: tuple[str, ...]
    scheme: str  # for people (manifest, model card)


RECIPES = (
    Recipe("onnxruntime", ".int8.onnx", False, True, ("Conv", "Relu", "MaxPool", "GlobalAveragePool"),
           "QDQ; uint8 asymmetric activations, int8 symmetric per-channel weights; front end and first "
           "convolution in float"),
    Recipe("tensorrt", ".int8-tensorrt.onnx", True, False, ("Conv",),
           "QDQ for TensorRT explicit quantization; int8 symmetric activations and per-channel weights on "
           "every convolution's inputs; the rest in float"),
)


def first_convs(model_path: Path) -> list[str]:
    """Names of the Conv nodes no other Conv feeds (directly or through other ops), and of the
    Relu right after each: the layers that see the raw input or the front end's output."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    after_conv: set[str] = set()
    first: list[str] = []
    for node in graph.node:  # ONNX keeps nodes in topological order
        fed = any(i in after_conv for i in node.input)
        if node.op_type == "Conv" and not fed:
            first.append(node.name)
        if node.op_type == "Conv" or fed:
            after_conv.update(node.output)
    relus = [n.name for n in graph.node if n.op_type == "Relu"
             and any(p.name in first and p.output[0] in n.input for p in graph.node)]
    return first + relus


class BatchReader:
    """An ONNX Runtime ``CalibrationDataReader`` over preprocessed input tensors, in batches."""

    def __init__(self, input_name: str, tensors: np.ndarray, batch: int = 8) -> None:
        self.input_name, self.tensors, self.batch = input_name, tensors, batch
        self._it: Iterator[int] = iter(range(0, len(tensors), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        start = next(self._it, None)
        if start is None:
            return None
        return {self.input_name: np.ascontiguousarray(self.tensors[start : start + self.batch])}

    def rewind(self) -> None:
        self._it = iter(range(0, len(self.tensors), self.batch))


def quantize(model_path: Path, out_path: Path, recipe: Recipe, input_name: str, calibration: np.ndarray) -> Path:
    """Write the INT8 QDQ version of ``model_path`` for ``recipe``'s target, calibrated (min/max of
    every quantized activation) on ``calibration`` (preprocessed input tensors, N x C x H x W)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class _Reader(BatchReader, CalibrationDataReader):
        pass

    extra = {"ActivationSymmetric": recipe.symmetric_activations, "WeightSymmetric": True}
    if recipe.target == "tensorrt":
        extra["OpTypesToExcludeOutputQuantization"] = list(recipe.op_types)
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    quantize_static(
        str(model_path), str(tmp), _Reader(input_name, calibration), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(recipe.op_types), per_channel=True, reduce_range=False,
        activation_type=QuantType.QInt8 if recipe.symmetric_activations else QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=first_convs(model_path) if recipe.float_first_conv else [],
        calibrate_method=CalibrationMethod.MinMax, extra_options=extra,
    )
    tmp.replace(out_path)
    return out_path


def stamp(path: Path, metadata: dict[str, str]) -> None:
    """Add ``metadata`` to the ONNX file's metadata_props (provenance travels with the file)."""
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))
