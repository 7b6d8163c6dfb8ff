"""A journal deleted between two runs of the daemon: ``tail`` says so and shows the new one from seq 1.

Every event carries ``journal_id``, a UUID made when the journal is created; the client library
behind ``tail`` treats a new id as a reset and fetches the new journal from its first event.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ENGINES, ROOT, DaemonConfig, start_daemon

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines not built")


class Lines:
    """Collects a process's stdout lines in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate([json.loads(x) for x in list(self.lines)]):
                return True
            time.sleep(0.1)
        return False


@pytest.mark.slow
def test_tail_reports_a_new_journal_and_shows_it_from_seq_1(tmp_path: Path) -> None:
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam", "uri": "synthetic://surface?fps=10"}],
                       publisher={"publish_verdicts": True, "heartbeat_s": 0.5})
    first = start_daemon(cfg.path)
    # every event, heartbeats too (tail hides them by default), so the new journal's seqs run without a hole
    tail = subprocess.Popen([sys.executable, "-m", "edge_inspector.cli", "tail", "--json", "--heartbeats",
                             "--endpoint", cfg.endpoint, "--catchup", cfg.catchup], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out = Lines(tail)
    second = None
    try:
        assert out.wait_for(lambda evs: len(evs) >= 15, 60), tail.stderr
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        old_ids = {e["journal_id"] for e in map(json.loads, out.lines)}
        for f in tmp_path.glob("journal.sqlite3*"):
            f.unlink()
        second = start_daemon(cfg.path)
        assert out.wait_for(lambda evs: sum(e["journal_id"] not in old_ids for e in evs) >= 15, 60)
    finally:
        tail.send_signal(signal.SIGINT)
        _, tail_err = tail.communicate(timeout=15)
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    events = [json.loads(line) for line in out.lines]
    assert len(old_ids) == 1
    new = [e for e in events if e["journal_id"] not in old_ids]
    assert [e["seq"] for e in new] == list(range(1, len(new) + 1)), [e["seq"] for e in new][:20]
    assert events.index(new[0]) == len(events) - len(new)  # the old journal's events all came before
    assert "new journal" in tail_err and "journal_id changed" in tail_err, tail_err
    assert tail.returncode == 0
