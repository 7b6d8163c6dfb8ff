"""How the daemon connects its sources to its inspectors: one queue per source, one inspector per medium.

Cameras share one wake-up condition, so the visual inspector sleeps until any camera has a frame
and batches across cameras; microphones share another for the acoustic inspector.  Each source is
opened through the registry (``sources.registry.open_source``: its kind and queue policy), and
recorded in a :class:`SourceView`, the row the status display, heartbeat and metrics read
(``service_metrics``).  The service (``service.py``) owns what happens next: start, stop, publish.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_inspector.sources.base import BoundedQueue, SourceThread
from edge_inspector.sources.registry import OpenContext, open_source

if TYPE_CHECKING:
    from edge_inspector.inspectors.acoustic import AcousticInspector
    from edge_inspector.inspectors.visual import VisualInspector
    from edge_inspector.service import Service


@dataclass
class SourceView:
    """What the status display and metrics know about one source."""

    name: str
    kind: str  # "camera" | "microphone"
    thread: SourceThread[Any]
    queue: BoundedQueue[Any]
    inspected: int = 0
    defects: int = 0
    last_label: str = ""
    last_score: float = 0.0
    latencies_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=512))
    started_mono: float = field(default_factory=time.monotonic)


def _open_sources(service: Service, sources: list[Any], kind: str, context: OpenContext,
                  min_file_size: int = 0) -> dict[str, BoundedQueue[Any]]:
    """Open each source (not started), registered in ``service.sources``; their queues by name.

    The queues share one condition: their inspector sleeps until any of them has an item.
    """
    wakeup = threading.Condition()
    queues: dict[str, BoundedQueue[Any]] = {}
    for settings in sources:
        thread, queue = open_source(settings, service._on_status, context, wakeup, min_file_size=min_file_size)
        thread.health = service.threads
        queues[settings.name] = queue
        service.sources[settings.name] = SourceView(settings.name, kind, thread, queue)
    return queues


def build_visual(service: Service) -> VisualInspector | None:
    """The cameras and their inspector (None without cameras); sets ``service.policy``."""
    from edge_inspector.inspectors.heads import Thresholds
    from edge_inspector.inspectors.visual import VisualInspector

    cfg = service.cfg
    cameras = cfg.cameras
    if not cameras:
        return None
    runner = service.engines.visual()
    service.policy = policy = service.engines.policy
    # One inference worker: preprocess in the camera threads (in parallel across cameras, beside
    # the model); several: in the workers, so a single fast camera's thread only decodes.
    prepare = (lambda image: runner.preprocess([image])[0]) if policy.workers == 1 else None
    # a file camera must be able to decode the next batch while this one is inferred
    queues = _open_sources(service, cameras, "camera", OpenContext(prepare=prepare),
                           min_file_size=4 * policy.batch * policy.workers)
    return VisualInspector(
        runner,
        queues,
        service._on_verdict,
        max_batch=policy.batch,
        batch_timeout_ms=cfg.runtime.batch_timeout_ms,
        workers=policy.workers,
        thresholds={c.name: Thresholds(c.threshold, c.anomaly_threshold) for c in cameras},
        # files read as fast as inspected: deterministic merge and full batches;
        # real-time files behave like live cameras (partial batches, bounded latency)
        lockstep=all(c.paced_by_inspector() for c in cameras),
    )


def build_acoustic(service: Service) -> AcousticInspector | None:
    """The microphones and their inspector (None without microphones)."""
    cfg = service.cfg
    mics = cfg.microphones
    if not mics:
        return None
    from edge_inspector.inspectors.acoustic import AcousticInspector

    models = service.engines.acoustic()
    model = models[0].entry  # the feature contract every acoustic model of the directory shares
    queues = _open_sources(service, mics, "microphone", OpenContext(sample_rate=model.sample_rate))
    overrides = {
        m.name: {k: v for k, v in (("onset", m.onset), ("offset", m.offset),
                                   ("anomaly_threshold", m.anomaly_threshold)) if v is not None}
        for m in mics
    }
    every = cfg.publisher.verdict_window_s if cfg.publisher.publish_verdicts else None
    return AcousticInspector(
        models, None, queues, service._on_verdict, overrides=overrides,
        verdict_every_s=every, on_window=service._on_window,
        trace_s=30.0 if service.views.snapshots is not None else 0.0,  # what a snapshot can show of an episode
        on_chunk=lambda mic, latency_s, inference_s: service.telemetry.observe(mic, "microphone", latency_s,
                                                                               inference_s),
    )
