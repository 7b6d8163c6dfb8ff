"""``edge-inspector tail``: a subscriber for people (and scripts, with ``--json``).

The loss-free part (gaps filled from catch-up, duplicates dropped, journal resets noticed) is the
client library's (:mod:`edge_inspector.client`); this module only formats what it hands over.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from edge_inspector.client import EventStream, fetch_since  # noqa: F401  (fetch_since: re-exported)
from edge_inspector.errors import UserError
from edge_inspector.events.schema import HEARTBEAT_TOPIC
from edge_inspector.stop_signals import interrupt_on_stop_signals


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
        extra = ev.get("extra") or {}
        if kind == "acoustic" and topic.startswith("defect.") and "ongoing" in extra:
            # an episode is announced while it lasts, then closed by a second event with the same id
            state = "ONGOING" if extra["ongoing"] else "closed"
            parts.append(f"{state} episode {extra.get('episode', '?')}")
        if ev.get("offset_s") is not None:
            so_far = " so far" if extra.get("ongoing") else ""
            parts.append(f"t={ev['offset_s']:.2f}s+{ev.get('duration_s') or 0:.2f}s{so_far}")
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
    heartbeats: bool = False,
) -> int:
    """Print events until Ctrl-C or SIGTERM (exit 0, also as a background job) or until
    ``count`` events were printed.

    ``since`` first replays everything journalled after that seq (needs ``catchup_endpoint``),
    then continues live without duplicates.  Heartbeats (one a second, for machines) are left
    out unless ``heartbeats`` or a topic prefix names them (``--topic heartbeat``); they are
    still received, and their ``seq`` still reveals a lost tail.
    """
    show_heartbeats = heartbeats or any(t and HEARTBEAT_TOPIC.startswith(t) for t in topics)
    if since is not None and not catchup_endpoint:
        raise UserError("tail: --since needs a catch-up endpoint (--catchup)")
    console = Console(file=out, highlight=False, soft_wrap=True)

    def note(msg: str) -> None:
        print(f"tail: {msg}", file=sys.stderr, flush=True)

    printed = 0
    try:
        with interrupt_on_stop_signals(), EventStream(
            endpoint, catchup_endpoint, topics, since=since, curve_server_public=curve_server_public, on_note=note,
        ) as stream:
            for item in stream:
                if item.topic == HEARTBEAT_TOPIC and not show_heartbeats:
                    continue
                if as_json:
                    out.write(json.dumps({"topic": item.topic, **item.event}, separators=(",", ":"),
                                         ensure_ascii=False))
                    out.write("\n")
                    out.flush()
                else:
                    console.print(format_event(item.topic, item.event))
                printed += 1
                if count is not None and printed >= count:
                    return 0
    except KeyboardInterrupt:
        return 0
    return 0
