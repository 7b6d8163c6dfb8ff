"""``manifest.toml``: everything the runtime must know about the models of an engines directory.

A directory holds up to two models per modality: a ``classifier`` (supervised: names the defect
or fault types it was trained on) and an ``anomaly`` model (learnt on the line from good parts
only: scores how far a frame or a sound is from them).  Each entry says which it is with
``kind``; the inspectors pick a head for it by that key (:mod:`edge_inspector.inspectors.heads`).
One model per modality is a table, several are an array of tables::

    [acoustic]                 # one model: kind defaults to "classifier" (the original layout)
    name = "acoustic_gru"
    ...
    [[visual]]                 # two models for one camera: both run on every frame
    kind = "classifier"
    name = "visual_cnn"
    ...
    [[visual]]
    kind = "anomaly"
    name = "visual_anomaly"
    ...

An entry pins input names and shapes, normalisation, labels, decision thresholds and the sha256
of its ONNX file, so a swapped or corrupted model is refused instead of silently used.  An
``anomaly`` entry also records what it learnt from and every re-calibration of its threshold.
A visual entry may list INT8 versions of its model (``[[visual.int8]]``, one per runtime
target, written by ``python -m training.visual.quantize`` once they passed its accuracy check);
each pins its own sha256 and the sha256 of the float model it was made from, so a retrained
model can never run with the INT8 file of its predecessor.

Writing: training (``python -m training.…``), ``edge-inspector learn`` and ``calibrate`` change
one entry with :func:`replace_entry` and :func:`write_manifest`, keeping every other entry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_inspector.atomic import atomic_write_text
from edge_inspector.errors import UserError
from edge_inspector.tomlcompat import tomllib

MANIFEST_NAME = "manifest.toml"
MODALITIES = ("visual", "acoustic")
KINDS = ("classifier", "anomaly")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageInput(_Strict):
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


class Provenance(_Strict):
    """What a model learnt on the line was fitted on."""

    items: int = Field(ge=1)  # images (visual) or clips (acoustic)
    sha256: str  # of the items' own sha256 digests in order: the same data gives the same value
    sources: tuple[str, ...]  # the folders, videos and recordings given to `learn`
    date: str  # ISO 8601 UTC


class Calibration(_Strict):
    """One re-set of a threshold from good parts (``learn`` or ``calibrate``)."""

    date: str
    items: int  # good images (clips) the rate was measured on
    sources: tuple[str, ...]
    target: float  # the false-reject rate asked for
    threshold_before: float | None
    threshold: float
    rate_before: float | None  # measured on these items at the old threshold
    rate_after: float  # measured on these items at the new one (out-of-fold scores for `learn`)


class QuantizedFile(_Strict):
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


class AnomalyDecision(_Strict):
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


class LogMelInput(_Strict):
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


class Episodes(_Strict):
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
    While the machine starts or stops (the broadband level moves by ``gate_db`` within
    ``gate_window_s``) the model is not scored: a ramp-up is a state a few minutes of recording
    rarely cover, and a fault is heard while the machine runs.
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
    max_false_alarms_per_hour: float = Field(ge=0.0)  # what the threshold was set for
    false_alarms_per_hour: float | None = None  # estimated on held-out good audio at that threshold


# One entry type per kind.
VisualEntry = Annotated[Union[VisualModel, VisualAnomalyModel], Field(discriminator="kind")]
AcousticEntry = Annotated[Union[AcousticModel, AcousticAnomalyModel], Field(discriminator="kind")]
ModelEntry = Union[VisualModel, VisualAnomalyModel, AcousticModel, AcousticAnomalyModel]


class Manifest(_Strict):
    schema_version: int = 1
    visual: tuple[VisualEntry, ...] = ()
    acoustic: tuple[AcousticEntry, ...] = ()
    directory: Path = Path(".")

    @model_validator(mode="before")
    @classmethod
    def _as_lists(cls, data: Any) -> Any:
        """A single table is one entry; an entry without ``kind`` is a classifier."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for modality in MODALITIES:
            value = data.get(modality)
            if value is None:
                data.pop(modality, None)
                continue
            entries = [value] if isinstance(value, dict) else list(value)
            data[modality] = [dict(e, kind=e.get("kind", "classifier")) if isinstance(e, dict) else e
                              for e in entries]
        return data

    @model_validator(mode="after")
    def _one_per_kind(self) -> "Manifest":
        names: set[str] = set()
        for modality in MODALITIES:
            kinds = [e.kind for e in self.entries(modality)]
            for kind in set(kinds):
                if kinds.count(kind) > 1:
                    raise ValueError(f"{modality}: {kinds.count(kind)} models of kind {kind!r}; at most one per kind")
            for entry in self.entries(modality):
                if entry.name in names:
                    raise ValueError(f"{modality}: model name {entry.name!r} is used twice")
                names.add(entry.name)
        acoustic = self.entries("acoustic")
        for entry in acoustic[1:]:
            if not entry.same_contract(acoustic[0]):  # type: ignore[union-attr]
                raise ValueError(f"acoustic: {entry.name!r} and {acoustic[0].name!r} need the same sample_rate, "
                                 "n_fft, win_length, hop_length, n_mels, fmin and fmax (one feature stream feeds both)")
        visual = self.entries("visual")
        for entry in visual:
            targets = [q.target for q in entry.int8]
            if len(set(targets)) != len(targets):
                raise ValueError(f"visual: {entry.name!r} lists more than one INT8 file per target ({', '.join(targets)})")
            stale = [q.file for q in entry.int8 if q.source_sha256 != entry.sha256]
            if stale:
                raise ValueError(f"visual: {entry.name!r}: INT8 file(s) {', '.join(stale)} were made from another "
                                 "model; re-run python -m training.visual.quantize")
        for entry in visual[1:]:
            if not entry.same_contract(visual[0]):  # type: ignore[union-attr]
                raise ValueError(f"visual: {entry.name!r} and {visual[0].name!r} need the same input_shape, "
                                 "color, mean, std and resize (one preprocessed frame feeds both)")
        return self

    def entries(self, modality: str) -> tuple[Any, ...]:
        """Every model of ``modality`` ("visual" or "acoustic"), classifier first."""
        return tuple(sorted(getattr(self, modality), key=lambda e: KINDS.index(e.kind)))

    def entry(self, modality: str, kind: str) -> Any | None:
        """The ``kind`` model of ``modality``, or None."""
        return next((e for e in getattr(self, modality) if e.kind == kind), None)

    def classifier(self, modality: str) -> Any | None:
        return self.entry(modality, "classifier")

    def anomaly(self, modality: str) -> Any | None:
        return self.entry(modality, "anomaly")

    def path_of(self, model: ModelEntry) -> Path:
        return self.directory / model.file

    def summary(self) -> dict[str, dict[str, str]]:
        """``{"visual": {name, file, sha256}, "visual.anomaly": {…}, …}`` for recordings and reports
        (a classifier keeps the bare modality as its key, as before anomaly models existed)."""
        return {(m if e.kind == "classifier" else f"{m}.{e.kind}"): {"name": e.name, "file": e.file, "sha256": e.sha256}
                for m in MODALITIES for e in self.entries(m)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


def load_manifest(engines_dir: Path, verify: bool = True) -> Manifest:
    """Read ``engines_dir/manifest.toml``; with ``verify`` refuse files whose sha256 differs."""
    path = Path(engines_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"model manifest not found: {path} (a directory made by `edge-inspector learn`, the "
                        "shipped engines/, or check runtime.engines_dir)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from exc
    try:
        manifest = Manifest(directory=Path(engines_dir), **data)
    except ValidationError as exc:
        raise UserError(f"{path}: invalid manifest: {_problems(exc)}") from None
    if verify:
        for modality in MODALITIES:
            for model in manifest.entries(modality):
                verify_file(manifest, model, path)
                for variant in getattr(model, "int8", ()):
                    verify_file(manifest, variant, path)
    return manifest


def verify_file(manifest: Manifest, model: ModelEntry | QuantizedFile, where: Path | None = None) -> None:
    """Refuse a missing model file or one whose sha256 is not the manifest's."""
    file = manifest.directory / model.file
    if not file.is_file():
        raise UserError(f"{where or manifest.directory / MANIFEST_NAME}: model file missing: {file}")
    actual = sha256_of(file)
    if actual != model.sha256:
        raise UserError(
            f"{file}: sha256 {actual[:12]}… does not match the manifest ({model.sha256[:12]}…); "
            "the model was changed without re-running the tool that made it"
        )


def replace_entry(manifest: Manifest, modality: str, entry: ModelEntry) -> Manifest:
    """``manifest`` with ``entry`` in place of the model of the same kind (or added)."""
    kept = [e for e in manifest.entries(modality) if e.kind != entry.kind]
    return manifest.model_copy(update={modality: tuple(sorted(kept + [entry], key=lambda e: KINDS.index(e.kind)))})


def manifest_data(manifest: Manifest) -> dict[str, Any]:
    """The TOML document of ``manifest``: one model per modality as a table, several as an array."""
    data: dict[str, Any] = {"schema_version": manifest.schema_version}
    for modality in MODALITIES:
        entries = []
        for model in manifest.entries(modality):
            fields = {k: v for k, v in model.model_dump(mode="json").items() if v is not None}  # TOML has no null
            for optional in ("calibrations", "int8"):
                if not fields.get(optional):
                    fields.pop(optional, None)
            first = {k: fields.pop(k) for k in ("kind", "name", "file", "sha256")}
            entries.append({**first, **fields})
        if entries:
            data[modality] = entries[0] if len(entries) == 1 else entries
    return data


def write_manifest(manifest: Manifest, directory: Path | None = None) -> Path:
    """Write ``manifest`` to ``directory`` (default: its own), atomically: a reader (the daemon
    starting, another tool) sees the old file or the new one, never half of one."""
    import tomli_w

    directory = Path(directory or manifest.directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST_NAME
    header = ("# Written by edge-inspector (learn, calibrate) and the training package (python -m training.…);\n"
              "# change it with those tools: every model file's sha256 is checked against it.\n")
    return atomic_write_text(path, header + tomli_w.dumps(manifest_data(manifest)))


def load_or_empty(engines_dir: Path) -> Manifest:
    """The manifest of ``engines_dir`` unverified, or an empty one when it has none yet."""
    if (Path(engines_dir) / MANIFEST_NAME).is_file():
        return load_manifest(engines_dir, verify=False)
    return Manifest(directory=Path(engines_dir))

