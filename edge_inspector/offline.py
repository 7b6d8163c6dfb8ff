"""``edge-inspector inspect``: try still images and sound clips offline, one JSON line each.

Images go through the same pre/post-processing as camera frames (any size is resized to the
model's input, boxes come back in the image's own pixels); WAV files through the same
log-mel features and streaming GRU as microphones.  A file that cannot be read gets one error
line on stderr, the others are still inspected, and the exit code says something failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from edge_inspector.errors import InputError, UserError
from edge_inspector.manifest import Manifest, load_manifest
from edge_inspector.runtime import create_engine

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".wave"}


class _Models:
    """Opens each model on first use only: inspecting WAV files never loads the CNN."""

    def __init__(self, manifest: Manifest, backend: str) -> None:
        self.manifest = manifest
        self.backend = backend
        self._visual: Any = None
        self._acoustic: Any = None

    def visual(self) -> Any:
        if self._visual is None:
            from edge_inspector.inspectors.visual_model import VisualModelRunner

            if self.manifest.visual is None:
                raise UserError("the model manifest has no [visual] model")
            engine = create_engine(self.manifest.path_of(self.manifest.visual), self.backend, max_batch=1)
            self._visual = VisualModelRunner(engine, self.manifest.visual)
        return self._visual

    def acoustic(self) -> Any:
        if self._acoustic is None:
            from edge_inspector.inspectors.acoustic_model import AcousticStreamRunner

            if self.manifest.acoustic is None:
                raise UserError("the model manifest has no [acoustic] model")
            engine = create_engine(self.manifest.path_of(self.manifest.acoustic), self.backend, max_batch=1)
            self._acoustic = AcousticStreamRunner(engine, self.manifest.acoustic)
        return self._acoustic


def inspect_one(path: Path, models: _Models) -> dict[str, Any]:
    from edge_inspector.inspectors.acoustic_model import inspect_wav
    from edge_inspector.inspectors.visual_model import inspect_image

    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return inspect_wav(path, models.acoustic())
    if suffix in IMAGE_SUFFIXES:
        return inspect_image(path, models.visual())
    raise InputError(
        f"{path}: unsupported file type {suffix or '(none)'}; expected an image "
        f"({', '.join(sorted(IMAGE_SUFFIXES))}) or a WAV file"
    )


def inspect_paths(paths: Sequence[Path], engines_dir: Path, backend: str, out: TextIO = sys.stdout) -> int:
    """Inspect every path; returns 0 if all succeeded, 1 if any input failed."""
    models = _Models(load_manifest(engines_dir), backend)
    failed = 0
    for path in paths:
        try:
            result = inspect_one(Path(path), models)
        except InputError as exc:
            print(f"edge-inspector: {exc}", file=sys.stderr)
            failed += 1
            continue
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 1 if failed else 0
