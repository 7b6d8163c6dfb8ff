"""The wire format of edge-inspector events: topics and JSON payloads.

Pure functions only (no sockets, no clocks read behind the caller's back except where a
timestamp *is* the content, e.g. status and heartbeat events), so every field integrators rely
on can be tested without ZeroMQ.  The payload of an event is byte-for-byte the same on the PUB
socket and in the journal, which is what makes catch-up replies indistinguishable from live
events.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from edge_inspector.values import Verdict

SCHEMA = "edge-inspector/event/1"
HEARTBEAT_TOPIC = "heartbeat"
#: ``seq`` placeholder used while an event is being built; the journal assigns the real one.
UNASSIGNED_SEQ = 0

TopicKind = Literal["defect", "verdict", "status", "heartbeat"]


def topic_for(topic_kind: TopicKind, source: str = "", kind: str = "") -> str:
    """Topic string for an event.

    ``defect`` topics carry the inspector kind so a subscriber can filter on
    ``defect.visual.`` or ``defect.acoustic.``: ``defect.<kind>.<source>``; ``verdict.<source>``;
    ``status.<source>``; ``heartbeat``.
    """
    if topic_kind == "heartbeat":
        return HEARTBEAT_TOPIC
    if not source:
        raise ValueError(f"topic {topic_kind!r} needs a source name")
    if topic_kind == "defect":
        if kind not in ("visual", "acoustic"):
            raise ValueError(f"defect topic needs kind 'visual' or 'acoustic', got {kind!r}")
        return f"defect.{kind}.{source}"
    if topic_kind in ("verdict", "status"):
        return f"{topic_kind}.{source}"
    raise ValueError(f"unknown topic kind {topic_kind!r} (expected defect, verdict, status, heartbeat)")


def iso_utc(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``.

    Millisecond resolution is what a line needs to correlate with PLC logs; the ``Z`` form is
    what most log tooling parses without a format string.
    """
    dt = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _clean_score(score: float) -> float | None:
    s = float(score)
    return None if math.isnan(s) else round(s, 6)


def _base(seq: int, ts: float, source: str, kind: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "seq": seq,
        "id": event_id or uuid.uuid4().hex,
        "ts": iso_utc(ts),
        "source": source,
        "kind": kind,
    }


def event_from_verdict(v: Verdict, seq: int, now_mono: float, event_id: str | None = None,
                       fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Event dict for one inspector verdict.

    ``latency_ms`` is ``now_mono - v.mono`` on the monotonic clock (wall-clock jumps from NTP
    must not produce negative or huge latencies); the bus calls this right before journalling.
    ``event_id`` is given when something was filed under the id before the event existed (a
    snapshot); ``fields`` are added after ``latency_ms`` (``snapshot``, ``snapshot_overlay``).
    """
    ev = _base(seq, v.ts, v.source, v.kind, event_id)
    ev["label"] = v.label
    ev["score"] = _clean_score(v.score)
    ev["defect"] = bool(v.defect)
    if v.anomaly_score is not None:
        ev["anomaly_score"] = _clean_score(v.anomaly_score)
    if v.kind == "visual":
        ev["frame"] = v.frame
        if v.bbox is not None:
            ev["bbox"] = [int(x) for x in v.bbox]
    else:
        ev["offset_s"] = None if v.offset_s is None else round(float(v.offset_s), 4)
        ev["duration_s"] = None if v.duration_s is None else round(float(v.duration_s), 4)
    ev["model"] = {"name": v.model, "sha256": (v.model_sha256 or "")[:12]}
    ev["latency_ms"] = round(max(0.0, (now_mono - v.mono) * 1000.0), 3)
    if fields:
        ev.update(fields)
    if v.extra:
        ev["extra"] = v.extra
    return ev


def status_event(
    source: str, state: str, detail: str = "", seq: int = UNASSIGNED_SEQ, ts: float | None = None
) -> dict[str, Any]:
    """Source state change (online/offline/reconnecting/ended); ``label`` mirrors ``state``."""
    ev = _base(seq, time.time() if ts is None else ts, source, "status")
    ev["state"] = state
    ev["label"] = state
    ev["detail"] = detail
    return ev


def heartbeat_event(
    uptime_s: float,
    counters: dict[str, Any],
    seq: int = UNASSIGNED_SEQ,
    source: str = "edge-inspector",
    ts: float | None = None,
) -> dict[str, Any]:
    """Liveness beacon; its ``seq`` is also the newest seq, so a subscriber notices a lost tail."""
    ev = _base(seq, time.time() if ts is None else ts, source, "heartbeat")
    ev["uptime_s"] = round(uptime_s, 3)
    ev["counters"] = counters
    return ev


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays in ``Verdict.extra`` are common; turn them into plain JSON."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"event field of type {type(obj).__name__} is not JSON serialisable")


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (no spaces): events are small and many."""
    return json.dumps(
        event, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode("utf-8")


def decode(payload: bytes) -> dict[str, Any]:
    """Parse a payload; raises ``ValueError`` on anything that is not an event object."""
    obj = json.loads(payload.decode("utf-8"))
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise ValueError(f"not an {SCHEMA} payload")
    return obj
