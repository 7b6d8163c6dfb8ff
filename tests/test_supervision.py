"""Every long-lived thread is supervised: a fault injected into each one's work has a visible outcome.

Restartable components (live sources, the health server, the native log reader, the event
sinks: more in tests/test_sink_supervision.py) come back by themselves and count the failure;
components that cannot (the inspectors and their delivery) turn /readyz and /healthz to 503,
raise ``edge_inspector_failed`` and make the service exit 1.
The daemon is the real one, in this process, with synthetic camera and microphone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge_inspector.config import load_config
from edge_inspector.service import Service
from edge_inspector.supervision import ThreadHealth, run_supervised

from conftest import ENGINES, DaemonConfig, fail_once, wait_until

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines not built")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Running:
    """A Service started in this process, its wait loop in a thread, stopped on close."""

    def __init__(self, tmp_path: Path) -> None:
        cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam", "uri": "synthetic://surface?fps=20"}],
                           microphones=[{"name": "mic", "uri": "synthetic://machine"}])
        self.service = Service(load_config(cfg.path))
        self.base = f"http://{cfg.health}"
        self.service.start()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()
        assert wait_until(lambda: get(self.base + "/readyz")[0] == 200, 30)

    def _wait(self) -> None:
        self.service.wait(tick_s=0.1)

    def inspected(self, source: str) -> int:
        return self.service.sources[source].inspected

    def close(self) -> int:
        self.service.request_stop()
        self.thread.join(10)
        return self.service.stop()


@pytest.fixture
def running(tmp_path: Path) -> Any:
    r = Running(tmp_path)
    yield r
    if r.thread.is_alive() or r.service.bus.alive:
        r.close()


def test_live_source_failure_restarts_the_source(running: Running) -> None:
    thread = running.service.sources["cam"].thread
    original = thread._set_state
    fired = []

    def broken_set_state(state: str, detail: str = "", only_if: str | None = None) -> bool:
        if state == "reconnecting" and not fired:
            fired.append(state)
            raise RuntimeError("injected fault in the capture loop")
        return original(state, detail, only_if)

    thread._set_state = broken_set_state  # type: ignore[method-assign]
    thread._samples = iter(())  # type: ignore[attr-defined] - the synthetic camera runs dry: "unplugged"
    assert wait_until(lambda: bool(fired), 10)
    before = running.inspected("cam")
    assert wait_until(lambda: running.inspected("cam") > before + 5, 20), "the camera did not come back"
    status, text = get(running.base + "/metrics")
    assert metric(text, "edge_inspector_thread_failures_total", thread="camera:cam") == 1
    assert metric(text, "edge_inspector_thread_restarts_total", thread="camera:cam") == 1
    assert get(running.base + "/readyz")[0] == 200 and running.service.broken() is None
    assert running.close() == 0


@pytest.mark.parametrize("where", ["visual-inspector", "visual-delivery", "acoustic-inspector"])
def test_inspector_failure_stops_the_daemon_with_exit_1(running: Running, where: str) -> None:
    svc = running.service

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"injected fault in {where}")

    if where == "visual-inspector":
        svc.visual.runner.run = boom  # type: ignore[union-attr]
    elif where == "visual-delivery":
        svc.bus.publish_verdict = boom  # type: ignore[method-assign]
    else:
        for mic in svc.acoustic.mics.values():  # type: ignore[union-attr]
            mic.runner.push = boom
    assert wait_until(lambda: svc.broken() is not None, 15), "the failure was not noticed"
    assert get(running.base + "/readyz")[0] == 503
    assert get(running.base + "/healthz")[0] == 503
    _, text = get(running.base + "/metrics")
    assert metric(text, "edge_inspector_failed") == 1
    assert sum(v for k, v in svc.threads.snapshot()[0].items()) >= 1
    running.thread.join(10)
    assert not running.thread.is_alive(), "the wait loop did not end on the failure"
    assert running.service.stop() == 1 and "injected fault" in (running.service.failure or "")


def test_health_server_loop_failure_restarts_it(running: Running) -> None:
    server = running.service.health.server  # type: ignore[union-attr]
    loop = server._loop
    assert loop is not None
    loop.call_soon_threadsafe(loop.stop)  # the event loop ends under the server's feet
    assert wait_until(lambda: server._loop is not None and server._loop is not loop, 10)
    assert wait_until(lambda: get(running.base + "/healthz")[0] == 200, 10)
    _, text = get(running.base + "/metrics")
    assert metric(text, "edge_inspector_thread_restarts_total", thread="health") == 1
    assert running.close() == 0


def test_native_log_reader_restarts_with_a_new_pipe(capfd: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from edge_inspector.native_log import NativeLogCapture

    capture = NativeLogCapture()
    caplog.set_level(logging.INFO, logger="edge_inspector.native")
    capture.start()
    try:
        os.write(2, b"[rtsp @ 0x55d0] first line from C\n")
        assert wait_until(lambda: any("first line from C" in r.getMessage() for r in caplog.records), 5)
        os.close(capture._read_fd)  # type: ignore[arg-type] - the reader's pipe breaks under it
        assert wait_until(lambda: capture._read_fd is not None and capture.alive, 5)
        time.sleep(0.2)
        os.write(2, b"[ WARN:0@1.0] global cap.cpp:1 after the restart\n")
        assert wait_until(lambda: any("after the restart" in r.getMessage() for r in caplog.records), 5)
    finally:
        capture.stop()
    warn = next(r for r in caplog.records if "after the restart" in r.getMessage())
    assert warn.levelno == logging.WARNING and getattr(warn, "origin") == "opencv"


def test_run_supervised_backoff_and_fatal() -> None:
    health = ThreadHealth()
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ValueError("transient")

    run_supervised("flaky", flaky, restart=True, health=health, backoff_s=(0.05, 0.2))
    assert len(calls) == 3 and health.failures == {"flaky": 2} and health.restarts == {"flaky": 2}
    # backoff doubles: 0.05 s before the second call, 0.1 s before the third (lower bounds only: a busy
    # machine may wake it later, never earlier)
    assert calls[1] - calls[0] >= 0.045 and calls[2] - calls[1] >= 0.095, calls
    fatal: list[BaseException] = []
    run_supervised("broken", lambda: 1 / 0, restart=False, health=health, on_fatal=fatal.append)
    assert health.fatal and health.fatal.startswith("broken: ZeroDivisionError") and len(fatal) == 1


def test_catchup_server_failure_restarts_it(running: Running) -> None:
    import zmq

    from edge_inspector.client import fetch_page

    fired = fail_once(running.service.journal, "rows_since", RuntimeError("injected fault in the catch-up server"))
    ctx = zmq.Context()
    try:
        with pytest.raises(TimeoutError):  # the request in hand when it failed is lost
            fetch_page(ctx, running.service.bus.catchup_endpoint, 0, timeout_s=1.0)
        pairs, _ = fetch_page(ctx, running.service.bus.catchup_endpoint, 0, timeout_s=5.0)
    finally:
        ctx.term()
    assert fired and len(pairs) > 5
    _, text = get(running.base + "/metrics")
    assert metric(text, "edge_inspector_thread_restarts_total", thread="zmq-catchup") == 1
    assert get(running.base + "/readyz")[0] == 200 and running.close() == 0


def test_heartbeat_and_pruning_thread_failure_restarts_it(running: Running) -> None:
    journal = running.service.journal
    fired = fail_once(journal, "prune", OSError("injected fault in journal upkeep"))
    seq = journal.last_seq
    assert wait_until(lambda: bool(fired), 5)
    heartbeats_before = journal.rows_since(seq, 10_000, ["heartbeat"])
    assert wait_until(lambda: len(journal.rows_since(seq, 10_000, ["heartbeat"])) > len(heartbeats_before) + 1, 10)
    _, text = get(running.base + "/metrics")
    assert metric(text, "edge_inspector_thread_restarts_total", thread="event-upkeep") == 1
    assert running.close() == 0


def test_publisher_failure_restarts_it(running: Running) -> None:
    svc = running.service
    pub = next(s for s in svc.bus.sinks if s.name == "zmq-pub")
    fired = fail_once(pub, "_deliver", RuntimeError("injected fault in the publisher"))
    assert wait_until(lambda: bool(fired), 5)
    published = pub.published
    assert wait_until(lambda: pub.published > published + 5, 10)  # publishing again
    _, text = get(running.base + "/metrics")
    assert metric(text, "edge_inspector_thread_restarts_total", thread="zmq-pub") == 1
    assert get(running.base + "/readyz")[0] == 200 and svc.broken() is None
    assert running.close() == 0


def test_curve_authenticator_failure_stops_the_daemon(tmp_path: Path) -> None:
    """Without its ZAP handler no client could be let in: fail loudly, not silently closed."""
    from edge_inspector.events.curve import create_key_pair

    _pub, secret = create_key_pair(tmp_path / "keys", "server")
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam", "uri": "synthetic://surface?fps=20"}],
                       publisher={"curve_secret_key": str(secret), "curve_allowed_clients": "*"})
    service = Service(load_config(cfg.path))
    service.start()
    waiter = threading.Thread(target=service.wait, kwargs={"tick_s": 0.1}, daemon=True)
    waiter.start()
    try:
        assert service.bus.security.alive
        auth = service.bus.security.auth
        assert auth is not None
        auth.pipe.send(b"TERMINATE")  # the authenticator's thread ends under the daemon's feet
        assert wait_until(lambda: service.broken() is not None, 10)
        assert "zap-authenticator" in (service.broken() or "")
        waiter.join(10)
    finally:
        service.request_stop()
        code = service.stop()
    assert code == 1
