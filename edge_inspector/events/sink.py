"""The sink seam: what the dispatcher hands every journalled event to.

A sink is anything that takes events out of the daemon: the ZeroMQ publisher, the catch-up
server, MQTT, Sparkplug B, the PLC bridge.  The dispatcher calls :meth:`Sink.offer` for every
event, in ``seq`` order, right after the journal committed it.  ``offer`` must never block: each
sink does its real work on thread(s) of its own, so a slow or absent consumer (a dead broker, a
PLC that stopped polling) can never hold up inspection or another sink.

Two kinds are provided here:

- :class:`LiveSink` keeps a bounded in-memory queue and sheds the oldest entries when it falls
  behind (counted): right for the ZeroMQ publisher, whose subscribers fill gaps from catch-up,
  and for the PLC bridge, where only the newest state matters.
- :class:`DurableSink` (``events/durable.py``) keeps a delivery cursor in the journal and reads
  back from the journal whatever its queue shed or an outage made it miss.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

from edge_inspector.supervision import ThreadHealth, describe, run_supervised


@dataclass(frozen=True)
class Record:
    """One journalled event as every sink sees it: its number, topic and exact payload bytes."""

    seq: int
    topic: str
    payload: bytes

    @property
    def kind(self) -> str:
        return topic_kind(self.topic)


def topic_kind(topic: str) -> str:
    """``defect``, ``verdict``, ``status`` or ``heartbeat``: what the metrics count events by."""
    return topic.split(".", 1)[0]


def topic_matches(topic: str, prefixes: tuple[str, ...]) -> bool:
    """ZeroMQ subscription semantics: empty prefix list or "" matches everything."""
    return not prefixes or any(topic.startswith(p) for p in prefixes)


class Sink:
    """Base of every sink: a name, a thread of its own, and a non-blocking :meth:`offer`.

    Subclasses implement :meth:`_run` (the thread body, which returns once :attr:`stopping` is
    set and its work is flushed), :meth:`offer` and, for what outlives a restart (a bound
    socket), :meth:`_finish`.  The thread runs under :func:`~edge_inspector.supervision.run_supervised`
    with the sink's name: an exception escaping ``_run`` is logged once and counted, and ``_run``
    starts again after a backoff (a sink reconnects, rebinds or resumes from its journal cursor
    by itself).  A sink with ``restartable = False`` is not restarted: its failure is recorded in
    :attr:`error`, :attr:`alive` turns False and the service stops with exit 1.
    """

    #: True for sinks that keep a cursor in the journal and resume after an outage or restart.
    durable = False
    #: False for a sink whose thread cannot start ``_run`` afresh after a failure.
    restartable = True

    def __init__(self, name: str, health: ThreadHealth | None = None) -> None:
        self.name = name
        #: where failures and restarts are counted (the dispatcher fills in its own if None)
        self.health = health
        self.error: str | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle (called by the dispatcher) ------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to flush and finish; :meth:`join` waits for it."""
        with self._cond:
            self._stopping = True
            self._stop_event.set()
            self._cond.notify_all()

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s``; True if the thread has ended."""
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))
            return not self._thread.is_alive()
        return True

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def alive(self) -> bool:
        """The sink's thread runs (True before start, so construction order does not matter)."""
        return self.error is None and (self._thread is None or self._thread.is_alive() or self._stopping)

    def _main(self) -> None:
        try:
            run_supervised(self.name, self._run, restart=self.restartable, stop=self._stop_event,
                           health=self.health, on_fatal=self._failed)
        finally:
            self._finish()

    def _failed(self, err: BaseException) -> None:
        self.error = describe(err)

    # -- to implement ------------------------------------------------------------------------
    def offer(self, record: Record) -> None:
        """Take one event; never blocks (called with the dispatcher's order lock held)."""
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """The thread is ending for good: release what it owns (sockets, connections)."""

    def counters(self) -> dict[str, Any]:
        """Numbers for heartbeats and metrics."""
        return {}


class LiveSink(Sink):
    """A sink fed from a bounded queue that drops its oldest entry when full (counted).

    ``_deliver`` gets the queued records in order, in batches; ``_idle`` runs when nothing
    arrived for ``idle_s`` (upkeep such as reconnecting or timers).  A batch whose delivery
    failed is not retried after the restart: live consumers fill such gaps themselves (ZeroMQ
    subscribers from catch-up, Sparkplug hosts from the births that follow a reconnection).
    """

    def __init__(self, name: str, max_queued: int = 10000, idle_s: float = 0.5) -> None:
        super().__init__(name)
        self._max_queued = max(1, max_queued)
        self._idle_s = idle_s
        self._queue: collections.deque[Record] = collections.deque()
        self.dropped_in_memory = 0

    def offer(self, record: Record) -> None:
        with self._cond:
            if len(self._queue) >= self._max_queued:
                self._queue.popleft()
                self.dropped_in_memory += 1
            self._queue.append(record)
            self._cond.notify()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self._idle_s
                while not self._queue and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = list(self._queue)
                self._queue.clear()
                stopping = self._stopping
            if batch:
                self._deliver(batch)
            elif stopping:
                break
            else:
                self._idle()

    def _deliver(self, batch: list[Record]) -> None:
        raise NotImplementedError

    def _idle(self) -> None:
        """Nothing arrived for ``idle_s`` seconds."""
