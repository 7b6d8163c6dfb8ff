"""The health server: idle and hostile connections cost neither threads nor the scraper's answer."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from edge_inspector.health import HealthServer
from edge_inspector.http_server import Response


@pytest.fixture
def server() -> HealthServer:
    ready = {"ok": True}
    hs = HealthServer("127.0.0.1:0", lambda: {"edge_inspector_x": ("x", "counter", {(): 3.0})},
                      lambda: True, lambda: ready["ok"])
    hs.ready_flag = ready  # type: ignore[attr-defined]
    hs.start()
    yield hs
    hs.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_endpoints_and_routes(server: HealthServer) -> None:
    assert get(server.port, "/metrics") == (200, b"# HELP edge_inspector_x_total x\n# TYPE edge_inspector_x_total counter\n"
                                                 b"edge_inspector_x_total 3.0\n")
    assert get(server.port, "/healthz") == (200, b"ok\n")
    server.ready_flag["ok"] = False  # type: ignore[attr-defined]
    assert get(server.port, "/readyz") == (503, b"not ready\n")
    assert get(server.port, "/nothing")[0] == 404
    server.add_route("/status", lambda req: Response(200, f"hello {req.query.get('who')}".encode(), "text/html"))
    assert get(server.port, "/status?who=line") == (200, b"hello line")


def test_300_idle_connections_cost_no_threads_and_metrics_still_answer(server: HealthServer) -> None:
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= threads_before + 4  # the worker pool, not one per connection
        assert get(server.port, "/metrics")[0] == 200
        assert server.server.open_connections <= server.server.max_connections
    finally:
        for s in idle:
            s.close()


def test_a_slow_client_is_dropped_after_the_timeout(server: HealthServer) -> None:
    server.server.request_timeout_s = 0.5
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its request
    slow.settimeout(5)
    t0 = time.monotonic()
    assert slow.recv(100) == b""  # closed by the server
    assert time.monotonic() - t0 < 4
    assert server.server.timeouts >= 1


def test_oversized_head_and_wrong_method(server: HealthServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 405")


def test_a_hanging_handler_holds_one_worker_not_the_server(server: HealthServer) -> None:
    release = threading.Event()
    server.add_route("/hang", lambda req: (release.wait(10), Response(200, b"late"))[1])
    server.server.request_timeout_s = 1.0
    try:
        statuses = []
        hangers = [threading.Thread(target=lambda: statuses.append(get(server.port, "/hang")[0])) for _ in range(3)]
        for t in hangers:
            t.start()
        time.sleep(0.2)
        assert get(server.port, "/healthz") == (200, b"ok\n")  # a free worker answers
        for t in hangers:
            t.join(5)
        assert statuses == [503, 503, 503]
    finally:
        release.set()
