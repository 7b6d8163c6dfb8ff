"""``[snapshots]``: where defect pictures go and how much room they may take."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SnapshotConfig(BaseModel):
    """A bounded store of defect pictures next to the journal (see ``snapshots/store.py``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    dir: Path | None = None  # default: "snapshots" beside publisher.journal
    max_mb: float = Field(2048.0, gt=0.0)  # the store's total size; the oldest are deleted first
    max_age_days: float = Field(30.0, gt=0.0)  # older pictures are deleted
    min_free_mb: float = Field(1024.0, ge=0.0)  # never leave less free space on the file system
    queue_size: int = Field(16, ge=1, le=1024)  # defects waiting to be drawn; beyond that, dropped
    # pictures per second per source (bursts of twice that pass); 0: no limit.  A camera that
    # rejects every frame (misaligned, a lens cap) would otherwise churn the store and push out
    # the pictures of every earlier defect within minutes
    max_per_s: float = Field(4.0, ge=0.0, le=1000.0)
    jpeg_quality: int = Field(90, ge=10, le=100)
    overlay_width: int = Field(960, ge=160, le=8192)  # the heatmap picture is shrunk to this width

    def directory(self, journal: Path) -> Path:
        return self.dir if self.dir is not None else Path(journal).parent / "snapshots"
