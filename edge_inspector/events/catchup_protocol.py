"""The catch-up protocol: what a valid request is, decided in one place, and the replies.

Anyone who can reach the catch-up port can send anything, so a request is checked completely
before any of it is used: the number and size of its frames, that numbers are plain decimal
digits within 64 bits, that options are known and not repeated, that topic prefixes are UTF-8 and
few.  Whatever fails is answered ``["", "error", "<reason>"]`` and nothing else happens; a
request that passes can be served without any further check.

    request: [b"", b"since", b"<seq>", *options]
             options: b"limit=<n>"     at most CATCHUP_MAX_LIMIT events (default 10000)
                      b"until=<seq>"   stop after this seq
                      b"topic=<prefix>" repeatable, at most MAX_TOPICS; ZeroMQ prefix semantics
    replies: zero or more [b"", b"events", topic, payload, topic, payload, ...]
             then         [b"", b"end", b"<events sent>", b"<newest seq>", b"<journal_id>"]
    errors:  [b"", b"error", b"<one-line reason>"]

Limits (also in the README): a request has at most ``MAX_FRAMES`` frames of at most
``MAX_FRAME_BYTES`` bytes each; ``since``/``until`` are 0 to 2^63-1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATCHUP_BATCH = 500  # events per reply message (fewer when they exceed CATCHUP_BATCH_BYTES)
CATCHUP_BATCH_BYTES = 256 * 1024
CATCHUP_DEFAULT_LIMIT = 10_000
CATCHUP_MAX_LIMIT = 100_000
MAX_TOPICS = 16
MAX_FRAME_BYTES = 256
MAX_FRAMES = 3 + 2 + MAX_TOPICS  # delimiter, "since", seq, limit, until, topics
MAX_SEQ = 2**63 - 1  # SQLite's INTEGER
_DIGITS = re.compile(rb"[0-9]{1,40}")


class ProtocolError(ValueError):
    """A request the server refuses; ``str()`` is the one-line reason sent back."""


@dataclass(frozen=True)
class CatchupRequest:
    since: int
    limit: int = CATCHUP_DEFAULT_LIMIT
    until: int | None = None
    prefixes: tuple[str, ...] = ()


def _shown(raw: bytes) -> str:
    """A short, printable rendering of client bytes for an error message."""
    text = repr(raw[:32])
    return text + ("…" if len(raw) > 32 else "")


def _number(name: str, raw: bytes) -> int:
    if not _DIGITS.fullmatch(raw):
        raise ProtocolError(f"{name}: expected a decimal number 0..{MAX_SEQ}, got {_shown(raw)}")
    value = int(raw)
    if value > MAX_SEQ:
        raise ProtocolError(f"{name}: {value} is beyond {MAX_SEQ}")
    return value


def parse_request(frames: list[bytes]) -> CatchupRequest:
    """The frames after the client's identity (and the empty delimiter, if sent) -> a request."""
    if frames and frames[0] == b"":
        frames = frames[1:]
    if len(frames) > MAX_FRAMES - 1:
        raise ProtocolError(f"too many frames ({len(frames)}; at most {MAX_FRAMES - 1} after the delimiter)")
    for frame in frames:
        if len(frame) > MAX_FRAME_BYTES:
            raise ProtocolError(f"a frame of {len(frame)} bytes; at most {MAX_FRAME_BYTES}")
    if len(frames) < 2 or frames[0] != b"since":
        raise ProtocolError('expected ["", "since", "<seq>", options...]')
    since = _number("since", frames[1])
    limit: int | None = None
    until: int | None = None
    prefixes: list[str] = []
    for option in frames[2:]:
        key, sep, value = option.partition(b"=")
        if not sep:
            raise ProtocolError(f"option {_shown(option)}: expected key=value")
        if key == b"limit":
            if limit is not None:
                raise ProtocolError("limit given twice")
            limit = min(_number("limit", value), CATCHUP_MAX_LIMIT)
        elif key == b"until":
            if until is not None:
                raise ProtocolError("until given twice")
            until = _number("until", value)
        elif key == b"topic":
            if len(prefixes) >= MAX_TOPICS:
                raise ProtocolError(f"more than {MAX_TOPICS} topic prefixes")
            try:
                prefixes.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise ProtocolError(f"topic {_shown(value)}: not UTF-8") from None
        else:
            raise ProtocolError(f"unknown option {_shown(key)} (limit, until, topic)")
    return CatchupRequest(since, CATCHUP_DEFAULT_LIMIT if limit is None else limit, until, tuple(prefixes))


def error_reply(reason: str) -> list[bytes]:
    """``[b"", b"error", reason]``, the reason kept to one printable line."""
    line = " ".join(reason.split())[:200]
    return [b"", b"error", line.encode("utf-8", "replace")]


def end_reply(sent: int, newest: int, journal_id: str) -> list[bytes]:
    return [b"", b"end", str(sent).encode(), str(newest).encode(), journal_id.encode("ascii")]
