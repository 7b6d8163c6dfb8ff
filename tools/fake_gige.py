"""A simulated GigE Vision camera: Aravis' ``arv-fake-gv-camera-0.8`` on loopback (tests, benchmarks).

It speaks GVCP/GVSP on 127.0.0.1 exactly as a camera on the plant network does (discovery,
control with heartbeat, the stream in UDP packets), with a diagonal test pattern.  GigE Vision
fixes the control port (UDP 3956), so only one fake camera can run on this host at a time:
starting one waits for the port to be free, and each gets its own serial number so a test can
tell its camera from one that another run left behind.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time

FAKE_CAMERA = "arv-fake-gv-camera-0.8"
ADDRESS = "127.0.0.1"
GVCP_PORT = 3956
_serials = itertools.count(1)


def aravis_missing() -> str | None:
    """Why the fake camera or Aravis' Python bindings are not usable here, or None."""
    if shutil.which(FAKE_CAMERA) is None:
        return f"{FAKE_CAMERA} is not installed (./setup.sh --dev installs aravis-tools)"
    probe = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('Aravis', '0.8'); "
                            "from gi.repository import Aravis"], capture_output=True, text=True)
    if probe.returncode:
        return ("Aravis' Python bindings are not seen by this Python (./setup.sh --dev installs "
                "gir1.2-aravis-0.8 and python3-gi): " + probe.stderr.strip().splitlines()[-1])
    return None


def _port_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ADDRESS, GVCP_PORT))
        except OSError:
            return False
    return True


class FakeGigECamera:
    """One fake camera process; :meth:`kill` and :meth:`start` play a camera unplugged and back."""

    def __init__(self) -> None:
        reason = aravis_missing()
        if reason:
            raise RuntimeError(reason)
        self.serial = f"EI{os.getpid() % 100000}-{next(_serials)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def uri(self) -> str:
        return f"aravis://{ADDRESS}"

    def start(self, wait_s: float = 60.0) -> float:
        """Start the camera once the control port is free; returns the time it answers."""
        deadline = time.monotonic() + wait_s
        while not _port_free():
            if time.monotonic() > deadline:
                raise RuntimeError(f"UDP {ADDRESS}:{GVCP_PORT} stayed busy for {wait_s:g} s: another GigE camera "
                                   "simulator runs on this host")
            time.sleep(0.2)
        self.proc = subprocess.Popen([FAKE_CAMERA, "-i", ADDRESS, "-s", self.serial],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while _port_free():  # bound as soon as it runs
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{FAKE_CAMERA} did not start (exit code {self.proc.poll()})")
            time.sleep(0.02)
        return time.monotonic()

    def kill(self) -> float:
        """The camera disappears without a word (power cut, cable pulled). Returns the time."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        return time.monotonic()

    def close(self) -> None:
        self.kill()
