"""Health endpoints and Prometheus metrics, plus systemd's notify protocol.

``/metrics`` (Prometheus text format), ``/healthz`` (the process is alive and its threads are
running) and ``/readyz`` (every enabled source is online) are served by a tiny HTTP server in
its own thread.  Metrics are read from the service's counters at scrape time, so the hot path
never touches them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge_inspector.errors import UserError

log = logging.getLogger(__name__)

#: metric name -> (help, type, {labels tuple: value}) as produced by the service
MetricSnapshot = dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], MetricSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, kind, samples) in self.snapshot().items():
            label_names = sorted({k for labels in samples for k, _ in labels})
            family_cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_cls(name, help_text, labels=label_names)
            for labels, value in samples.items():
                values = dict(labels)
                family.add_metric([values.get(k, "") for k in label_names], value)
            yield family


class HealthServer:
    """Serves /metrics, /healthz and /readyz on ``host:port``."""

    def __init__(
        self,
        listen: str,
        snapshot: Callable[[], MetricSnapshot],
        alive: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.registry = CollectorRegistry()
        self.registry.register(_SnapshotCollector(snapshot))
        registry, is_alive, is_ready = self.registry, alive, ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.startswith("/metrics"):
                    body, status = generate_latest(registry), 200
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.startswith("/healthz"):
                    ok = is_alive()
                    body, status, ctype = (b"ok\n" if ok else b"unhealthy\n"), (200 if ok else 503), "text/plain"
                elif self.path.startswith("/readyz"):
                    ok = is_ready()
                    body, status, ctype = (b"ready\n" if ok else b"not ready\n"), (200 if ok else 503), "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep scrapes out of the logs
                pass

        try:
            self.httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        except (OSError, ValueError) as exc:
            raise UserError(f"health.listen: cannot listen on {listen!r}: {exc}") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sd_notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=…``) to systemd.

    Implements the datagram protocol directly (no libsystemd binding needed); a no-op
    returning False when not started by systemd with ``Type=notify``.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("systemd notify failed: %s", exc)
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's ``WatchdogSec`` (``WATCHDOG_USEC``), the recommended ping period."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
