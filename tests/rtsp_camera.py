"""A real IP camera for tests: GStreamer's RTSP server (``tools/rtsp_server.py``) in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port


def gst_rtsp_missing() -> str | None:
    """Why the RTSP server cannot run here, or None (``setup.sh --dev`` installs what it needs)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
         "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"],
        capture_output=True, text=True,
    )
    if probe.returncode:
        return ("GStreamer's RTSP server is not installed (./setup.sh --dev installs python3-gi, "
                "gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins): " + probe.stderr.strip().splitlines()[-1])
    return None


class RtspCamera:
    """One RTSP server process; :meth:`freeze` / :meth:`thaw` play a stalled camera."""

    def __init__(self, user: str = "", password: str = "", auth: str = "digest", fps: int = 25,
                 width: int = 640, height: int = 360) -> None:
        reason = gst_rtsp_missing()
        if reason:
            pytest.skip(reason)
        self.port = free_port()
        self.user, self.password = user, password
        args = [sys.executable, str(ROOT / "tools" / "rtsp_server.py"), "--port", str(self.port),
                "--fps", str(fps), "--width", str(width), "--height", str(height), "--auth", auth]
        if user:
            args += ["--user", user, "--password", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    def url(self, path: str = "/cam", user: str | None = None, password: str | None = None) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        cred = f"{user}:{password}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{path}"

    def freeze(self) -> float:
        """SIGSTOP the server: the stream stalls with its TCP connection still open. Returns the time."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        return time.time()

    def thaw(self) -> float:
        os.kill(self.proc.pid, signal.SIGCONT)
        return time.time()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def unanswering_port() -> tuple[object, int]:
    """A listening TCP socket that accepts connections and never says a word (a hung camera)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock, sock.getsockname()[1]

