"""A stderr nobody reads never blocks the daemon: lines wait in a bounded queue, then are dropped and counted."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import termios
import time
import urllib.request

import pytest

from conftest import DaemonConfig, free_port, journal_events, start_daemon, wait_until
from edge_inspector.log_writer import AsyncStreamHandler


def _bytes_waiting(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def _drain(fd: int) -> bytes:
    """Everything written to the pipe until it has stayed empty for half a second."""
    os.set_blocking(fd, False)
    out, quiet_since = b"", time.monotonic()
    while time.monotonic() - quiet_since < 0.5:
        try:
            out += os.read(fd, 65536)
            quiet_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.02)
    return out


def test_a_full_pipe_drops_and_counts_lines_instead_of_blocking() -> None:
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
    stream = os.fdopen(write_fd, "w", buffering=1)
    handler = AsyncStreamHandler(stream, max_pending=20)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_log_pipe.full")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        t0 = time.monotonic()
        for i in range(2000):  # ~100 KB: far more than the pipe and the queue hold
            logger.warning("line %04d %s", i, "x" * 40)
        assert time.monotonic() - t0 < 5.0  # a blocked write would never return at all
        assert handler.dropped > 1000
        text = _drain(read_fd)  # the reader comes back: what waited in the queue is written
        logger.warning("after the reader came back")
        text += _drain(read_fd)
        lines = text.decode().splitlines()
        assert lines[0] == "WARNING line 0000 " + "x" * 40  # the first lines were kept, in order
        expected = 0  # every line is either written, in order, or counted by a notice where it is missing
        for ln in lines[:-1]:
            if "log lines dropped" in ln:
                expected += int(ln.split()[1])
            else:
                assert ln == f"WARNING line {expected:04d} " + "x" * 40
                expected += 1
        assert expected == 2000 and handler.dropped > 1000
        assert lines[-1] == "WARNING after the reader came back"
    finally:
        logger.removeHandler(handler)
        handler.close()
        stream.close()
        os.close(read_fd)


@pytest.mark.slow
def test_daemon_whose_stderr_is_never_read_keeps_working_and_stops(tmp_path) -> None:
    health = f"127.0.0.1:{free_port()}"
    cfg = DaemonConfig(tmp_path, microphones=[{"name": "m", "uri": "synthetic://machine?seed=1"}],
                       publisher={"publish_verdicts": True, "verdict_window_s": 0.05},
                       extra={"health": {"listen": health, "status_interval_s": 0.05}})
    proc = start_daemon(cfg.path)  # stderr: a pipe this test does not read
    try:
        assert proc.stderr is not None
        fcntl.fcntl(proc.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        # the status line every 50 ms fills the pipe within seconds; full = under one line free
        assert wait_until(lambda: _bytes_waiting(proc.stderr.fileno()) > 4096 - 200, 60), proc.poll()
        time.sleep(1.0)
        before = len(journal_events(cfg.journal))
        assert wait_until(lambda: len(journal_events(cfg.journal)) > before + 20, 20)  # events still flow
        with urllib.request.urlopen(f"http://{health}/readyz", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # it stops although its last lines cannot be written
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    err = proc.stderr.read()
    assert "state=online" in err  # the lines that did fit are intact
