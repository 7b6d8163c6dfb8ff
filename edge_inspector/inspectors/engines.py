"""The daemon's engines: which backend, which files at which precision, how the visual models run.

The service asks this for its engine openers and closes what it opened; the status page asks it
what runs.  Kept apart from the service so that one place decides the backend once for every
model, applies the measured inference policy (:mod:`~edge_inspector.inspectors.policy`) and logs
all three choices the way an integrator looks for them.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_inspector.inspectors.config import RuntimeConfig
from edge_inspector.inspectors.factory import engine_opener, open_acoustic, open_visual
from edge_inspector.inspectors.policy import Policy, resolve
from edge_inspector.manifest import Manifest
from edge_inspector.precision import ModelFile
from edge_inspector.runtime import choose_backend
from edge_inspector.runtime.base import Engine

log = logging.getLogger("edge_inspector.service")


class DaemonEngines:
    """Every engine one daemon opens, from one backend choice."""

    def __init__(self, rt: RuntimeConfig, manifest: Manifest) -> None:
        self.rt, self.manifest = rt, manifest
        self.backend, why = choose_backend(rt.backend)
        if rt.backend == "auto":
            log.info("runtime.backend = auto: using %s (%s)", self.backend, why)
        self.engines: list[Engine] = []
        self.files: list[ModelFile] = []  # the file each engine runs (which one, which precision)
        self.policy: Policy | None = None

    def opener(self, threads: int | None = None) -> engine_opener:
        """An opener with ``threads`` ONNX Runtime threads per call (None: the config's)."""
        threads = self.rt.intra_op_threads if threads is None else threads
        opener = engine_opener(self.backend, **({} if self.backend == "tensorrt" else {"intra_op_threads": threads or 0}))
        opener.opened, opener.files = self.engines, self.files
        return opener

    def visual(self) -> Any:
        """The visual runner, run as the measured (or configured) policy says; the policy in ``self.policy``."""
        rt = self.rt
        self.policy = resolve(self.manifest, self.backend, rt.precision, max_batch=rt.max_batch,
                              workers=rt.inference_workers, threads=rt.intra_op_threads, max_call_ms=rt.max_call_ms)
        log.info("inference policy: %s", self.policy.describe())
        runner = open_visual(self.manifest, self.opener(self.policy.threads), self.policy.batch, precision=rt.precision)
        log.info("visual models: %s", runner.describe())
        for m in runner.models:
            if m.file is not None and m.file.note:
                log.info("runtime.precision: %s", m.file.note)
        return runner

    def acoustic(self) -> list[Any]:
        """Every acoustic model of the directory (classifier first), for the microphones."""
        return open_acoustic(self.manifest, self.opener(), precision=self.rt.precision)

    def model_info(self) -> list[dict[str, str]]:
        """Each model running: ``model`` (visual, visual.anomaly, acoustic…), name, the file that runs
        (the INT8 one at ``precision = "int8"``), its sha256, backend and precision."""
        running = {f.entry_file: f for f in self.files}
        return [{"model": key, "name": m["name"], "file": running[m["file"]].path.name,
                 "sha256": running[m["file"]].sha256[:12], "backend": self.backend,
                 "precision": running[m["file"]].precision}
                for key, m in self.manifest.summary().items() if m["file"] in running]

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
