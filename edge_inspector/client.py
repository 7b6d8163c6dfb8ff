"""Client library: every event of a daemon exactly once, in ``seq`` order, across gaps and resets.

ZeroMQ PUB/SUB drops messages for slow joiners and full queues; the daemon's journal and its
catch-up server make that recoverable, and this module does the client's part of the bargain so
that ``tail``, ``log`` and integrators' own programs need not:

- subscribe (the SUB socket is connected before anything is fetched, so nothing published in
  between is missed);
- notice a gap (a ``seq`` that skips numbers, or a heartbeat whose ``seq`` is ahead of the last
  event seen) and fetch the missing events from the catch-up server first;
- drop duplicates (an event already handed over from catch-up arriving live);
- notice a journal reset (the daemon started with a new journal): a different ``journal_id``
  when events carry one, an event whose ``seq`` was already seen with another ``id``, or a
  catch-up server whose newest ``seq`` is behind the client's.  The client says so
  (``on_reset``) and hands over the new journal's events from its first one.

    from edge_inspector.client import EventStream

    with EventStream("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557", topics=["defect."]) as events:
        for ev in events:
            print(ev.seq, ev.topic, ev.event["label"])

Resuming after a restart of the client: pass the last ``seq`` handed over (and its ``id``, so a
journal replaced meanwhile is recognised) as ``since``/``since_id``.
"""

from __future__ import annotations

import collections
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import zmq

from edge_inspector.errors import UserError
from edge_inspector.events.catchup import CATCHUP_MAX_LIMIT
from edge_inspector.events.schema import HEARTBEAT_TOPIC, decode

RECENT_IDS = 20_000  # how many handed-over (seq, id) pairs are kept to tell duplicates from resets


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as handed over: topic, seq, the decoded object and the exact payload bytes."""

    topic: str
    seq: int
    event: dict[str, Any]
    payload: bytes


def connect(sock: zmq.Socket, endpoint: str, what: str) -> None:
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as err:
        raise UserError(f"{what} endpoint {endpoint!r}: cannot connect ({err.strerror})") from None


@dataclass(frozen=True)
class CurveKeys:
    """What a CURVE client needs: the daemon's public key and its own key pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    def __repr__(self) -> str:  # never print a secret key, not even in a traceback
        return f"CurveKeys(server_public={self.server_public.decode()!r}, public={self.public.decode()!r})"


def curve_keys(server_key: str | None, client_key: str | None = None) -> CurveKeys | None:
    """Keys from ``--curve-server-key`` (Z85, or the daemon's NAME.key file) and ``--curve-client-key``
    (this client's NAME.key_secret file, 0600).  Without a client key a throw-away pair is made:
    a daemon with an allow-list will not let it in.
    """
    from edge_inspector.events.curve import load_public_key, load_secret_key

    if not server_key:
        if client_key:
            raise UserError("--curve-client-key needs --curve-server-key (the daemon's public key)")
        return None
    server_public = load_public_key(server_key, "--curve-server-key")
    public, secret = load_secret_key(client_key, "--curve-client-key") if client_key else zmq.curve_keypair()
    return CurveKeys(server_public, public, secret)


def curve_client(sock: zmq.Socket, keys: CurveKeys | str | None) -> None:
    """Make ``sock`` a CURVE client (``keys`` None: plain; a str: the server's key, throw-away pair)."""
    if isinstance(keys, str):
        keys = curve_keys(keys)
    if keys is not None:
        sock.curve_serverkey = keys.server_public
        sock.curve_publickey, sock.curve_secretkey = keys.public, keys.secret


def fetch_page(
    ctx: zmq.Context,
    catchup_endpoint: str,
    since: int,
    until: int | None = None,
    topics: list[str] | None = None,
    timeout_s: float = 3.0,
    curve_server_public: CurveKeys | str | None = None,
) -> tuple[list[tuple[str, bytes]], int]:
    """Journalled ``(topic, payload)`` pairs with ``since < seq <= until`` in seq order, and the
    newest seq of the daemon's journal (from the server's ``end`` reply).

    Pages through the server's per-request limit.  Raises ``TimeoutError`` when the server does
    not answer within ``timeout_s`` and ``RuntimeError`` on an error reply.
    """
    out: list[tuple[str, bytes]] = []
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    curve_client(sock, curve_server_public)
    try:
        connect(sock, catchup_endpoint, "catch-up")
        cursor = since
        while True:
            req = [b"", b"since", str(cursor).encode(), f"limit={CATCHUP_MAX_LIMIT}".encode()]
            if until is not None:
                req.append(f"until={until}".encode())
            req += [f"topic={t}".encode() for t in (topics or []) if t]
            sock.send_multipart(req)
            while True:
                if not sock.poll(int(timeout_s * 1000)):
                    raise TimeoutError(f"catch-up endpoint {catchup_endpoint} did not answer")
                frames = sock.recv_multipart()[1:]  # drop the empty delimiter
                if frames[0] == b"events":
                    pairs = frames[1:]
                    out += [(pairs[i].decode(), pairs[i + 1]) for i in range(0, len(pairs), 2)]
                elif frames[0] == b"end":
                    sent, newest = int(frames[1]), int(frames[2])
                    break
                else:
                    raise RuntimeError(f"catch-up error: {b' '.join(frames[1:]).decode()}")
            if sent < CATCHUP_MAX_LIMIT or not out:
                return out, newest
            cursor = int(decode(out[-1][1])["seq"])
    finally:
        sock.close(0)


def fetch_since(ctx: zmq.Context, catchup_endpoint: str, since: int, until: int | None = None,
                topics: list[str] | None = None, timeout_s: float = 3.0,
                curve_server_public: CurveKeys | str | None = None) -> list[tuple[str, bytes]]:
    """:func:`fetch_page` without the journal's newest seq."""
    return fetch_page(ctx, catchup_endpoint, since, until, topics, timeout_s, curve_server_public)[0]


def _stderr_note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class EventStream:
    """A subscriber that hands over each event once, in seq order, filling gaps from catch-up.

    ``topics`` are ZeroMQ prefixes (empty: everything).  ``since`` first hands over everything
    journalled after that seq (needs ``catchup_endpoint``).  ``on_note(text)`` hears what a person
    should know (gaps that could not be filled, resets); ``on_reset(old_seq, reason)`` is called
    before the first event of a new journal is handed over.
    """

    def __init__(
        self,
        endpoint: str,
        catchup_endpoint: str | None = None,
        topics: list[str] | tuple[str, ...] = (),
        since: int | None = None,
        since_id: str | None = None,
        journal_id: str | None = None,
        curve_server_public: CurveKeys | str | None = None,
        timeout_s: float = 3.0,
        on_note: Callable[[str], None] = _stderr_note,
        on_reset: Callable[[int | None, str], None] | None = None,
    ) -> None:
        self.topics = [t for t in topics if t] or [""]
        self._everything = self.topics == [""]
        if since is not None and not catchup_endpoint:
            raise UserError("--since needs a catch-up endpoint")
        self.catchup_endpoint = catchup_endpoint
        self._curve = curve_keys(curve_server_public) if isinstance(curve_server_public, str) else curve_server_public
        self._timeout_s = timeout_s
        self._note = on_note
        self._on_reset = on_reset
        self.last_seq: int | None = since
        self.journal_id = journal_id
        self._since_id = since_id
        self._recent: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._ready: collections.deque[ReceivedEvent] = collections.deque()
        self.resets = 0
        self.filled = 0
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 100_000)
        curve_client(self._sub, self._curve)
        try:
            connect(self._sub, endpoint, "publisher")
        except UserError:
            self.close()
            raise
        for t in self.topics:
            self._sub.setsockopt(zmq.SUBSCRIBE, t.encode("utf-8"))
        if not any(HEARTBEAT_TOPIC.startswith(t) for t in self.topics):
            # heartbeats carry the newest seq: they reveal a lost tail; not handed over
            self._sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
        self._started = False

    # -- public --------------------------------------------------------------------------
    def recv(self, timeout_s: float | None = None) -> ReceivedEvent | None:
        """The next event, or None if none arrived within ``timeout_s`` (None: wait forever)."""
        if not self._started:
            self._started = True
            if self.last_seq is not None:
                self._resume()
        while not self._ready:
            if not self._sub.poll(None if timeout_s is None else int(timeout_s * 1000)):
                return None
            topic_b, payload = self._sub.recv_multipart()[:2]
            self._on_live(topic_b.decode("utf-8", "replace"), payload)
        return self._ready.popleft()

    def __iter__(self) -> Iterator[ReceivedEvent]:
        while True:
            ev = self.recv(0.2)
            if ev is not None:
                yield ev

    def close(self) -> None:
        self._sub.close(0)
        self._ctx.term()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _resume(self) -> None:
        """Start after ``since``: first check it is still the same journal, then fetch."""
        since = self.last_seq or 0
        if since > 0:
            try:
                pairs, newest = fetch_page(self._ctx, self.catchup_endpoint or "", since - 1, since,
                                           None, self._timeout_s, self._curve)
            except (TimeoutError, RuntimeError) as err:
                self._catchup_failed(err)
                return
            same = [decode(p) for _, p in pairs]
            if newest < since:
                self._reset(f"the daemon's journal ends at seq {newest}, before seq {since}")
            elif same and self._since_id and same[0].get("id") != self._since_id:
                self._reset(f"seq {since} is another event than the one handed over before")
            elif same and self.journal_id and same[0].get("journal_id") not in (None, self.journal_id):
                self._reset("the daemon's journal_id changed")
        self._fill(self.last_seq or 0, None)

    def _on_live(self, topic: str, payload: bytes) -> None:
        try:
            ev = decode(payload)
            seq = int(ev["seq"])
        except (ValueError, KeyError, TypeError) as err:
            self._note(f"skipping a message that is not an event ({err})")
            return
        jid = ev.get("journal_id")
        if self.journal_id and jid and jid != self.journal_id:
            self._reset(f"journal_id changed from {self.journal_id} to {jid}", seq)
        elif self.last_seq is not None and seq <= self.last_seq:
            if self._recent.get(seq) == ev.get("id") or (seq not in self._recent and topic == HEARTBEAT_TOPIC
                                                         and not self._wanted(topic)):
                return  # already handed over (from catch-up), or an old hidden heartbeat
            self._reset(f"seq went back from {self.last_seq} to {seq}", seq)
        if jid:
            self.journal_id = jid
        if self.last_seq is not None and seq > self.last_seq + 1:
            if self.catchup_endpoint:
                self._fill(self.last_seq, seq - 1)
            elif self._everything:
                self._note(f"missed {seq - self.last_seq - 1} events (seq {self.last_seq + 1}..{seq - 1}); "
                           "pass a catch-up endpoint to fetch them")
        if self._wanted(topic):
            self._hand_over(topic, seq, ev, payload)
        elif self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq  # a hidden heartbeat: everything up to it is accounted for

    def _wanted(self, topic: str) -> bool:
        return any(topic.startswith(t) for t in self.topics)

    def _hand_over(self, topic: str, seq: int, ev: dict[str, Any], payload: bytes) -> None:
        self._ready.append(ReceivedEvent(topic, seq, ev, payload))
        self.last_seq = seq
        self._recent[seq] = str(ev.get("id"))
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    def _fill(self, after: int, until: int | None) -> None:
        """Hand over the journalled events after ``after`` (up to ``until``)."""
        if not self.catchup_endpoint:
            return
        try:
            pairs, _ = fetch_page(self._ctx, self.catchup_endpoint, after, until, self.topics,
                                  self._timeout_s, self._curve)
        except (TimeoutError, RuntimeError) as err:
            self._catchup_failed(err)
            return
        for topic, payload in pairs:
            ev = decode(payload)
            seq = int(ev["seq"])
            if self.last_seq is not None and seq <= self.last_seq:
                continue
            self.filled += 1
            self._hand_over(topic, seq, ev, payload)
        if until is not None and self._everything and len(pairs) < until - after:
            self._note(f"{until - after - len(pairs)} events before seq {until + 1} are no longer journalled")
        if until is not None and (self.last_seq is None or self.last_seq < until):
            self.last_seq = until  # with a topic filter the rest of the range is other topics

    def _catchup_failed(self, err: Exception) -> None:
        # once is enough: waiting out the timeout again on every later gap would stall the client
        self._note(f"catch-up failed: {err}; gaps will no longer be filled")
        self.catchup_endpoint = None

    def _reset(self, reason: str, seq: int | None = None) -> None:
        """The daemon's journal was replaced: start over from its first event."""
        old = self.last_seq
        self.resets += 1
        self._note(f"the daemon started a new journal ({reason}); continuing from its first event")
        if self._on_reset is not None:
            self._on_reset(old, reason)
        self.last_seq = None
        self.journal_id = None
        self._recent.clear()
        if seq is not None:
            self._fill(0, seq - 1)
