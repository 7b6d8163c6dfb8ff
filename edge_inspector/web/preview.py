"""``GET /cameras/<name>/live.mjpg``: the inspected frames as a person can watch them.

Each camera's newest inspected frame is drawn (box, ``label score``, capture time, and the
heatmap with ``?heatmap=1``) and JPEG-encoded at most ``fps`` times a second, and only while
someone watches that camera: with no viewer, :meth:`PreviewHub.offer` is one dictionary lookup
and an integer test in the verdict path.  Drawing runs on a thread of its own at a lower CPU
priority, so a preview left open on a line PC never takes the CPU from inspection; viewers
share the encoded frames.  A viewer gets the newest picture at once (with its capture time in
the caption, so a camera that went quiet shows as old), then each new one
(``multipart/x-mixed-replace``, which every browser shows in an ``<img>``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from edge_inspector import pictures
from edge_inspector.http_server import Handler, Request, Response, text
from edge_inspector.sources.decoded import pixels
from edge_inspector.supervision import ThreadHealth, lower_priority, run_supervised

BOUNDARY = "edge-inspector-frame"
JPEG_QUALITY = 80
NICENESS = 19  # the preview yields the CPU to inspection (see snapshots/writer.py)


@dataclass
class _Camera:
    name: str
    viewers: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})  # by heatmap wanted
    last_taken: float = 0.0
    pending: Any = None  # (verdict, its image): the newest to draw (the service lets go of the image)
    frames: dict[bool, tuple[int, bytes]] = field(default_factory=dict)  # heatmap? -> (number, JPEG)


class PreviewHub:
    """Per-camera preview frames, drawn on demand by one low-priority thread."""

    def __init__(self, cameras: list[str], fps: float = 5.0, width: int = 960,
                 health: ThreadHealth | None = None) -> None:
        self.cameras = {name: _Camera(name) for name in cameras}
        self.interval_s = 1.0 / fps
        self.width = width
        self.health = health
        self.encoded = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)

    # ------------------------------------------------------------------ verdict path
    def offer(self, verdict: Any) -> None:
        """A visual verdict with its image; taken only when watched and due (never blocks long)."""
        cam = self.cameras.get(verdict.source)
        if cam is None or not (cam.viewers[False] or cam.viewers[True]) or verdict.image is None:
            return
        now = time.monotonic()
        if now - cam.last_taken < self.interval_s:
            return
        cam.last_taken = now
        with self._cond:
            cam.pending = (verdict, verdict.image)
            self._cond.notify()

    def watching(self) -> int:
        return sum(c.viewers[False] + c.viewers[True] for c in self.cameras.values())

    # ------------------------------------------------------------------ the drawing thread
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        lower_priority(NICENESS)
        run_supervised("preview", self._loop, restart=True, stop=self._stop, health=self.health)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                todo = [c for c in self.cameras.values() if c.pending is not None]
                if not todo:
                    self._cond.wait(1.0)
                    continue
                work = [(c, c.pending) for c in todo]
                for c in todo:
                    c.pending = None
            for cam, (verdict, image) in work:
                for heat in (False, True):
                    if cam.viewers[heat]:
                        number = cam.frames.get(heat, (0, b""))[0] + 1
                        cam.frames[heat] = (number, self._draw(verdict, image, heat))
                        self.encoded += 1

    def _draw(self, v: Any, image: Any, heat: bool) -> bytes:
        image = pixels(image)  # a decoded file's frame is converted here, in the drawing thread
        bbox = None
        if v.bbox is not None and v.defect:
            ox, oy = v.image_origin
            bbox = [v.bbox[0] - ox, v.bbox[1] - oy, v.bbox[2], v.bbox[3]]
        caption = f"{v.source} #{v.frame}  {v.label} {v.score:.2f}  {time.strftime('%H:%M:%S', time.localtime(v.ts))}"
        drawn = pictures.verdict_picture(image, v.heatmap if heat else None, bbox, caption, v.defect, self.width)
        return pictures.jpeg(drawn, JPEG_QUALITY)

    # ------------------------------------------------------------------ viewers
    def frames(self, name: str, heat: bool) -> Callable[[], AsyncIterator[bytes]]:
        """The multipart body for one viewer of camera ``name`` (registered while it runs)."""
        cam = self.cameras[name]
        poll_s = min(0.05, self.interval_s / 2)

        async def parts() -> AsyncIterator[bytes]:
            cam.viewers[heat] += 1  # the event loop's thread only: no lock needed
            try:
                sent = 0
                while not self._stop.is_set():
                    number, data = cam.frames.get(heat, (0, b""))
                    if number != sent and data:
                        sent = number
                        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                               .encode("ascii") + data + b"\r\n")
                    await asyncio.sleep(poll_s)
            finally:
                cam.viewers[heat] -= 1

        return parts

    def route(self) -> Handler:
        """``/cameras/<name>/live.mjpg[?heatmap=1]``."""

        def handle(request: Request) -> Response:
            _, _, rest = request.path.partition("/cameras/")
            name, _, leaf = rest.partition("/")
            if leaf != "live.mjpg" or name not in self.cameras:
                return text(f"no camera {name!r} (cameras: {', '.join(self.cameras) or 'none'})\n", 404)
            heat = request.query.get("heatmap", "0") not in ("0", "", "false", "no")
            return Response(200, b"", f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                            {"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
                            stream=self.frames(name, heat))

        return handle
