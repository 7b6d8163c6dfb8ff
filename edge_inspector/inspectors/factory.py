"""The one place that opens a directory's models for inspection.

The daemon (:mod:`edge_inspector.service`), ``inspect`` (:mod:`edge_inspector.commands.inspect`),
``replay`` (through the service), the benchmark and the training package's evaluations all call
these, so a frame gets the same models, heads and decision everywhere.  The caller says how to
open an engine (backend, threads) with an :data:`EngineOpener` and which precision it wants;
this module says which models of the manifest run, from which file
(:func:`~edge_inspector.precision.model_file`: the INT8 one or the float one) and with which
head (chosen by each entry's ``kind``).

Visual: every visual model of the directory runs on every frame (:func:`open_visual`).
Acoustic: every acoustic model of the directory runs on every microphone (:func:`open_acoustic`):
the classifier and the learnt anomaly model share one feature stream, and their opinions are
combined by the same contract (:func:`~edge_inspector.inspectors.heads.decide`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from edge_inspector.errors import UserError
from edge_inspector.inspectors.heads import head_for
from edge_inspector.manifest import Manifest
from edge_inspector.precision import ModelFile, model_file
from edge_inspector.runtime.base import Engine

#: (model file, max batch) -> an open engine; ``backend`` says which file of a model suits it
EngineOpener = Callable[[ModelFile, int], Engine]


class engine_opener:  # noqa: N801 - used like a function: engine_opener("onnxruntime")
    """An :data:`EngineOpener` for ``backend`` with fixed options (``intra_op_threads``, ...)."""

    def __init__(self, backend: str = "onnxruntime", **options: Any) -> None:
        from edge_inspector.runtime import available_backends

        self.backend = available_backends()[0] if backend == "auto" else backend
        self.options = options
        self.opened: list[Engine] = []  # every engine it opened, for whoever closes them
        self.files: list[ModelFile] = []  # and the file each runs, for whoever reports them

    def __call__(self, file: ModelFile, max_batch: int) -> Engine:
        from edge_inspector.runtime import create_engine

        options = dict(self.options)
        if self.backend == "tensorrt":
            options["precision"] = file.precision
        engine = create_engine(file.path, self.backend, max_batch=max_batch, **options)
        self.opened.append(engine)
        self.files.append(file)
        return engine


def _backend_of(open_engine: EngineOpener) -> str:
    return getattr(open_engine, "backend", "onnxruntime")


def open_visual(manifest: Manifest, open_engine: EngineOpener, max_batch: int,
                kinds: Sequence[str] | None = None, precision: str | None = "fp32") -> Any:
    """A :class:`~edge_inspector.inspectors.visual_model.VisualModelRunner` over the directory's
    visual models (only ``kinds`` when given, e.g. ``("classifier",)`` for its own model card),
    each from its file for ``precision`` (None: the backend's default, as the daemon runs)."""
    from edge_inspector.inspectors.visual_model import LoadedModel, VisualModelRunner

    entries = [e for e in manifest.entries("visual") if kinds is None or e.kind in kinds]
    if not entries:
        wanted = f" of kind {', '.join(kinds)}" if kinds else ""
        raise UserError(f"{manifest.directory / 'manifest.toml'} has no visual model{wanted}")
    models = []
    try:
        for entry in entries:
            file = model_file(manifest.directory, entry, precision, _backend_of(open_engine))
            models.append(LoadedModel(entry, head_for(entry), open_engine(file, max_batch), file,
                                      aligner_for(manifest, entry)))
        return VisualModelRunner(models)
    except BaseException:
        for m in models:
            m.engine.close()
        raise


def aligner_for(manifest: Manifest, entry: Any) -> Any:
    """The registration step of a model learnt on an aligned product (None for any other model)."""
    alignment = getattr(entry, "alignment", None)
    if alignment is None:
        return None
    import numpy as np

    from edge_inspector.inspectors.alignment import Aligner

    path = manifest.directory / alignment.file
    try:
        return Aligner(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a usable alignment reference ({exc})") from None


def open_acoustic(manifest: Manifest, open_engine: EngineOpener, max_batch: int = 1,
                  kinds: Sequence[str] | None = None, precision: str | None = "fp32") -> list[Any]:
    """The directory's acoustic models (classifier first) as
    :class:`~edge_inspector.inspectors.acoustic_model.LoadedModel` s: give them to an
    :class:`~edge_inspector.inspectors.acoustic_model.AcousticStreamRunner` (one per microphone) or
    the :class:`~edge_inspector.inspectors.acoustic.AcousticInspector`.

    Acoustic models have no INT8 file: at ``int8`` they run in float (fp16 under TensorRT)."""
    from edge_inspector.inspectors.acoustic_model import LoadedModel

    entries = [e for e in manifest.entries("acoustic") if kinds is None or e.kind in kinds]
    if not entries:
        wanted = f" of kind {', '.join(kinds)}" if kinds else ""
        raise UserError(f"{manifest.directory / 'manifest.toml'} has no acoustic model{wanted}")
    models: list[Any] = []
    try:
        for entry in entries:
            file = model_file(manifest.directory, entry, precision, _backend_of(open_engine))
            models.append(LoadedModel(entry, head_for(entry), open_engine(file, max_batch), file))
        return models
    except BaseException:
        for m in models:
            m.engine.close()
        raise
