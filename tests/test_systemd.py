"""The systemd unit passes `systemd-analyze verify`, and the daemon speaks the notify protocol."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ENGINES, ROOT, DaemonConfig, start_daemon

UNIT = ROOT / "systemd" / "edge-inspector.service"


def verify(unit_text: str, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "edge-inspector.service"
    path.write_text(unit_text)
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if str(path) in line]
    return proc.returncode, "\n".join(problems)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (setup.sh --dev installs systemd)")
def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    # the unit points at /opt/edge-inspector; verify it against this checkout's executable
    exe = ROOT / ".venv" / "bin" / "edge-inspector"
    exe_path = str(exe) if exe.exists() else shutil.which("edge-inspector") or sys.executable
    text = UNIT.read_text().replace("/opt/edge-inspector/.venv/bin/edge-inspector", exe_path)
    code, problems = verify(text, tmp_path)
    assert code == 0 and not problems, problems
    # the check is real: a misspelt directive is reported
    code, problems = verify(text.replace("WatchdogSec=", "WatchdogSecs="), tmp_path)
    assert "WatchdogSecs" in problems


@pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")
def test_daemon_notifies_ready_and_pings_watchdog(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "c", "uri": "synthetic://surface?fps=5"}])
    daemon = start_daemon(cfg.path, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 2:
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                continue
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    finally:
        daemon.kill()
        sock.close()
    assert daemon.returncode == 0
    ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
    # while the models load, systemd is asked for more start-up time (a first TensorRT build takes minutes)
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") and "STATUS=loading models" in m for m in messages[:ready]), messages
    assert sum("WATCHDOG=1" in m for m in messages) >= 2, messages
    assert messages[-1].startswith("STOPPING=1"), messages


def test_start_timeout_extension_repeats_until_the_models_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_inspector.health import StartTimeoutExtension

    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
        with StartTimeoutExtension("building plans", every_s=0.1):
            received = [sock.recv(4096).decode() for _ in range(3)]
        sock.setblocking(False)
        late = _drain(sock)  # sent before the block was left
        time.sleep(0.3)
        after = _drain(sock)  # nothing once the block is left
    assert received == ["EXTEND_TIMEOUT_USEC=200000\nSTATUS=building plans"] * 3
    assert len(late) <= 1 and after == []


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out
