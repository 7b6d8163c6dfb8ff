"""Shared fixtures: free loopback ports, config files, a real ZeroMQ subscriber, test videos."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pytest
import zmq

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ROOT / "engines"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def render_toml(tables: dict[str, dict[str, Any]], arrays: dict[str, list[dict[str, Any]]]) -> str:
    out = []
    for name, values in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for name, items in arrays.items():
        for item in items:
            out.append(f"[[{name}]]")
            out += [f"{k} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(out) + "\n"


# The suite's daemons run a configured inference policy (what a two-core station measures): a
# daemon without one measures it at start-up, seconds of both cores, and measures it again at every
# start while the machine is busy, which a machine running the suite always is. tests/test_policy.py
# and the benchmark tests measure policies; a test may still set its own runtime keys.
TEST_POLICY = {"max_batch": 2, "inference_workers": 2, "intra_op_threads": 1}


class DaemonConfig:
    """A config file in tmp_path with its own free ports and journal (and ``TEST_POLICY``)."""

    def __init__(self, tmp_path: Path, cameras: list[dict[str, Any]] = (), microphones: list[dict[str, Any]] = (),
                 publisher: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None,
                 extra: dict[str, dict[str, Any]] | None = None) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.catchup = f"tcp://127.0.0.1:{free_port()}"
        self.journal = tmp_path / "journal.sqlite3"
        pub = {"endpoint": self.endpoint, "catchup_endpoint": self.catchup, "journal": str(self.journal),
               "heartbeat_s": 0.5}
        pub.update(publisher or {})
        tables = {"publisher": pub, "runtime": {"backend": "onnxruntime", **TEST_POLICY, **(runtime or {})},
                  "health": {"listen": f"127.0.0.1:{free_port()}", "status_interval_s": 1.0}}
        self.health = tables["health"]["listen"]
        tables.update(extra or {})
        self.path = tmp_path / "config.toml"
        self.path.write_text(render_toml(tables, {"camera": list(cameras), "microphone": list(microphones)}))


class Subscriber:
    """A real SUB socket collecting ``[topic, payload]`` events in a background thread."""

    def __init__(self, endpoint: str, topics: Iterable[str] = ("",)) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.sock.connect(endpoint)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.stop.is_set():
            if poller.poll(50):
                topic, payload = self.sock.recv_multipart()
                self.events.append((topic.decode(), json.loads(payload)))

    def wait_for(self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events):
                return True
            time.sleep(0.05)
        return predicate(self.events)

    def topics(self, prefix: str) -> list[dict[str, Any]]:
        return [e for t, e in self.events if t.startswith(prefix)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close(0)
        self.ctx.term()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 20 ms for up to ``timeout`` seconds; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def epoch(ts: str) -> float:
    """An event's ``ts`` (``2026-01-01T00:00:00.000Z``) as seconds since the epoch."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB, as the kernel counts it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def fail_once(obj: Any, method: str, exc: Exception) -> list[int]:
    """Make ``obj.method`` raise ``exc`` on its next call only; the list fills when it fired.

    How the supervision tests inject a fault into a thread's real work.
    """
    original, fired = getattr(obj, method), []

    def broken(*args: Any, **kwargs: Any) -> Any:
        if not fired:
            fired.append(1)
            raise exc
        return original(*args, **kwargs)

    setattr(obj, method, broken)
    return fired


def journal_events(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Everything the daemon journalled, in seq order (read-only, straight from SQLite)."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT topic, payload FROM events ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(t, json.loads(p)) for t, p in rows]


def start_daemon(config: Path, *extra: str, env: dict[str, str] | None = None,
                 log: Path | None = None) -> subprocess.Popen[str]:
    """``edge-inspector run`` in a subprocess; its log on a pipe read at the end, or in ``log``.

    A pipe holds 64 KiB: a test that runs the daemon for minutes without reading it passes
    ``log``, or the daemon's threads block on their next log line once the pipe is full.
    """
    stderr = open(log, "w") if log else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(config), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    finally:
        if log:
            stderr.close()  # the daemon holds its own copy


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "libx264") -> Path:
    """Encode BGR frames with ffmpeg (x264 at near-lossless quality unless told otherwise)."""
    h, w = frames[0].shape[:2]
    args = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if codec == "libx264":
        args += ["-c:v", "libx264", "-crf", "12", "-preset", "veryfast", "-pix_fmt", "yuv444p"]
    else:
        args += ["-c:v", codec, "-q:v", "2"]
    proc = subprocess.run(args + [str(path)], input=b"".join(f.tobytes() for f in frames), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return path


@pytest.fixture(scope="session")
def surfaces() -> Callable[..., Any]:
    from edge_inspector.synthetic.surfaces import make_surface

    def make(seed: int, label: str, family: str | None = None) -> Any:
        return make_surface(np.random.default_rng(seed), family=family, label=label)

    return make
