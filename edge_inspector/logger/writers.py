"""The logger's file formats: JSON lines, CSV and SQLite, each resumable and rotated by size.

Each writer can tell the last event it holds (``seq``, ``id``): that, not a separate state file,
is where ``log`` resumes, so the file and the resume point can never disagree.  A line cut short
by a kill in the middle of a write is removed when the file is opened again.  Files are rotated
to ``<stem>.<number>-<UTC time><suffix>`` next to the current one: the number grows by one with
each rotation (a wall clock can step back; the order must not); the newest ``keep`` are kept.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspector.client import ReceivedEvent
from edge_inspector.errors import UserError

CSV_COLUMNS = ("seq", "id", "topic", "ts", "source", "kind", "label", "score", "defect", "frame", "offset_s",
               "duration_s", "bbox", "latency_ms", "state", "detail")


@dataclass(frozen=True)
class Position:
    seq: int
    id: str


class LogWriter:
    """Base: rotation and the rotated files' names; subclasses own the format."""

    suffixes: tuple[str, ...] = ()

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"log: cannot create {path.parent} ({err.strerror})") from None
        self.open()

    # -- resuming ----------------------------------------------------------------------------
    def last(self) -> Position | None:
        """The newest event logged: in the current file, else in the newest rotated one."""
        pos = self._last_in(self.path) if self.path.exists() else None
        if pos is None:
            rotated = self.rotated()
            if rotated:
                pos = self._last_in(rotated[-1])
        return pos

    def rotated(self) -> list[Path]:
        """Rotated files, oldest first (by the number each name starts with)."""
        pattern = re.compile(rf"^{re.escape(self.path.stem)}\.(\d{{6,}})-\d{{8}}T\d{{6}}Z{re.escape(self.path.suffix)}$")
        found = [(int(m.group(1)), p) for p in self.path.parent.iterdir() if (m := pattern.match(p.name))]
        return [p for _, p in sorted(found)]

    # -- writing -----------------------------------------------------------------------------
    def write(self, item: ReceivedEvent) -> None:
        if self.max_bytes and self.size() >= self.max_bytes:
            self.rotate()
        self._append(item)

    def rotate(self) -> Path | None:
        """Close the current file, keep it under a time-stamped name, start a new one."""
        self.close()
        target = None
        if self.path.exists() and self.path.stat().st_size > 0:
            rotated = self.rotated()
            number = int(rotated[-1].name[len(self.path.stem) + 1:].split("-")[0]) + 1 if rotated else 1
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            target = self.path.with_name(f"{self.path.stem}.{number:06d}-{stamp}{self.path.suffix}")
            os.replace(self.path, target)
            for old in self.rotated()[:-self.keep] if self.keep > 0 else []:
                old.unlink(missing_ok=True)
        self.open()
        return target

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    # -- to implement ------------------------------------------------------------------------
    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _append(self, item: ReceivedEvent) -> None:
        raise NotImplementedError

    def _last_in(self, path: Path) -> Position | None:
        raise NotImplementedError


def _cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline (the process died in the middle of writing it)."""
    if not path.exists():
        return
    with path.open("rb+") as fh:
        size = fh.seek(0, io.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(4096, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                fh.truncate(pos - step + nl + 1)
                return
            pos -= step
        fh.truncate(0)


def _last_line(path: Path) -> str | None:
    with path.open("rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        fh.seek(max(0, size - 65536))
        lines = fh.read().splitlines()
    return lines[-1].decode("utf-8") if lines else None


class TextWriter(LogWriter):
    """Line-oriented formats: appended and flushed per event."""

    def open(self) -> None:
        _cut_partial_line(self.path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self._fh = self.path.open("a", encoding="utf-8", newline="")
        except OSError as err:
            raise UserError(f"log: cannot write {self.path} ({err.strerror})") from None
        if fresh:
            self._header()

    def close(self) -> None:
        self._fh.close()

    def _header(self) -> None:
        """Written at the top of a new file."""

    def _append(self, item: ReceivedEvent) -> None:
        self._fh.write(self._line(item))
        self._fh.flush()

    def _line(self, item: ReceivedEvent) -> str:
        raise NotImplementedError


class JsonlWriter(TextWriter):
    """One JSON object per line, as ``tail --json`` prints them (``topic`` first)."""

    suffixes = (".jsonl", ".ndjson")

    def _line(self, item: ReceivedEvent) -> str:
        return json.dumps({"topic": item.topic, **item.event}, separators=(",", ":"), ensure_ascii=False) + "\n"

    def _last_in(self, path: Path) -> Position | None:
        _cut_partial_line(path)
        line = _last_line(path)
        if not line:
            return None
        obj = json.loads(line)
        return Position(int(obj["seq"]), str(obj["id"]))


class CsvWriter(TextWriter):
    """A spreadsheet's view: one row per event, the fields people filter on."""

    suffixes = (".csv",)

    def _header(self) -> None:
        self._fh.write(",".join(CSV_COLUMNS) + "\r\n")
        self._fh.flush()

    def _line(self, item: ReceivedEvent) -> str:
        ev: dict[str, Any] = {"topic": item.topic, **item.event}
        if ev.get("bbox") is not None:
            ev["bbox"] = " ".join(str(x) for x in ev["bbox"])
        out = io.StringIO()
        csv.writer(out).writerow(["" if ev.get(c) is None else ev.get(c) for c in CSV_COLUMNS])
        return out.getvalue()

    def _last_in(self, path: Path) -> Position | None:
        _cut_partial_line(path)
        line = _last_line(path)
        if not line or line.startswith("seq,"):
            return None
        row = next(csv.reader([line]))
        return Position(int(row[0]), row[1])


CHECKPOINT_WAIT_MS = 10_000  # longest a reader's query may hold back closing (or rotating) the file
MODE_SWITCH_WAIT_S = 1.0  # then how long a connected reader may keep the closed file in WAL mode


class SqliteWriter(LogWriter):
    """A table ``events`` keyed by seq (the payload kept whole in ``payload``)."""

    suffixes = (".sqlite", ".sqlite3", ".db")

    def open(self) -> None:
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, topic TEXT NOT NULL,"
                " ts TEXT, source TEXT, kind TEXT, label TEXT, score REAL, defect INTEGER, payload TEXT NOT NULL)")
        except sqlite3.Error as err:
            raise UserError(f"log: {self.path} is not a usable SQLite file ({err})") from None

    def close(self) -> None:
        """Everything into the database file itself before it is closed (and perhaps renamed), and the
        file back in rollback mode: a reader in the middle of a query makes a checkpoint give up, and
        a rotated file whose last events were left in ``-wal`` would lose them (the sidecar keeps the
        old name)."""
        try:
            self._db.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")  # wait for readers to finish
            deadline = time.monotonic() + CHECKPOINT_WAIT_MS / 1000.0
            while self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.02)
            # a closed log is a plain file again: a read-only reader of a WAL-mode file needs its
            # -shm, which it cannot create ("disk I/O error" for a dashboard or the next resume)
            # (only once no other connection is open; a reader that stays connected leaves it in WAL)
            deadline = time.monotonic() + MODE_SWITCH_WAIT_S
            while self._db.execute("PRAGMA journal_mode=DELETE").fetchone()[0] != "delete" \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
        except sqlite3.OperationalError:  # still busy after the wait: it stays in WAL mode, complete
            pass
        finally:
            self._db.close()

    def size(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return super().size() + (wal.stat().st_size if wal.exists() else 0)

    def _append(self, item: ReceivedEvent) -> None:
        ev = item.event
        self._db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (item.seq, str(ev.get("id")), item.topic, ev.get("ts"), ev.get("source"), ev.get("kind"),
                          ev.get("label"), ev.get("score"), None if ev.get("defect") is None else int(ev["defect"]),
                          item.payload.decode("utf-8")))

    def _last_in(self, path: Path) -> Position | None:
        if path == self.path:
            row = self._db.execute("SELECT seq, id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        else:
            # not mode=ro: a file left in WAL mode needs its -shm, which a read-only connection cannot make
            db = sqlite3.connect(path)
            try:
                row = db.execute("SELECT seq, id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            finally:
                db.close()
        return Position(int(row[0]), str(row[1])) if row else None


WRITERS: tuple[type[LogWriter], ...] = (JsonlWriter, CsvWriter, SqliteWriter)


def open_writer(path: Path, max_bytes: int, keep: int) -> LogWriter:
    """The writer for ``path``'s suffix."""
    for cls in WRITERS:
        if path.suffix.lower() in cls.suffixes:
            return cls(path, max_bytes, keep)
    known = ", ".join(s for cls in WRITERS for s in cls.suffixes)
    raise UserError(f"log --to {path}: unknown format {path.suffix or '(no suffix)'!r}; use one of {known}")
