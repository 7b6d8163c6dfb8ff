"""``edge-inspector inspect``: try still images and sound clips offline, one JSON line each.

Images go through the same pre/post-processing as camera frames (any size is resized to the
model's input, boxes come back in the image's own pixels); WAV files through the same
log-mel features and streaming GRU as microphones.  A file that cannot be read gets one error
line on stderr, the others are still inspected, and the exit code says something failed.
With ``--overlay DIR`` each input also gets a picture of the decision in ``DIR`` (the image with
the heatmap, box and label; the clip's spectrogram with its smoothed score curve), named in the
JSON line's ``overlay``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from edge_inspector.errors import InputError, UserError
from edge_inspector.manifest import Manifest, load_manifest
from edge_inspector.inspectors.factory import engine_opener, open_acoustic, open_visual

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".wave"}


class _Models:
    """Opens each modality's models on first use only: inspecting WAV files never loads the CNN."""

    def __init__(self, manifest: Manifest, backend: str, precision: str | None = None) -> None:
        self.manifest = manifest
        self.open_engine = engine_opener(backend)
        self.precision = precision
        self._visual: Any = None
        self._acoustic: Any = None

    def visual(self) -> Any:
        if self._visual is None:
            self._visual = open_visual(self.manifest, self.open_engine, max_batch=1, precision=self.precision)
        return self._visual

    def acoustic(self) -> Any:
        if self._acoustic is None:
            from edge_inspector.inspectors.acoustic_model import AcousticStreamRunner

            self._acoustic = AcousticStreamRunner(open_acoustic(self.manifest, self.open_engine))
        return self._acoustic


class _Overlays:
    """Where ``--overlay`` pictures go: ``DIR/<stem>.overlay.jpg`` / ``.spectrogram.png``, never
    overwriting another input's picture of this run (``<stem>-2…``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--overlay {directory}: cannot create the directory: {exc.strerror or exc}") from None
        self.used: set[str] = set()

    def path(self, source: Path, suffix: str) -> Path:
        stem, n = source.stem, 1
        while f"{stem}{suffix}" in self.used:
            n += 1
            stem = f"{source.stem}-{n}"
        self.used.add(f"{stem}{suffix}")
        return self.directory / f"{stem}{suffix}"

    def write(self, target: Path, data: bytes) -> str:
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise InputError(f"--overlay: cannot write {target}: {exc.strerror or exc}") from None
        return str(target)


def _image_picture(result: Any, image: Any) -> bytes:
    from edge_inspector import pictures

    return pictures.jpeg(pictures.verdict_picture(image, result.heatmap, result.bbox if result.defect else None,
                                                  f"{result.label} {result.score:.2f}", result.defect), 90)


def _clip_picture(path: Path, out: dict[str, Any], mel: Any, curve: Any, model: Any) -> bytes:
    """The clip's spectrogram over the smoothed per-frame score the daemon's hysteresis uses."""
    from edge_inspector import pictures

    frame_s = model.hop_length / model.sample_rate
    title = f"{path.name}  {out['label']} {out['score']:.2f}"
    return pictures.png(pictures.spectrogram_picture(mel, curve.values, frame_s, None, curve.onset, curve.offset, title))


def inspect_one(path: Path, models: _Models, overlays: _Overlays | None = None) -> dict[str, Any]:
    from edge_inspector.inspectors.acoustic_model import inspect_wav_detail
    from edge_inspector.inspectors.visual_model import inspect_image_detail

    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        runner = models.acoustic()
        out, mel, curve = inspect_wav_detail(path, runner)
        if overlays is not None:
            out["overlay"] = overlays.write(overlays.path(path, ".spectrogram.png"),
                                            _clip_picture(path, out, mel, curve, runner.model))
        return out
    if suffix in IMAGE_SUFFIXES:
        out, image, result = inspect_image_detail(path, models.visual())
        if overlays is not None:
            out["overlay"] = overlays.write(overlays.path(path, ".overlay.jpg"), _image_picture(result, image))
        return out
    raise InputError(
        f"{path}: unsupported file type {suffix or '(none)'}; expected an image "
        f"({', '.join(sorted(IMAGE_SUFFIXES))}) or a WAV file"
    )


def inspect_paths(paths: Sequence[Path], engines_dir: Path, backend: str, out: TextIO = sys.stdout,
                  overlay_dir: Path | None = None, precision: str | None = None) -> int:
    """Inspect every path; returns 0 if all succeeded, 1 if any input failed.

    ``precision`` as ``runtime.precision`` (None: the backend's default, as the daemon runs)."""
    models = _Models(load_manifest(engines_dir), backend, precision)
    overlays = _Overlays(overlay_dir) if overlay_dir is not None else None
    failed = 0
    for path in paths:
        try:
            result = inspect_one(Path(path), models, overlays)
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
