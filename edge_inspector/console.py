"""What a person sees: a compact live status table on a terminal, structured logs otherwise.

On a TTY, ``edge-inspector run`` redraws one small table a few times a second (rich).  Under
systemd or with output piped, it writes one plain ``key=value`` (or JSON) log line per status
interval instead, which journald and log shippers handle well.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Callable

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from edge_inspector.log_writer import AsyncStreamHandler
from edge_inspector.native_log import NativeLogCapture
from edge_inspector.redact import RedactingFilter, redact_text

STATE_STYLE = {"online": "green", "offline": "red", "reconnecting": "yellow", "ended": "dim"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        origin = getattr(record, "origin", None) or ("ffmpeg" if record.name.startswith("libav.") else None)
        if origin:
            out["origin"] = origin  # ffmpeg / opencv / native: a line a C library wrote (to stderr, or through PyAV)
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out)


_native = NativeLogCapture()

#: sd-daemon(3) priority prefixes: journald stores each line with the priority it starts with
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd handed us (``JOURNAL_STREAM=dev:inode``).

    Comparing the device and inode (as sd_journal_stream_fd's documentation says) rather than
    just seeing the variable keeps the prefix out of a terminal or pipe a unit's child writes to.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class PriorityPrefix(logging.Formatter):
    """Another formatter's lines, each starting with ``<N>`` (its syslog priority) for journald.

    Every line of a multi-line record (a traceback) gets the prefix, so journald files the whole
    traceback under ERROR instead of its first line only.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        level = max((lv for lv in SYSLOG_PRIORITY if lv <= record.levelno), default=logging.DEBUG)
        prefix = f"<{SYSLOG_PRIORITY[level]}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def setup_logging(fmt: str = "auto", verbose: bool = False, capture_native: bool = False) -> None:
    """One handler on stderr, credentials redacted; ``capture_native`` also routes C libraries' stderr.

    With ``capture_native`` the lines FFmpeg, OpenCV or GStreamer print become log records
    (JSON under ``fmt="json"``), and lines are written by a thread of their own
    (:mod:`edge_inspector.log_writer`), so a stderr nobody reads never blocks the daemon; call :func:`stop_native_capture` before the process exits.
    Under systemd (stderr is the journal) every line starts with its syslog priority (``<3>``
    for errors), so ``journalctl -p err`` shows the errors.
    """
    journal = stderr_is_journal()  # before the capture points fd 2 elsewhere
    # the daemon's threads must never wait for whoever reads its stderr: a writer thread does
    handler: logging.Handler = AsyncStreamHandler(_native.start()) if capture_native else logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif journal:  # journald stamps each line itself
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(PriorityPrefix(formatter) if journal else formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def stop_native_capture() -> None:
    """Give fd 2 back to the process (after the last library has logged)."""
    _native.stop()


def status_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for col in ("source", "state", "inspected", "rate/s", "dropped", "defects", "last", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right" if col not in ("source", "state", "last") else "left")
    for r in rows:
        table.add_row(
            Text(r["source"]), Text(r["state"], style=STATE_STYLE.get(r["state"], "")),
            f"{r['inspected']} s" if r["kind"] == "microphone" else str(r["inspected"]), f"{r['rate']:.1f}", str(r["dropped"]),
            Text(str(r["defects"]), style="red" if r["defects"] else ""), Text(r["last"]),
            "-" if r["p50_ms"] is None else f"{r['p50_ms']:.1f}",
            "-" if r["p99_ms"] is None else f"{r['p99_ms']:.1f}",
        )
    return table


class StatusDisplay:
    """Either a rich Live table (TTY) or periodic log lines; call :meth:`tick` regularly."""

    def __init__(self, rows: Callable[[], list[dict[str, Any]]], title: str, interval_s: float, interactive: bool | None = None) -> None:
        self.rows = rows
        self.title = title
        self.interval_s = interval_s
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.live: Live | None = None
        self.last_log = time.monotonic()
        self.log = logging.getLogger("edge_inspector.status")

    def __enter__(self) -> "StatusDisplay":
        if self.interactive:
            console = Console()
            # log lines print above the live table instead of tearing through it
            handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
            handler.addFilter(RedactingFilter())
            logging.getLogger().handlers[:] = [handler]
            self.live = Live(status_table(self.rows(), self.title), console=console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(status_table(self.rows(), self.title))
            self.live.__exit__(None, None, None)

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(status_table(self.rows(), self.title))
            return
        now = time.monotonic()
        if now - self.last_log >= self.interval_s:
            self.last_log = now
            for r in self.rows():
                self.log.info(
                    "source=%s state=%s inspected=%d rate=%.1f dropped=%d defects=%d p99_ms=%s",
                    r["source"], r["state"], r["inspected"], r["rate"], r["dropped"], r["defects"],
                    "-" if r["p99_ms"] is None else f"{r['p99_ms']:.1f}",
                )
