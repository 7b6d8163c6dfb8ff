"""The visual inspector: batches frames across cameras into one engine call per batch.

One thread serves every camera.  It waits on the cameras' shared wake-up condition, takes
frames round-robin (so a busy camera cannot starve a quiet one) until the batch is full or a
short deadline after the first frame passes, and runs the models once (every visual model of
the engines directory: the classifier, the anomaly model, or both, on the same tensor).  A second thread turns the
engine's outputs into one :class:`~edge_inspector.values.Verdict` per frame and
hands them, in order, to ``on_verdict`` (which journals and publishes): the model never waits
for the journal, so the engine is busy back to back at full load (about a tenth more frames/s
on two cores).  At most ``HANDOFF_BATCHES`` batches wait between the two threads; beyond that
the inspector waits too, so nothing is ever dropped.

With ``workers`` > 1 (the measured policy on a multi-core CPU, :mod:`~edge_inspector.inspectors.policy`)
as many threads take batches in turn and run them side by side (ONNX Runtime runs concurrent
calls of one session in parallel), so every core infers while another decodes; batches are
numbered when taken and delivered strictly in that order, so verdicts leave in capture order
whichever worker finishes first.  Only one worker collects at a time: batches are formed exactly
as one thread would form them.

When every camera is a file (``lockstep``), frames are merged strictly in capture order and
batches are always filled: the same recording gives the same batches and the same events on
every run.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edge_inspector.inspectors.heads import Thresholds
from edge_inspector.inspectors.visual_model import VisualModelRunner
from edge_inspector.sources.base import BoundedQueue
from edge_inspector.supervision import log_failure
from edge_inspector.values import Frame, Verdict

log = logging.getLogger(__name__)

HANDOFF_BATCHES = 4  # inferred batches waiting for delivery before the inspector waits


@dataclass
class _Inferred:
    """One engine call's batch and outputs, on its way to the delivery thread."""

    batch: Sequence[Frame]
    outputs: list[dict[str, np.ndarray]]  # one dict per model of the runner
    seq: int  # order in which the batch was taken: delivery follows it
    t0: float  # batch taken from the queues (monotonic)
    preprocess_ms: float
    inference_ms: float


@dataclass
class VisualStats:
    frames: int = 0
    batches: int = 0
    defects: int = 0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    infer_ms_total: float = 0.0
    preprocess_ms_total: float = 0.0
    queue_wait_ms_total: float = 0.0


class VisualInspector(threading.Thread):
    def __init__(
        self,
        runner: VisualModelRunner,
        queues: dict[str, BoundedQueue[Frame]],
        on_verdict: Callable[[Verdict], None],
        max_batch: int = 8,
        batch_timeout_ms: float = 5.0,
        thresholds: dict[str, Thresholds] | None = None,
        lockstep: bool = False,
        workers: int = 1,
    ) -> None:
        super().__init__(name="visual-inspector", daemon=True)
        if not queues:
            raise ValueError("the visual inspector needs at least one camera queue")
        self.runner = runner
        self.queues = queues
        self.on_verdict = on_verdict
        self.max_batch = max(1, min(max_batch, runner.max_batch))
        self.batch_timeout_s = batch_timeout_ms / 1000.0
        self.thresholds = thresholds or {}
        self.lockstep = lockstep
        self.wakeup = next(iter(queues.values())).wakeup
        if any(q.wakeup is not self.wakeup for q in queues.values()):
            raise ValueError("camera queues must share one wake-up condition")
        self.stop_event = threading.Event()
        self.stats = VisualStats()
        self.error: BaseException | None = None
        self.workers = max(1, workers)
        self._order = list(queues)
        self._rr = 0
        self._collect_lock = threading.Lock()  # one worker forms a batch at a time
        self._stats_lock = threading.Lock()
        self._taken = 0  # batches taken (the next one's seq)
        self._delivered = 0  # seq of the next batch to deliver
        self._handoff: dict[int, _Inferred] = {}
        self._handoff_cv = threading.Condition()
        self._closing = False
        self._delivery = threading.Thread(target=self._deliver_loop, name="visual-delivery", daemon=True)

    def stop(self) -> None:
        """Finish: inspect what is still queued, then exit."""
        self.stop_event.set()
        with self.wakeup:
            self.wakeup.notify_all()

    # -- batch collection -----------------------------------------------------------------
    def _all_exhausted(self) -> bool:
        return all(q.exhausted for q in self.queues.values())

    def _take_round_robin(self, batch: list[Frame]) -> None:
        n = len(self._order)
        for _ in range(n):
            if len(batch) >= self.max_batch:
                break
            q = self.queues[self._order[self._rr % n]]
            self._rr += 1
            frame = q.get_nowait()
            if frame is not None:
                batch.append(frame)

    def _collect_live(self) -> list[Frame]:
        batch: list[Frame] = []
        deadline: float | None = None
        with self.wakeup:
            while True:
                before = len(batch)
                self._take_round_robin(batch)
                if len(batch) > before:
                    continue  # keep taking while frames are there
                if len(batch) >= self.max_batch or self._all_exhausted():
                    return batch
                if batch and self._every_camera_in(batch):
                    return batch  # nothing else can join soon: waiting would only add latency
                if batch and deadline is None:
                    deadline = time.monotonic() + self.batch_timeout_s
                if self.stop_event.is_set() and not batch and not any(len(q) for q in self.queues.values()):
                    return batch
                if self.error is not None and not batch:
                    return batch  # another worker failed: stop taking frames
                timeout = 0.1 if deadline is None else deadline - time.monotonic()
                if timeout <= 0:
                    return batch
                self.wakeup.wait(timeout)

    def _every_camera_in(self, batch: list[Frame]) -> bool:
        present = {f.source for f in batch}
        return all(name in present or q.closed for name, q in self.queues.items())

    def _collect_lockstep(self) -> list[Frame]:
        """Merge by capture order: wait until every unfinished camera has a frame queued."""
        batch: list[Frame] = []
        with self.wakeup:
            while len(batch) < self.max_batch:
                heads = {}
                waiting = False
                for name, q in self.queues.items():
                    if len(q):
                        heads[name] = q._items[0]
                    elif not q.closed:
                        waiting = True
                if waiting:
                    if (self.stop_event.is_set() and self._stop_now()) or self.error is not None:
                        return batch
                    self.wakeup.wait(0.1)
                    continue
                if not heads:
                    return batch  # every camera finished
                name = min(heads, key=lambda n: (heads[n].index, self._order.index(n)))
                batch.append(self.queues[name].get_nowait())  # type: ignore[arg-type]
        return batch

    def _stop_now(self) -> bool:
        # A stopped file camera closes its queue; until then keep waiting so nothing is lost.
        return all(q.closed for q in self.queues.values())

    # -- inference ------------------------------------------------------------------------
    def _inspect(self, batch: Sequence[Frame], seq: int) -> None:
        t0 = time.monotonic()
        runner = self.runner
        if all(f.tensor is not None for f in batch):  # prepared in the capture threads
            x = np.stack([f.tensor for f in batch])
        else:
            x = runner.preprocess([f.image for f in batch])
        t1 = time.monotonic()
        outputs = runner.run(x)
        t2 = time.monotonic()
        capture_prep_ms = max(f.prep_ms for f in batch)
        item = _Inferred(batch, outputs, seq, t0, (t1 - t0) * 1000.0 + capture_prep_ms, (t2 - t1) * 1000.0)
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.frames += len(batch)
            self.stats.batch_sizes[len(batch)] += 1
            self.stats.preprocess_ms_total += item.preprocess_ms
            self.stats.infer_ms_total += item.inference_ms
        with self._handoff_cv:
            # the batch delivery waits for always gets in, so a later one can never block it
            while len(self._handoff) >= HANDOFF_BATCHES and seq != self._delivered and self.error is None:
                self._handoff_cv.wait(0.1)
            if self.error is not None:
                raise RuntimeError("verdict delivery stopped") from self.error
            self._handoff[seq] = item
            self._handoff_cv.notify_all()

    # -- delivery -------------------------------------------------------------------------
    def _deliver_loop(self) -> None:
        """Deliver inferred batches in order until the inspector closes and all are delivered."""
        try:
            while True:
                with self._handoff_cv:
                    while self._delivered not in self._handoff and not self._closing:
                        self._handoff_cv.wait()
                    if self._delivered not in self._handoff:
                        return  # every worker ended: all is delivered, or a failed batch left a gap
                    item = self._handoff[self._delivered]
                self._deliver(item)
                with self._handoff_cv:
                    del self._handoff[self._delivered]
                    self._delivered += 1
                    self._handoff_cv.notify_all()
        except BaseException as exc:  # the inspector sees it at its next hand-off
            self.error = exc
            log_failure("visual-delivery", exc, 1, restarting=False)
            with self._handoff_cv:
                self._handoff_cv.notify_all()

    def _deliver(self, item: _Inferred) -> None:
        runner, batch, outputs, t0 = self.runner, item.batch, item.outputs, item.t0
        results = []
        for i, f in enumerate(batch):  # per frame: each camera may have its own thresholds
            one = [{name: value[i : i + 1] for name, value in out.items()} for out in outputs]
            size = (int(f.image.shape[0]), int(f.image.shape[1]))
            results += runner.postprocess(one, [size], self.thresholds.get(f.source))
        done = time.monotonic()
        for frame, result in zip(batch, results):
            queue_wait_ms = (t0 - frame.mono) * 1000.0 - frame.prep_ms  # prep ran in the capture thread
            self.stats.queue_wait_ms_total += queue_wait_ms
            bbox = None
            if result.bbox is not None:
                x, y, w, h = result.bbox
                bbox = [int(x + frame.origin[0]), int(y + frame.origin[1]), int(w), int(h)]
            if result.defect:
                self.stats.defects += 1
            self.on_verdict(
                Verdict(
                    source=frame.source,
                    kind="visual",
                    label=result.label,
                    score=float(result.score),
                    defect=bool(result.defect),
                    ts=frame.ts,
                    mono=frame.mono,
                    model=runner.name,
                    model_sha256=runner.sha256,
                    frame=frame.index,
                    bbox=bbox,
                    heatmap=result.heatmap,
                    image=frame.image,
                    image_origin=frame.origin,
                    anomaly_score=result.anomaly_score,
                    extra={
                        **({"probs": result.probs} if result.probs else {}),
                        "batch": len(batch),
                        "timing_ms": {
                            "queue_wait": round(queue_wait_ms, 3),
                            "preprocess": round(item.preprocess_ms, 3),
                            "inference": round(item.inference_ms, 3),
                            "inspect_total": round((done - t0) * 1000.0, 3),
                        },
                        "image_size": [int(frame.image.shape[1]), int(frame.image.shape[0])],
                    },
                )
            )

    def run(self) -> None:
        self._delivery.start()
        extra = [threading.Thread(target=self._work, name=f"visual-inspector-{i}", daemon=True)
                 for i in range(1, self.workers)]
        for t in extra:
            t.start()
        try:
            self._work()
        finally:  # this thread ends only when every worker stopped and every inferred frame was delivered
            for t in extra:
                t.join()
            with self._handoff_cv:
                self._closing = True
                self._handoff_cv.notify_all()
            self._delivery.join()

    def _work(self) -> None:
        """One worker: take the next batch (one worker at a time), infer it, hand it to delivery."""
        collect = self._collect_lockstep if self.lockstep else self._collect_live
        try:
            while self.error is None:
                with self._collect_lock:
                    batch = collect()
                    seq = self._taken
                    self._taken += bool(batch)
                if batch:
                    self._inspect(batch, seq)
                elif self._all_exhausted() or (self.stop_event.is_set() and self._drained()):
                    return
        except BaseException as exc:  # surfaced by the service as a runtime failure
            if self.error is None:
                self.error = exc
                log_failure("visual-inspector", exc, 1, restarting=False)
            with self._handoff_cv:
                self._handoff_cv.notify_all()

    def _drained(self) -> bool:
        return not any(len(q) for q in self.queues.values())
