"""The live-latency benchmark: a 30 fps camera into the daemon, and a real subscriber in a process
of its own stamping each decision as it arrives (capture -> receive, per stage)."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_common import CpuMeter, free_port, percentiles
from bench_daemon import Progress, daemon_config, serve_mjpeg, terminate


def _stamp_verdicts(endpoint: str, conn: Any) -> None:
    """Child process: a ZeroMQ SUB on ``verdict.`` stamping each event's arrival (wall clock)
    until the parent says stop, then sending back ``[(receive time, payload)]``."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"verdict.")
    sock.connect(endpoint)
    got: list[tuple[float, bytes]] = []
    conn.send("ready")
    while not conn.poll(0):
        if sock.poll(50):
            _topic, payload = sock.recv_multipart()
            got.append((time.time(), payload))
    conn.recv()
    conn.send(got)
    sock.close(0)
    ctx.term()


class _Sub:
    """A real ZeroMQ subscriber in a process of its own, as a PLC bridge or a logger is: in a thread
    of the daemon's process it would also wait for that process's interpreter lock, which no real
    subscriber does (up to the 5 ms switch interval per event when the daemon's threads hold it)."""

    def __init__(self, endpoint: str) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_stamp_verdicts, args=(endpoint, child), name="bench-sub", daemon=True)
        self.events: list[tuple[float, dict[str, Any]]] = []

    def start(self) -> None:
        self._proc.start()
        if not self._conn.poll(60) or self._conn.recv() != "ready":
            raise RuntimeError("the subscriber process did not start")

    def close(self) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(30):
                self.events = [(t, json.loads(payload)) for t, payload in self._conn.recv()]
        finally:
            self._proc.join(5.0)
            if self._proc.is_alive():
                self._proc.kill()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def live_latency(mjpeg: Path, engines: Path, max_batch: int | None, seconds: float, fps: int,
                 progress: Progress | None = None) -> dict[str, Any]:
    """A live 30 fps HTTP MJPEG camera -> daemon -> a real SUB: capture-to-receive, per stage.

    A live source (not a file camera) because file cameras are inspected in lockstep batches
    for deterministic replay, which is not how a line camera behaves.  The first second is
    warm-up and is not counted.  ``ts`` has millisecond resolution (floored), so
    capture-to-receive reads up to 1 ms high.  Decode is the camera thread's CPU time per
    frame (its wall time would include waiting for the next frame from the network).
    """
    from edge_inspector.service import Service

    if progress:
        progress(f"latency: live camera at {fps} fps ({seconds:.0f} s)")
    port, cam_port = free_port(), free_port()
    server = serve_mjpeg(mjpeg, cam_port)
    sub = _Sub(f"tcp://127.0.0.1:{port}")
    sub.start()
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
            cfg = daemon_config(Path(tmp), engines, [{"name": "cam0", "uri": f"http://127.0.0.1:{cam_port}/"}], max_batch, port)
            svc = Service(cfg)
            meter = CpuMeter()
            svc.start()
            try:
                time.sleep(seconds + 1.0)
            finally:
                cam = svc.sources["cam0"]
                cpu = meter.stop()
                captured, dropped = cam.thread.counters.items, cam.queue.stats.dropped
                svc.stop()
                time.sleep(0.2)
    finally:
        sub.close()
        terminate([server])
    decode_ms = cpu["percent_of_one_core"].get("camera", 0.0) * 10.0 * cpu["elapsed_s"] / max(1, captured)
    events = [(t, e) for t, e in sub.events if e.get("frame", 0) >= fps]
    if not events:
        raise RuntimeError("no verdict events reached the subscriber")
    c2r = [(t - _epoch(e["ts"])) * 1000.0 for t, e in events]
    timing = [e.get("extra", {}).get("timing_ms", {}) for _, e in events]
    # what is left after the measured stages: post-processing, journal, ZeroMQ to the subscriber
    publish = [c - sum(tm.get(k, 0.0) for k in ("queue_wait", "preprocess", "inference")) for c, tm in zip(c2r, timing)]
    work = [decode_ms + tm.get("preprocess", 0.0) + tm.get("inference", 0.0) for tm in timing]
    return {
        "fps": fps, "seconds": seconds, "events": len(events), "captured": captured, "dropped": dropped,
        "source": "HTTP MJPEG 1280x720 (ffmpeg -re, stream copy)",
        "capture_to_receive_ms": percentiles(c2r),
        "capture_to_publish_ms": percentiles(e["latency_ms"] for _, e in events),
        "stages_ms": {
            "decode": {"mean": round(decode_ms, 3), "note": "camera thread CPU per frame (before the capture stamp)"},
            "queue_wait": percentiles(tm.get("queue_wait", 0.0) for tm in timing),
            "preprocess": percentiles(tm.get("preprocess", 0.0) for tm in timing),
            "inference": percentiles(tm.get("inference", 0.0) for tm in timing),
            "publish": percentiles(publish),
        },
        "decode_preprocess_inference_ms": percentiles(work),
        "batch": percentiles(e.get("extra", {}).get("batch", 1) for _, e in events),
        "cpu": cpu,
    }
