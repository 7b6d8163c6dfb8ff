"""``[runtime]``: which backend runs the models, where they are, and how inference is batched.

It lives beside the inspectors that read it (``engines.py``), below the whole config that
includes it, like ``[snapshots]`` and ``[mqtt]`` beside theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_inspector import DEFAULT_ENGINES_DIR


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "onnxruntime", "tensorrt"] = "auto"
    engines_dir: Path = DEFAULT_ENGINES_DIR
    # unset: measured at the first start on this machine and cached (edge_inspector/inspectors/policy.py)
    max_batch: int | None = Field(None, ge=1, le=64)
    batch_timeout_ms: float = Field(5.0, ge=0.0, le=1000.0)
    intra_op_threads: int | None = Field(None, ge=0, le=64)  # 0 = all cores but one
    inference_workers: int | None = Field(None, ge=1, le=64)  # visual engine calls side by side
    max_call_ms: float = Field(33.0, gt=0.0, le=10000.0)  # the longest engine call a measured batch may take
    # int8 | fp16 | fp32; unset: int8 on ONNX Runtime, fp16 on TensorRT (edge_inspector/precision.py)
    precision: Literal["int8", "fp16", "fp32"] | None = None
