"""The entries of ``manifest.toml``: one pydantic model per modality and kind of model.

What each model's entry pins (inputs, normalisation, labels, thresholds, the sha256 of its files)
is described in :mod:`edge_inspector.manifest`, which reads and writes the whole file.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageInput(StrictModel):
    """The input contract of an image model: how a BGR frame becomes its input tensor.

    Every visual model of one directory must share it, so a frame is preprocessed once and the
    same tensor feeds each model.
    """

    input: str = "image"
    input_shape: tuple[int, int, int] = (3, 256, 256)  # C, H, W; batch is dynamic
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float]  # applied to pixel/255
    std: tuple[float, float, float]
    resize: Literal["stretch"] = "stretch"  # any frame size is resized to H x W

    def same_contract(self, other: "ImageInput") -> bool:
        keys = ("input_shape", "color", "mean", "std", "resize")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


class Provenance(StrictModel):
    """What a model learnt on the line was fitted on."""

    items: int = Field(ge=1)  # images (visual) or clips (acoustic)
    sha256: str  # of the items' own sha256 digests in order: the same data gives the same value
    sources: tuple[str, ...]  # the folders, videos and recordings given to `learn`
    date: str  # ISO 8601 UTC


class Calibration(StrictModel):
    """One re-set of a threshold from good parts (``learn`` or ``calibrate``)."""

    date: str
    items: int  # good images (clips) the rate was measured on
    sources: tuple[str, ...]
    target: float  # the false-reject rate asked for
    threshold_before: float | None
    threshold: float
    rate_before: float | None  # measured on these items at the old threshold
    rate_after: float  # measured on these items at the new one (out-of-fold scores for `learn`)


class QuantizedFile(StrictModel):
    """An INT8 (QDQ) version of a model for one runtime target.

    Two targets because the two runtimes want different INT8 graphs: ONNX Runtime's CPU kernels
    are fastest with unsigned asymmetric activations and the first convolution left in float,
    while TensorRT's explicit quantization accepts only signed symmetric INT8.
    """

    target: Literal["onnxruntime", "tensorrt"]
    file: str
    sha256: str
    source_sha256: str  # the float model (the entry's ``sha256``) it was quantized from
    scheme: str  # how, for people: activation/weight types, what stayed in float
    calibration: str  # what it was calibrated on, for people


class VisualModel(ImageInput):
    """The vision CNN: image in, class probabilities and a coarse defect heatmap out."""

    kind: Literal["classifier"] = "classifier"
    name: str = "visual_cnn"
    file: str
    sha256: str
    labels: tuple[str, ...]  # index 0 is the good class ("ok")
    output_probs: str = "probs"  # [N, len(labels)] softmax
    output_heatmap: str = "heatmap"  # [N, 1, h, w] sigmoid defect probability per cell
    threshold: float = Field(ge=0.0, le=1.0)  # defect if 1 - p(ok) >= threshold
    heatmap_threshold: float = Field(0.5, ge=0.0, le=1.0)
    calibrations: tuple[Calibration, ...] = ()  # threshold re-set on the line (edge-inspector calibrate)
    int8: tuple[QuantizedFile, ...] = ()  # verified INT8 versions, one per runtime target


class AnomalyDecision(StrictModel):
    """The decision fields every anomaly model shares, visual or acoustic.

    The graph outputs a raw score (higher = further from what it learnt); the head maps it to
    ``anomaly_score = sigmoid((raw - threshold) / score_scale)``: 0.5 at the threshold, and
    ``score_scale`` set from the spread of the good parts' scores when it was learnt, so a good
    part typically scores ~0.05 and the scale means the same on every line.
    """

    kind: Literal["anomaly"]
    threshold: float  # raw score at which an item is anomalous
    score_scale: float = Field(gt=0.0)
    max_false_reject: float | None = Field(None, ge=0.0, le=1.0)  # the rate the threshold was set for (images)
    learnt_from: Provenance
    calibrations: tuple[Calibration, ...] = ()


class Alignment(StrictModel):
    """Frames are registered to a learnt reference view before the model runs (aligned products:
    :mod:`edge_inspector.inspectors.alignment`)."""

    file: str  # .npy beside the model: the 128 x 128 float32 grey reference view
    sha256: str
    motion: Literal["rigid"] = "rigid"  # shift and turn


class VisualAnomalyModel(ImageInput, AnomalyDecision):
    """A good-parts-only image model: image in, an image score and a per-cell score map out."""

    name: str = "visual_anomaly"
    file: str
    sha256: str
    method: str  # how it scores, for people (e.g. "patch kNN over a 16x16 grid")
    output_score: str = "score"  # [N] raw image score
    output_map: str = "anomaly_map"  # [N, 1, h, w] raw score per cell (the box comes from it)
    map_threshold: float  # raw cell score at which a cell counts as part of the defect's box
    # raw score of a typical good part (held-out median): a box is cut at 3/4 of the way from it
    # to the map's peak, so it hugs the defect however strongly it scores (None: at map_threshold)
    typical: float | None = None
    int8: tuple[QuantizedFile, ...] = ()  # verified INT8 versions, one per runtime target
    alignment: Alignment | None = None  # None: the model takes frames as they come


class LogMelInput(StrictModel):
    """The input contract of a sound model: how samples become its log-mel frames.

    Every acoustic model of one directory must share it, so one feature stream per microphone
    feeds each model (:mod:`edge_inspector.features`).
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8000.0

    def same_contract(self, other: "LogMelInput") -> bool:
        return all(getattr(self, k) == getattr(other, k) for k in LogMelInput.model_fields)


class Episodes(StrictModel):
    """How a stream of frame scores becomes fault episodes (the acoustic inspector's rules).

    The frame score, smoothed by a causal moving average over ``smoothing_s``, opens an episode
    at ``onset`` and closes it below ``offset``; a dip below ``offset`` shorter than ``hold_s``
    does not close it (a knock every second or two is one fault, not one per knock).
    """

    onset: float = Field(ge=0.0, le=1.0)
    offset: float = Field(ge=0.0, le=1.0)
    smoothing_s: float = 0.3
    min_duration_s: float = 0.3
    hold_s: float = Field(2.0, ge=0.0)
    warmup_s: float = 0.5  # frames before this (after a state reset) are not scored
    report_after_s: float = Field(2.0, gt=0.0)  # an episode still open this long after onset is reported early


class AcousticModel(LogMelInput, Episodes):
    """The streaming GRU: log-mel frames in, per-frame class probabilities out, state carried."""

    kind: Literal["classifier"] = "classifier"
    name: str = "acoustic_gru"
    file: str
    sha256: str
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
    calibrations: tuple[Calibration, ...] = ()


class AcousticAnomalyModel(LogMelInput, Episodes, AnomalyDecision):
    """A normal-only sound model learnt on the line (``edge-inspector learn acoustic``).

    Raw log-mel frames and the last ``context_frames - 1`` frames (its carried state) in, a raw
    score per frame out (:mod:`edge_inspector.learn.acoustic_graph`).  ``threshold`` is the raw
    smoothed score where an episode opens (``onset`` is then 0.5 on the normalised scale, the
    anomaly head's); ``offset`` is on the same normalised scale.  The clip score of ``inspect`` is
    the largest smoothed frame score after the warm-up, decided against the same threshold.
    While the machine starts or stops (its level, the median over bands, moves by ``gate_db``
    within ``gate_window_s``) or is stopped or still slow (that level under ``gate_floor_db``,
    learnt: 8 dB under the running machine's) the model is not scored: a ramp-up is a state a few
    minutes of recording rarely cover, and a fault is heard while the machine runs.
    """

    name: str = "acoustic_anomaly"
    file: str
    sha256: str
    method: str  # how it scores, for people
    input: str = "mel"  # [N, T, n_mels] raw log-mel
    input_state: str = "ctx_in"  # [N, context_frames - 1, n_mels]
    output_score: str = "score"  # [N, T] raw score per frame
    output_state: str = "ctx_out"
    context_frames: int = Field(ge=2)
    chunk_frames: int = 50
    gate_db: float = Field(3.0, ge=0.0)  # a level change this large within gate_window_s suspends scoring (0: never)
    gate_window_s: float = Field(1.0, gt=0.0)
    gate_hold_s: float = Field(1.5, ge=0.0)  # ... until this long after the level settled
    gate_floor_db: float | None = None  # level (dB of mel power) under which the machine counts as stopped
    max_false_alarms_per_hour: float = Field(ge=0.0)  # what the threshold was set for
    false_alarms_per_hour: float | None = None  # estimated on held-out good audio at that threshold


# One entry type per kind.
VisualEntry = Annotated[Union[VisualModel, VisualAnomalyModel], Field(discriminator="kind")]
AcousticEntry = Annotated[Union[AcousticModel, AcousticAnomalyModel], Field(discriminator="kind")]
ModelEntry = Union[VisualModel, VisualAnomalyModel, AcousticModel, AcousticAnomalyModel]
