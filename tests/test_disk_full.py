"""A full journal disk: one clear error line, exit 1, the journal intact up to the last event.

The disk is real: a 1 MB tmpfs mounted in a private mount namespace (``unshare -m``), mostly
filled before the daemon starts, so SQLite meets ENOSPC the way it would on a full eMMC.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ENGINES, ROOT, free_port, render_toml

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines not built")


def can_mount_tmpfs(tmp_path: Path) -> str | None:
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
                           capture_output=True, text=True)
    if probe.returncode:
        return f"cannot mount a tmpfs in a private mount namespace here: {probe.stderr.strip()}"
    return None


@pytest.mark.slow
def test_full_journal_disk_stops_with_one_line_and_keeps_the_journal(tmp_path: Path) -> None:
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    reason = can_mount_tmpfs(disk)
    if reason:
        pytest.skip(reason)
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_toml(
        {"publisher": {"endpoint": f"tcp://127.0.0.1:{free_port()}", "catchup_endpoint": f"tcp://127.0.0.1:{free_port()}",
                       "journal": str(disk / "journal.sqlite3"), "publish_verdicts": True, "verdict_window_s": 0.02},
         "runtime": {"backend": "onnxruntime"}, "health": {"listen": "", "log_format": "text"}},
        {"camera": [{"name": "cam", "uri": "synthetic://surface?fps=30"}],
         "microphone": [{"name": "mic", "uri": "synthetic://machine"}]}))
    py = sys.executable
    script = f"""
set -e
mount -t tmpfs -o size=1m tmpfs {disk}
head -c 600000 /dev/zero > {disk}/filler
set +e
timeout 90 {py} -m edge_inspector.cli run --config {cfg} > {out}/run.out 2> {out}/run.err
echo $? > {out}/run.rc
{py} -m edge_inspector.cli check-config {cfg} --no-bind > {out}/check.out 2> {out}/check.err
echo $? > {out}/check.rc
cp {disk}/journal.sqlite3* {out}/
"""
    subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, timeout=150, check=True)
    err = (out / "run.err").read_text()
    assert (out / "run.rc").read_text().strip() == "1", err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "disk full" in errors[0] and "journal.sqlite3" in errors[0]
    kept = int(re.search(r"every event up to seq (\d+) is kept", errors[0]).group(1))
    con = sqlite3.connect(out / "journal.sqlite3")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    seqs = [r[0] for r in con.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= kept > 20  # gap-free, nothing lost
    # and check-config says why this station would not run: the disk is full
    assert (out / "check.rc").read_text().strip() == "2"
    assert "publisher.journal: only" in (out / "check.err").read_text() and "MB free" in (out / "check.err").read_text()
