"""Durable sinks: at-least-once, in ``seq`` order, across outages and restarts.

A durable sink (MQTT today) keeps a *cursor* in the journal database: the last ``seq`` whose
delivery its consumer confirmed (a broker's PUBACK).  Events normally come from a small
in-memory queue filled by the dispatcher; whatever that queue shed, and everything journalled
while the consumer was away, is read back from the journal starting at ``cursor + 1``.  So a
broker outage of an hour, or a daemon killed and restarted while the broker is down, loses
nothing the journal still retains, and the backlog goes out in ``seq`` order when the consumer
returns.  Events that were in flight when a connection broke are sent again (at-least-once).

A new sink on an existing journal starts at the journal's newest event: it does not flood its
consumer with history it was never asked to deliver.  Events the journal pruned (its
``retention_events``) while the consumer was away are counted and logged as lost to that sink.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from edge_inspector.events.journal import Journal
from edge_inspector.events.sink import Record, Sink, topic_matches

log = logging.getLogger(__name__)

CURSOR_FLUSH_S = 0.25  # the cursor is written at most this often (and on close)
STOP_FLUSH_S = 2.0  # on a clean stop a connected sink goes on delivering its backlog this long


class Disconnected(Exception):
    """The consumer went away; the sink rewinds to its cursor and reconnects."""


class DurableSink(Sink):
    """Delivers journalled events in order from its cursor; subclasses speak the protocol.

    Subclasses implement :meth:`_connect` (return True when connected, False to retry later),
    :meth:`_send` (hand records to the consumer; raise :class:`Disconnected` when it is gone),
    :meth:`_pump` (process acknowledgements for up to ``timeout_s``, calling :meth:`_acked`) and
    :meth:`_disconnect`.  All of them run on the sink's own thread.
    """

    durable = True

    def __init__(
        self,
        name: str,
        journal: Journal,
        topics: tuple[str, ...] = (),
        batch: int = 500,
        max_inflight: int = 1000,
        max_queued: int = 10000,
        reconnect_max_s: float = 2.0,
    ) -> None:
        super().__init__(name)
        self.journal = journal
        self.topics = topics
        self._batch = max(1, batch)
        self._max_inflight = max(1, max_inflight)
        self._max_queued = max(1, max_queued)
        self._reconnect_max_s = reconnect_max_s
        self._queue: collections.deque[Record] = collections.deque()
        cursor = journal.cursor(self.cursor_name)
        if cursor is None:  # first run on this journal: start with what comes next
            cursor = journal.last_seq
            journal.set_cursor(self.cursor_name, cursor)
        self.cursor = cursor
        self._saved_cursor = cursor
        self._next = cursor + 1  # next seq to send
        self._inflight: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._connected = False
        self.delivered = 0
        self.resent = 0
        self.spilled = 0  # shed by the in-memory queue, read back from the journal later
        self.lost_to_retention = 0

    @property
    def cursor_name(self) -> str:
        return self.name

    # -- dispatcher side -------------------------------------------------------------------
    def offer(self, record: Record) -> None:
        with self._cond:
            if len(self._queue) >= self._max_queued:
                self._queue.popleft()
                self.spilled += 1
            self._queue.append(record)
            self._cond.notify()

    def counters(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "cursor": self.cursor,
            "backlog": max(0, self.journal.last_seq - self.cursor),
            "delivered": self.delivered,
            "resent": self.resent,
            "lost_to_retention": self.lost_to_retention,
        }

    # -- the sink's thread -----------------------------------------------------------------
    def _run(self) -> None:
        if self._inflight:  # restarted after a failure: what was unacknowledged goes out again
            self.resent += len(self._inflight)
            self._inflight.clear()
            self._next = self.cursor + 1
        backoff = 0.2
        last_flush = time.monotonic()
        stop_by: float | None = None
        try:
            while True:
                if self._stopping:
                    # a clean stop delivers what is left while the consumer is there, briefly
                    stop_by = stop_by or time.monotonic() + STOP_FLUSH_S
                    caught_up = self._next > self.journal.last_seq and not self._inflight
                    if not self._connected or caught_up or time.monotonic() >= stop_by:
                        break
                if not self._connected:
                    if self._connect():
                        self._connected = True
                        backoff = 0.2
                    else:
                        self._sleep(backoff)
                        backoff = min(self._reconnect_max_s, backoff * 2)
                        continue
                try:
                    sent = self._send_some()
                    self._pump(0.0 if sent else 0.05)
                except Disconnected as why:
                    self._lost(str(why))
                now = time.monotonic()
                if now - last_flush >= CURSOR_FLUSH_S:
                    self._flush_cursor()
                    last_flush = now
        finally:
            self._flush_cursor()
            self._disconnect()
            self._connected = False

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait(seconds)

    def _send_some(self) -> int:
        room = self._max_inflight - len(self._inflight)
        if room <= 0:
            return 0
        batch = self._take(min(self._batch, room))
        if not batch:
            return 0
        self._next = batch[-1].seq + 1
        wanted = []
        for rec in batch:
            if topic_matches(rec.topic, self.topics):
                self._inflight[rec.seq] = None
                wanted.append(rec)
        if wanted:
            self._send(wanted)
        self._advance()  # records this sink does not forward count as delivered at once
        return len(batch)

    def _take(self, limit: int) -> list[Record]:
        """Up to ``limit`` records from ``self._next`` on: from memory, else from the journal."""
        with self._cond:
            while self._queue and self._queue[0].seq < self._next:
                self._queue.popleft()
            if self._queue and self._queue[0].seq == self._next:
                out = []
                while self._queue and len(out) < limit and self._queue[0].seq == self._next + len(out):
                    out.append(self._queue.popleft())
                return out
        if self.journal.last_seq < self._next:
            return []
        rows = self.journal.rows_since(self._next - 1, limit)
        if rows and rows[0][0] > self._next:
            missing = rows[0][0] - self._next
            self.lost_to_retention += missing
            log.warning("%s: %d events (seq %d..%d) were pruned from the journal before they could "
                        "be delivered (publisher.retention_events)", self.name, missing, self._next,
                        rows[0][0] - 1)
        return [Record(seq, topic, payload) for seq, topic, payload in rows]

    def _acked(self, seq: int) -> None:
        """The consumer confirmed ``seq``; called from :meth:`_pump`."""
        if seq in self._inflight:
            del self._inflight[seq]
            self.delivered += 1
            self._advance()

    def _advance(self) -> None:
        """The cursor is the highest seq below which nothing is still in flight."""
        self.cursor = (next(iter(self._inflight)) - 1) if self._inflight else self._next - 1

    def _lost(self, why: str) -> None:
        """Connection broken: everything after the cursor goes out again after reconnecting."""
        if self._inflight:
            self.resent += len(self._inflight)
        self._inflight.clear()
        self._next = self.cursor + 1
        self._connected = False
        log.warning("%s: connection lost (%s); %d events waiting, resuming from seq %d",
                    self.name, why, max(0, self.journal.last_seq - self.cursor), self._next)
        self._disconnect()

    def _flush_cursor(self) -> None:
        if self.cursor != self._saved_cursor:
            try:
                self.journal.set_cursor(self.cursor_name, self.cursor)
                self._saved_cursor = self.cursor
            except RuntimeError:  # journal closed under us at shutdown: resent next time
                pass

    # -- to implement ------------------------------------------------------------------------
    def _connect(self) -> bool:
        raise NotImplementedError

    def _send(self, records: list[Record]) -> None:
        raise NotImplementedError

    def _pump(self, timeout_s: float) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError
