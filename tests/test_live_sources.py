"""Live sources tell the truth: a real RTSP camera (GStreamer's server) frozen, misaddressed, locked.

The camera is ``tools/rtsp_server.py``: H.264 over RTSP with Digest authentication, the way IP
cameras serve it.  SIGSTOP freezes it mid-stream with its connection open, which is what a
hung camera or a dead switch port looks like to the daemon.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge_inspector.sources.stream_clock import StreamClock

from conftest import ENGINES, ROOT, DaemonConfig, Subscriber, epoch, journal_events, render_toml, start_daemon
from rtsp_camera import RtspCamera, unanswering_port

PASSWORD = "Zq7-camera-pass"  # distinctive, so a grep finds any copy of it


def readyz(health: str) -> int:
    try:
        return urllib.request.urlopen(f"http://{health}/readyz", timeout=2).status
    except urllib.error.HTTPError as exc:
        return exc.code


# --------------------------------------------------------------------------- the clock mapping
def test_stream_clock_drops_connect_backlog_and_late_frames() -> None:
    """The mapping on the timings measured from OpenCV against the RTSP server (40 ms frames)."""
    clock = StreamClock(max_age_s=1.0, fps_hint=25)
    t = 100.0
    # connect: 28 buffered frames arrive within a few ms, their stream times spanning 1.1 s
    burst = [clock.stamp(40.0 * (i + 1), 0.0002, t + 0.0002 * i, 1000 + 0.0002 * i) for i in range(28)]
    assert all(s.stale for s in burst)
    t_live = t + 0.04
    live = [clock.stamp(40.0 * (29 + i), 0.035, t_live + 0.04 * i, 1000.04 + 0.04 * i) for i in range(50)]
    # fresh once the offsets have held still for a few frames (the backlog is really drained)
    assert not any(s.stale for s in live[10:]) and max(s.age_s for s in live) < 0.01
    # the camera freezes for 2 s; the read times out and OpenCV hands over the last frame it held
    late = clock.stamp(40.0 * 79, 2.0, t_live + 0.04 * 49 + 2.0, 1000.04 + 0.04 * 49 + 2.0)
    assert late.stale and late.age_s > 1.9
    # a true capture time is given for fresh frames: the wall clock minus their age
    fresh = clock.stamp(40.0 * 80 + 2000, 0.5, t_live + 0.04 * 50 + 2.0, 5000.0)
    assert not fresh.stale and fresh.ts == pytest.approx(5000.0 - fresh.age_s)
    # the camera restarts its clock: a new mapping, not 30 s of "stale" frames
    restarted = [clock.stamp(40.0 * (i + 1), 0.04, t + 10 + 0.04 * i, 6000 + 0.04 * i) for i in range(5)]
    assert not any(s.stale for s in restarted)


def test_stream_clock_without_timestamps_judges_by_read_time() -> None:
    clock = StreamClock(max_age_s=1.0, fps_hint=10)
    assert clock.stamp(None, 0.0, 1.0).stale  # connect backlog
    assert not clock.stamp(None, 0.1, 1.1).stale  # a read that waited for the camera
    late = clock.stamp(None, 3.0, 4.1)
    assert late.stale and "read blocked" in late.reason


def test_stream_clock_of_a_stream_that_starts_empty_has_no_warm_up() -> None:
    """A machine-vision camera's acquisition starts with nothing buffered: its first frame is fresh."""
    clock = StreamClock(max_age_s=1.0, fps_hint=25, backlog=False)
    first = clock.stamp(40.0, 0.0001, 100.0, 1000.0)
    assert not first.stale and first.age_s == 0.0
    late = clock.stamp(40.0 * 2, 0.0001, 101.5, 1001.5)  # sent 40 ms after the first, read 1.5 s after it
    assert late.stale and late.age_s == pytest.approx(1.46, abs=0.01)
    clock.reset()
    assert not clock.stamp(None, 0.0, 200.0).stale  # after a reconnect too


# --------------------------------------------------------------------------- check-config
def test_check_config_names_each_network_stream_problem(tmp_path: Path) -> None:
    cam = RtspCamera(user="admin", password=PASSWORD)
    hung, hung_port = unanswering_port()
    try:
        uris = {
            "good": cam.url(),
            "path": cam.url("/nope"),
            "refused": f"rtsp://127.0.0.1:{unanswering_port_closed()}/cam",
            "timeout": f"rtsp://127.0.0.1:{hung_port}/cam",
            "wrongpw": cam.url(password="not-" + PASSWORD),
            "nocreds": cam.url(user=""),
        }
        cfg = tmp_path / "c.toml"
        cfg.write_text(render_toml({"publisher": {"journal": str(tmp_path / "j.db")}, "health": {"listen": ""}},
                                   {"camera": [{"name": k, "uri": v} for k, v in uris.items()]}))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "check-config", str(cfg), "--no-bind"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        took = time.monotonic() - t0
    finally:
        cam.close()
        hung.close()  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    by_key = {line.split(": ", 2)[1]: line for line in lines if line.startswith("edge-inspector: camera[")}
    assert "camera[0].uri" not in by_key, by_key  # the good one passes
    assert "404" in by_key["camera[1].uri"] and "/nope" in by_key["camera[1].uri"]
    assert "refused" in by_key["camera[2].uri"]
    assert "no answer" in by_key["camera[3].uri"]
    assert "authentication failed" in by_key["camera[4].uri"] and "401" in by_key["camera[4].uri"]
    assert "wants a user and password" in by_key["camera[5].uri"]
    assert PASSWORD not in proc.stderr + proc.stdout
    assert took < 30, f"probes should run side by side with short timeouts, took {took:.1f} s"


def test_http_camera_probe_names_each_problem() -> None:
    """The same four answers for an MJPEG-over-HTTP camera, from a real HTTP server with Basic auth."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from edge_inspector.sources.probe import probe_http

    expected_auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.headers.get("Authorization") != expected_auth:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.end_headers()
            elif self.path != "/video.mjpg":
                self.send_error(404)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                self.wfile.write(b"--frame\r\n")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hung, hung_port = unanswering_port()
    base = f"127.0.0.1:{server.server_address[1]}"
    try:
        answers = {
            "good": probe_http(f"http://admin:{PASSWORD}@{base}/video.mjpg"),
            "path": probe_http(f"http://admin:{PASSWORD}@{base}/nope", 2.0),
            "wrongpw": probe_http(f"http://admin:not-{PASSWORD}@{base}/video.mjpg", 2.0),
            "nocreds": probe_http(f"http://{base}/video.mjpg", 2.0),
            "refused": probe_http(f"http://127.0.0.1:{unanswering_port_closed()}/video.mjpg", 2.0),
            "timeout": probe_http(f"http://127.0.0.1:{hung_port}/video.mjpg", 1.0),
        }
    finally:
        server.shutdown()
        server.server_close()
        hung.close()  # type: ignore[attr-defined]
    assert answers["good"] is None, answers
    assert "404" in (answers["path"] or "") and "/nope" in (answers["path"] or ""), answers
    assert "authentication failed" in (answers["wrongpw"] or "") and "401" in (answers["wrongpw"] or ""), answers
    assert "wants a user and password" in (answers["nocreds"] or ""), answers
    assert "refused" in (answers["refused"] or ""), answers
    assert "no answer" in (answers["timeout"] or ""), answers
    assert PASSWORD not in json.dumps(answers)


def unanswering_port_closed() -> int:
    """A port nothing listens on (bound and released)."""
    sock, port = unanswering_port()
    sock.close()  # type: ignore[attr-defined]
    return port


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_rtsp_transport_udp_and_tcp(tmp_path: Path, decoder: str) -> None:
    """``rtsp_transport`` per camera reaches FFmpeg: UDP sockets exist only for the UDP camera."""
    import os

    from edge_inspector.sources.registry import open_source, source_settings

    cam = RtspCamera()
    try:
        counts = {}
        for transport in ("udp", "tcp"):
            src, _queue = open_source(source_settings("camera", name="c", uri=cam.url(), rtsp_transport=transport,
                                                      decoder=decoder))
            src.open()
            assert src.cap is not None and src.cap.read()[0]
            ss = subprocess.run(["ss", "-uanp"], capture_output=True, text=True).stdout
            counts[transport] = sum(f"pid={os.getpid()}," in line for line in ss.splitlines())
            src.release()
    finally:
        cam.close()
    assert counts["udp"] >= 1 and counts["tcp"] == 0, counts


# --------------------------------------------------------------------------- a frozen camera
@pytest.mark.slow
@pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines not built")
def test_frozen_rtsp_camera_goes_offline_publishes_nothing_stale_and_leaks_no_password(tmp_path: Path) -> None:
    # a light stream, so the reader keeps up even on a busy 2-core machine: frame ages are only
    # known relative to the fastest frame, and a reader that never caught up would hide its lag
    cam = RtspCamera(user="admin", password=PASSWORD, fps=10, width=320, height=180)
    dc = DaemonConfig(tmp_path, cameras=[{"name": "ipcam", "uri": cam.url()}],
                      publisher={"publish_verdicts": True, "heartbeat_s": 0.5})
    cfg_text = dc.path.read_text().replace('[health]\n', '[health]\nlog_format = "json"\n')
    dc.path.write_text(cfg_text)
    sub = Subscriber(dc.endpoint)
    proc = start_daemon(dc.path)
    try:
        assert sub.wait_for(lambda ev: len([e for t, e in ev if t == "verdict.ipcam"]) >= 30, 60), proc.stderr
        t_stop = cam.freeze()
        statuses_503 = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            statuses_503.append(readyz(dc.health))
            if sub.wait_for(lambda ev: any(e.get("state") == "offline" for t, e in ev if t == "status.ipcam"), 0.2) \
                    and statuses_503[-1] == 503:
                break
        offline = next(e for t, e in sub.events if t == "status.ipcam" and e.get("state") == "offline")
        time.sleep(1.0)  # a heartbeat or two while frozen
        t_cont = cam.thaw()
        assert sub.wait_for(lambda ev: sum(1 for t, e in ev if t == "verdict.ipcam" and epoch(e["ts"]) > t_cont) >= 10, 30)
        ready_after = readyz(dc.health)
        pages = "".join(urllib.request.urlopen(f"http://{dc.health}{path}", timeout=5).read().decode()
                        for path in ("/metrics", "/api/status"))  # what a scraper and the status page show
    finally:
        cam.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        sub.close()

    verdicts = [e for t, e in sub.events if t == "verdict.ipcam"]
    last_fresh = max(epoch(e["ts"]) for e in verdicts if epoch(e["ts"]) < t_stop + 0.5)
    assert any(epoch(e["ts"]) > t_cont for e in verdicts)
    # the stall is reported by the daemon's own clock within 3 s of the last frame it got
    assert epoch(offline["ts"]) - last_fresh <= 3.0, (offline, last_fresh)
    assert "stalled" in offline["detail"]
    assert 503 in statuses_503 and ready_after == 200
    beats = [e for t, e in sub.events if t == "heartbeat" and t_stop + 2.5 < epoch(e["ts"]) < t_cont]
    assert beats and all(b["counters"]["ipcam"]["state"] != "online" for b in beats)
    # no frame stamped inside the freeze: the camera captured nothing then
    # nothing is published while the camera is frozen: the frame OpenCV hands over when its read
    # times out (seconds late) is dropped as stale, not stamped as captured now
    journalled = sqlite3.connect(f"file:{dc.journal}?mode=ro", uri=True).execute(
        "SELECT payload, created FROM events WHERE topic = 'verdict.ipcam'").fetchall()
    during = [(json.loads(p)["frame"], round(c - t_stop, 2)) for p, c in journalled if t_stop + 1.0 < c < t_cont - 0.05]
    assert not during, f"verdicts published during the freeze (frame, s after SIGSTOP): {during}"
    # and every verdict carries its capture time: its latency is what its ts says
    for payload, created in journalled:
        ev = json.loads(payload)
        assert abs((created - epoch(ev["ts"])) * 1000 - ev["latency_ms"]) < 50, ev
    # the JSON log stays JSON, FFmpeg/OpenCV's own lines included
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any(r.get("origin") in ("opencv", "ffmpeg") for r in records), err[-2000:]
    # the password is nowhere: logs, events, journal, metrics, the status page
    everything = err + json.dumps(sub.events) + json.dumps(journal_events(dc.journal)) + pages
    assert PASSWORD not in everything and 'source="ipcam"' in pages


@pytest.mark.slow
def test_record_manifest_carries_no_camera_password(tmp_path: Path) -> None:
    cam = RtspCamera(user="admin", password=PASSWORD)
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(render_toml({"publisher": {"journal": str(tmp_path / "j.db")}, "health": {"listen": ""}},
                                   {"camera": [{"name": "ipcam", "uri": cam.url()}]}))
        proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "record", "--out", str(tmp_path / "rec"),
                               "--config", str(cfg), "--duration", "3"], capture_output=True, text=True, cwd=ROOT,
                              timeout=90)
    finally:
        cam.close()
    manifest = (tmp_path / "rec" / "manifest.json").read_text()
    assert json.loads(manifest)["cameras"]["ipcam"]["frames"] > 0, manifest
    assert PASSWORD not in manifest + proc.stderr + proc.stdout
    assert "admin:***@" in manifest



def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    """Wait until a socket listens on ``port`` (seen in /proc/net/tcp, without connecting to it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        if any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout_s} s")


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_mjpeg_over_http_is_not_judged_by_invented_timestamps(tmp_path: Path, decoder: str) -> None:
    """MJPEG over HTTP carries no timestamps: FFmpeg numbers its frames at an assumed 25 fps.

    Mapped as if they were capture times, a 10 fps camera's frames would look older and older and
    be dropped as stale after a second and a half; they are judged by their read times instead.
    """
    from conftest import free_port
    from edge_inspector.sources.registry import open_source, source_settings

    port = free_port()
    server = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                               "testsrc=size=320x240:rate=10", "-t", "20", "-c:v", "mjpeg", "-q:v", "3",
                               "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/s.mjpg"])
    try:
        wait_listening(port)  # FFmpeg serves one client: a probe connection would take its place
        src, _queue = open_source(source_settings("camera", name="c", uri=f"http://127.0.0.1:{port}/s.mjpg",
                                                  decoder=decoder))
        src.open()
        frames = []
        for frame in src.read_items():
            frames.append(frame)
            if len(frames) == 30:
                break
        src.release()
    finally:
        server.kill()
        server.wait()
    assert src.counters.stale <= 2  # at most the connect backlog
    gaps = [b.ts - a.ts for a, b in zip(frames, frames[1:])]
    assert 0.05 < sum(gaps) / len(gaps) < 0.2  # 10 fps on the wall clock
