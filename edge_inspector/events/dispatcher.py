"""The dispatcher: journal every event first, then hand it to every sink.

Producers (inspector and source threads) call the thread-safe ``publish_*`` methods.  Under one
order lock the event is built, numbered and committed by the journal, then offered to each sink
in turn; ``Sink.offer`` never blocks, so the cost to a producer is one SQLite commit plus a few
queue appends, whatever the sinks' consumers are doing.  Journal order is therefore every sink's
order.

An upkeep thread emits the heartbeat (an ordinary journalled event, so it reaches every sink and
its ``seq`` tells subscribers the newest number) and prunes the journal in small batches.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Iterable, Literal

from edge_inspector.errors import UserError
from edge_inspector.events.journal import Journal
from edge_inspector.events.schema import (
    UNASSIGNED_SEQ,
    event_from_verdict,
    heartbeat_event,
    status_event,
    topic_for,
)
from edge_inspector.events.sink import Record, Sink
from edge_inspector.values import Verdict
from edge_inspector.supervision import ThreadHealth, run_supervised

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 1.0  # journal retention is enforced in one batch per interval, off the hot path


class Dispatcher:
    """Journal-then-sinks event path with heartbeats; starts the sinks' threads."""

    def __init__(
        self,
        journal: Journal,
        sinks: Iterable[Sink],
        heartbeat_s: float = 1.0,
        counters: Callable[[], dict[str, Any]] | None = None,
        health: ThreadHealth | None = None,
    ) -> None:
        self.journal = journal
        self.health = health
        self.sinks: list[Sink] = list(sinks)
        self._heartbeat_s = heartbeat_s
        self._user_counters = counters
        self._started_mono = time.monotonic()
        self.journalled: collections.Counter[str] = collections.Counter()  # events per topic kind
        self._order_lock = threading.Lock()  # journal order == every sink's order
        self._stopping = False
        self._closed = False
        self._halt = threading.Event()
        for sink in self.sinks:
            if sink.health is None:
                sink.health = health
            sink.start()
        self._upkeep = threading.Thread(target=self._run_upkeep, name="event-upkeep", daemon=True)
        self._upkeep.start()

    # ------------------------------------------------------------------ producers
    def publish_verdict(
        self, v: Verdict, topic_kind: Literal["defect", "verdict"] = "defect",
        event_id: str | None = None, fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Journal and dispatch one verdict on ``defect.<kind>.<source>`` or ``verdict.<source>``
        (``event_id``, ``fields``: see :func:`~edge_inspector.events.schema.event_from_verdict`)."""
        if topic_kind not in ("defect", "verdict"):
            raise ValueError(f"topic_kind must be 'defect' or 'verdict', got {topic_kind!r}")
        topic = topic_for(topic_kind, v.source, v.kind)
        return self._emit(topic, lambda: event_from_verdict(v, UNASSIGNED_SEQ, time.monotonic(), event_id, fields))

    def publish_status(self, source: str, state: str, detail: str = "") -> dict[str, Any]:
        """Journal and dispatch a source state change on ``status.<source>``."""
        return self._emit(topic_for("status", source), lambda: status_event(source, state, detail))

    def _emit(self, topic: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._order_lock:
            if self._stopping:
                raise RuntimeError("event bus is closed")
            event = build()
            seq, payload = self.journal.append_encoded(topic, event)  # assigns event["seq"], commits
            record = Record(seq, topic, payload)
            self.journalled[record.kind] += 1
            for sink in self.sinks:
                sink.offer(record)
        return event

    # ------------------------------------------------------------------ state
    @property
    def alive(self) -> bool:
        """Every sink and the upkeep thread run (False after close() or if one died)."""
        return not self._closed and self._upkeep.is_alive() and all(s.alive for s in self.sinks)

    def failed_sinks(self) -> list[str]:
        """``name: error`` of each sink whose thread died (could not be restarted)."""
        return [f"{s.name}: {s.error}" for s in self.sinks if s.error]

    def counters(self) -> dict[str, Any]:
        """Snapshot of the dispatcher's and sinks' counters (also sent in every heartbeat).

        The ZeroMQ sinks' counters sit at the top level (``published``, ``dropped_in_memory``,
        ``catchup_requests``, as before sinks existed); every other sink's under its name.
        """
        out: dict[str, Any] = {"journal_seq": self.journal.last_seq}
        for sink in self.sinks:
            if sink.name.startswith("zmq-"):
                out.update(sink.counters())
            else:
                out[sink.name] = sink.counters()
        return out

    # ------------------------------------------------------------------ upkeep thread
    def _heartbeat(self) -> None:
        merged: dict[str, Any] = {}
        if self._user_counters is not None:
            try:
                merged.update(self._user_counters())
            except Exception as err:  # a broken counter callback must not stop heartbeats
                merged["counters_error"] = f"{type(err).__name__}: {err}"
        merged.update(self.counters())
        uptime = time.monotonic() - self._started_mono
        try:
            self._emit("heartbeat", lambda: heartbeat_event(uptime, merged))
        except (UserError, RuntimeError) as err:
            if not getattr(err, "quiet", False):  # a full journal is reported once, by the service
                log.error("heartbeat not published: %s", err)

    def _run_upkeep(self) -> None:
        """Heartbeats and pruning; a failure restarts them after a backoff (counted)."""
        run_supervised("event-upkeep", self._upkeep_loop, restart=True, stop=self._halt, health=self.health)

    def _upkeep_loop(self) -> None:
        hb_on = self._heartbeat_s > 0
        next_hb = time.monotonic() + (self._heartbeat_s if hb_on else 3600.0)
        next_prune = time.monotonic() + PRUNE_INTERVAL_S
        while not self._halt.wait(max(0.0, min(next_hb, next_prune) - time.monotonic())):
            now = time.monotonic()
            if hb_on and now >= next_hb:
                next_hb = now + self._heartbeat_s
                self._heartbeat()
            if now >= next_prune:
                next_prune = now + PRUNE_INTERVAL_S
                self.journal.prune(max_batches=1)  # one batch: a producer waits at most ~10 ms

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float = 3.0) -> None:
        """Stop heartbeats, let every sink flush what it holds, then release its resources.

        Never hangs: each wait is bounded by what is left of ``timeout_s``; a sink still busy at
        the deadline is logged and left to the process exit (durable sinks resend after restart).
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        self._halt.set()
        self._upkeep.join(max(0.0, deadline - time.monotonic()))
        with self._order_lock:
            self._stopping = True
        for sink in self.sinks:
            sink.stop()
        stuck = [s.name for s in self.sinks if not s.join(deadline - time.monotonic())]
        if stuck:
            log.warning("event sinks %s did not stop within %.1f s; leaving them to exit",
                        ", ".join(stuck), timeout_s)
            return
        self._release(deadline)

    def _release(self, deadline: float) -> None:
        """Free shared resources once every sink has stopped (the ZeroMQ context)."""

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
