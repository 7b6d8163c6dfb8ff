"""``record``'s recorder: every configured source into its files, and the manifest beside them.

It opens the sources exactly as the daemon does (``sources.registry.open_source``, full frames:
``replay`` applies the ROI again), writes each with a
:class:`~edge_inspector.sources.recording.SourceRecorder`, and describes the recording in
``manifest.json`` (format, versions, the redacted config, the models' names and hashes); the
format itself is described in :mod:`edge_inspector.sources.recording`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_inspector import __version__
from edge_inspector.config import Config
from edge_inspector.errors import UserError
from edge_inspector.redact import redact_config, redact_text
from edge_inspector.sources.recording import SourceRecorder
from edge_inspector.sources.recording_files import FORMAT, MANIFEST, utc_iso, write_error
from edge_inspector.sources.registry import OpenContext, open_source

log = logging.getLogger(__name__)


def _versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"edge-inspector": __version__, "opencv": cv2.__version__, "onnxruntime": version("onnxruntime"),
            "numpy": np.__version__, "python": sys.version.split()[0]}


def _models(cfg: Config) -> dict[str, Any]:
    """Names and sha256 of the models the config would use (from ``engines/manifest.toml``)."""
    from edge_inspector.manifest import load_manifest

    try:
        manifest = load_manifest(cfg.runtime.engines_dir, verify=False)
    except UserError:
        return {}
    return manifest.summary()


def acoustic_rate(cfg: Config) -> int:
    """The acoustic model's sample rate (recording needs no model, only its rate; default 16 kHz)."""
    from edge_inspector.manifest import load_manifest

    try:
        manifest = load_manifest(cfg.runtime.engines_dir, verify=False)
    except UserError:
        return 16000
    acoustic = manifest.classifier("acoustic")
    return acoustic.sample_rate if acoustic else 16000


class Recorder:
    """Opens the configured sources (no models), records each into its files, writes the manifest."""

    def __init__(self, cfg: Config, out: Path, codec: str = "mjpeg") -> None:
        self.cfg, self.out = cfg, out
        self.stop_requested = threading.Event()
        self.errors: list[str] = []
        self.stopped_by = "end of sources"
        self.started = time.time()
        self.recorders: list[SourceRecorder] = []
        rate = acoustic_rate(cfg) if cfg.microphones else 16000
        for cam in cfg.cameras:
            full = cam.model_copy(update={"roi": None})  # full frames: replay applies the ROI again
            thread, queue = open_source(full, self._on_status, min_size=64)
            self.recorders.append(SourceRecorder("camera", cam.name, thread, queue, out, self._on_error,
                                                 codec=codec, fps=cam.fps_limit))
        for mic in cfg.microphones:
            mthread, mqueue = open_source(mic, self._on_status, OpenContext(sample_rate=rate), min_size=256)
            self.recorders.append(SourceRecorder("microphone", mic.name, mthread, mqueue, out, self._on_error,
                                                 sample_rate=rate))

    def _on_status(self, source: str, state: str, detail: str) -> None:
        log.info("source %s %s%s", source, state, f": {detail}" if detail else "")

    def _on_error(self, message: str) -> None:
        self.errors.append(message)
        self.stopped_by = "error"
        self.stop_requested.set()

    def manifest(self, ended: float | None) -> dict[str, Any]:
        return {
            "format": FORMAT, "versions": _versions(), "started": utc_iso(self.started), "started_ts": self.started,
            "ended": utc_iso(ended) if ended else None, "complete": ended is not None and not self.errors,
            "stopped_by": self.stopped_by if ended else None, "errors": [redact_text(e) for e in self.errors],
            "config": redact_config(self.cfg.model_dump(mode="json")), "models": _models(self.cfg),
            "cameras": {r.source_name: r.summary() for r in self.recorders if r.kind == "camera"},
            "microphones": {r.source_name: r.summary() for r in self.recorders if r.kind == "microphone"},
        }

    def write_manifest(self, ended: float | None) -> None:
        path = self.out / MANIFEST
        tmp = path.with_name(".manifest.json.tmp")
        try:
            tmp.write_text(json.dumps(self.manifest(ended), indent=2, default=str) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            err = write_error(path, exc)
            if str(err) not in self.errors:
                self.errors.append(str(err))

    def start(self) -> None:
        self.write_manifest(None)
        for r in self.recorders:
            r.start()
            r.source.start()
        self.started = time.time()

    def finished(self) -> bool:
        return all(not r.is_alive() for r in self.recorders)

    def stop(self) -> None:
        """Stop capturing, write what is queued, close every file, then the final manifest."""
        for r in self.recorders:
            r.source.stop()
        for r in self.recorders:
            r.source.join(5.0)
            if self.errors:
                r.abort.set()
            r.join(60.0)
        for r in self.recorders:
            if r.source.fatal_error and r.source.fatal_error not in self.errors:
                self.errors.append(r.source.fatal_error)
        self.write_manifest(time.time())
