"""``engines/manifest.toml``: everything the runtime must know about a shipped model.

The manifest is written by ``tools/train_*.py`` and read by the inspectors.  It pins input
names and shapes, normalisation, labels, feature parameters and decision thresholds, plus the
sha256 of each ONNX file so a swapped or corrupted model is refused instead of silently used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_inspector.errors import UserError
from edge_inspector.tomlcompat import tomllib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VisualModel(_Strict):
    """The vision CNN: image in, class probabilities and a coarse defect heatmap out."""

    name: str = "visual_cnn"
    file: str
    sha256: str
    input: str = "image"
    input_shape: tuple[int, int, int] = (3, 256, 256)  # C, H, W; batch is dynamic
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float]  # applied to pixel/255
    std: tuple[float, float, float]
    resize: Literal["stretch"] = "stretch"  # any frame size is resized to H x W
    labels: tuple[str, ...]  # index 0 is the good class ("ok")
    output_probs: str = "probs"  # [N, len(labels)] softmax
    output_heatmap: str = "heatmap"  # [N, 1, h, w] sigmoid defect probability per cell
    threshold: float = Field(ge=0.0, le=1.0)  # defect if 1 - p(ok) >= threshold
    heatmap_threshold: float = Field(0.5, ge=0.0, le=1.0)


class AcousticModel(_Strict):
    """The streaming GRU: log-mel frames in, per-frame class probabilities out, state carried."""

    name: str = "acoustic_gru"
    file: str
    sha256: str
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8000.0
    feature_mean: float = 0.0  # log-mel normalisation (scalar)
    feature_std: float = 1.0
    input: str = "mel"  # [N, T, n_mels]
    input_state: str = "h_in"  # [layers, N, hidden]
    output_probs: str = "probs"  # [N, T, len(labels)]
    output_state: str = "h_out"
    hidden_size: int
    num_layers: int
    chunk_frames: int = 50  # frames per streaming chunk (T)
    labels: tuple[str, ...]  # index 0 is the good class ("normal")
    threshold: float = Field(ge=0.0, le=1.0)  # clip decision on the clip score
    onset: float = Field(ge=0.0, le=1.0)  # streaming hysteresis on the smoothed frame score
    offset: float = Field(ge=0.0, le=1.0)
    smoothing_s: float = 0.3
    min_duration_s: float = 0.3
    warmup_s: float = 0.5  # frames before this (after a state reset) are not scored
    report_after_s: float = Field(2.0, gt=0.0)  # an episode still open this long after onset is reported early


class Manifest(_Strict):
    schema_version: int = 1
    visual: VisualModel | None = None
    acoustic: AcousticModel | None = None
    directory: Path = Path(".")

    def path_of(self, model: VisualModel | AcousticModel) -> Path:
        return self.directory / model.file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(engines_dir: Path, verify: bool = True) -> Manifest:
    """Read ``engines_dir/manifest.toml``; with ``verify`` refuse files whose sha256 differs."""
    path = Path(engines_dir) / "manifest.toml"
    if not path.is_file():
        raise UserError(f"model manifest not found: {path} (run tools/train_*.py or check runtime.engines_dir)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from exc
    try:
        manifest = Manifest(directory=Path(engines_dir), **data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"{path}: invalid manifest: {problems}") from None
    if verify:
        for model in (manifest.visual, manifest.acoustic):
            if model is None:
                continue
            file = manifest.path_of(model)
            if not file.is_file():
                raise UserError(f"{path}: model file missing: {file}")
            actual = sha256_of(file)
            if actual != model.sha256:
                raise UserError(
                    f"{file}: sha256 {actual[:12]}… does not match the manifest ({model.sha256[:12]}…); "
                    "the model was changed without re-running its training/export tool"
                )
    return manifest
