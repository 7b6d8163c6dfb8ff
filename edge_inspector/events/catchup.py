"""The catch-up server: a ZeroMQ ROUTER serving journalled events to subscribers that missed some.

It is a sink that takes nothing from the dispatcher (every event it serves is read back from
the journal) but shares the dispatcher's lifecycle, its ZeroMQ context and its security policy.
One thread owns the ROUTER socket.  Requests are parsed by :func:`parse_catchup_request`, the
single place that decides what a valid request is.

Catch-up protocol (ROUTER; clients use a DEALER socket, or REQ for replies that fit one
message)::

    request: [b"", b"since", b"<seq>", *options]
             options: b"limit=<n>" (default 10000, max 100000), b"until=<seq>",
                      b"topic=<prefix>" (repeatable; ZeroMQ prefix semantics)
    replies: zero or more [b"", b"events", topic, payload, topic, payload, ...]  (<= 500 pairs)
             then         [b"", b"end", b"<events sent>", b"<newest seq in the journal>"]
    errors:  [b"", b"error", b"<one-line message>"]

:mod:`edge_inspector.client` is the client side.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from edge_inspector.events.journal import Journal
from edge_inspector.events.sink import Record, Sink
from edge_inspector.events.zmq_security import ServerSecurity, bind

log = logging.getLogger(__name__)

CATCHUP_BATCH = 500
CATCHUP_DEFAULT_LIMIT = 10_000
CATCHUP_MAX_LIMIT = 100_000
CATCHUP_SEND_TIMEOUT_MS = 2000  # a catch-up client that stops reading is abandoned after this


class CatchupServer(Sink):
    """Serves ``since`` requests from the journal on a ROUTER socket."""

    def __init__(self, security: ServerSecurity, endpoint: str, journal: Journal) -> None:
        super().__init__("zmq-catchup")
        self.journal = journal
        self._router = security.ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDTIMEO, CATCHUP_SEND_TIMEOUT_MS)
        security.apply(self._router)
        try:
            self.endpoint = bind(self._router, endpoint, "catch-up")
        except BaseException:
            self._router.close(0)
            raise
        self.requests = 0

    def offer(self, record: Record) -> None:
        """Nothing to do: what this sink serves is read from the journal on request."""

    def counters(self) -> dict[str, Any]:
        return {"catchup_requests": self.requests}

    def close_unstarted(self) -> None:
        self._router.close(0)

    def _run(self) -> None:
        """Owns the ROUTER socket; polls so ``stop`` takes effect within 100 ms."""
        router = self._router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        try:
            while not self._stopping:
                if not poller.poll(100):
                    continue
                frames = router.recv_multipart()
                self.requests += 1
                try:
                    self._serve(router, frames)
                except zmq.ZMQError as err:  # client gone or not reading: drop this reply
                    log.warning("catch-up reply abandoned: %s", err.strerror)
        finally:
            router.close(0)

    def _serve(self, router: zmq.Socket, frames: list[bytes]) -> None:
        ident, rest = frames[0], frames[1:]
        envelope = [ident, b""]
        if rest and rest[0] == b"":
            rest = rest[1:]
        try:
            since, limit, until, prefixes = parse_catchup_request(rest)
        except ValueError as err:
            router.send_multipart(envelope + [b"error", str(err).encode()])
            return
        sent, cursor = 0, since
        while sent < limit:
            rows = self.journal.rows_since(cursor, min(CATCHUP_BATCH, limit - sent), prefixes, until)
            if not rows:
                break
            msg = envelope + [b"events"]
            for _seq, topic, payload in rows:
                msg += [topic.encode("utf-8"), payload]
            router.send_multipart(msg)
            sent += len(rows)
            cursor = rows[-1][0]
        router.send_multipart(envelope + [b"end", str(sent).encode(), str(self.journal.last_seq).encode()])


def parse_catchup_request(frames: list[bytes]) -> tuple[int, int, int | None, list[str]]:
    """``[b"since", b"<seq>", *options]`` -> (since, limit, until, topic prefixes)."""
    if len(frames) < 2 or frames[0] != b"since":
        raise ValueError('expected [b"since", b"<seq>", options...]')
    try:
        since = int(frames[1])
    except ValueError:
        raise ValueError(f"since: not an integer: {frames[1][:40]!r}") from None
    limit, until, prefixes = CATCHUP_DEFAULT_LIMIT, None, []
    for opt in frames[2:]:
        key, sep, val = opt.decode("utf-8", "replace").partition("=")
        if not sep:
            raise ValueError(f"option {opt[:40]!r}: expected key=value")
        try:
            if key == "limit":
                limit = max(0, min(CATCHUP_MAX_LIMIT, int(val)))
            elif key == "until":
                until = int(val)
            elif key == "topic":
                prefixes.append(val)
            else:
                raise ValueError(f"unknown option {key!r} (limit, until, topic)")
        except ValueError as err:
            if "unknown option" in str(err):
                raise
            raise ValueError(f"option {key}: not an integer: {val[:40]!r}") from None
    return since, limit, until, prefixes
