"""Procedural parts on a conveyor as a camera: ``synthetic://surface?seed=1&fps=10&defect_rate=0.2``.

The demo's camera, and a live source for tests and benchmarks that needs no hardware: it
paces itself like a camera and remembers the label it drew for each frame (``truth``).
"""

from __future__ import annotations

import time
from typing import Iterator
from urllib.parse import parse_qs, urlparse

from edge_inspector.errors import UserError
from edge_inspector.sources.base import BoundedQueue, Frame, SourceThread, StatusCallback
from edge_inspector.sources.frames import Pacer, Prepare, prepared
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import CameraSettings


class SyntheticCamera(SourceThread[Frame]):
    """``synthetic://surface?seed=1&fps=10&defect_rate=0.2``: procedural parts on a conveyor."""

    kind = "camera"

    def __init__(
        self,
        cfg: CameraSettings,
        queue: BoundedQueue[Frame],
        on_status: StatusCallback | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.prepare = prepare
        super().__init__(cfg.name, cfg.uri, queue, on_status, live=True)
        self.cfg = cfg
        params = synthetic_camera_params(cfg.uri)
        self.seed, self.fps = int(params["seed"]), float(params["fps"])
        self.defect_rate, self.size = float(params["defect_rate"]), int(params["size"])
        self.next_index = 0
        self.truth: dict[int, str] = {}  # frame index -> generated label (for demos and tests)

    def open(self) -> None:
        from edge_inspector.synthetic.surfaces import sample_stream

        self._samples = sample_stream(self.seed, defect_rate=self.defect_rate, size=self.size)

    def read_items(self) -> Iterator[Frame]:
        pacer = Pacer(self.cfg.fps_limit or self.fps)
        while not self.stop_event.is_set():
            if pacer.wait(self.stop_event):
                return
            sample = next(self._samples)
            index = self.next_index
            self.next_index += 1
            if len(self.truth) < 100_000:
                self.truth[index] = sample.label
            yield prepared(Frame(self.source_name, index, time.time(), time.monotonic(), sample.image), self.prepare)


def synthetic_camera_params(uri: str) -> dict[str, float]:
    """``synthetic://surface?seed=1&fps=10&defect_rate=0.2&size=256`` -> checked values."""
    parsed = urlparse(uri)
    if parsed.netloc != "surface":
        raise UserError(f"unknown synthetic camera {parsed.netloc!r} in {uri!r}; use synthetic://surface")
    limits = {"seed": (0, 2**31 - 1, 0), "fps": (0.1, 1000.0, 10.0), "defect_rate": (0.0, 1.0, 0.2), "size": (32, 4096, 256)}
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = sorted(set(query) - set(limits))
    if unknown:
        raise UserError(f"unknown synthetic camera parameter(s) {', '.join(unknown)} in {uri!r}; known: {', '.join(limits)}")
    out = {}
    for key, (lo, hi, default) in limits.items():
        try:
            value = float(query.get(key, default))
        except ValueError:
            raise UserError(f"{key}={query[key]!r} in {uri!r} is not a number") from None
        if not lo <= value <= hi:
            raise UserError(f"{key}={query[key]} in {uri!r} is out of range [{lo}, {hi}]")
        out[key] = value
    return out


def open_synthetic(s: CameraSettings, queue: BoundedQueue[Frame], on_status: StatusCallback | None,
                   context: OpenContext) -> SyntheticCamera:
    return SyntheticCamera(s, queue, on_status, context.prepare)


def check(s: CameraSettings, _devices: bool) -> list[str]:
    try:
        synthetic_camera_params(s.uri)
    except UserError as exc:
        return [f"uri: {exc}"]
    return []


class SyntheticCameraSettings(CameraSettings):
    """A ``synthetic://surface`` camera: its parameters are in the URI."""


KINDS = (SourceKind("camera", ("synthetic",), SyntheticCameraSettings, open_synthetic, "synthetic://surface",
                    check=check),)
