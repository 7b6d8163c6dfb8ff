"""Defect snapshots: a picture of every defect, written beside inspection, never in its way.

``config.py`` holds ``[snapshots]``; ``store.py`` the bounded directory (size, age and
free-space caps, oldest deleted first); ``writer.py`` the thread that draws and writes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.snapshots.writer import SnapshotWriter
    from edge_inspector.supervision import ThreadHealth


def snapshot_writer(cfg: Config, health: ThreadHealth | None = None) -> SnapshotWriter | None:
    """The ``[snapshots]`` writer (its owner starts it), or None when snapshots are off."""
    snap = cfg.snapshots
    if not snap.enabled:
        return None
    from edge_inspector.snapshots.store import SnapshotStore
    from edge_inspector.snapshots.writer import SnapshotWriter

    store = SnapshotStore(snap.directory(cfg.publisher.journal), int(snap.max_mb * 1e6),
                          snap.max_age_days * 86400.0, int(snap.min_free_mb * 1e6))
    return SnapshotWriter(store, snap.queue_size, snap.jpeg_quality, snap.overlay_width, health, snap.max_per_s)


def check_snapshots(cfg: Config) -> list[str]:
    """``check-config``: the snapshot directory exists or can be created, and is writable."""
    if not cfg.snapshots.enabled:
        return []
    directory = cfg.snapshots.directory(cfg.publisher.journal)
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        return [f"snapshots.dir: cannot create {directory} ({existing} is not a directory)"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"snapshots.dir: cannot write to {directory} ({existing} is not writable)"]
    return []
