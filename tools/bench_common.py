"""Shared pieces of the benchmark: test clips, machine description, statistics, CPU accounting.

Kept apart from the scenarios so each scenario module stays small and so the clip that every
scenario measures is made once, the same way, per run.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Clips:
    """The test videos of one run: H.264 for files, MJPEG for the live HTTP cameras."""

    h264: Path  # 1280x720 H.264 MP4, the clip every file-based scenario reads
    mjpeg: Path  # the same frames as MJPEG in AVI, served as-is (no re-encode) over HTTP
    width: int
    height: int
    fps: int
    frames: int


def make_clips(out_dir: Path, frames: int, width: int = 1280, height: int = 720, fps: int = 30,
               distinct: int = 24, seed: int = 7) -> Clips:
    """Synthetic inspection surfaces (some defective) scaled to ``width`` x ``height``.

    ``distinct`` different parts cycle through the clip; x264 still has to encode every frame
    (each part is shown for a few frames with a small shift, like a conveyor), so decoding
    cost is realistic rather than that of a still image.
    """
    import cv2

    from edge_inspector.synthetic.surfaces import make_surface

    rng = np.random.default_rng(seed)
    labels = ["ok", "ok", "scratch", "crack", "spot", "dent"]
    parts = []
    for i in range(distinct):
        sample = make_surface(rng, label=labels[i % len(labels)])
        parts.append(cv2.resize(sample.image, (width + 64, height), interpolation=cv2.INTER_CUBIC))
    video = []
    per_part = max(1, frames // distinct)
    for k in range(frames):
        part = parts[(k // per_part) % distinct]
        shift = 4 * (k % per_part)
        video.append(np.ascontiguousarray(part[:, shift : shift + width]))
    raw = b"".join(f.tobytes() for f in video)
    out_dir.mkdir(parents=True, exist_ok=True)
    h264, mjpeg = out_dir / f"clip_{width}x{height}.mp4", out_dir / f"clip_{width}x{height}_mjpeg.avi"
    head = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
    for args in (["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", str(h264)],
                 ["-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p", str(mjpeg)]):
        proc = subprocess.run(head + args, input=raw, capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not encode the test clip: {proc.stderr.decode(errors='replace')[-400:]}")
    return Clips(h264, mjpeg, width, height, fps, frames)


def clip_frames(video: Path, count: int, decoder: str = "opencv") -> list[Any]:
    """The first ``count`` decoded frames of ``video``: what preprocessing is timed on; BGR arrays
    (``opencv``), or frames kept YUV as the daemon's PyAV decoder gives them (``pyav``).

    Distinct frames, as the daemon gets them: one frame prepared over and over stays in the CPU's
    caches and costs about a third less than a stream of new ones (0.87 against 1.25 ms per
    720p frame here).
    """
    import cv2

    from edge_inspector.sources.pyav_capture import AvCapture

    cap = AvCapture(video) if decoder == "pyav" else cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise RuntimeError(f"cannot decode {video}")
    return frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median_fps_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of the run with the median ``fps`` (the upper middle one for an even count), with
    every run's fps, in the order given, as ``runs_fps``."""
    out = dict(sorted(runs, key=lambda r: r["fps"])[len(runs) // 2])
    out["runs_fps"] = [r["fps"] for r in runs]
    return out


def percentiles(values: Iterable[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": …, "p95": …, "p99": …, "mean": …, "n": …}`` rounded to 0.01 (None when empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    out: dict[str, float | None] = {f"p{q}": (round(float(np.percentile(arr, q)), 3) if arr.size else None) for q in qs}
    out["mean"] = round(float(arr.mean()), 3) if arr.size else None
    out["n"] = int(arr.size)
    return out


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info() -> dict[str, Any]:
    """Everything needed to compare a figure with one taken on another commit or machine."""
    from edge_inspector.inspectors.policy import cpu_model
    import cv2
    import onnxruntime
    import zmq

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": _run(["git", "rev-parse", "HEAD"]) or None,
        "git_dirty": dirty,
        "host": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "onnxruntime": onnxruntime.__version__,
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
            "ffmpeg": (_run(["ffmpeg", "-version"]).splitlines() or [""])[0],
        },
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.argv[0]).name if sys.argv else "bench.py", *sys.argv[1:]]),
    }


# ---------------------------------------------------------------------------- CPU accounting


def _ticks(stat_path: Path) -> float:
    """utime + stime in seconds from a /proc …/stat file (0 when the thread has gone)."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuMeter:
    """CPU seconds per Python thread (by name), per other native thread, and per child process.

    Threads that end before :meth:`stop` drop out of the per-thread figures;
    ``process_percent`` (from ``os.times``) still counts them.

    Python thread names are not visible to the OS, so threads are mapped by ``native_id``;
    what is left (ONNX Runtime's intra-op pool, libav decoder threads, ZeroMQ I/O threads) is
    reported together as ``native``.
    """

    def __init__(self, pids: dict[str, int] | None = None) -> None:
        self.pids = pids or {}
        self._start = self._sample()
        self._proc0 = os.times()
        self._t0 = time.monotonic()

    def _sample(self) -> dict[str, float]:
        by_tid = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        out: dict[str, float] = {}
        for task in Path("/proc/self/task").iterdir():
            tid = int(task.name)
            name = by_tid.get(tid, "native")
            if tid == os.getpid():
                name = "main"
            key = name.split(":")[0] if name.startswith("camera:") else name
            out[key] = out.get(key, 0.0) + _ticks(task / "stat")
        for label, pid in self.pids.items():
            out[label] = out.get(label, 0.0) + _ticks(Path(f"/proc/{pid}/stat"))
        return out

    def stop(self) -> dict[str, Any]:
        """CPU use since construction: per group in % of one core, and the process total."""
        end = self._sample()
        proc = os.times()
        process_s = (proc.user - self._proc0.user) + (proc.system - self._proc0.system)
        elapsed = max(1e-6, time.monotonic() - self._t0)
        groups = {k: round(100.0 * (end.get(k, 0.0) - self._start.get(k, 0.0)) / elapsed, 1)
                  for k in sorted(set(end) | set(self._start))}
        groups = {k: v for k, v in groups.items() if v > 0.0}
        own = sum(v for k, v in groups.items() if k not in self.pids)
        return {"elapsed_s": round(elapsed, 2), "percent_of_one_core": groups,
                "daemon_total_percent": round(own, 1), "cores": os.cpu_count(),
                "process_percent": round(100.0 * process_s / elapsed, 1),
                "load_average_1min": round(os.getloadavg()[0], 2)}
