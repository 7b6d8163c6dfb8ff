"""The snapshot writer: draws and writes each defect's pictures on a thread of its own.

Inspection must never wait for a picture.  :meth:`SnapshotWriter.reserve` runs in the verdict
delivery path *before* the event is journalled: it queues the verdict's image (or the acoustic
episode's trace) under a new event id and returns the ``snapshot`` fields the event will carry,
or None when the queue is full (counted in ``dropped``: the event then carries no snapshot).
The thread encodes and writes at the lowest CPU priority (nice 19, Linux), so under full load
the scheduler gives the inspector's threads the CPU first and a burst of defects costs dropped
pictures, not inspected frames.  Each source gets at most ``max_per_s`` pictures a second
(bursts of twice that; ``limited`` counts the rest): a camera rejecting every frame must not
churn the store and push out every earlier defect's pictures.  A client that asks for a picture
still being written waits for it (:meth:`wait_written`).

Per visual defect: ``<id>.jpg`` (the inspected image as the model saw it, full size),
``<id>.overlay.jpg`` (heatmap, box and caption, at most ``overlay_width`` wide) and
``<id>.thumb.jpg`` (the overlay, 240 px wide).  Per acoustic episode: ``<id>.png`` (spectrogram
and score curve) and ``<id>.thumb.png``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import cv2

from edge_inspector import pictures
from edge_inspector.errors import UserError
from edge_inspector.snapshots.store import SnapshotStore
from edge_inspector.sources.decoded import pixels
from edge_inspector.supervision import ThreadHealth, lower_priority, run_supervised

log = logging.getLogger(__name__)

NICENESS = 19  # added to the thread's nice value (Linux caps it at 19): pictures yield the CPU to inspection
THUMB_WIDTH = 240
URL_PREFIX = "/snapshots/"
PRUNE_EVERY_S = 60.0


@dataclass
class _Job:
    event_id: str
    verdict: Any  # the Verdict (its image / heatmap / trace are only read here)
    image: Any
    trace: Any


class SnapshotWriter:
    """A bounded queue of defect pictures to draw and a low-priority thread that writes them."""

    def __init__(self, store: SnapshotStore, queue_size: int = 16, jpeg_quality: int = 90,
                 overlay_width: int = 960, health: ThreadHealth | None = None, max_per_s: float = 0.0) -> None:
        self.store = store
        self.queue_size = max(1, queue_size)
        self.jpeg_quality = jpeg_quality
        self.overlay_width = overlay_width
        self.health = health
        self.max_per_s = max_per_s
        self._allowance: dict[str, tuple[float, float]] = {}  # source -> (pictures allowed now, when)
        self.clock = time.monotonic
        self._queue: collections.deque[_Job] = collections.deque()
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self.written = 0
        self.dropped = 0  # the queue was full: the event went out without a snapshot
        self.limited = 0  # over max_per_s for its source: the event went out without a snapshot
        self.failed = 0  # drawing or writing failed (logged)
        self.write_ms_total = 0.0

    # ------------------------------------------------------------------ producer side
    def reserve(self, verdict: Any) -> tuple[str, dict[str, str]] | None:
        """Queue ``verdict``'s pictures; ``(event id, event fields)``, or None (nothing to draw,
        or the queue is full).  Never blocks."""
        if verdict.kind == "visual":
            if verdict.image is None:
                return None
        elif verdict.trace is None:
            return None
        if not self._allowed(verdict.source):
            self.limited += 1
            return None
        event_id = uuid.uuid4().hex
        with self._cond:
            if len(self._queue) >= self.queue_size or self._stop.is_set():
                self.dropped += 1
                return None
            self._queue.append(_Job(event_id, verdict, verdict.image, verdict.trace))
            self._pending.add(event_id)
            self._cond.notify()
        if verdict.kind == "visual":
            return event_id, {"snapshot": f"{URL_PREFIX}{event_id}.jpg",
                              "snapshot_overlay": f"{URL_PREFIX}{event_id}.overlay.jpg"}
        return event_id, {"snapshot": f"{URL_PREFIX}{event_id}.png"}

    def _allowed(self, source: str) -> bool:
        """A token bucket per source: ``max_per_s`` pictures a second, bursts of twice that."""
        if self.max_per_s <= 0:
            return True
        burst = max(1.0, 2.0 * self.max_per_s)
        now = self.clock()
        tokens, last = self._allowance.get(source, (burst, now))
        tokens = min(burst, tokens + (now - last) * self.max_per_s)
        if tokens < 1.0:
            self._allowance[source] = (tokens, now)
            return False
        self._allowance[source] = (tokens - 1.0, now)
        return True

    def wait_written(self, event_id: str, timeout_s: float) -> None:
        """Return once ``event_id``'s pictures are written (or given up), at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while event_id in self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def counters(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped, "limited": self.limited, "failed": self.failed,
                "queued": self.queued,
                "stored": self.store.count, "bytes": self.store.total_bytes, "deleted": self.store.deleted,
                "skipped_disk": self.store.skipped_disk}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        try:
            self.store.open()
        except OSError as exc:
            raise UserError(f"snapshots.dir: cannot use {self.store.directory}: {exc.strerror or exc}") from None
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (within ``timeout_s``), then stop; the rest is counted as dropped."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        with self._cond:
            self.dropped += len(self._queue)
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        lower_priority(NICENESS)
        run_supervised("snapshot-writer", self._loop, restart=True, stop=self._stop, health=self.health)

    def _loop(self) -> None:
        next_prune = time.monotonic() + PRUNE_EVERY_S
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    if not self._cond.wait(max(0.0, next_prune - time.monotonic())):
                        break
                job = self._queue.popleft() if self._queue else None
            if job is None:
                if self._stop.is_set():
                    return
                next_prune = time.monotonic() + PRUNE_EVERY_S
                self.store.prune()
                continue
            try:
                self._write(job)
            finally:
                with self._cond:
                    self._pending.discard(job.event_id)
                    self._cond.notify_all()

    def _write(self, job: _Job) -> None:
        t0 = time.perf_counter()
        try:
            files = self._draw(job)
            saved = self.store.save(job.event_id, files)
        except (OSError, cv2.error, RuntimeError, ValueError) as exc:
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.error("snapshots: cannot write the pictures of a %s defect on %s (%d failed so far): %s",
                          job.verdict.kind, job.verdict.source, self.failed, getattr(exc, "strerror", None) or exc)
            return
        if saved:
            self.written += 1
            self.write_ms_total += (time.perf_counter() - t0) * 1000.0
        elif self.store.skipped_disk == 1:
            log.warning("snapshots: not written: the file system of %s has less than %.0f MB free",
                        self.store.directory, self.store.min_free_bytes / 1e6)

    def _draw(self, job: _Job) -> dict[str, bytes]:
        v = job.verdict
        if v.kind != "visual":
            title = f"{v.source}  {v.label} {v.score:.2f}  {v.duration_s or 0:.1f} s" + (
                "  (ongoing)" if v.extra.get("ongoing") else "")
            t = job.trace
            picture = pictures.spectrogram_picture(t.mel, t.scores, t.frame_s, t.span, t.onset, t.offset, title)
            return {".png": pictures.png(picture), ".thumb.png": pictures.png(pictures.fit_width(picture, THUMB_WIDTH))}
        image = pixels(job.image)  # a decoded file's frame is converted here, in the picture thread
        bbox = None
        if v.bbox is not None:
            ox, oy = v.image_origin
            bbox = [v.bbox[0] - ox, v.bbox[1] - oy, v.bbox[2], v.bbox[3]]
        caption = f"{v.source} #{v.frame}  {v.label} {v.score:.2f}"
        drawn = pictures.verdict_picture(image, v.heatmap, bbox, caption, True, self.overlay_width)
        return {".jpg": pictures.jpeg(image, self.jpeg_quality),
                ".overlay.jpg": pictures.jpeg(drawn, 85),
                ".thumb.jpg": pictures.jpeg(pictures.fit_width(drawn, THUMB_WIDTH), 80)}
