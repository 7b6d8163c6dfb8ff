#!/usr/bin/env python3
"""A GigE Vision camera inspected by the daemon: throughput, drops, and recovery after an outage.

Runs :class:`edge_inspector.service.Service` in-process (the pipeline ``edge-inspector run``
builds) on Aravis' simulated GigE camera (``arv-fake-gv-camera-0.8`` on loopback, see
``tools/fake_gige.py``) at 1280x1024 Mono8, 30 fps by default, and reports:

- frames the camera sent (the simulator runs under the real-time scheduler, as a camera with its
  own clock would, unless ``--no-realtime``), captured, inspected and dropped (queue: the inspector was behind;
  Aravis: buffers failed or underrun) over ``--seconds`` after a warm-up;
- CPU per thread (camera, inspector, native pools);
- the outage: the camera process is killed (a pulled cable), the time until the source is
  ``offline``; then restarted, the time from its first answer until the source is ``online``
  again and until the first frame after it is inspected (the target: <= 5 s).

    .venv/bin/python tools/bench_gige.py                    # 20 s at 1280x1024 Mono8 30 fps
    .venv/bin/python tools/bench_gige.py --seconds 60 --fps 60 --out /tmp/gige.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import CpuMeter, free_port, machine_info  # noqa: E402
from fake_gige import FakeGigECamera  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _row(svc: Any) -> dict[str, Any]:
    return {r["source"]: r for r in svc.source_rows()}["gige"]


def _wait(check: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> float | None:
    """The monotonic time ``check`` first held, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(step_s)
    return None


def run(seconds: float, fps: float, width: int, height: int, warmup_s: float = 3.0,
        engines: Path = ROOT / "engines", realtime: bool = True) -> dict[str, Any]:
    from edge_inspector.config import parse_config
    from edge_inspector.service import Service

    camera = FakeGigECamera(realtime=realtime)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gige-") as tmp:
            cfg = parse_config({
                "camera": [{"name": "gige", "uri": camera.uri, "pixel_format": "Mono8",
                            "region": [0, 0, width, height], "frame_rate": fps, "stall_timeout_s": 1.0}],
                "runtime": {"backend": "onnxruntime", "engines_dir": str(engines)},
                "publisher": {"endpoint": f"tcp://127.0.0.1:{free_port()}", "catchup_endpoint": None,
                              "journal": str(Path(tmp) / "journal.sqlite3"), "publish_verdicts": True},
                "health": {"listen": None},
                "snapshots": {"enabled": False},
            })
            svc = Service(cfg)
            svc.start()
            try:
                thread = svc.sources["gige"].thread
                if _wait(lambda: _row(svc)["state"] == "online", 30) is None:
                    raise RuntimeError(f"the camera never came online: {_row(svc)}")
                time.sleep(warmup_s)
                before, stats0 = _row(svc), thread.statistics()
                meter = CpuMeter({"fake camera": camera.proc.pid} if camera.proc else None)
                t0 = time.monotonic()
                time.sleep(seconds)
                elapsed = time.monotonic() - t0
                after, stats1 = _row(svc), thread.statistics()
                cpu = meter.stop()
                throughput = _throughput(before, after, stats0, stats1, elapsed, fps)
                outage = _outage(svc, camera)
            finally:
                svc.stop()
    finally:
        camera.close()
    return {"camera": {"width": width, "height": height, "pixel_format": "Mono8", "fps": fps,
                       "simulator_realtime": camera.realtime},
            "seconds": round(elapsed, 2), "throughput": throughput, "outage": outage, "cpu": cpu,
            "policy": {"batch": svc.policy.batch, "workers": svc.policy.workers, "threads": svc.policy.threads},
            "machine": machine_info()}


def _throughput(before: dict[str, Any], after: dict[str, Any], stats0: dict[str, float], stats1: dict[str, float],
                elapsed: float, fps: float) -> dict[str, Any]:
    def delta(name: str) -> int:
        return int(stats1.get(name, 0.0) - stats0.get(name, 0.0))

    inspected = after["inspected"] - before["inspected"]
    return {
        "camera_completed": delta("n_completed_buffers"),
        "camera_fps": round(delta("n_completed_buffers") / elapsed, 2),
        "captured": after["captured"] - before["captured"],
        "inspected": inspected,
        "inspected_fps": round(inspected / elapsed, 2),
        "expected_frames": round(fps * elapsed),
        "dropped_queue": after["dropped"] - before["dropped"],
        "stale": after.get("stale", 0) - before.get("stale", 0),
        "aravis_failed": delta("n_failures"),
        "aravis_underrun": delta("n_underruns"),
        "aravis_missing_frames": delta("n_missing_frames"),  # sent, never seen (every packet lost)
        "aravis_timeouts": delta("n_timeouts"),
        "aravis_missing_packets": delta("n_missing_packets"),
    }


def _outage(svc: Any, camera: FakeGigECamera) -> dict[str, Any]:
    inspected = lambda: _row(svc)["inspected"]  # noqa: E731
    killed = camera.kill()
    offline = _wait(lambda: _row(svc)["state"] != "online", 20)
    back = camera.start()
    n0 = inspected()
    online = _wait(lambda: _row(svc)["state"] == "online", 30)
    first = _wait(lambda: inspected() > n0, 30)
    return {
        "offline_after_kill_s": round(offline - killed, 3) if offline else None,
        "online_after_return_s": round(online - back, 3) if online else None,
        "first_inspected_after_return_s": round(first - back, 3) if first else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--no-realtime", action="store_true",
                    help="run the camera simulator as a normal task (on a busy machine it then sends fewer frames)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = ap.parse_args()
    out = run(args.seconds, args.fps, args.width, args.height, realtime=not args.no_realtime)
    t, o = out["throughput"], out["outage"]
    sim = "real-time scheduler" if out["camera"]["simulator_realtime"] else "normal scheduler"
    print(f"GigE {args.width}x{args.height} Mono8 at {args.fps:g} fps for {out['seconds']} s (simulator on the {sim}): "
          f"camera sent {t['camera_completed']} ({t['camera_fps']} fps), inspected {t['inspected']} ({t['inspected_fps']} fps), dropped "
          f"{t['dropped_queue']} (queue) + {t['aravis_failed']} failed + {t['aravis_underrun']} underrun + "
          f"{t['aravis_missing_frames']} missing + {t['aravis_timeouts']} timed out (Aravis), "
          f"stale {t['stale']}")
    print(f"outage: offline {o['offline_after_kill_s']} s after the kill; back: online after "
          f"{o['online_after_return_s']} s, first frame inspected after {o['first_inspected_after_return_s']} s")
    drops = (t["dropped_queue"] + t["aravis_failed"] + t["aravis_underrun"] + t["aravis_missing_frames"]
             + t["aravis_timeouts"] + t["stale"])
    recovery = o["first_inspected_after_return_s"]
    rate_ok = t["camera_completed"] >= 0.99 * t["expected_frames"]
    print(f"{'PASS' if rate_ok else 'FAIL'} the camera sent {args.fps:g} fps ({t['camera_fps']} fps: "
          f"{t['camera_completed']} of {t['expected_frames']} frames)")
    print(f"{'PASS' if drops == 0 else 'FAIL'} zero drops at {args.fps:g} fps ({drops})")
    print(f"{'PASS' if recovery is not None and recovery <= 5.0 else 'FAIL'} recovery <= 5 s ({recovery} s)")
    print("CPU, % of one core:", json.dumps(out["cpu"].get("percent_of_one_core", {})))
    print(f"load average (1 min): {out['cpu'].get('load_average_1min')}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0 if rate_ok and drops == 0 and recovery is not None and recovery <= 5.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
