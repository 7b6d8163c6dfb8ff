"""Benchmark: what seeing costs.  Defect snapshots and an open live preview, with and without.

The same run as the ``daemon`` scenario (the bench clip at ``replay --speed max``: every frame
inspected as fast as the machine allows, the HTTP server up), once as it is and once with
``[snapshots]`` on and a client watching the camera's ``live.mjpg`` the whole time.  The runs
alternate (without/with, then with/without, ...) so that a shared machine's drift over minutes
hits both alike; the figures are the medians (of each mode's rates, and of each pair's ratio),
with the process's CPU time per frame beside them, which other programs' load disturbs less.
Snapshots run with their defaults, ``max_per_s = 4`` included.  The bench clip is a harsh case for snapshots:
half the frames are defective (a line rejects a few percent), so most defects are over the
per-camera picture rate or find the queue full; both counts are reported beside the rate.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from bench_common import free_port

Progress = Callable[[str], None]


class _Viewer(threading.Thread):
    """A client reading ``live.mjpg`` until the server closes it; counts the JPEG parts."""

    def __init__(self, port: int, camera: str) -> None:
        super().__init__(name="bench-viewer", daemon=True)
        self.port, self.camera = port, camera
        self.parts = 0
        self.bytes = 0
        self.error = ""

    def run(self) -> None:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:  # the server comes up with the service
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", f"/cameras/{self.camera}/live.mjpg")
                response = conn.getresponse()
                break
            except OSError as exc:
                self.error = str(exc)
                time.sleep(0.01)
        else:
            return
        try:
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    return
                self.bytes += len(chunk)
                self.parts += chunk.count(b"Content-Type: image/jpeg")
        except OSError:
            return
        finally:
            conn.close()


def _one(clip: Path, engines: Path, max_batch: int | None, views: bool) -> dict[str, Any]:
    from edge_inspector.config import parse_config
    from edge_inspector.service import Service

    stamps: list[float] = []
    first: list[float] = []
    defects = [0]

    def on_verdict(v: Any) -> None:
        if not first:
            first.append(v.mono)
        stamps.append(time.monotonic())
        defects[0] += int(v.defect)

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        cfg = parse_config({
            "camera": [{"name": "cam0", "uri": f"file://{clip}", "realtime": False}],
            "runtime": {"backend": "onnxruntime", "engines_dir": str(engines),
                        **({"max_batch": max_batch} if max_batch is not None else {})},
            "publisher": {"endpoint": f"tcp://127.0.0.1:{free_port()}", "catchup_endpoint": None,
                          "journal": str(Path(tmp) / "journal.sqlite3"), "publish_verdicts": True},
            "health": {"listen": f"127.0.0.1:{port}"},
            "snapshots": {"enabled": views, "min_free_mb": 0},
        })
        svc = Service(cfg, on_verdict=on_verdict)
        viewer = _Viewer(port, "cam0") if views else None
        cpu0 = time.process_time()
        svc.start()
        if viewer is not None:
            viewer.start()
        svc.wait()
        snapshots = svc.views.snapshots
        preview = svc.views.preview
        code = svc.stop()  # includes writing the pictures still queued: their CPU is counted
        cpu_s = time.process_time() - cpu0
        if viewer is not None:
            viewer.join(5.0)
    if code != 0 or not stamps:
        raise RuntimeError(f"daemon replay failed (exit {code}): {svc.failure}")
    elapsed = stamps[-1] - first[0]
    out: dict[str, Any] = {"fps": round(len(stamps) / elapsed, 1), "verdicts": len(stamps), "defects": defects[0],
                           "seconds": round(elapsed, 3), "cpu_ms_per_frame": round(1000.0 * cpu_s / len(stamps), 2)}
    if views:
        c = snapshots.counters() if snapshots is not None else {}
        out["snapshots"] = {k: c.get(k) for k in ("written", "dropped", "limited", "failed", "bytes")}
        out["snapshots"]["ms_per_defect"] = (round(snapshots.write_ms_total / snapshots.written, 2)
                                             if snapshots is not None and snapshots.written else None)
        out["preview"] = {"frames_encoded": preview.encoded if preview is not None else 0,
                          "frames_received": viewer.parts if viewer is not None else 0,
                          "viewer_error": viewer.error if viewer is not None and not viewer.parts else ""}
    return out


def views_cost(clip: Path, engines: Path, max_batch: int | None, pairs: int, progress: Progress | None = None) -> dict[str, Any]:
    """``pairs`` runs without and with snapshots + an open preview, alternating; medians and cost."""
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for i in range(max(1, pairs)):
        for mode in (("without", "with") if i % 2 == 0 else ("with", "without")):
            if progress:
                progress(f"snapshots + preview: pair {i + 1}/{pairs}, {mode}")
            runs[mode].append(_one(clip, engines, max_batch, views=mode == "with"))
    fps = {mode: statistics.median(r["fps"] for r in rs) for mode, rs in runs.items()}
    cpu = {mode: statistics.median(r["cpu_ms_per_frame"] for r in rs) for mode, rs in runs.items()}
    ratios = [round(w["fps"] / wo["fps"], 3) for w, wo in zip(runs["with"], runs["without"])]
    written = [r["snapshots"]["written"] for r in runs["with"]]
    dropped = [r["snapshots"]["dropped"] for r in runs["with"]]
    limited = [r["snapshots"]["limited"] for r in runs["with"]]
    return {
        "pairs": len(ratios), "fps_without": round(fps["without"], 1), "fps_with": round(fps["with"], 1),
        "cost": round(1.0 - fps["with"] / fps["without"], 3),
        "cost_median_of_pairs": round(1.0 - statistics.median(ratios), 3),
        "cpu_ms_per_frame_without": cpu["without"], "cpu_ms_per_frame_with": cpu["with"],
        "runs_fps_without": [r["fps"] for r in runs["without"]], "runs_fps_with": [r["fps"] for r in runs["with"]],
        "runs_ratio": ratios, "defects_per_run": runs["with"][0]["defects"],
        "snapshots_written": written, "snapshots_dropped": dropped, "snapshots_limited": limited,
        "snapshot_ms_per_defect": statistics.median(r["snapshots"]["ms_per_defect"] or 0.0 for r in runs["with"]),
        "preview_frames_received": [r["preview"]["frames_received"] for r in runs["with"]],
        "verdicts_per_run": runs["with"][0]["verdicts"], "seconds_per_run": runs["with"][0]["seconds"],
    }
