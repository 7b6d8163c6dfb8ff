"""Durable, numbered event journal: every event is written here *before* it is published.

ZeroMQ PUB/SUB drops messages for slow joiners and full queues by design.  The journal turns
that into a recoverable situation: each event gets the next ``seq`` inside the same SQLite
transaction that stores it, so sequence numbers are gap-free, survive restarts, and any
subscriber that notices a gap can ask the catch-up ROUTER for exactly the missing rows.

Durability trade-off: the journal runs in WAL mode with ``synchronous=NORMAL`` by default.  A
committed event survives a crash or kill of the daemon; after a *power loss* the last few
commits may be lost (the database is never corrupted), and the daemon continues from the last
seq that reached the disk.  ``synchronous="FULL"`` fsyncs every commit, so no acknowledged event
is ever lost, at the cost of one fsync per event (milliseconds on SD cards and eMMC).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from edge_inspector.errors import UserError
from edge_inspector.events.schema import encode

log = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]


class JournalWriteError(UserError):
    """The journal cannot store events (disk full, I/O error): the daemon stops with exit 1.

    ``quiet``: the threads that hit it stay silent; the service reports it once as it stops.
    """

    exit_code = 1
    quiet = True


PRUNE_BATCH = 10_000

_SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS events ("
    "seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL)"
)
JOURNAL_COLUMNS = ["seq", "topic", "payload", "created"]
_EXPECTED_COLUMNS = JOURNAL_COLUMNS
# One row per durable sink (MQTT, ...): the last seq it got through.  Kept in the journal's own
# database so a cursor can never point into another journal, and survives what the journal survives.
_CURSORS_SQL = (
    "CREATE TABLE IF NOT EXISTS cursors ("
    "name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated REAL NOT NULL)"
)
# The journal's identity: a UUID made when the journal is created (or first opened by a version
# that knows it).  Every event carries it, so a subscriber tells a new journal (numbering from 1
# again) from a gap in the old one.
_META_SQL = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


class Journal:
    """SQLite event store with gap-free sequence numbers.

    One write connection guarded by a lock makes ``append`` safe from any thread; a second,
    read-only connection serves ``since`` so catch-up reads never wait behind a commit (WAL
    readers and the writer do not block each other).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        retention_events: int = 1_000_000,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        if retention_events < 1:
            raise UserError(f"journal retention_events must be >= 1, got {retention_events}")
        if synchronous not in ("NORMAL", "FULL"):
            raise UserError(f"journal synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.retention_events = retention_events
        #: the first write that failed (disk full, I/O error), as one sentence; None while healthy
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False
        self._prepare_path()
        self._db = self._open_writer(synchronous)
        self._reader = self._connect(self._db_uri(read_only=True))
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        self._last_seq: int = int(row[0]) if row[0] is not None else 0
        #: this journal's identity (hex UUID), stamped on every event as ``journal_id``
        self.journal_id: str = self._identity()

    def _identity(self) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        if row is not None:
            return str(row[0])
        journal_id = uuid.uuid4().hex
        try:
            self._db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?)", (journal_id,))
        except sqlite3.Error as err:
            raise UserError(f"journal path {self.path}: cannot record its identity ({err})") from None
        return journal_id

    # ------------------------------------------------------------------ opening
    def _prepare_path(self) -> None:
        if self.path.is_dir():
            raise UserError(f"journal path {self.path} is a directory, expected a file")
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"journal path {self.path}: cannot create directory {parent} ({err.strerror})"
            ) from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"journal path {self.path}: directory {parent} is not writable")
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise UserError(f"journal path {self.path}: file is not readable and writable")

    def _db_uri(self, read_only: bool) -> str:
        from urllib.parse import quote

        mode = "ro" if read_only else "rwc"
        return f"file:{quote(str(self.path.resolve()))}?mode={mode}"

    def _connect(self, uri: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            return db
        except sqlite3.Error as err:
            raise UserError(f"journal path {self.path}: cannot open ({err})") from None

    def _open_writer(self, synchronous: Synchronous) -> sqlite3.Connection:
        db = self._connect(self._db_uri(read_only=False))
        try:
            # Read first: on a file that is not SQLite this fails before anything is written.
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "events" not in tables:
                db.close()
                raise UserError(
                    f"journal path {self.path} is an SQLite database of something else "
                    f"(tables: {', '.join(sorted(tables)[:5])}); choose another path"
                )
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise UserError(f"journal path {self.path}: cannot enable WAL mode (got {mode})")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(_SCHEMA_SQL)
            db.execute(_CURSORS_SQL)
            db.execute(_META_SQL)
            cols = [r[1] for r in db.execute("PRAGMA table_info(events)").fetchall()]
        except sqlite3.DatabaseError as err:
            db.close()
            raise UserError(
                f"journal path {self.path} is not an edge-inspector journal ({err}); "
                "move it away or choose another path"
            ) from None
        if cols != _EXPECTED_COLUMNS:
            db.close()
            raise UserError(
                f"journal path {self.path} has an 'events' table with columns {cols}, "
                f"expected {_EXPECTED_COLUMNS}; move it away or choose another path"
            )
        return db

    # ------------------------------------------------------------------ writing
    def next_seq(self) -> int:
        """The seq the next ``append`` will assign (last stored + 1, also after a restart)."""
        with self._lock:
            return self._last_seq + 1

    @property
    def last_seq(self) -> int:
        """Newest stored seq (0 for an empty journal)."""
        return self._last_seq

    def append(self, topic: str, event: dict[str, Any]) -> int:
        """Assign the next seq to ``event`` (in place), store it, commit, return the seq.

        Returning only after the commit is the "journal before publish" rule: an event a
        subscriber can see is always an event catch-up can serve.
        """
        return self.append_encoded(topic, event)[0]

    def append_encoded(self, topic: str, event: dict[str, Any]) -> tuple[int, bytes]:
        """:meth:`append`, also returning the stored payload bytes (published as they are).

        Stamps ``seq`` and ``journal_id`` into ``event`` before encoding it.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("journal is closed")
            seq = self._last_seq + 1
            event["seq"] = seq
            event["journal_id"] = self.journal_id
            payload = encode(event)
            try:
                self._db.execute(
                    "INSERT INTO events (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
                    (seq, topic, payload, time.time()),
                )
            except sqlite3.Error as err:
                raise self._write_failed(err) from None
            self._last_seq = seq
            return seq, payload

    def _write_failed(self, err: sqlite3.Error) -> JournalWriteError:
        """One clear sentence for a failed write; the first is kept in :attr:`failure`."""
        if "full" in str(err).lower():
            try:
                st = os.statvfs(self.path.parent)
                free = f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free"
            except OSError:
                free = "free space unknown"
            msg = (f"journal {self.path}: disk full ({free}); every event up to seq {self._last_seq} "
                   "is kept; free some space, then restart")
        else:
            msg = f"journal {self.path}: write failed ({err}); every event up to seq {self._last_seq} is kept"
        if self.failure is None:
            self.failure = msg
        return JournalWriteError(msg)

    def payload_of(self, seq: int) -> bytes | None:
        """The stored payload bytes of one event (what was published), or None."""
        rows = self._read("SELECT payload FROM events WHERE seq = ?", (seq,))
        return bytes(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ reading
    def since(
        self, seq: int, limit: int = 1000, prefixes: list[str] | None = None, until: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Events with ``seq > seq`` (and ``<= until``) in order, at most ``limit``.

        ``prefixes`` keeps only topics starting with one of them (ZeroMQ subscription
        semantics), so a filtered subscriber can fill its gaps without the whole stream.
        """
        return [(t, p) for _, t, p in self.rows_since(seq, limit, prefixes, until)]

    def rows_since(
        self, seq: int, limit: int = 1000, prefixes: list[str] | None = None, until: int | None = None
    ) -> list[tuple[int, str, bytes]]:
        """Like :meth:`since` but with the seq of each row (the catch-up server pages on it)."""
        sql = "SELECT seq, topic, payload FROM events WHERE seq > ?"
        args: list[Any] = [int(seq)]
        if until is not None:
            sql += " AND seq <= ?"
            args.append(int(until))
        if prefixes and "" not in prefixes:
            # substr() comparison, not LIKE: topics may contain '%' or '_'.
            sql += " AND (" + " OR ".join("substr(topic, 1, ?) = ?" for _ in prefixes) + ")"
            for p in prefixes:
                args += [len(p), p]
        sql += " ORDER BY seq LIMIT ?"
        args.append(max(0, int(limit)))
        return [(int(n), str(t), bytes(p)) for n, t, p in self._read(sql, tuple(args))]

    def newest(self, prefixes: list[str], limit: int, scan: int = 200_000) -> list[tuple[str, bytes]]:
        """The newest ``limit`` events whose topic starts with one of ``prefixes``, oldest first,
        among the last ``scan`` events (a bounded read, e.g. for a status page after a restart)."""
        sql = ("SELECT topic, payload FROM events WHERE seq > ? AND ("
               + " OR ".join("substr(topic, 1, ?) = ?" for _ in prefixes) + ") ORDER BY seq DESC LIMIT ?")
        args: list[Any] = [self.last_seq - scan]
        for p in prefixes:
            args += [len(p), p]
        args.append(max(0, int(limit)))
        return [(str(t), bytes(p)) for t, p in reversed(self._read(sql, tuple(args)))]

    def first_seq(self) -> int:
        """Oldest seq still retained (0 for an empty journal)."""
        rows = self._read("SELECT MIN(seq) FROM events", ())
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            if self._closed:
                raise RuntimeError("journal is closed")
            return self._reader.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ sink cursors
    def cursor(self, name: str) -> int | None:
        """The last seq durable sink ``name`` delivered, or None if it never ran on this journal."""
        rows = self._read("SELECT seq FROM cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def set_cursor(self, name: str, seq: int) -> None:
        """Record that sink ``name`` delivered everything up to ``seq`` (one small commit)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("journal is closed")
            try:
                self._db.execute(
                    "INSERT INTO cursors (name, seq, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, updated = excluded.updated",
                    (name, int(seq), time.time()),
                )
            except sqlite3.Error as err:
                raise UserError(f"journal path {self.path}: write failed ({err})") from None

    # ------------------------------------------------------------------ upkeep
    def prune(self, max_batches: int = 1) -> int:
        """Delete events older than the retention window, ``PRUNE_BATCH`` rows per transaction.

        Called from the publisher thread when it is idle, never from ``append``: deleting a
        large backlog in one transaction would stall producers.  The newest event is always
        kept, so ``next_seq`` stays correct after a restart.
        """
        removed = 0
        for _ in range(max_batches):
            with self._lock:
                if self._closed:
                    break
                cutoff = self._last_seq - self.retention_events
                if cutoff <= 0:
                    break
                try:
                    cur = self._db.execute(
                        "DELETE FROM events WHERE seq IN "
                        "(SELECT seq FROM events WHERE seq <= ? ORDER BY seq LIMIT ?)",
                        (cutoff, PRUNE_BATCH),
                    )
                except sqlite3.Error as err:  # a full disk: appends report it; pruning retries later
                    log.debug("journal prune skipped: %s", err)
                    break
                n = cur.rowcount
            removed += max(0, n)
            if n < PRUNE_BATCH:
                break
        return removed

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close both connections."""
        with self._lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            self._reader.close()
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as err:  # busy readers elsewhere: the WAL stays, data is safe
                log.debug("journal checkpoint skipped: %s", err)
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
