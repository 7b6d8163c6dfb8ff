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
from typing import Any

from pydantic import ValidationError, model_validator

from edge_inspector.atomic import atomic_write_text
from edge_inspector.errors import UserError
from edge_inspector.model_entries import (  # noqa: F401 - the entry types, re-exported with the manifest
    AcousticAnomalyModel,
    AcousticEntry,
    AcousticModel,
    Alignment,
    AnomalyDecision,
    Calibration,
    Episodes,
    ImageInput,
    LogMelInput,
    ModelEntry,
    Provenance,
    QuantizedFile,
    StrictModel,
    VisualAnomalyModel,
    VisualEntry,
    VisualModel,
)
from edge_inspector.tomlcompat import tomllib

MANIFEST_NAME = "manifest.toml"
MODALITIES = ("visual", "acoustic")
KINDS = ("classifier", "anomaly")


class Manifest(StrictModel):
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
                if getattr(model, "alignment", None) is not None:
                    verify_file(manifest, model.alignment, path)
    return manifest


def verify_file(manifest: Manifest, model: ModelEntry | QuantizedFile | Alignment, where: Path | None = None) -> None:
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

