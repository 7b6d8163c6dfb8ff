"""The status page, the live preview and the token, against a running daemon and a real browser."""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest

from browser import CHROMIUM, Browser
from conftest import ENGINES, ROOT, DaemonConfig, start_daemon

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")


class Station:
    def __init__(self, listen: str, token: str, proc: subprocess.Popen[str], shots: Path, cfg: DaemonConfig) -> None:
        self.token, self.proc, self.shots, self.cfg = token, proc, shots, cfg
        self.host, _, port = listen.rpartition(":")
        self.port = int(port)
        self.base = f"http://{listen}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    """A daemon with a synthetic camera (half the parts defective) and a WAV microphone that
    hears a squeal from 1 s to 3.5 s, behind a token."""
    import scipy.io.wavfile

    from edge_inspector.synthetic.machines import make_clip

    tmp = tmp_path_factory.mktemp("station")
    clip = make_clip(np.random.default_rng(42), duration_s=6.0, label="squeal", snr_db=3.0, rotation_hz=25.0,
                     fault_start_s=1.0, fault_end_s=3.5)
    wav = tmp / "press.wav"
    scipy.io.wavfile.write(wav, 16000, (clip.samples * 32767).astype(np.int16))
    token = secrets.token_hex(24)
    (tmp / "http.token").write_text(token + "\n")
    listen = f"127.0.0.1:{_free_port()}"
    cfg = DaemonConfig(tmp, cameras=[{"name": "cam0", "uri": "synthetic://surface?seed=5&fps=10&defect_rate=0.5"}],
                       microphones=[{"name": "press", "uri": f"file://{wav}", "loop": True}],
                       extra={"health": {"listen": listen, "token_file": str(tmp / "http.token"), "status_interval_s": 1.0}})
    proc = start_daemon(cfg.path)
    st = Station(listen, token, proc, tmp, cfg)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if st.get("/readyz", st.bearer())[0] in (200, 503):
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        yield st
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _free_port() -> int:
    from conftest import free_port

    return free_port()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (setup.sh --dev installs it)")
def test_status_page_in_a_browser(station: Station, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "chrome")
    try:
        browser.open(f"{station.base}/?token={station.token}")  # logs in: a cookie, then the page
        opened = time.monotonic()
        thumbs = browser.wait_for(
            "[...document.querySelectorAll('#defects figure img')].filter(i => i.complete && i.naturalWidth > 0).length",
            timeout=10)
        assert thumbs >= 1 and time.monotonic() - opened <= 10.5, "a defect thumbnail within 10 s"
        assert browser.wait_for("document.querySelector('#live img') && document.querySelector('#live img').naturalWidth",
                                timeout=10) > 0, "the live preview shows frames"
        assert browser.wait_for("document.querySelectorAll('#episodes .episode img').length", timeout=20) >= 1
        time.sleep(0.5)
        rows = browser.evaluate("[...document.querySelectorAll('#sources tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        by_source = {r[0]: r for r in rows}
        assert by_source["cam0"][1] == "camera" and by_source["cam0"][2] == "online", rows
        assert float(by_source["cam0"][3]) > 0 and int(by_source["cam0"][7]) >= 1, rows  # rate, defects
        assert by_source["press"][4].endswith(" s"), rows  # microphones count seconds of audio
        facts = browser.evaluate("document.getElementById('facts').textContent")
        assert "ready" in facts and "visual_cnn" in facts and "onnxruntime" in facts, facts
        caption = browser.evaluate("document.querySelector('#defects figcaption').textContent")
        # more defects a second than snapshots.max_per_s: the others say why they have no picture
        assert browser.evaluate("[...document.querySelectorAll('#defects .nopic')].every(n => n.textContent.includes('rate'))")
        assert "cam0" in caption and "frame" in caption, caption
        episode = browser.evaluate("document.querySelector('#episodes .episode').textContent")
        assert "squeal" in episode and "press" in episode, episode

        shot = browser.screenshot(station.shots / "status-page.png")
        picture = cv2.imread(str(shot))
        assert picture is not None and picture.shape[1] == 1280 and picture.shape[0] >= 900
        box = browser.evaluate("(() => { const r = document.querySelector('#defects figure img').getBoundingClientRect();"
                               " return [r.x, r.y + window.scrollY, r.width, r.height]; })()")
        x, y, w, h = (int(round(v)) for v in box)
        assert w > 100 and picture[y : y + h, x : x + w].std() > 10, "the thumbnail shows a picture, not a blank box"
        live = browser.evaluate("(() => { const r = document.querySelector('#live img').getBoundingClientRect();"
                                " return [r.x, r.y + window.scrollY, r.width, r.height]; })()")
        x, y, w, h = (int(round(v)) for v in live)
        assert h > 100 and picture[y : y + h, x : x + w].std() > 5, "the preview shows the camera"

        browser.evaluate("document.querySelector('#defects figure img').closest('figure').click()")  # the full snapshot
        width = browser.wait_for("document.getElementById('viewer').open && document.getElementById('viewer-img').naturalWidth",
                                 timeout=10)
        assert width == 256  # the synthetic camera's frame, heatmap and box drawn at full size
        assert browser.errors() == [], browser.errors()
    finally:
        browser.close()


def read_parts(station: Station, path: str, count: int, timeout: float = 15.0) -> tuple[list[bytes], float, str]:
    """The first ``count`` JPEG parts of a multipart stream, the seconds they took, the content type."""
    conn = http.client.HTTPConnection(station.host, station.port, timeout=timeout)
    conn.request("GET", path, headers=station.bearer())
    r = conn.getresponse()
    kind = r.getheader("Content-Type", "")
    boundary = kind.split("boundary=")[-1].encode()
    parts, buf, t0 = [], b"", time.monotonic()
    try:
        while len(parts) < count:
            chunk = r.read1(65536)
            assert chunk, "the stream ended"
            buf += chunk
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if not buf.startswith(b"--" + boundary) or head_end < 0:
                    break
                headers = dict(line.split(": ", 1) for line in buf[:head_end].decode().split("\r\n")[1:])
                length = int(headers["Content-Length"])
                if len(buf) < head_end + 4 + length + 2:
                    break
                parts.append(buf[head_end + 4 : head_end + 4 + length])
                buf = buf[head_end + 4 + length + 2 :]
    finally:
        conn.close()
    return parts, time.monotonic() - t0, kind


@pytest.mark.slow
def test_live_mjpeg_gives_decodable_frames_at_most_5_per_second(station: Station) -> None:
    parts, seconds, kind = read_parts(station, "/cameras/cam0/live.mjpg", 8)
    assert kind.startswith("multipart/x-mixed-replace; boundary=")
    frames = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(f is not None and f.shape == (256, 256, 3) for f in frames)
    assert seconds >= (len(parts) - 2) / 5.0, f"{len(parts)} frames in {seconds:.2f} s: more than 5 per second"
    heat, _, _ = read_parts(station, "/cameras/cam0/live.mjpg?heatmap=1", 3)
    assert all(cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) is not None for p in heat)
    assert station.get("/cameras/nope/live.mjpg", station.bearer())[0] == 404


@pytest.mark.slow
def test_the_token_guards_everything_but_healthz(station: Station) -> None:
    for path in ("/", "/api/status", "/metrics", "/readyz", "/snapshots/" + "0" * 32 + ".jpg", "/cameras/cam0/live.mjpg"):
        status, body, headers = station.get(path)
        assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer"), (path, status)
        assert station.get(path, {"Authorization": "Bearer " + "x" * 48})[0] == 401
    assert station.get("/healthz")[0] == 200
    assert station.get("/api/status", station.bearer())[0] == 200
    assert station.get("/?token=wrong-token-0123456789")[0] == 401
    status, _, headers = station.get(f"/?token={station.token}")
    cookie = headers["Set-Cookie"]
    assert status == 303 and headers["Location"] == "/" and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert station.get("/api/status", {"Cookie": cookie.split(";")[0]})[0] == 200


def test_a_network_listen_needs_a_token_file(tmp_path: Path) -> None:
    def check(health: dict[str, Any]) -> tuple[int, str]:
        cfg = DaemonConfig(tmp_path, cameras=[{"name": "c", "uri": "synthetic://surface"}], extra={"health": health})
        proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "check-config", str(cfg.path), "--no-bind"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stderr

    for listen in (f"0.0.0.0:{_free_port()}", f":{_free_port()}"):  # an empty host is every interface too
        code, err = check({"listen": listen})
        assert code == 2 and "health.token_file: required because health.listen" in err, err
    (tmp_path / "short.token").write_text("abc\n")
    code, err = check({"listen": f"0.0.0.0:{_free_port()}", "token_file": str(tmp_path / "short.token")})
    assert code == 2 and "health.token_file:" in err and "at least 16" in err, err
    code, err = check({"listen": f"0.0.0.0:{_free_port()}", "token_file": str(tmp_path / "missing.token")})
    assert code == 2 and "does not exist" in err, err
    (tmp_path / "good.token").write_text(secrets.token_hex(16))
    code, err = check({"listen": f"0.0.0.0:{_free_port()}", "token_file": str(tmp_path / "good.token")})
    assert code == 0, err
    assert "warning: health.listen:" in err and "plain HTTP" in err, err  # the token crosses the network in clear
    assert "Traceback" not in err


PROMTOOL = shutil.which("promtool") or (str(Path(sys.executable).parent / "promtool")
                                        if (Path(sys.executable).parent / "promtool").exists() else None)
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


def scrape(station: Station) -> tuple[bytes, dict[str, Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    status, body, _ = station.get("/metrics", station.bearer())
    assert status == 200
    return body, {f.name: f for f in text_string_to_metric_families(body.decode())}


def value(family: Any, suffix: str = "", **labels: str) -> float:
    return sum(s.value for s in family.samples
               if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.slow
def test_metrics_pass_promtool_and_say_what_an_operator_needs(station: Station, tmp_path: Path) -> None:
    import zmq

    from edge_inspector.client import fetch_since

    ctx = zmq.Context()
    try:
        assert fetch_since(ctx, station.cfg.catchup, 0)  # a subscriber catching up
    finally:
        ctx.term()
    time.sleep(1.5)
    body, families = scrape(station)
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (setup.sh --dev installs it)")
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

    latency, inference = families["edge_inspector_latency_seconds"], families["edge_inspector_inference_seconds"]
    assert latency.type == inference.type == "histogram"
    for source, kind in (("cam0", "camera"), ("press", "microphone")):
        assert value(latency, "_count", source=source, kind=kind) > 0, source
        assert value(inference, "_count", source=source, kind=kind) > 0, source
    assert value(families["edge_inspector_audio_inspected_seconds"], "_total", source="press") > 1.0
    inspected = families["edge_inspector_inspected"]
    assert {s.labels["source"] for s in inspected.samples if s.name.endswith("_total")} == {"cam0"}  # frames only
    journalled = families["edge_inspector_events_journalled"]
    for kind in ("defect", "status", "heartbeat"):
        assert value(journalled, "_total", topic_kind=kind) > 0, kind
    assert value(families["edge_inspector_events_published"], "_total", topic_kind="defect") > 0
    assert value(families["edge_inspector_events_caught_up"], "_total") > 0
    assert value(families["edge_inspector_journal_bytes"]) > 0
    assert 1 <= value(families["edge_inspector_journal_oldest_seq"]) <= value(families["edge_inspector_journal_newest_seq"])
    assert value(families["edge_inspector_snapshots_bytes"]) > 0 and value(families["edge_inspector_snapshots_written"], "_total") > 0
    models = {(s.labels["name"], s.labels["backend"]) for s in families["edge_inspector_model_info"].samples}
    assert models == {("visual_cnn", "onnxruntime"), ("acoustic_gru", "onnxruntime")}
    assert all(len(s.labels["sha256"]) == 12 for s in families["edge_inspector_model_info"].samples)
    assert value(families["process_resident_memory_bytes"]) > 10e6 and "process_cpu_seconds" in families

    # the Grafana dashboard asks only for metrics that exist, in PromQL that parses
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20 and dashboard["__inputs"][0]["pluginId"] == "prometheus"
    known = set(families) | {f"{n}_total" for n, f in families.items() if f.type == "counter"} \
        | {f"{n}_bucket" for n, f in families.items() if f.type == "histogram"}
    known |= {"edge_inspector_sink_connected", "edge_inspector_sink_backlog"}  # with an [mqtt] section only
    used = set(re.findall(r"\b((?:edge_inspector|process)_[a-z_]+)", " ".join(exprs)))
    assert used <= known, sorted(used - known)
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text("groups:\n- name: dashboard\n  rules:\n" + "".join(
        f"  - record: panel:{i}\n    expr: {json.dumps(e.replace('$instance', '.*').replace('$__rate_interval', '1m'))}\n"
        for i, e in enumerate(exprs)))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_a_daemon_stopped_while_a_viewer_watches_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM with a live.mjpg client connected: exit 0, the viewer's stream ends, no traceback."""
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam0", "uri": "synthetic://surface?seed=5&fps=10"}])
    proc = start_daemon(cfg.path)
    host, _, port = cfg.health.rpartition(":")
    try:
        deadline = time.monotonic() + 60
        while True:  # the first preview frame arrives once the camera is up
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                conn.request("GET", "/cameras/cam0/live.mjpg")
                r = conn.getresponse()
                if r.status == 200 and r.read1(65536).startswith(b"--"):
                    break
            except OSError:
                pass
            conn.close()
            assert time.monotonic() < deadline, "no preview frame within 60 s"
            time.sleep(0.3)
        received: list[bytes] = []  # the viewer keeps watching, as a browser does, until the stream ends
        viewer = threading.Thread(target=lambda: received.extend(iter(lambda: r.read1(65536), b"")), daemon=True)
        viewer.start()
        time.sleep(2.0)
        proc.terminate()  # the viewer is still connected, mid-stream
        _, err = proc.communicate(timeout=30)
        viewer.join(10)
        assert not viewer.is_alive(), "the viewer's stream was not closed"
        assert len(b"".join(received).split(b"Content-Type: image/jpeg")) > 1, "the viewer saw no frame"
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "CancelledError" not in err and " ERROR " not in err, err[-3000:]
