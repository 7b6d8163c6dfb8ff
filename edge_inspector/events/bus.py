"""The event bus: the dispatcher with the ZeroMQ sinks every daemon has.

:class:`EventBus` builds the PUB publisher (live events, heartbeats) and, when configured, the
catch-up ROUTER, both secured by one :class:`ServerSecurity` on one ZeroMQ context, and hands
them with any further sinks (MQTT, Sparkplug B, PLC bridge) to the :class:`Dispatcher`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

import zmq

from edge_inspector.events.catchup import CatchupServer
from edge_inspector.events.catchup_protocol import (  # noqa: F401  (re-exported: the protocol's constants)
    CATCHUP_BATCH,
    CATCHUP_DEFAULT_LIMIT,
    CATCHUP_MAX_LIMIT,
    parse_request,
)
from edge_inspector.events.dispatcher import Dispatcher
from edge_inspector.events.journal import Journal
from edge_inspector.events.publisher import ZmqPublisher
from edge_inspector.events.sink import Sink
from edge_inspector.events.zmq_security import (  # noqa: F401  (re-exported)
    ServerSecurity,
    check_endpoint_bindable,
)
from edge_inspector.supervision import ThreadHealth

log = logging.getLogger(__name__)


class EventBus(Dispatcher):
    """Journal-then-publish event bus with heartbeats, a catch-up ROUTER and extra sinks.

    ``endpoint`` / ``catchup_endpoint`` may use ``tcp://127.0.0.1:*`` (free port); the bound
    addresses are in ``self.endpoint`` / ``self.catchup_endpoint``.  ``max_queued`` bounds the
    publisher's in-memory hand-off queue (never the journal).
    """

    def __init__(
        self,
        endpoint: str,
        journal: Journal,
        catchup_endpoint: str | None = None,
        sndhwm: int = 10000,
        linger_ms: int = 1000,
        heartbeat_s: float = 1.0,
        counters: Callable[[], dict[str, Any]] | None = None,
        curve_secret_key: str | None = None,
        max_queued: int = 10000,
        sinks: Iterable[Sink] = (),
        curve_allowed_clients: str | None = None,
        health: ThreadHealth | None = None,
    ) -> None:
        self._ctx = zmq.Context()
        made: list[ZmqPublisher | CatchupServer] = []
        try:
            self.security = ServerSecurity(self._ctx, curve_secret_key, curve_allowed_clients)
            publisher = ZmqPublisher(self.security, endpoint, sndhwm, linger_ms, max_queued)
            made.append(publisher)
            catchup = CatchupServer(self.security, catchup_endpoint, journal, health) if catchup_endpoint else None
            if catchup is not None:
                made.append(catchup)
        except BaseException:
            for sink in made:
                sink.close_unstarted()
            if getattr(self, "security", None) is not None:
                self.security.close()
            self._ctx.term()
            raise
        self.endpoint = publisher.endpoint
        self.catchup_endpoint: str | None = catchup.endpoint if catchup else None
        #: Z85 public key subscribers pass as ``curve_serverkey`` (None without CURVE).
        self.curve_public_key = self.security.public_key
        super().__init__(journal, [*made, *sinks], heartbeat_s, counters, health)

    def _release(self, deadline: float) -> None:
        # term() waits for the PUB linger (bounded by linger_ms); run it aside so close() is bounded.
        self.security.close()
        terminator = threading.Thread(target=self._ctx.term, name="event-ctx-term", daemon=True)
        terminator.start()
        terminator.join(max(0.1, deadline - time.monotonic()))
        if terminator.is_alive():
            log.warning("event bus: undelivered events dropped at the end of the publisher's linger")

    def __enter__(self) -> EventBus:
        return self
