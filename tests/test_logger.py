"""``edge-inspector log`` against a real bus: killed, restarted, daemon restarted, journal reset."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from edge_inspector.events import EventBus, Journal
from test_events import visual


def _seqs(path: Path) -> list[int]:
    if not path.exists():
        return []
    if path.suffix == ".jsonl":
        return [json.loads(line)["seq"] for line in path.read_text().splitlines() if line.endswith("}")]
    if path.suffix == ".csv":
        rows = list(csv.reader(path.read_text().splitlines()))
        return [int(r[0]) for r in rows[1:] if r]
    try:
        db = sqlite3.connect(path)  # as a dashboard would (read-only cannot open a WAL file without its -shm)
        try:
            return [r[0] for r in db.execute("SELECT seq FROM events ORDER BY rowid")]
        finally:
            db.close()
    except sqlite3.OperationalError as err:  # the logger has just created the file, not yet its table
        if "no such table" not in str(err):
            raise AssertionError(f"{path}: {err}") from None
        return []


class Station:
    """A bus on fixed endpoints that can be 'restarted' with the same or a new journal."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.catchup = f"tcp://127.0.0.1:{free_port()}"
        self.journal_path = tmp_path / "journal.db"
        self.bus: EventBus | None = None
        self.stop = threading.Event()
        self.frame = 0

    def start(self, journal_path: Path | None = None) -> None:
        from edge_inspector.errors import UserError

        self.journal_path = journal_path or self.journal_path
        for attempt in range(50):  # the previous bus's ports may take a moment to be released
            journal = Journal(self.journal_path)
            try:
                self.bus = EventBus(self.endpoint, journal, self.catchup, heartbeat_s=0.2)
                break
            except UserError:
                journal.close()
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self.stop.clear()
        self.thread = threading.Thread(target=self._produce, daemon=True)
        self.thread.start()

    def _produce(self) -> None:
        while not self.stop.is_set():
            self.bus.publish_verdict(visual(frame=self.frame))  # type: ignore[union-attr]
            self.frame += 1
            time.sleep(0.004)

    def halt(self) -> int:
        self.stop.set()
        self.thread.join()
        assert self.bus is not None
        last = self.bus.journal.last_seq
        self.bus.close()
        self.bus.journal.close()
        return last


def _logger(station: Station, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge_inspector.cli", "log", "--to", str(out), "--endpoint",
                             station.endpoint, "--catchup", station.catchup], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(path: Path, n: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seqs = _seqs(path)
        if len(seqs) >= n:
            return seqs
        time.sleep(0.1)
    raise AssertionError(f"{path} holds {len(_seqs(path))} events, expected {n}")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".sqlite"])
def test_logger_survives_kills_restarts_and_a_journal_reset(tmp_path: Path, suffix: str) -> None:
    station = Station(tmp_path)
    out = tmp_path / f"events{suffix}"
    station.start()
    log = _logger(station, out)
    try:
        _wait(out, 100)
        log.send_signal(signal.SIGKILL)  # the logger dies mid-stream
        log.wait(5)
        time.sleep(0.3)
        log = _logger(station, out)
        _wait(out, len(_seqs(out)) + 100)
        last = station.halt()  # the daemon restarts with its journal
        time.sleep(0.5)
        station.start()
        time.sleep(0.5)
        last = station.halt()
        station.start()
        seqs = _wait(out, last + 50)
        assert seqs == list(range(1, len(seqs) + 1)), "not every event exactly once in order"

        before = station.halt()  # the daemon comes back with a new journal
        station.start(tmp_path / "new-journal.db")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (len(list(tmp_path.glob(f"events.*{suffix}"))) == 1
                                                   and len(_seqs(out)) >= 30):
            time.sleep(0.1)
        last_new = station.halt()
        _wait(out, last_new)  # what was published before the halt is still on its way
    finally:
        log.send_signal(signal.SIGTERM)
        _, err = log.communicate(timeout=10)
        if station.bus is not None and not station.stop.is_set():
            station.halt()
    rotated = list(tmp_path.glob(f"events.*{suffix}"))
    assert len(rotated) == 1, (rotated, err)
    old = _seqs(rotated[0])
    assert old == list(range(1, before + 1))
    assert _seqs(out) == list(range(1, last_new + 1))
    assert "new journal" in err and "resuming after seq" in err


def test_rotation_by_size_keeps_the_newest_and_resumes_from_them(tmp_path: Path) -> None:
    from edge_inspector.client import ReceivedEvent
    from edge_inspector.errors import UserError
    from edge_inspector.events.schema import encode, event_from_verdict
    from edge_inspector.logger.writers import open_writer

    out = tmp_path / "events.jsonl"
    writer = open_writer(out, max_bytes=2000, keep=2)
    for seq in range(1, 61):
        ev = event_from_verdict(visual(frame=seq), seq, time.monotonic())
        writer.write(ReceivedEvent("defect.visual.cam0", seq, ev, encode(ev)))
    rotated = writer.rotated()
    assert len(rotated) == 2 and all(p.stat().st_size <= 2600 for p in rotated)
    assert _seqs(rotated[0]) + _seqs(rotated[1]) + _seqs(out) == list(range(_seqs(rotated[0])[0], 61))
    writer.rotate()  # the current file moves away: the position comes from the newest rotated one
    writer.close()
    assert open_writer(out, 2000, 2).last().seq == 60
    with out.open("a") as fh:
        fh.write('{"topic":"defect.visual.cam0","seq":61,"id":"cut sh')  # killed in the middle of a line
    assert open_writer(out, 2000, 2).last().seq == 60 and out.read_text() == ""  # the cut line is gone
    with pytest.raises(UserError, match="unknown format '.txt'"):
        open_writer(tmp_path / "events.txt", 0, 1)


def test_a_sqlite_log_rotated_while_a_reader_queries_it_keeps_every_event(tmp_path: Path) -> None:
    """A dashboard reading the log: its open read transaction makes a checkpoint give up, and the
    rotated file would lose what was still in ``-wal``; the writer waits for the reader instead."""
    from edge_inspector.client import ReceivedEvent
    from edge_inspector.events.schema import encode, event_from_verdict
    from edge_inspector.logger.writers import open_writer

    out = tmp_path / "events.sqlite"
    writer = open_writer(out, max_bytes=0, keep=5)
    for seq in range(1, 201):
        ev = event_from_verdict(visual(frame=seq), seq, time.monotonic())
        writer.write(ReceivedEvent("defect.visual.cam0", seq, ev, encode(ev)))
    reader = sqlite3.connect(out, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (200,)  # holds a snapshot
    threading.Timer(0.5, lambda: (reader.execute("COMMIT"), reader.close())).start()
    t0 = time.monotonic()
    rotated = writer.rotate()
    assert rotated is not None and time.monotonic() - t0 >= 0.4  # it waited for the reader
    writer.close()
    assert _seqs(rotated) == list(range(1, 201)) and _seqs(out) == []
    assert rotated.read_bytes()[18:20] == b"\x01\x01"  # rollback mode: a read-only reader needs no -shm
    rotated.with_name(rotated.name + "-wal").write_bytes(b"")  # a stray empty sidecar changes nothing
    assert _seqs(rotated) == list(range(1, 201))
