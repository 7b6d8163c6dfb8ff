"""``edge-inspector record --out DIR [--config FILE] [--duration S]``: the command and its progress display."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from edge_inspector.config import load_config
from edge_inspector.errors import UserError
from edge_inspector.recorder import Recorder
from edge_inspector.sources.recording import SourceRecorder
from edge_inspector.sources.recording_files import MANIFEST, RecordingError
from edge_inspector.stop_signals import on_stop_signals

log = logging.getLogger(__name__)


class RecordProgress:
    """A rich table on a terminal (stderr), one log line every 5 s otherwise."""

    def __init__(self, recorders: list[SourceRecorder], interval_s: float = 5.0) -> None:
        self.recorders, self.interval_s = recorders, interval_s
        self.started = self.last_log = time.monotonic()
        self.live: Any = None

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"recording · {time.monotonic() - self.started:.0f} s · Ctrl-C stops", title_justify="left")
        for col in ("source", "state", "recorded", "dropped", "file"):
            table.add_column(col)
        for r in self.recorders:
            amount = f"{r.items} frames" if r.kind == "camera" else f"{r.samples / r.sample_rate:.1f} s"
            table.add_row(r.source_name, r.source.counters.state, amount, str(r.queue.stats.dropped), r.media_path.name)
        return table

    def __enter__(self) -> "RecordProgress":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
        elif time.monotonic() - self.last_log >= self.interval_s:
            self.last_log = time.monotonic()
            for r in self.recorders:
                amount = f"frames={r.items}" if r.kind == "camera" else f"seconds={r.samples / r.sample_rate:.1f}"
                log.info("recording source=%s state=%s %s dropped=%d", r.source_name, r.source.counters.state,
                         amount, r.queue.stats.dropped)


def record_command(args: argparse.Namespace) -> int:
    """``edge-inspector record --out DIR [--config FILE] [--duration S]``."""
    from edge_inspector.console import setup_logging

    setup_logging("text")
    cfg = load_config(args.config)
    from edge_inspector.checks import check_environment
    from edge_inspector.config import ConfigError

    problems = [p for p in check_environment(cfg, check_devices=True, bind=False) if not p.startswith("runtime.")]
    if problems:  # a recording of a device that is not there would be empty
        raise ConfigError(problems, args.config)
    out: Path = args.out
    if (out / MANIFEST).exists():
        raise UserError(f"{out} already holds a recording ({MANIFEST}); choose another --out directory")
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration must be > 0 seconds, got {args.duration}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"cannot create {out}: {exc.strerror}") from None
    recorder = Recorder(cfg, out, codec=getattr(args, "codec", None) or "mjpeg")

    def on_signal(signum: int, _frame: object) -> None:
        recorder.stopped_by = signal.Signals(signum).name
        recorder.stop_requested.set()

    with on_stop_signals(on_signal):
        recorder.start()
        log.info("recording %d source(s) into %s%s", len(recorder.recorders), out,
                 f" for {args.duration:g} s" if args.duration else " until Ctrl-C / SIGTERM")
        deadline = time.monotonic() + args.duration if args.duration else None
        with RecordProgress(recorder.recorders) as progress:
            while not recorder.stop_requested.wait(0.1):
                progress.tick()
                if deadline is not None and time.monotonic() >= deadline:
                    recorder.stopped_by = "duration"
                    break
                if recorder.finished():
                    break
            recorder.stop()
            progress.tick()
    for r in recorder.recorders:
        log.info("%s: %s", r.media_path, f"{r.items} frames" if r.kind == "camera" else f"{r.samples / r.sample_rate:.2f} s")
    empty = [str(r.media_path) for r in recorder.recorders if (r.items if r.kind == "camera" else r.samples) == 0]
    for path in empty:
        log.error("%s: nothing was recorded (the source never delivered)", path)
    if recorder.errors:
        for message in recorder.errors:
            log.error("%s", message)
    return 1 if recorder.errors or empty else 0
