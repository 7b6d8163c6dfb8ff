"""``edge-inspector replay RECORDING…``: the command, its progress display and its report's place.

What a replay is (inputs, the config it builds, the event log) is :mod:`edge_inspector.replay`;
this module runs it through :class:`~edge_inspector.service.Service` and reports.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_inspector.replay import (
    PLANT_SECTIONS,
    EventLog,
    ReplayInput,
    build_config,
    prepare_wavs,
    resolve_inputs,
    truncation_problems,
)

log = logging.getLogger(__name__)


class ReplayProgress:
    """Frames done / total, rate and ETA: a rich progress bar on a terminal, log lines otherwise."""

    def __init__(self, service: Any, inputs: list[ReplayInput], interval_s: float = 5.0) -> None:
        self.service, self.interval_s = service, interval_s
        self.cameras = [i.name for i in inputs if i.kind == "camera"]
        self.mics = [i for i in inputs if i.kind == "microphone"]
        known = [i.expected for i in inputs if i.kind == "camera"]
        self.total = sum(known) if known and all(k is not None for k in known) else None  # type: ignore[misc]
        self.started = self.last_log = time.monotonic()
        self.bar: Any = None

    def _done(self) -> tuple[int, float]:
        rows = {r["source"]: r for r in self.service.source_rows()}
        frames = sum(rows[c]["inspected"] for c in self.cameras if c in rows)
        chunk_s = {m.name: m.chunk_s for m in self.service.cfg.microphones}
        audio = sum(rows[m.name]["captured"] * chunk_s[m.name] for m in self.mics if m.name in rows)
        return frames, audio

    def __enter__(self) -> "ReplayProgress":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("replay", total=self.total, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.tick(final=True)
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def tick(self, final: bool = False) -> None:
        frames, audio = self._done()
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = frames / elapsed
        if self.bar is not None:
            text = f"{rate:.1f} frames/s" + (f" · audio {audio:.1f} s" if self.mics else "")
            self.bar.update(self.task, completed=frames, rate=text)
        elif final or time.monotonic() - self.last_log >= self.interval_s:
            self.last_log = time.monotonic()
            total = f"/{self.total}" if self.total else ""
            eta = f" eta={(self.total - frames) / rate:.0f}s" if self.total and rate > 0 and not final else ""
            log.info("replay frames=%d%s rate=%.1f/s audio_s=%.1f elapsed=%.1fs%s", frames, total, rate, audio, elapsed, eta)


def replay_command(args: argparse.Namespace) -> int:
    """``edge-inspector replay RECORDING... [--config] [--speed] [--labels] [--report] [--events]``."""
    from edge_inspector.console import setup_logging
    from edge_inspector.service import Service

    setup_logging("text")
    inputs, manifests = resolve_inputs(list(args.recording))
    workdir = Path(tempfile.mkdtemp(prefix="edge-inspector-replay-"))
    try:
        prepare_wavs(inputs, workdir)
        plant = tuple(name for name in PLANT_SECTIONS if getattr(args, name, False))
        cfg = build_config(inputs, args.config, args.speed == "realtime", workdir, plant)
        evaluation = None
        if args.labels is not None:
            from edge_inspector.evaluation import Evaluation

            evaluation = Evaluation.from_csv(args.labels, cfg, inputs)
        observers = [evaluation.observe] if evaluation else []
        events = EventLog(cfg, args.events, observers, realtime=args.speed == "realtime")
        try:
            service = Service(cfg, on_event=events.on_event, on_verdict=events.on_verdict)
            progress = ReplayProgress(service, inputs)
            with progress:
                code = service.run(tick=progress.tick)
        finally:
            events.close()
        delivered = {name: view.thread.counters.items for name, view in service.sources.items()}
        if service.failure:
            problems = []  # reported below; the sources were stopped, not truncated
        elif service.stop_requested.is_set():
            problems = ["replay interrupted before the end of the recording"]
        else:
            problems = truncation_problems(inputs, delivered)
        if evaluation is not None:
            report = args.report or _default_report(args.recording)
            evaluation.finish(report, manifests, service.manifest, args.speed)
        for problem in problems:
            log.error("%s", problem)
        if service.failure:
            log.error("replay stopped with a failure: %s", service.failure)
        return 1 if problems or service.failure or code else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _default_report(recordings: list[Path]) -> Path:
    """``evaluation.html`` next to the (first) recording when writable, else in the current directory."""
    first = recordings[0]
    folder = first if first.is_dir() else first.parent
    try:
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
        return folder / "evaluation.html"
    except OSError:
        return Path.cwd() / "evaluation.html"

