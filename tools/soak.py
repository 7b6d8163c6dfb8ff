#!/usr/bin/env python3
"""Soak: the daemon under sustained load and steady abuse, with nothing lost and nothing growing.

For ``--minutes`` (default 30) the real daemon runs three synthetic microphones publishing a
verdict every 10 ms each plus a live RTSP camera (GStreamer's server, ``tools/rtsp_server.py``):
over 300 events/s.  Meanwhile

- a loss-free subscriber (the client library) is closed and restarted every minute, resuming
  from the last ``seq`` it handled: every event must arrive exactly once, in order;
- the camera's RTSP server is killed and restarted every 5 minutes;
- 4 catch-up clients ask for everything and never read (asking again after being dropped),
  while every 10 s a well-behaved client's catch-up of 100 events is timed (target: < 1 s).

Every 10 s it samples the daemon's RSS, open file descriptors and threads (and the machine's
load, which the figures depend on).  At the end it prints the figures (events, rate, events
lost, duplicates, RSS growth after the first 5 minutes, FD and thread ranges and growth, camera
reconnects, stale frames, catch-up clients dropped) and writes them as JSON with a chart (PNG)
next to it.

    nice -n 10 python3 tools/soak.py --out docs/soak.json     # 30 minutes
    python3 tools/soak.py --minutes 2 --out /tmp/soak.json     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zmq  # noqa: E402

from bench_common import ROOT, free_port, machine_info  # noqa: E402
from edge_inspector.client import EventStream, fetch_page  # noqa: E402

WARMUP_S = 300.0  # growth is judged after the first 5 minutes (caches and pools fill up first)
RECONNECT_WINDOW_S = 30.0  # samples this soon after the camera was taken away are not compared
MIN_STEADY = 0.75  # below this share of steady samples the counts cannot be judged


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    def mb(key: str) -> float:
        return int(fields.get(key, "0 kB").split()[0]) / 1024

    # anonymous memory is the heap; file and shared memory are mapped files (SQLite's -shm)
    return {"rss_mb": mb("VmRSS"), "anon_mb": mb("RssAnon"), "file_mb": mb("RssFile"), "shmem_mb": mb("RssShmem"),
            "threads": int(fields["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def take_sample(pid: int, health: str, t: float, since_camera_restart_s: float) -> dict[str, Any]:
    """The daemon's counts and memory now, and whether this is a steady moment to compare.

    A sample is *steady* when every source is online (read from /metrics just before the
    counts) and the camera was last taken away more than ``RECONNECT_WINDOW_S`` ago: while a
    camera reconnects, FFmpeg holds a socket more (or one less) for a moment, which says nothing
    about a leak.  FD and thread counts are judged on steady samples only; a leak (an FD kept
    per reconnect) stays after the window and shows in them.
    """
    try:
        m = metrics(health)
    except OSError:
        m = {}
    online = [v for k, v in m.items() if k.startswith("edge_inspector_source_online{")]
    sample: dict[str, Any] = {"t": t, **proc_sample(pid)}
    sample["steady"] = bool(online) and all(v == 1.0 for v in online) and since_camera_restart_s > RECONNECT_WINDOW_S
    sample["parts_mb"] = {k.split('part="', 1)[1].rstrip('"}'): round(v / 2**20, 2)
                          for k, v in m.items() if k.startswith("edge_inspector_memory_bytes{")}
    return sample


def metrics(health: str) -> dict[str, float]:
    out = {}
    for line in urllib.request.urlopen(f"http://{health}/metrics", timeout=5).read().decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Camera:
    """The RTSP server process, restartable on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0
        self.restarted_mono = -1e9  # when the soak last took it away

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "rtsp_server.py"), "--port", str(self.port),
                                      "--fps", "10", "--width", "320", "--height", "180"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().startswith("READY"), "no RTSP server"

    def restart(self) -> None:
        self.restarted_mono = time.monotonic()
        self.stop()
        time.sleep(2.0)  # the camera is gone for a moment, as when it reboots
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def write_config(tmp: Path, camera_port: int) -> dict[str, str]:
    ports = {k: free_port() for k in ("pub", "catchup", "health")}
    mics = "\n".join(f'[[microphone]]\nname = "m{i}"\nuri = "synthetic://machine?seed={i}"\n' for i in range(3))
    (tmp / "soak.toml").write_text(f"""
[[camera]]
name = "ipcam"
uri = "rtsp://127.0.0.1:{camera_port}/cam"
{mics}
[publisher]
endpoint = "tcp://127.0.0.1:{ports['pub']}"
catchup_endpoint = "tcp://127.0.0.1:{ports['catchup']}"
journal = "{tmp / 'journal.sqlite3'}"
publish_verdicts = true
verdict_window_s = 0.01
heartbeat_s = 1.0
[health]
listen = "127.0.0.1:{ports['health']}"
log_format = "json"
""")
    return {"config": str(tmp / "soak.toml"), "endpoint": f"tcp://127.0.0.1:{ports['pub']}",
            "catchup": f"tcp://127.0.0.1:{ports['catchup']}", "health": f"127.0.0.1:{ports['health']}"}


class Checker:
    """The loss-free subscriber, restarted every minute; records every seq it is handed."""

    def __init__(self, endpoint: str, catchup: str) -> None:
        self.endpoint, self.catchup = endpoint, catchup
        self.seqs: list[int] = []
        self.last: tuple[int, str] | None = None
        self.restarts = 0
        self.resets = 0
        self.stream = self._open()

    def _open(self) -> EventStream:
        since, since_id = self.last if self.last else (None, None)
        return EventStream(self.endpoint, self.catchup, since=since, since_id=since_id, on_note=lambda m: None,
                           on_reset=lambda *_: setattr(self, "resets", self.resets + 1))

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ev = self.stream.recv(0.1)
            if ev is not None:
                self.seqs.append(ev.seq)
                self.last = (ev.seq, str(ev.event.get("id")))

    def restart(self) -> None:
        self.stream.close()
        self.restarts += 1
        self.stream = self._open()


def timed_catchup(ctx: zmq.Context, catchup: str, checker: Checker) -> float:
    """Seconds a well-behaved client waits for the 100 events before the newest it was handed
    (beside the stalled clients); -1 if none came within 5 s."""
    newest = checker.seqs[-1] if checker.seqs else 0
    t = time.monotonic()
    try:
        fetch_page(ctx, catchup, max(0, newest - 100), newest, timeout_s=5.0)
    except TimeoutError:
        return -1.0
    return time.monotonic() - t


def stalled_clients(ctx: zmq.Context, catchup: str, n: int = 4) -> list[zmq.Socket]:
    out = []
    for _ in range(n):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.RCVHWM, 1)
        s.setsockopt(zmq.RCVBUF, 4096)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(catchup)
        out.append(s)
    return out


def soak(minutes: float, tmp: Path, skip: set[str], env: dict[str, str], daemon_nice: int = 0) -> dict[str, Any]:
    camera = Camera(free_port())
    camera.start()
    cfg = write_config(tmp, camera.port)
    log = open(tmp / "daemon.log", "w")
    niced = ["nice", "-n", str(daemon_nice)] if daemon_nice else []
    daemon = subprocess.Popen([*niced, sys.executable, "-m", "edge_inspector.cli", "run", "--config", cfg["config"]],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **env})
    ctx = zmq.Context()
    samples: list[dict[str, float]] = []
    stalled: list[zmq.Socket] = []
    checker = Checker(cfg["endpoint"], cfg["catchup"])
    try:
        time.sleep(5)
        stalled = [] if "stalled" in skip else stalled_clients(ctx, cfg["catchup"])
        t0 = time.monotonic()
        end = t0 + minutes * 60
        next_sample = next_ask = t0
        next_sub = t0 + 60
        next_cam = t0 + 300
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_ask:  # the stalled clients ask for everything again (they were dropped)
                for s in stalled:
                    s.send_multipart([b"", b"since", b"0", b"limit=100000"])
                next_ask = now + 30
            if now >= next_sample:
                sample = take_sample(daemon.pid, cfg["health"], now - t0, now - camera.restarted_mono)
                sample.update(handed=len(checker.seqs), load_1min=os.getloadavg()[0],
                              catchup_s=timed_catchup(ctx, cfg["catchup"], checker))
                samples.append(sample)
                print(f"soak: {sample['t']:6.0f} s  rss {sample['rss_mb']:.0f} MB (anon {sample['anon_mb']:.0f}, "
                      f"file {sample['file_mb']:.0f}, shm {sample['shmem_mb']:.0f})  fds {sample['fds']:.0f}  "
                      f"threads {sample['threads']:.0f}  events {len(checker.seqs)}  catch-up {sample['catchup_s']:.2f} s  "
                      f"load {sample['load_1min']:.1f}{'' if sample['steady'] else '  (camera reconnecting)'}  "
                      + " ".join(f"{k} {v:.1f}" for k, v in sample["parts_mb"].items()), flush=True)
                next_sample = now + 10
            if now >= next_sub:
                if "subscriber" not in skip:
                    checker.restart()
                next_sub = now + 60
            if now >= next_cam:
                if "camera" not in skip:
                    camera.restart()
                next_cam = now + 300
            checker.pump(1.0)
        elapsed = time.monotonic() - t0
        checker.pump(3.0)  # what was published in the last moment
        m = metrics(cfg["health"])
    finally:
        checker.stream.close()
        for s in stalled:
            s.close(0)
        ctx.term()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        camera.stop()
        log.close()
    return summarize(samples, checker, camera, m, elapsed, code, tmp)


def summarize(samples: list[dict[str, float]], checker: Checker, camera: Camera, m: dict[str, float],
              elapsed: float, exit_code: int, tmp: Path) -> dict[str, Any]:
    import sqlite3

    seqs = checker.seqs
    first, last = seqs[0], seqs[-1]
    missing = sorted(set(range(first, last + 1)) - set(seqs))
    con = sqlite3.connect(tmp / "journal.sqlite3")
    journal_rows, journal_max = con.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone()
    integrity = con.execute("PRAGMA quick_check").fetchone()[0]
    con.close()
    late = [s for s in samples if s["t"] >= WARMUP_S] or samples[-1:]
    rss_base = late[0]["rss_mb"]
    return {
        "minutes": round(elapsed / 60, 1),
        "events_handed_over": len(seqs),
        "events_per_s": round((last - first + 1) / elapsed, 1),
        "events_lost": len(missing),
        "duplicates": len(seqs) - len(set(seqs)),
        "in_order": all(a < b for a, b in zip(seqs, seqs[1:])),
        "subscriber_restarts": checker.restarts,
        "camera_restarts": camera.restarts,
        "camera_reconnects": m.get('edge_inspector_reconnects_total{kind="camera",source="ipcam"}', 0.0),
        "camera_stale_frames": m.get('edge_inspector_stale_frames_total{kind="camera",source="ipcam"}', 0.0),
        "catchup_dropped": m.get("edge_inspector_catchup_dropped_total", 0.0),
        "catchup_answer_s_max": round(max(999.0 if s["catchup_s"] < 0 else s["catchup_s"] for s in samples), 3),
        "catchup_answer_s_median": round(sorted(s["catchup_s"] for s in samples)[len(samples) // 2], 3),
        "visual_batches_by_size": {k.split('size="', 1)[1].rstrip('"}'): v for k, v in m.items()
                                   if k.startswith("edge_inspector_visual_batches_total{")},
        "thread_failures": sum(v for k, v in m.items() if k.startswith("edge_inspector_thread_failures_total")),
        "rss_mb_at_5_min": rss_base,
        "rss_mb_end": samples[-1]["rss_mb"],
        "rss_growth_after_5_min_pct": round(100 * (max(s["rss_mb"] for s in late) - rss_base) / rss_base, 2),
        **counts_judged(late),
        **parts_growth(late),
        "machine_load_1min": [round(min(s["load_1min"] for s in samples), 1), round(max(s["load_1min"] for s in samples), 1)],
        "journal_rows": journal_rows, "journal_max_seq": journal_max, "journal_quick_check": integrity,
        "daemon_exit_code": exit_code,
        "samples": samples,
    }


def counts_judged(late: list[dict[str, Any]]) -> dict[str, Any]:
    """FD and thread counts after the first 5 minutes, compared at steady moments only.

    Samples inside a camera's reconnect window (see :func:`take_sample`) are left out of the
    comparison and listed apart, so a socket FFmpeg holds for a moment is not read as a trend;
    a leaked FD per reconnect outlives the window and raises the steady peak.  When fewer than
    ``MIN_STEADY`` of the samples are steady (a camera that never came back), nothing can be
    judged and ``steady_share`` says so.
    """
    steady = [s for s in late if s.get("steady", True)]
    judged = steady or late
    out: dict[str, Any] = {"steady_share": round(len(steady) / max(1, len(late)), 3)}
    for key in ("fds", "threads"):
        out[f"{key}_after_5_min"] = [min(s[key] for s in judged), max(s[key] for s in judged)]
        out[f"{key}_growth"] = growth(judged, key)
        out[f"{key}_in_reconnect_windows"] = sorted({s[key] for s in late if not s.get("steady", True)})
    return out


def counts_flat(result: dict[str, Any]) -> bool:
    """FD and thread peaks do not grow, judged on enough steady samples."""
    return result["steady_share"] >= MIN_STEADY and result["fds_growth"] <= 0 and result["threads_growth"] <= 0


def parts_growth(late: list[dict[str, Any]]) -> dict[str, Any]:
    """Each accounted part of the daemon's memory (``edge_inspector_memory_bytes``): its size at
    5 minutes, its peak and its size at the end, so a change of RSS says where it is."""
    parts = sorted({p for s in late for p in s.get("parts_mb", {})})
    table = {}
    for part in parts:
        values = [s["parts_mb"][part] for s in late if part in s.get("parts_mb", {})]
        table[part] = {"at_5_min": values[0], "peak": max(values), "end": values[-1],
                       "growth": round(values[-1] - values[0], 2)}
    return {"memory_parts_mb": table}


def growth(samples: list[dict[str, float]], key: str) -> float:
    """The last third's peak over the first third's peak: 0 when a count is flat.

    Peaks rather than single samples, so a sample that caught a camera mid-reconnect (one
    socket more for a moment) does not read as a trend either way.
    """
    third = max(1, len(samples) // 3)
    return max(s[key] for s in samples[-third:]) - max(s[key] for s in samples[:third])


def chart(result: dict[str, Any], path: Path, baseline: dict[str, Any] | None = None) -> None:
    """RSS, FDs, threads and the event rate over time; ``baseline``: an earlier run's RSS in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = [x["t"] / 60 for x in s]
    fig, axes = plt.subplots(4, 1, figsize=(8, 8), sharex=True)
    rate = [0.0] + [(b["handed"] - a["handed"]) / max(1e-6, b["t"] - a["t"]) for a, b in zip(s, s[1:])]
    if baseline is not None:
        b = baseline["samples"]
        commit = baseline.get("machine", {}).get("git_commit", "")[:7]
        axes[0].plot([x["t"] / 60 for x in b], [x["rss_mb"] for x in b], color="0.6", lw=0.9,
                     label=f"earlier run ({commit}): +{baseline['rss_growth_after_5_min_pct']} %")
    for ax, key, label in zip(axes, ("rss_mb", "fds", "threads", None),
                              ("RSS (MB)", "open file descriptors", "threads", "events/s handed over")):
        ax.plot(t, [x[key] for x in s] if key else rate, label="this run" if key == "rss_mb" else None)
        ax.set_ylabel(label)
        ax.axvline(WARMUP_S / 60, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    if baseline is not None:
        axes[0].legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("minutes (dashed: end of the first 5 minutes)")
    fig.suptitle(f"soak: {result['events_per_s']} events/s, {result['events_lost']} lost, "
                 f"RSS +{result['rss_growth_after_5_min_pct']} % after 5 min "
                 f"(load average {result['machine_load_1min'][0]} to {result['machine_load_1min'][1]})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def stop_on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=Path("soak.json"))
    p.add_argument("--skip", default="", help="for diagnosis: camera,stalled,subscriber (no restarts / no stalled clients)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the daemon's environment")
    p.add_argument("--baseline", type=Path, help="an earlier run's JSON: its RSS is drawn beside this run's")
    p.add_argument("--daemon-nice", type=int, default=0,
                   help="for diagnosis: run the daemon this much nicer than the soak (a CPU-starved daemon: its queues fill)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # `kill` ends a run like Ctrl-C: daemon and camera stopped
    skip = {x for x in args.skip.split(",") if x}
    env = dict(e.split("=", 1) for e in args.env)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = soak(args.minutes, Path(tmp), skip, env, args.daemon_nice)
    result["skipped"], result["daemon_env"], result["daemon_nice"] = sorted(skip), env, args.daemon_nice
    result["machine"] = machine_info()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, args.out.with_suffix(".png"),
          json.loads(args.baseline.read_text()) if args.baseline else None)
    shown = {k: v for k, v in result.items() if k not in ("samples", "machine")}
    width = max(len(k) for k in shown)
    for k, v in shown.items():
        print(f"{k:<{width}}  {v}")
    ok = (result["events_lost"] == 0 and result["duplicates"] == 0 and result["events_per_s"] >= 300
          and result["catchup_answer_s_max"] < 1.0
          and result["rss_growth_after_5_min_pct"] < 5 and counts_flat(result) and result["daemon_exit_code"] == 0)
    print("PASS" if ok else "FAIL", "(0 lost, >= 300 events/s, RSS growth < 5 % after 5 min, "
          "FD and thread peaks not growing at steady moments, catch-up answered within 1 s, exit 0)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
