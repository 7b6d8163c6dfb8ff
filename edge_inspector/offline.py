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

from edge_inspector.errors import InputError
from edge_inspector.manifest import Manifest, load_manifest
from edge_inspector.inspectors.factory import engine_opener, open_acoustic, open_visual

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".wave"}


class _Models:
    """Opens each modality's models on first use only: inspecting WAV files never loads the CNN."""

    def __init__(self, manifest: Manifest, backend: str) -> None:
        self.manifest = manifest
        self.open_engine = engine_opener(backend)
        self._visual: Any = None
        self._acoustic: Any = None

    def visual(self) -> Any:
        if self._visual is None:
            self._visual = open_visual(self.manifest, self.open_engine, max_batch=1)
        return self._visual

    def acoustic(self) -> Any:
        if self._acoustic is None:
            from edge_inspector.inspectors.acoustic_model import AcousticStreamRunner

            self._acoustic = AcousticStreamRunner(*open_acoustic(self.manifest, self.open_engine))
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
        except UserError:
            raise  # the models or the manifest: no other file can be inspected either
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the others
            print(f"edge-inspector: {path}: cannot inspect ({type(exc).__name__}: {exc})", file=sys.stderr)
            failed += 1
            continue
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 1 if failed else 0
