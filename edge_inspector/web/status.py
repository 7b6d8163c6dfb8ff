"""``GET /api/status``: what the status page shows, as JSON (sources, recent defects, episodes).

:class:`RecentEvents` keeps the newest visual defects and acoustic episodes as the service
publishes them (the event dicts are already built there: nothing is decoded again), filled at
start from the journal so a restarted station still shows what it saw before.  An acoustic
episode reported early (``ongoing``) and closed later is one entry, updated in place.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from typing import Any, Callable

from edge_inspector import __version__
from edge_inspector.events.journal import Journal
from edge_inspector.http_server import Handler, Request, Response

DEFECTS = 50  # visual defects on the page
EPISODES = 20  # acoustic episodes on the page


def thumbnail(snapshot: str | None) -> str | None:
    """``/snapshots/<id>.jpg`` -> ``/snapshots/<id>.thumb.jpg`` (``.png`` likewise)."""
    if not snapshot:
        return None
    stem, dot, ext = snapshot.rpartition(".")
    return f"{stem}.thumb.{ext}" if dot else None


def summary(event: dict[str, Any]) -> dict[str, Any]:
    """The fields the page shows of one defect event."""
    extra = event.get("extra") or {}
    out = {k: event.get(k) for k in ("seq", "id", "ts", "source", "kind", "label", "score", "latency_ms",
                                      "snapshot", "snapshot_overlay")}
    out["thumbnail"] = thumbnail(event.get("snapshot"))
    if event.get("kind") == "visual":
        out["frame"], out["bbox"] = event.get("frame"), event.get("bbox")
    else:
        out.update(offset_s=event.get("offset_s"), duration_s=event.get("duration_s"),
                   episode=extra.get("episode"), ongoing=bool(extra.get("ongoing")))
    return out


class RecentEvents:
    """The newest defects and episodes, thread-safe (publishers add, HTTP workers read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.defects: collections.deque[dict[str, Any]] = collections.deque(maxlen=DEFECTS)
        self.episodes: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()

    def add(self, topic: str, event: dict[str, Any]) -> None:
        if not topic.startswith("defect."):
            return
        item = summary(event)
        with self._lock:
            if item["kind"] == "visual":
                self.defects.append(item)
                return
            key = item.get("episode") or item["id"]
            self.episodes.pop(key, None)
            self.episodes[key] = item
            while len(self.episodes) > EPISODES:
                self.episodes.popitem(last=False)

    def load(self, journal: Journal) -> None:
        """What the journal holds from before this start (bounded read)."""
        for prefix, limit in (("defect.visual.", DEFECTS), ("defect.acoustic.", 2 * EPISODES)):
            for topic, payload in journal.newest([prefix], limit):
                try:
                    self.add(topic, json.loads(payload))
                except ValueError:
                    continue

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Newest first."""
        with self._lock:
            return list(reversed(self.defects)), list(reversed(self.episodes.values()))


def status_route(service: Any, recent: RecentEvents, preview_names: Callable[[], list[str]]) -> Handler:
    """The JSON behind the page: one call gives everything it draws."""
    station = socket.gethostname()

    def handle(_request: Request) -> Response:
        defects, episodes = recent.snapshot()
        previews = set(preview_names())
        sources = []
        for row in service.source_rows():
            sources.append({**{k: row.get(k) for k in ("source", "kind", "state", "captured", "inspected", "rate",
                                                        "dropped", "defects", "stale", "p50_ms", "p99_ms", "error",
                                                        "last_label", "last_score")},
                            "preview": f"/cameras/{row['source']}/live.mjpg" if row["source"] in previews else None})
        body = {
            "station": station, "version": __version__, "time": time.time(),
            "uptime_s": round(time.monotonic() - service.started_mono, 1),
            "ready": service.ready(), "failure": service.broken(),
            "models": service.model_info(),
            "sources": sources, "defects": defects, "episodes": episodes,
            "snapshots": service.views.snapshots.counters() if service.views.snapshots is not None else None,
        }
        return Response(200, json.dumps(body, default=str).encode("utf-8"), "application/json",
                        {"Cache-Control": "no-store"})

    return handle
