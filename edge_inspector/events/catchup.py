"""The catch-up server: a ZeroMQ ROUTER serving journalled events to subscribers that missed some.

It is a sink that takes nothing from the dispatcher (every event it serves is read back from
the journal) but shares the dispatcher's lifecycle, its ZeroMQ context and its security policy.
The protocol and its limits are in :mod:`edge_inspector.events.catchup_protocol`;
:mod:`edge_inspector.client` is the client side.

One thread owns the ROUTER and serves every client side by side, never blocking on one:

- each accepted request becomes a *session* (a cursor into the journal); at most
  ``MAX_SESSIONS`` run at once, a further request is answered ``busy``;
- sessions take turns, one reply message each per round.  A message goes out only if ZeroMQ
  takes it at once: each client's send queue holds ``SEND_HWM`` messages, and a client that does
  not read keeps its session waiting with one prepared message, never more (that is its credit);
- a client that has taken nothing for ``STALL_DROP_S`` loses its session (counted in
  ``catchup_dropped``); it can ask again.

So memory stays bounded however many clients stall, about ``(SEND_HWM + 1) *
CATCHUP_BATCH_BYTES`` per session, and a stalled client never delays another's answer.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from edge_inspector.events.catchup_protocol import (  # noqa: F401  (re-exported)
    CATCHUP_BATCH,
    CATCHUP_BATCH_BYTES,
    CATCHUP_DEFAULT_LIMIT,
    CATCHUP_MAX_LIMIT,
    MAX_FRAME_BYTES,
    CatchupRequest,
    ProtocolError,
    end_reply,
    error_reply,
    parse_request,
)
from edge_inspector.events.journal import Journal
from edge_inspector.events.sink import Record, Sink, topic_kind
from edge_inspector.events.zmq_security import ServerSecurity, bind
from edge_inspector.supervision import ThreadHealth

log = logging.getLogger(__name__)

MAX_SESSIONS = 64
SEND_HWM = 2  # reply messages ZeroMQ queues per client before the session waits
STALL_DROP_S = 10.0
MAX_REQUEST_BYTES = 8 * 1024  # ZeroMQ drops a client that sends a bigger message


@dataclass
class _Session:
    ident: bytes
    request: CatchupRequest
    cursor: int
    left: int
    sent: int = 0
    pending: list[bytes] | None = None  # the prepared message ZeroMQ has not taken yet
    final: bool = False  # pending is the "end" reply
    progress_mono: float = field(default_factory=time.monotonic)


class CatchupServer(Sink):
    """Serves ``since`` requests from the journal on a ROUTER socket, every client side by side."""

    def __init__(self, security: ServerSecurity, endpoint: str, journal: Journal,
                 health: ThreadHealth | None = None) -> None:
        super().__init__("zmq-catchup", health)
        self.journal = journal
        self._router = security.ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._router.setsockopt(zmq.RCVHWM, 1000)
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        security.apply(self._router)
        try:
            self.endpoint = bind(self._router, endpoint, "catch-up")
        except BaseException:
            self._router.close(0)
            raise
        self._sessions: collections.OrderedDict[bytes, _Session] = collections.OrderedDict()
        self.requests = 0
        self.refused = 0  # malformed requests answered with an error
        self.busy = 0  # requests answered "busy" because MAX_SESSIONS were running
        self.dropped = 0  # sessions of clients that stopped reading
        self.served = 0  # sessions that completed
        self.events_by_kind: collections.Counter[str] = collections.Counter()  # events sent, per topic kind

    def offer(self, record: Record) -> None:
        """Nothing to do: what this sink serves is read from the journal on request."""

    def counters(self) -> dict[str, Any]:
        return {"catchup_requests": self.requests, "catchup_refused": self.refused, "catchup_busy": self.busy,
                "catchup_dropped": self.dropped, "catchup_sessions": len(self._sessions)}

    def close_unstarted(self) -> None:
        self._router.close(0)

    # ------------------------------------------------------------------ the thread
    def _finish(self) -> None:
        self._router.close(0)

    def _run(self) -> None:
        """Receive requests and advance every session; a restart after a failure forgets sessions."""
        self._sessions.clear()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        while not self._stopping:
            busy = self._advance_sessions()
            # a round that sent something goes again at once; waiting clients are retried soon
            timeout = 0 if busy else (20 if self._sessions else 100)
            if poller.poll(timeout):
                for _ in range(100):  # a burst of requests cannot starve the sessions
                    try:
                        frames = self._router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_request(frames)

    def _on_request(self, frames: list[bytes]) -> None:
        self.requests += 1
        ident = frames[0]
        try:
            request = parse_request(frames[1:])
        except ProtocolError as err:
            self.refused += 1
            self._send_now(ident, error_reply(str(err)))
            return
        self._sessions.pop(ident, None)  # a new request from the same client replaces its last
        if len(self._sessions) >= MAX_SESSIONS:
            self.busy += 1
            self._send_now(ident, error_reply(f"busy: {MAX_SESSIONS} catch-up requests in progress; retry"))
            return
        self._sessions[ident] = _Session(ident, request, request.since, request.limit)

    def _send_now(self, ident: bytes, message: list[bytes]) -> bool:
        try:
            self._router.send_multipart([ident, *message], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # gone, or its queue is full: an error reply is not worth waiting for
            return False

    def _advance_sessions(self) -> bool:
        """One message per session; True when any message went out."""
        sent_any = False
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if session.pending is None:
                self._prepare(session)
            try:
                self._router.send_multipart([session.ident, *session.pending], zmq.NOBLOCK)  # type: ignore[misc]
            except zmq.Again:  # this client is not reading: its session waits, holding one message
                if now - session.progress_mono > STALL_DROP_S:
                    self.dropped += 1
                    del self._sessions[session.ident]
                    log.info("catch-up: dropped a client that took nothing for %.0f s", STALL_DROP_S)
                continue
            except zmq.ZMQError as err:  # EHOSTUNREACH: the client went away
                log.debug("catch-up: client gone (%s)", err.strerror)
                del self._sessions[session.ident]
                continue
            sent_any = True
            session.progress_mono = now
            session.pending = None
            if session.final:
                self.served += 1
                del self._sessions[session.ident]
        return sent_any

    def _prepare(self, session: _Session) -> None:
        """The session's next message: a batch of events, or the end reply."""
        req = session.request
        rows = self.journal.rows_since(session.cursor, min(CATCHUP_BATCH, session.left), list(req.prefixes),
                                       req.until) if session.left > 0 else []
        if not rows:
            session.pending = end_reply(session.sent, self.journal.last_seq, self.journal.journal_id)
            session.final = True
            return
        message, size = [b"", b"events"], 0
        for seq, topic, payload in rows:
            if size and size + len(payload) > CATCHUP_BATCH_BYTES:
                break
            message += [topic.encode("utf-8"), payload]
            self.events_by_kind[topic_kind(topic)] += 1
            size += len(payload)
            session.cursor = seq
            session.sent += 1
            session.left -= 1
        session.pending = message
