"""What people see of a running service: defect snapshots, the live preview, the recent events.

The service calls four hooks and knows nothing else of pictures: :meth:`Views.reserve` before a
defect is journalled (so the event can name its pictures), :meth:`Views.published` after (the
preview takes the frame, the status page the event, and the image is let go), and
:meth:`start` / :meth:`close` with the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_inspector.snapshots import snapshot_writer
from edge_inspector.web.preview import PreviewHub
from edge_inspector.web.status import RecentEvents

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.events.journal import Journal
    from edge_inspector.values import Verdict
    from edge_inspector.supervision import ThreadHealth


class Views:
    def __init__(self, cfg: Config, health: ThreadHealth) -> None:
        self.snapshots = snapshot_writer(cfg, health)
        self.recent = RecentEvents()  # the status page's last defects and episodes
        self.preview: PreviewHub | None = None
        if cfg.health.listen and cfg.cameras:
            self.preview = PreviewHub([c.name for c in cfg.cameras], cfg.health.preview_fps,
                                      cfg.health.preview_width, health)

    def reserve(self, verdict: Verdict, defect: bool) -> tuple[str | None, dict[str, str] | None]:
        """``(event id, fields)`` for a defect whose pictures are queued, else ``(None, None)``."""
        snap = self.snapshots.reserve(verdict) if defect and self.snapshots is not None else None
        return snap if snap is not None else (None, None)

    def published(self, verdict: Verdict, events: list[tuple[str, dict[str, Any]]]) -> None:
        if self.preview is not None:
            self.preview.offer(verdict)
        verdict.image = verdict.trace = None  # handed on: observers never hold frames
        for topic, event in events:
            self.recent.add(topic, event)

    def start(self, journal: Journal) -> None:
        if self.snapshots is not None:
            self.snapshots.start()
        self.recent.load(journal)
        if self.preview is not None:
            self.preview.start()

    def close(self) -> None:
        """After the inspectors drained: the pictures of what they last found are written first."""
        if self.snapshots is not None:
            self.snapshots.close()
        if self.preview is not None:
            self.preview.close()
