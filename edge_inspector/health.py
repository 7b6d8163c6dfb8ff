"""Health endpoints and Prometheus metrics, plus systemd's notify protocol.

``/metrics`` (Prometheus text format), ``/healthz`` (the process is alive and its threads are
running) and ``/readyz`` (every enabled source is online) are served by a tiny HTTP server in
its own thread (:mod:`edge_inspector.http_server`: bounded connections, timeouts and
workers).  Metrics are read from the service's counters at scrape time, so the hot path
never touches them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge_inspector.errors import UserError
from edge_inspector.http_server import Handler, HttpServer, Request, Response, text
from edge_inspector.supervision import ThreadHealth

log = logging.getLogger(__name__)

#: metric name -> (help, type, {labels tuple: value}) as produced by the service
MetricSnapshot = dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]


class SnapshotCollector:
    """Turns the service's :data:`MetricSnapshot` into Prometheus families at scrape time."""

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
    """Serves /metrics, /healthz and /readyz on ``host:port`` (more routes: :meth:`add_route`)."""

    def __init__(
        self,
        listen: str,
        metrics: CollectorRegistry | Callable[[], MetricSnapshot],
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        health: ThreadHealth | None = None,
    ) -> None:
        """``metrics``: the service's registry, or a snapshot function (wrapped in a registry)."""
        host, _, port = listen.rpartition(":")
        if isinstance(metrics, CollectorRegistry):
            self.registry = metrics
        else:
            self.registry = CollectorRegistry()
            self.registry.register(SnapshotCollector(metrics))
        registry = self.registry
        try:
            port_number = int(port)
        except ValueError:
            raise UserError(f"health.listen: expected HOST:PORT, got {listen!r}") from None
        try:
            self.server = HttpServer(host or "127.0.0.1", port_number, what="health", health=health)
        except UserError as exc:
            raise UserError(f"health.listen: {exc}") from None
        self.port = self.server.port

        def probe(check: Callable[[], bool], good: str, bad: str) -> Handler:
            def handle(_request: Request) -> Response:
                ok = check()
                return text(f"{good if ok else bad}\n", 200 if ok else 503)
            return handle

        self.add_route("/metrics", lambda _r: Response(200, generate_latest(registry),
                                                       "text/plain; version=0.0.4; charset=utf-8"))
        self.add_route("/healthz", probe(alive, "ok", "unhealthy"))
        self.add_route("/readyz", probe(ready, "ready", "not ready"))

    def add_route(self, path: str, handler: Handler) -> None:
        """Serve another page (a status page, snapshots) next to the health endpoints."""
        self.server.add_route(path, handler)

    def add_prefix_route(self, prefix: str, handler: Handler) -> None:
        """Serve every path under ``prefix`` (``/snapshots/``) from ``handler``."""
        self.server.add_prefix_route(prefix, handler)

    @property
    def alive(self) -> bool:
        return self.server.alive

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.close()


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


class StartTimeoutExtension:
    """Asks systemd for more start-up time while the daemon loads its models.

    A first start on a Jetson compiles TensorRT plans, which takes minutes: longer than systemd's
    default 90 s start timeout (``TimeoutStartSec``), which would kill the build and restart it in
    a loop.  Inside the ``with`` block a thread sends ``EXTEND_TIMEOUT_USEC`` every ``every_s``
    (each one grants ``2 * every_s`` from the moment it arrives) with a ``STATUS`` saying why, and
    gives up after ``limit_s`` so a build that hangs still times out.  Outside systemd (no
    ``NOTIFY_SOCKET``) it does nothing.
    """

    def __init__(self, status: str, every_s: float = 30.0, limit_s: float = 3600.0) -> None:
        self.message = f"EXTEND_TIMEOUT_USEC={int(2 * every_s * 1e6)}\nSTATUS={status}"
        self.every_s = every_s
        self.limit_s = limit_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        rounds = max(1, int(self.limit_s / self.every_s))
        for _ in range(rounds):
            if not sd_notify(self.message) or self._done.wait(self.every_s):
                return

    def __enter__(self) -> "StartTimeoutExtension":
        if os.environ.get("NOTIFY_SOCKET"):
            self._thread = threading.Thread(target=self._run, name="start-timeout", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


def watchdog_interval_s() -> float | None:
    """Half of systemd's ``WatchdogSec`` (``WATCHDOG_USEC``), the recommended ping period."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
