"""``edge-inspector tail``: a subscriber for people (and scripts, with ``--json``).

It is also the reference for writing a loss-free subscriber: keep the last ``seq`` seen; when a
newer event skips numbers, ask the catch-up ROUTER for the missing range and handle those
first.  ``fetch_since`` is the client side of the catch-up protocol (see ``events.bus``).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import zmq
from rich.console import Console
from rich.text import Text

from edge_inspector.errors import UserError
from edge_inspector.events.bus import CATCHUP_MAX_LIMIT
from edge_inspector.events.schema import decode

#: A seq this far below the last one seen means the daemon started with a fresh journal.
RESET_THRESHOLD = 1000


def _connect(sock: zmq.Socket, endpoint: str, what: str) -> None:
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as err:
        raise UserError(f"{what} endpoint {endpoint!r}: cannot connect ({err.strerror})") from None


def _curve_client(sock: zmq.Socket, server_public: str | None) -> None:
    if server_public:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = server_public.encode("ascii")
        sock.curve_publickey, sock.curve_secretkey = public, secret


def fetch_since(
    ctx: zmq.Context,
    catchup_endpoint: str,
    since: int,
    until: int | None = None,
    topics: list[str] | None = None,
    timeout_s: float = 3.0,
    curve_server_public: str | None = None,
) -> list[tuple[str, bytes]]:
    """Journalled ``(topic, payload)`` pairs with ``since < seq <= until``, in seq order.

    Pages through the server's per-request limit.  Raises ``TimeoutError`` when the server does
    not answer within ``timeout_s`` and ``RuntimeError`` on an error reply.
    """
    out: list[tuple[str, bytes]] = []
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    _curve_client(sock, curve_server_public)
    try:
        _connect(sock, catchup_endpoint, "catch-up")
        cursor = since
        while True:
            req = [b"", b"since", str(cursor).encode(), f"limit={CATCHUP_MAX_LIMIT}".encode()]
            if until is not None:
                req.append(f"until={until}".encode())
            req += [f"topic={t}".encode() for t in (topics or []) if t]
            sock.send_multipart(req)
            sent = 0
            while True:
                if not sock.poll(int(timeout_s * 1000)):
                    raise TimeoutError(f"catch-up endpoint {catchup_endpoint} did not answer")
                frames = sock.recv_multipart()[1:]  # drop the empty delimiter
                if frames[0] == b"events":
                    pairs = frames[1:]
                    out += [(pairs[i].decode(), pairs[i + 1]) for i in range(0, len(pairs), 2)]
                elif frames[0] == b"end":
                    sent = int(frames[1])
                    break
                else:
                    raise RuntimeError(f"catch-up error: {b' '.join(frames[1:]).decode()}")
            if sent < CATCHUP_MAX_LIMIT or not out:
                return out
            cursor = int(decode(out[-1][1])["seq"])
    finally:
        sock.close(0)


def _style(topic: str, ev: dict[str, Any]) -> str:
    kind = ev.get("kind")
    if kind == "heartbeat":
        return "dim"
    if kind == "status":
        return "yellow" if ev.get("state") != "online" else "cyan"
    if topic.startswith("defect.") or ev.get("defect"):
        return "bold red"
    return "green"


def format_event(topic: str, ev: dict[str, Any]) -> Text:
    """One human-readable line: time, seq, topic, label, score, position, bbox, latency."""
    ts = str(ev.get("ts", ""))
    parts = [ts[11:23] if len(ts) >= 23 else ts, f"#{ev.get('seq')}", topic]
    kind = ev.get("kind")
    if kind == "heartbeat":
        c = ev.get("counters", {})
        parts.append(f"up {ev.get('uptime_s', 0):.0f}s  published {c.get('published', '?')}"
                     f"  dropped {c.get('dropped_in_memory', '?')}")
    elif kind == "status":
        parts.append(str(ev.get("state", "")))
        if ev.get("detail"):
            parts.append(str(ev["detail"]))
    else:
        parts.append(str(ev.get("label", "")))
        score = ev.get("score")
        parts.append(f"{score:.3f}" if isinstance(score, (int, float)) else "-")
        if ev.get("frame") is not None:
            parts.append(f"frame {ev['frame']}")
        if ev.get("offset_s") is not None:
            parts.append(f"t={ev['offset_s']:.2f}s+{ev.get('duration_s') or 0:.2f}s")
        if ev.get("bbox"):
            parts.append("bbox " + ",".join(str(x) for x in ev["bbox"]))
        if ev.get("latency_ms") is not None:
            parts.append(f"{ev['latency_ms']:.1f} ms")
    return Text("  ".join(parts), style=_style(topic, ev))


def run_tail(
    endpoint: str,
    topics: list[str],
    as_json: bool,
    catchup_endpoint: str | None,
    count: int | None = None,
    out: TextIO = sys.stdout,
    since: int | None = None,
    curve_server_public: str | None = None,
) -> int:
    """Print events until Ctrl-C (exit 0) or until ``count`` events were printed.

    ``since`` first replays everything journalled after that seq (needs ``catchup_endpoint``),
    then continues live without duplicates: the SUB socket is connected first so nothing
    published meanwhile is missed.
    """
    topics = topics or [""]
    if since is not None and not catchup_endpoint:
        raise UserError("tail: --since needs a catch-up endpoint (--catchup)")
    console = Console(file=out, highlight=False, soft_wrap=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    _curve_client(sub, curve_server_public)
    printed = 0
    last: int | None = since

    def emit(topic: str, ev: dict[str, Any]) -> bool:
        nonlocal printed
        if as_json:
            out.write(json.dumps({"topic": topic, **ev}, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
            out.flush()
        else:
            console.print(format_event(topic, ev))
        printed += 1
        return count is not None and printed >= count

    def note(msg: str) -> None:
        print(f"tail: {msg}", file=sys.stderr, flush=True)

    catchup_on = catchup_endpoint is not None

    def fill(after: int, until: int | None) -> bool:
        """Print journalled events after ``after``; True when ``count`` is reached."""
        assert catchup_endpoint is not None
        try:
            missed = fetch_since(ctx, catchup_endpoint, after, until, topics,
                                 curve_server_public=curve_server_public)
        except (TimeoutError, RuntimeError) as err:
            # once is enough: waiting out the timeout again on every later gap would stall tail
            note(f"catch-up failed: {err}; gaps will no longer be filled")
            nonlocal catchup_on
            catchup_on = False
            return False
        nonlocal last
        for topic, payload in missed:
            ev = decode(payload)
            last = int(ev["seq"])
            if emit(topic, ev):
                return True
        if until is not None and topics == [""] and len(missed) < until - after:
            note(f"{until - after - len(missed)} events before seq {until + 1} are no longer journalled")
        return False

    try:
        _connect(sub, endpoint, "publisher")
        for t in topics:
            sub.setsockopt(zmq.SUBSCRIBE, t.encode("utf-8"))
        if since is not None and fill(since, None):
            return 0
        while True:
            if not sub.poll(200):
                continue
            topic_b, payload = sub.recv_multipart()[:2]
            try:
                ev = decode(payload)
                seq = int(ev["seq"])
            except (ValueError, KeyError, TypeError) as err:
                note(f"skipping a message that is not an event ({err})")
                continue
            topic = topic_b.decode("utf-8", "replace")
            if last is not None and seq <= last:
                if last - seq < RESET_THRESHOLD:
                    continue  # already printed (from catch-up)
                note(f"seq went back from {last} to {seq}: the daemon started a new journal")
                last = None
            if last is not None and seq > last + 1:
                if catchup_on:
                    if fill(last, seq - 1):
                        return 0
                elif topics == [""]:
                    note(f"missed {seq - last - 1} events (seq {last + 1}..{seq - 1}); "
                         "pass a catch-up endpoint to fetch them")
            last = seq
            if emit(topic, ev):
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        sub.close(0)
        ctx.term()
