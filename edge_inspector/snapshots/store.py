"""The snapshot directory: one group of files per defect event, bounded by size, age and free space.

A station runs for months on a small disk that also holds the journal, so the store must never
be what fills it.  Every defect event's pictures (``<event id>.jpg``, ``<event id>.overlay.jpg``,
``<event id>.thumb.jpg``; acoustic: ``<event id>.png``, ``<event id>.thumb.png``) are one group.
Before a group is written, the oldest groups are deleted until the store stays under
``max_bytes`` and the file system keeps ``min_free_bytes`` free after the write; groups older
than ``max_age_s`` go too.  When even an empty store would leave too little free space, the
pictures are not written (counted in ``skipped_disk``) and none are deleted: the journal needs
the room more, and the pictures kept so far are still worth having.

The index lives in memory (id -> time, size and which pictures), rebuilt from the directory at
start, so enforcing the caps never lists the directory.  It grows with the pictures kept until
the caps delete the oldest, so each group costs as little as it can: the id as 16 bytes and the
rest packed in one 13-byte record, about 200 bytes with the dictionary's own (as strings and
tuples a group took 440 to 610 bytes: at the 4 groups/s a busy station may write, 0.1 MB more
every minute until the store is full).  Files are written to a temporary name and
renamed, so the HTTP server never serves half a picture.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import struct
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: ``<32 hex digits>[.overlay|.thumb].jpg|png``: the only names served or deleted
FILE_NAME = re.compile(r"^(?P<id>[0-9a-f]{32})(?P<variant>\.overlay|\.thumb)?\.(?P<ext>jpg|png)$")
#: every file a group can have, one bit each in the index
SUFFIXES = (".jpg", ".overlay.jpg", ".thumb.jpg", ".png", ".overlay.png", ".thumb.png")
_RECORD = struct.Struct("<dIB")  # created (epoch s), size (bytes), which SUFFIXES


def _pack(created: float, size: int, names: tuple[str, ...]) -> bytes:
    mask = 0
    for name in names:
        mask |= 1 << SUFFIXES.index(name[32:])
    return _RECORD.pack(created, size, mask)


def _unpack(gid: bytes, record: bytes) -> tuple[float, int, tuple[str, ...]]:
    created, size, mask = _RECORD.unpack(record)
    hexid = gid.hex()
    return created, size, tuple(hexid + sfx for i, sfx in enumerate(SUFFIXES) if mask >> i & 1)


class SnapshotStore:
    """Thread-safe: the writer thread saves, HTTP workers read, either may prune."""

    def __init__(self, directory: Path, max_bytes: int, max_age_s: float, min_free_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        self.min_free_bytes = int(min_free_bytes)
        self._lock = threading.Lock()
        # oldest first: 16-byte id -> _RECORD (see _pack / _unpack)
        self._groups: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self.total_bytes = 0
        self.deleted = 0  # groups deleted by retention
        self.skipped_disk = 0  # groups not written: too little free space even with the store empty
        self.skipped_size = 0  # groups larger than the whole store

    # ------------------------------------------------------------------ start
    def open(self) -> None:
        """Create the directory and index what an earlier run left in it (oldest first)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found: dict[str, list[tuple[float, int, str]]] = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(".tmp-"):
                    Path(entry.path).unlink(missing_ok=True)  # a write cut short by a crash
                    continue
                match = FILE_NAME.match(entry.name)
                if match and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.setdefault(match["id"], []).append((st.st_mtime, st.st_size, entry.name))
        groups = sorted(((min(f[0] for f in files), gid, files) for gid, files in found.items()))
        with self._lock:
            self._groups.clear()
            self.total_bytes = 0
            for created, gid, files in groups:
                size = sum(f[1] for f in files)
                self._groups[bytes.fromhex(gid)] = _pack(created, size, tuple(f[2] for f in files))
                self.total_bytes += size
        self.prune()

    # ------------------------------------------------------------------ write
    def free_bytes(self) -> int:
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def save(self, event_id: str, files: dict[str, bytes], now: float | None = None) -> bool:
        """Write one event's pictures (``{".jpg": …, ".thumb.jpg": …}``); False if there is no room."""
        size = sum(len(b) for b in files.values())
        names = tuple(event_id + suffix for suffix in files)
        if any(not FILE_NAME.match(n) for n in names):
            raise ValueError(f"not a snapshot file name: {names}")
        if size > self.max_bytes:
            self.skipped_size += 1
            return False
        if not self._make_room(size):
            self.skipped_disk += 1
            return False
        written: list[Path] = []
        try:
            for name, data in zip(names, files.values()):
                tmp = self.directory / f".tmp-{name}"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.directory / name)
                written.append(self.directory / name)
        except OSError:
            for path in written:
                path.unlink(missing_ok=True)
            for name in names:
                (self.directory / f".tmp-{name}").unlink(missing_ok=True)
            raise
        with self._lock:
            self._groups[bytes.fromhex(event_id)] = _pack(time.time() if now is None else now, size, names)
            self.total_bytes += size
        return True

    def _make_room(self, size: int) -> bool:
        """Delete the oldest groups until ``size`` more bytes fit under both caps.

        When even deleting the whole store would not leave ``min_free_bytes`` (another program
        filled the disk), nothing is deleted: the pictures kept so far are worth more than this one.
        """
        with self._lock:
            total = self.total_bytes
        if self.free_bytes() + total - size < self.min_free_bytes:
            return False
        while True:
            with self._lock:
                over = self.total_bytes + size > self.max_bytes
                empty = not self._groups
            short = self.free_bytes() - size < self.min_free_bytes
            if not over and not short:
                return True
            if empty:
                return False
            self._delete_oldest()

    def _delete_oldest(self) -> None:
        with self._lock:
            if not self._groups:
                return
            _created, size, names = _unpack(*self._groups.popitem(last=False))
            self.total_bytes -= size
            self.deleted += 1
        for name in names:
            try:
                (self.directory / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("snapshots: cannot delete %s: %s", self.directory / name, exc.strerror)

    def prune(self, now: float | None = None) -> None:
        """Delete groups older than ``max_age_s`` (and any over the caps)."""
        limit = (time.time() if now is None else now) - self.max_age_s
        while True:
            with self._lock:
                oldest = next(iter(self._groups.values()), None)
                over = self.total_bytes > self.max_bytes
            if oldest is None or (_RECORD.unpack(oldest)[0] >= limit and not over):
                return
            self._delete_oldest()

    # ------------------------------------------------------------------ read
    def path_of(self, name: str) -> Path | None:
        """The file for a served name (``<id>.jpg`` …), or None for any other name."""
        return self.directory / name if FILE_NAME.match(name) else None

    def has(self, event_id: str) -> bool:
        try:
            key = bytes.fromhex(event_id)
        except ValueError:
            return False
        with self._lock:
            return key in self._groups

    @property
    def count(self) -> int:
        return len(self._groups)
