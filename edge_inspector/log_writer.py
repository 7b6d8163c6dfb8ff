"""A log handler that never blocks the thread that logs: lines are written by a thread of their own.

A pipe holds 64 KiB.  When whatever reads the daemon's stderr stops reading (a supervisor that
only reads at exit, a hung log shipper, a terminal paused with Ctrl-S), a plain
``StreamHandler`` blocks inside ``write()`` while holding its lock, and from then on every thread
that logs a line blocks with it: the catch-up server on its next "dropped a client", a camera on
its next reconnect, the shutdown on "stopping".  Here the logging thread only formats its line
and hands it to a bounded queue; one writer thread does the writing.  If the reader stays away
until the queue is full, further lines are dropped and counted (:attr:`AsyncStreamHandler.dropped`,
the metric ``edge_inspector_log_lines_dropped_total``), and the first line written after that
says how many were lost.  At exit the writer gets a bounded time to finish, so a daemon whose
stderr nobody reads still stops.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TextIO

log = logging.getLogger(__name__)

MAX_PENDING_LINES = 10_000  # about 2 MB of log waiting for a reader, then lines are dropped
CLOSE_WAIT_S = 2.0  # at exit, how long the writer may take to hand over the last lines

_STOP = object()


class _Dropped:
    """A place in the stream where lines went missing."""

    def __init__(self, lines: int) -> None:
        self.lines = lines


class AsyncStreamHandler(logging.Handler):
    """Formats on the calling thread, writes on its own; drops (counted) when the reader is gone."""

    def __init__(self, stream: TextIO, max_pending: int = MAX_PENDING_LINES) -> None:
        super().__init__()
        self.stream = stream
        self.dropped = 0  # lines lost because nobody read the stream (or writing failed)
        self._announced = 0  # drops already announced in the stream
        self._queue: queue.Queue[object] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._write_loop, name="log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        # called under the handler's lock (Handler.handle), so the counts need no lock of their own
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own policy: a broken record never raises
            self.handleError(record)
            return
        try:
            self._announce_drops()  # the notice goes where the lines went missing
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _announce_drops(self) -> None:
        lost = self.dropped - self._announced
        if lost:
            self._queue.put_nowait(_Dropped(lost))
            self._announced += lost

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self.stream.write((self._notice(item.lines) if isinstance(item, _Dropped) else str(item)) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # the reader closed its end: nothing can be shown any more
                with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                    self.dropped += 1

    def _notice(self, lost: int) -> str:
        record = logging.LogRecord(log.name, logging.WARNING, __file__, 0,
                                   "%d log lines dropped: nobody read this output fast enough", (lost,), None)
        record.created = time.time()
        return self.format(record)

    def flush(self) -> None:
        """Lines already handed over are the writer's; waiting here could block on the reader."""

    def close(self) -> None:
        """Let the writer finish what is queued, for at most ``CLOSE_WAIT_S``."""
        with self.lock:  # type: ignore[union-attr]
            try:
                self._announce_drops()
            except queue.Full:
                pass
        try:
            self._queue.put(_STOP, timeout=CLOSE_WAIT_S)
        except queue.Full:
            pass
        self._thread.join(CLOSE_WAIT_S)
        super().close()


def log_lines_dropped() -> int:
    """Log lines this process dropped because nobody read its output (0 without this handler)."""
    return sum(h.dropped for h in logging.getLogger().handlers if isinstance(h, AsyncStreamHandler))
