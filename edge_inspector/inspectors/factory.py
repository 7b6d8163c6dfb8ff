"""The one place that opens a directory's models for inspection.

The daemon (:mod:`edge_inspector.service`), ``inspect`` (:mod:`edge_inspector.offline`),
``replay`` (through the service), the benchmark and the training package's evaluations all call
these, so a frame gets the same models, heads and decision everywhere.  The caller says how to
open an engine (backend, threads, precision) with an :data:`EngineOpener`; this module says
which models of the manifest run and with which head (chosen by each entry's ``kind``).

Visual: every visual model of the directory runs on every frame (:func:`open_visual`).
Acoustic: :func:`open_acoustic` opens the classifier; an acoustic anomaly model plugs in the
same way (an entry of kind ``anomaly`` in the manifest, a head in
:mod:`~edge_inspector.inspectors.heads`, its opinion combined with :func:`~edge_inspector.inspectors.heads.decide`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from edge_inspector.errors import UserError
from edge_inspector.inspectors.heads import head_for
from edge_inspector.manifest import Manifest
from edge_inspector.runtime.base import Engine

#: (ONNX file, max batch) -> an open engine
EngineOpener = Callable[[Path, int], Engine]


def engine_opener(backend: str = "onnxruntime", **options: Any) -> EngineOpener:
    """An :data:`EngineOpener` for ``backend`` with fixed options (``intra_op_threads``, ``precision``)."""
    from edge_inspector.runtime import create_engine

    return lambda path, max_batch: create_engine(path, backend, max_batch=max_batch, **options)


def open_visual(manifest: Manifest, open_engine: EngineOpener, max_batch: int,
                kinds: Sequence[str] | None = None) -> Any:
    """A :class:`~edge_inspector.inspectors.visual_model.VisualModelRunner` over the directory's
    visual models (only ``kinds`` when given, e.g. ``("classifier",)`` for its own model card)."""
    from edge_inspector.inspectors.visual_model import LoadedModel, VisualModelRunner

    entries = [e for e in manifest.entries("visual") if kinds is None or e.kind in kinds]
    if not entries:
        wanted = f" of kind {', '.join(kinds)}" if kinds else ""
        raise UserError(f"{manifest.directory / 'manifest.toml'} has no visual model{wanted}")
    models = []
    try:
        for entry in entries:
            models.append(LoadedModel(entry, head_for(entry), open_engine(manifest.path_of(entry), max_batch)))
        return VisualModelRunner(models)
    except BaseException:
        for m in models:
            m.engine.close()
        raise


def open_acoustic(manifest: Manifest, open_engine: EngineOpener, max_batch: int = 1) -> tuple[Engine, Any]:
    """The acoustic classifier's engine and manifest entry (the streaming inspector's inputs)."""
    model = manifest.classifier("acoustic")
    if model is None:
        raise UserError(f"{manifest.directory / 'manifest.toml'} has no acoustic model")
    return open_engine(manifest.path_of(model), max_batch), model
