"""GigE Vision through Aravis, against a real (simulated) GigE camera on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from gige_camera import FakeGigECamera, aravis_missing

from edge_inspector.sources.base import BoundedQueue
from edge_inspector.sources.pixels import PIXEL_FORMATS, to_bgr


@pytest.fixture
def camera():
    cam = FakeGigECamera()
    yield cam
    cam.close()


class Capture:
    """An Aravis camera thread with its queue and the status changes it reported."""

    def __init__(self, **keys) -> None:
        from edge_inspector.sources.kinds.aravis import AravisCamera, AravisSettings

        self.settings = AravisSettings(name="gige", **keys)
        self.queue: BoundedQueue = BoundedQueue(64, "drop_oldest")
        self.states: list[tuple[float, str, str]] = []
        self.thread = AravisCamera(self.settings, self.queue, self._status)
        self.thread.start()

    def _status(self, _name: str, state: str, detail: str) -> None:
        self.states.append((time.monotonic(), state, detail))

    def wait_state(self, state: str, after: float = 0.0, timeout: float = 20.0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, s, _ in list(self.states):
                if s == state and t >= after:
                    return t
            time.sleep(0.02)
        return None

    def frames(self, seconds: float, enough: int | None = None) -> list:
        """What arrives within ``seconds`` (or once ``enough`` frames have: a busy machine is slower)."""
        out, end = [], time.monotonic() + seconds
        while time.monotonic() < end and (enough is None or len(out) < enough):
            item = self.queue.get_nowait()
            if item is None:
                time.sleep(0.005)
            else:
                out.append(item)
        return out

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_the_venv_sees_aravis_through_system_site_packages():
    """setup.sh --dev makes the venv see Debian's python3-gi and the Aravis typelib, as a station needs."""
    reason = aravis_missing()
    assert reason is None, reason
    out = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('Aravis', '0.8'); "
                          "from gi.repository import Aravis; print(Aravis.Camera.__gtype__.name)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ArvCamera"


def test_pixel_formats_match_aravis_and_bayer_orders_give_the_right_colour():
    reason = aravis_missing()
    if reason:
        pytest.skip(reason)
    import gi

    gi.require_version("Aravis", "0.8")
    from gi.repository import Aravis

    names = {"MONO_8", "MONO_10", "MONO_12", "MONO_14", "MONO_16", "RGB_8_PACKED", "BGR_8_PACKED",
             "YUV_422_PACKED", "YUV_422_YUYV_PACKED"}
    names |= {f"BAYER_{o}_{b}" for o in ("RG", "GR", "GB", "BG") for b in (8, 10, 12, 16)}
    assert {getattr(Aravis, f"PIXEL_FORMAT_{n}") for n in names} == set(PIXEL_FORMATS)
    h = w = 8
    for order, (dy, dx) in {"RG": (0, 0), "GR": (0, 1), "GB": (1, 0), "BG": (1, 1)}.items():
        mosaic = np.zeros((h, w), np.uint16)
        mosaic[dy::2, dx::2] = 200 << 4  # only the red sites lit, 12-bit
        code = getattr(Aravis, f"PIXEL_FORMAT_BAYER_{order}_12")
        b, g, r = to_bgr(mosaic.astype("<u2").tobytes(), w, h, code)[4, 4]
        assert (b, g, r) == (0, 0, 200), order
    rows = np.arange(8 * 10, dtype=np.uint8).tobytes()  # 8x8 Mono8 with 2 bytes of padding per row
    assert to_bgr(rows, 8, 8, Aravis.PIXEL_FORMAT_MONO_8, x_padding=2)[1, 1].tolist() == [11, 11, 11]


def test_free_run_frames_carry_the_configured_format_region_and_camera_timestamps(camera):
    cap = Capture(uri=camera.uri, pixel_format="Mono8", region=(16, 8, 320, 240), frame_rate=20.0,
                  exposure_us=3000.0, gain=2.0, packet_size=1400, roi=(10, 20, 100, 50))
    try:
        assert cap.wait_state("online") is not None, cap.states
        frames = cap.frames(15.0, enough=30)
        cam = cap.thread.cam
        assert (cam.get_exposure_time(), cam.get_gain(), round(cam.get_frame_rate())) == (3000.0, 2.0, 20)
        assert cam.gv_get_packet_size() == 1400
        stats = cap.thread.statistics()
    finally:
        cap.close()
    assert len(frames) == 30, (len(frames), cap.states, stats, cap.thread.counters)
    assert all(f.image.shape == (50, 100, 3) and f.origin == (10, 20) for f in frames)
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))
    gaps = np.diff([f.ts for f in frames])
    assert abs(float(np.median(gaps)) - 0.05) < 0.01, gaps  # the camera's clock: one frame per 50 ms
    assert abs(frames[-1].ts - time.time()) < 2.0
    assert stats["n_completed_buffers"] >= len(frames)


def test_software_trigger_gives_one_frame_per_trigger_at_the_configured_rate(camera):
    cap = Capture(uri=camera.uri, region=(0, 0, 128, 128), trigger="software", frame_rate=4.0)
    try:
        assert cap.wait_state("online") is not None, cap.states
        start = time.monotonic()
        frames = cap.frames(15.0, enough=8)
        elapsed = time.monotonic() - start
    finally:
        cap.close()
    # the fake camera free-runs at 25 fps: 4 a second can only come from the triggers
    assert len(frames) == 8 and elapsed >= 1.5, (len(frames), elapsed)
    assert float(np.median(np.diff([f.ts for f in frames]))) == pytest.approx(0.25, abs=0.05)


@pytest.mark.slow
def test_line_trigger_waits_silently_online_and_a_lost_camera_goes_offline_then_back(camera):
    """No pulse on the line: no frame and no stall; the heartbeat notices the camera is gone."""
    cap = Capture(uri=camera.uri, region=(0, 0, 128, 128), trigger="line", trigger_line="Line0",
                  trigger_activation="RisingEdge")
    try:
        assert cap.wait_state("online") is not None, cap.states
        assert cap.frames(3.0) == []
        assert not cap.thread.check_stall() and cap.thread.counters.state == "online"
        killed = camera.kill()
        offline = cap.wait_state("offline", after=killed)
        assert offline is not None, cap.states
        assert "heartbeat" in [d for t, s, d in cap.states if s == "offline"][-1]
        back = camera.start()
        assert cap.wait_state("online", after=back) is not None, cap.states
    finally:
        cap.close()


def test_a_free_running_camera_that_stops_is_offline_within_its_stall_timeout_and_recovers(camera):
    cap = Capture(uri=camera.uri, region=(0, 0, 160, 120), frame_rate=25.0, stall_timeout_s=1.0)
    try:
        assert cap.wait_state("online") is not None, cap.states
        assert cap.frames(0.5)
        killed = camera.kill()
        offline = cap.wait_state("offline", after=killed)
        assert offline is not None and offline - killed < 5.0, cap.states
        back = camera.start()
        assert cap.wait_state("online", after=back) is not None, cap.states
        assert cap.frames(1.0), "frames resume after the camera came back"
        assert cap.thread.counters.reconnects >= 1
    finally:
        cap.close()


def test_check_names_the_key_a_camera_cannot_take(camera):
    from edge_inspector.sources.kinds.aravis import AravisSettings, check

    def problems(**keys):
        return check(AravisSettings(name="g", uri=camera.uri, **keys), True)

    assert problems(pixel_format="Mono8", region=(0, 0, 640, 480), frame_rate=30.0) == []
    assert problems(pixel_format="Mono12")[0].startswith("pixel_format: 'Mono12' is not offered by this camera (it offers")
    assert problems(region=(0, 0, 4096, 64))[0].startswith("region: [0, 0, 4096, 64] does not fit the 2048x2048 sensor")
    assert problems(exposure_us=1e9)[0].startswith("exposure_us: 1e+09 us is outside what this camera accepts")
    assert problems(trigger="line", trigger_line="Line3") == [
        "trigger_line: this camera has no 'Line3' trigger source (it has Line0, Software)"]
    assert problems(features={"NoSuchFeature": 1})[0].startswith("features.NoSuchFeature:")
    absent = check(AravisSettings(name="g", uri="aravis://NoSuchCamera-42"), True)
    assert absent[0].startswith("uri: cannot open camera 'NoSuchCamera-42'")
    assert check(AravisSettings(name="g", uri="aravis://NoSuchCamera-42"), False) == []


def test_a_pixel_format_the_camera_does_not_offer_stops_the_source_with_one_line(camera):
    cap = Capture(uri=camera.uri, pixel_format="Mono12")
    cap.thread.join(10)
    assert not cap.thread.is_alive()
    assert cap.thread.fatal_error == (f"gige: camera {camera.serial}: pixel_format: 'Mono12' is not offered by this camera "
                                      "(it offers BayerBG8, BayerGB8, BayerGR8, BayerRG8, Mono8, RGB8, Mono16)")


@pytest.mark.slow
def test_the_daemon_inspects_a_gige_camera_and_reports_its_stream_and_outage(tmp_path, camera):
    """check-config, run: verdicts for its frames, Aravis' statistics in /metrics, offline and online events."""
    import signal
    import urllib.request

    from conftest import DaemonConfig, Subscriber, start_daemon

    cfg = DaemonConfig(tmp_path, cameras=[{
        "name": "gige", "uri": camera.uri, "pixel_format": "Mono8", "region": [0, 0, 640, 480],
        "frame_rate": 10.0, "exposure_us": 5000.0, "stall_timeout_s": 1.0}], publisher={"publish_verdicts": True})
    check = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "check-config", str(cfg.path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    sub = Subscriber(cfg.endpoint)
    daemon = start_daemon(cfg.path)
    try:
        assert sub.wait_for(lambda ev: len([t for t, _ in ev if t == "verdict.gige"]) >= 10, 60), sub.events[-5:]
        metrics = urllib.request.urlopen(f"http://{cfg.health}/metrics", timeout=5).read().decode()
        completed = [line for line in metrics.splitlines() if line.startswith(
            'edge_inspector_camera_stream_buffers_total{kind="camera",outcome="completed",source="gige"}')]
        assert completed and float(completed[0].split()[-1]) >= 10, metrics[-2000:]
        killed = max(e["seq"] for _, e in sub.events)  # what comes after the camera went away
        camera.kill()
        assert sub.wait_for(lambda ev: any(t == "status.gige" and e["state"] == "offline" for t, e in ev), 20)
        camera.start()
        assert sub.wait_for(lambda ev: any(t == "status.gige" and e["state"] == "online" and e["seq"] > killed
                                           for t, e in ev), 30), sub.topics("status.gige")
        frames_after = lambda ev: [e for t, e in ev if t == "verdict.gige" and e["seq"] > killed]  # noqa: E731
        assert sub.wait_for(lambda ev: len(frames_after(ev)) >= 3, 20)
    finally:
        daemon.send_signal(signal.SIGINT)
        out, err = daemon.communicate(timeout=30)
        sub.close()
    assert daemon.returncode == 0, err[-2000:]


def test_check_config_names_a_bad_gige_key_in_one_line(tmp_path, camera):
    from conftest import DaemonConfig

    cfg = DaemonConfig(tmp_path, cameras=[{"name": "gige", "uri": camera.uri, "pixel_format": "Mono10",
                                           "width": 640}])
    check = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "check-config", str(cfg.path), "--no-bind"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert check.stderr.strip().splitlines() == [
        "edge-inspector: camera[0].width: only for v4l2:///dev/video0 cameras; this one is aravis"], check.stderr
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "gige", "uri": camera.uri, "pixel_format": "Mono10"}])
    check = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "check-config", str(cfg.path), "--no-bind"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert [line for line in check.stderr.splitlines() if "camera[0]" in line] == [
        "edge-inspector: camera[0].pixel_format: 'Mono10' is not offered by this camera (it offers BayerBG8, BayerGB8, BayerGR8, "
        "BayerRG8, Mono8, RGB8, Mono16)"], check.stderr
