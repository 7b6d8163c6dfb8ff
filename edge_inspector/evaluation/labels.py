"""Ground-truth labels for ``replay --labels FILE``.

CSV with a header row and four columns; ``#`` lines and blank lines are ignored::

    source,frame|start_s,end_s,label
    cam0,12,,scratch          visual: one frame index ...
    cam0,40-45,,spot          ... or an inclusive range a-b; end_s stays empty
    mic0,3.20,4.05,bearing    acoustic: an interval in seconds from stream start

A row's kind follows from its source (a camera or a microphone of the replay).  Every frame
not listed is ``ok``; audio outside the listed intervals is ``normal``.  Mistakes are reported
as ``FILE:LINE: problem``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from edge_inspector.errors import InputError

HEADER = "source,frame|start_s,end_s,label"
MAX_RANGE = 10_000_000


@dataclass(frozen=True)
class Interval:
    start_s: float
    end_s: float
    label: str


@dataclass
class Labels:
    visual: dict[str, dict[int, str]] = field(default_factory=dict)  # source -> frame -> label
    acoustic: dict[str, list[Interval]] = field(default_factory=dict)  # source -> intervals

    def frame_label(self, source: str, frame: int, good: str = "ok") -> str:
        return self.visual.get(source, {}).get(frame, good)


def _frames(text: str) -> range:
    if "-" in text.strip("-"):
        a, b = text.split("-", 1)
        first, last = int(a), int(b)
    else:
        first = last = int(text)
    if first < 0 or last < first or last - first > MAX_RANGE:
        raise ValueError(f"bad frame or range {text!r} (use N or A-B with 0 <= A <= B)")
    return range(first, last + 1)


def load_labels(path: Path, cameras: set[str], microphones: set[str]) -> Labels:
    """Parse and validate the labels CSV against the replayed source names."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"--labels {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--labels {path}: cannot read: {exc}") from None
    labels = Labels()
    header_seen = False
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        where = f"{path}:{lineno}"
        if not header_seen:
            if cells[0].lower() != "source":
                raise InputError(f"{where}: expected the header row {HEADER!r}")
            header_seen = True
            continue
        if len(cells) != 4:
            raise InputError(f"{where}: expected 4 columns ({HEADER}), got {len(cells)}")
        source, first, end, label = cells
        if not label:
            raise InputError(f"{where}: empty label")
        try:
            if source in cameras:
                if end:
                    raise ValueError("visual rows leave end_s empty (source,frame,,label)")
                frames = labels.visual.setdefault(source, {})
                for i in _frames(first):
                    frames[i] = label
            elif source in microphones:
                start_s, end_s = float(first), float(end)
                if not 0.0 <= start_s < end_s:
                    raise ValueError(f"need 0 <= start_s < end_s, got {start_s} and {end_s}")
                labels.acoustic.setdefault(source, []).append(Interval(start_s, end_s, label))
            else:
                known = ", ".join(sorted(cameras | microphones))
                raise ValueError(f"unknown source {source!r} (this replay has: {known})")
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
    if not header_seen:
        raise InputError(f"{path}: no rows; expected the header {HEADER!r} and one row per labelled frame or interval")
    for intervals in labels.acoustic.values():
        intervals.sort(key=lambda iv: iv.start_s)
    return labels
