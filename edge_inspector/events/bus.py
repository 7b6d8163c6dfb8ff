"""The event bus: journal every event, publish it on ZeroMQ PUB, serve catch-up on ROUTER.

ZeroMQ sockets are not thread-safe, so one publisher thread owns the PUB socket and one
catch-up thread owns the ROUTER socket.  Producers (inspector and source threads) call the
thread-safe ``publish_*`` methods, which journal the event (assigning its seq) and hand the
encoded bytes to the publisher thread.  Because the journal already holds every event, the
in-memory hand-off queue is small and may shed its oldest entries under overload without
losing anything for good: a subscriber sees the seq gap and fetches the missing events.

Catch-up protocol (ROUTER; clients use a DEALER socket, or REQ for replies that fit one
message)::

    request: [b"", b"since", b"<seq>", *options]
             options: b"limit=<n>" (default 10000, max 100000), b"until=<seq>",
                      b"topic=<prefix>" (repeatable; ZeroMQ prefix semantics)
    replies: zero or more [b"", b"events", topic, payload, topic, payload, ...]  (<= 500 pairs)
             then         [b"", b"end", b"<events sent>", b"<newest seq in the journal>"]
    errors:  [b"", b"error", b"<one-line message>"]
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal

import zmq

from edge_inspector.errors import UserError
from edge_inspector.events.journal import Journal
from edge_inspector.events.schema import (
    UNASSIGNED_SEQ,
    event_from_verdict,
    heartbeat_event,
    status_event,
    topic_for,
)
from edge_inspector.inspectors.verdict import Verdict

log = logging.getLogger(__name__)

CATCHUP_BATCH = 500
CATCHUP_DEFAULT_LIMIT = 10_000
CATCHUP_MAX_LIMIT = 100_000
PRUNE_INTERVAL_S = 1.0  # journal retention is enforced in one batch per interval, off the hot path
CATCHUP_SEND_TIMEOUT_MS = 2000  # a catch-up client that stops reading is abandoned after this
_ENDPOINT_HINT = "expected tcp://host:port, ipc:///path or inproc://name"


def _bind(sock: zmq.Socket, endpoint: str, what: str) -> str:
    """Bind and return the actual endpoint (``tcp://127.0.0.1:*`` picks a free port)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as err:
        hint = f"; {_ENDPOINT_HINT}" if err.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT) else ""
        raise UserError(f"{what} endpoint {endpoint!r}: cannot bind ({err.strerror}){hint}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def check_endpoint_bindable(endpoint: str) -> str | None:
    """Try binding a PUB socket on ``endpoint``; the error message, or None if it works."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        _bind(sock, endpoint, "publisher")
        return None
    except UserError as err:
        return str(err)
    finally:
        sock.close(0)
        ctx.term()


def load_curve_secret(value: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a 40-character Z85 secret or a ZeroMQ certificate file."""
    if len(value) == 40 and not Path(value).exists():
        secret = value.encode("ascii")
        try:
            return zmq.curve_public(secret), secret
        except (zmq.ZMQError, ValueError) as err:
            raise UserError(f"curve_server_secret: not a valid Z85 secret key ({err})") from None
    from zmq.auth import load_certificate

    try:
        public, secret = load_certificate(value)
    except (OSError, ValueError) as err:
        raise UserError(f"curve_server_secret: cannot read key file {value} ({err})") from None
    if not secret:
        raise UserError(f"curve_server_secret: key file {value} holds no secret key")
    return public, secret


def _apply_curve(sock: zmq.Socket, keys: tuple[bytes, bytes] | None) -> None:
    if keys is not None:
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = keys


class EventBus:
    """Journal-then-publish event bus with heartbeats and a catch-up ROUTER.

    ``endpoint`` / ``catchup_endpoint`` may use ``tcp://127.0.0.1:*`` (free port); the bound
    addresses are in ``self.endpoint`` / ``self.catchup_endpoint``.  ``max_queued`` bounds the
    in-memory hand-off queue (never the journal).
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
        curve_server_secret: str | None = None,
        max_queued: int = 10000,
    ) -> None:
        self.journal = journal
        self._heartbeat_s = heartbeat_s
        self._user_counters = counters
        self._max_queued = max(1, max_queued)
        self._linger_ms = max(0, linger_ms)
        self._started_mono = time.monotonic()
        keys = load_curve_secret(curve_server_secret) if curve_server_secret else None
        #: Z85 public key subscribers pass as ``curve_serverkey`` (None without CURVE).
        self.curve_public_key: str | None = keys[0].decode("ascii") if keys else None

        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, sndhwm)
        self._pub.setsockopt(zmq.LINGER, self._linger_ms)
        self._pub.setsockopt(zmq.IMMEDIATE, 0)
        _apply_curve(self._pub, keys)
        self._router: zmq.Socket | None = None
        try:
            self.endpoint = _bind(self._pub, endpoint, "publisher")
            self.catchup_endpoint: str | None = None
            if catchup_endpoint:
                self._router = self._ctx.socket(zmq.ROUTER)
                self._router.setsockopt(zmq.LINGER, 0)
                self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
                self._router.setsockopt(zmq.SNDTIMEO, CATCHUP_SEND_TIMEOUT_MS)
                _apply_curve(self._router, keys)
                self.catchup_endpoint = _bind(self._router, catchup_endpoint, "catch-up")
        except UserError:
            self._pub.close(0)
            if self._router is not None:
                self._router.close(0)
            self._ctx.term()
            raise

        self._cond = threading.Condition()
        self._order_lock = threading.Lock()  # journal order == queue order == wire order
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._stopping = False
        self._closed = False
        self.published = 0
        self.dropped_in_memory = 0
        self.catchup_requests = 0
        self._pub_thread = threading.Thread(target=self._run_publisher, name="event-pub", daemon=True)
        self._pub_thread.start()
        self._catchup_thread: threading.Thread | None = None
        if self._router is not None:
            self._catchup_thread = threading.Thread(
                target=self._run_catchup, name="event-catchup", daemon=True
            )
            self._catchup_thread.start()

    # ------------------------------------------------------------------ producers
    def publish_verdict(
        self, v: Verdict, topic_kind: Literal["defect", "verdict"] = "defect"
    ) -> dict[str, Any]:
        """Journal and publish one verdict on ``defect.<kind>.<source>`` or ``verdict.<source>``."""
        if topic_kind not in ("defect", "verdict"):
            raise ValueError(f"topic_kind must be 'defect' or 'verdict', got {topic_kind!r}")
        topic = topic_for(topic_kind, v.source, v.kind)
        return self._emit(topic, lambda: event_from_verdict(v, UNASSIGNED_SEQ, time.monotonic()))

    def publish_status(self, source: str, state: str, detail: str = "") -> dict[str, Any]:
        """Journal and publish a source state change on ``status.<source>``."""
        return self._emit(topic_for("status", source), lambda: status_event(source, state, detail))

    def _emit(self, topic: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        topic_b = topic.encode("utf-8")
        with self._order_lock:
            if self._stopping:
                raise RuntimeError("event bus is closed")
            event = build()
            _, payload = self.journal.append_encoded(topic, event)  # assigns event["seq"], commits
            with self._cond:
                if len(self._queue) >= self._max_queued:
                    self._queue.popleft()  # still in the journal: subscribers catch up
                    self.dropped_in_memory += 1
                self._queue.append((topic_b, payload))
                self._cond.notify()
        return event

    @property
    def alive(self) -> bool:
        """The publisher thread is running (False after close() or if it died)."""
        return self._pub_thread.is_alive()

    def counters(self) -> dict[str, int]:
        """Snapshot of the bus counters (also sent in every heartbeat)."""
        return {
            "published": self.published,
            "dropped_in_memory": self.dropped_in_memory,
            "catchup_requests": self.catchup_requests,
            "journal_seq": self.journal.last_seq,
            "queued": len(self._queue),
        }

    # ------------------------------------------------------------------ publisher thread
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
            log.error("heartbeat not published: %s", err)

    def _run_publisher(self) -> None:
        """Owns the PUB socket: sends queued events, heartbeats, prunes the journal when idle."""
        hb_on = self._heartbeat_s > 0
        next_hb = time.monotonic() + (self._heartbeat_s if hb_on else 3600.0)
        next_prune = time.monotonic() + PRUNE_INTERVAL_S
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        wait = min(next_hb, next_prune) - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    batch, self._queue = self._queue, collections.deque()
                    stopping = self._stopping
                for topic, payload in batch:
                    self._pub.send_multipart((topic, payload), flags=zmq.NOBLOCK, copy=False)
                    self.published += 1
                if stopping:
                    with self._cond:
                        if not self._queue:
                            break
                    continue
                now = time.monotonic()
                if hb_on and now >= next_hb:
                    next_hb = now + self._heartbeat_s
                    self._heartbeat()
                if now >= next_prune:
                    next_prune = now + PRUNE_INTERVAL_S
                    self.journal.prune(max_batches=1)  # one batch: sending waits at most ~10 ms
        except Exception:
            log.exception("event publisher thread failed")
        finally:
            self._pub.close(linger=self._linger_ms)

    # ------------------------------------------------------------------ catch-up thread
    def _run_catchup(self) -> None:
        """Owns the ROUTER socket; polls so ``close`` can stop it within 100 ms."""
        router = self._router
        assert router is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        try:
            while not self._stopping:
                if not poller.poll(100):
                    continue
                frames = router.recv_multipart()
                self.catchup_requests += 1
                try:
                    self._serve(router, frames)
                except zmq.ZMQError as err:  # client gone or not reading: drop this reply
                    log.warning("catch-up reply abandoned: %s", err.strerror)
        except Exception:
            log.exception("catch-up thread failed")
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
            for seq, topic, payload in rows:
                msg += [topic.encode("utf-8"), payload]
            router.send_multipart(msg)
            sent += len(rows)
            cursor = rows[-1][0]
        router.send_multipart(envelope + [b"end", str(sent).encode(), str(self.journal.last_seq).encode()])

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float = 3.0) -> None:
        """Publish everything queued, then close sockets (bounded linger) and the context.

        Never hangs: each wait is bounded by what is left of ``timeout_s``; if a thread is
        still busy at the deadline the context is left to the process exit (logged).
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        with self._order_lock, self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._pub_thread.join(max(0.0, deadline - time.monotonic()))
        if self._catchup_thread is not None:
            self._catchup_thread.join(max(0.0, deadline - time.monotonic()))
        if self._pub_thread.is_alive() or (self._catchup_thread and self._catchup_thread.is_alive()):
            log.warning("event bus did not stop within %.1f s; leaving its sockets to exit", timeout_s)
            return
        # term() waits for the PUB linger (bounded by linger_ms); run it aside so close() is bounded.
        terminator = threading.Thread(target=self._ctx.term, name="event-ctx-term", daemon=True)
        terminator.start()
        terminator.join(max(0.1, deadline - time.monotonic()))
        if terminator.is_alive():
            log.warning("event bus: undelivered events dropped after %.1f s linger", timeout_s)

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
