"""A simulated GigE Vision camera: Aravis' ``arv-fake-gv-camera-0.8`` on loopback (tests, benchmarks).

It speaks GVCP/GVSP on 127.0.0.1 exactly as a camera on the plant network does (discovery,
control with heartbeat, the stream in UDP packets), with a diagonal test pattern.  GigE Vision
fixes the control port (UDP 3956), so only one fake camera can run on this host at a time:
starting one waits for the port to be free, and each gets its own serial number so a test can
tell its camera from one that another run left behind.

The simulator makes each frame on this host's CPU, on the clock: it sleeps until the next
multiple of the frame period, draws the test pattern, sends it, and sleeps again.  On a busy
machine it wakes late, and a frame it cannot finish before the next tick is never sent (at a
load of 7 on 2 cores a 30 fps camera sent 27.6 frames/s).  A real camera has its own hardware
clock and never competes with the daemon for a core, so a benchmark asks for ``realtime=True``:
the simulator then runs under the real-time scheduler (``chrt --fifo``, needs root or
CAP_SYS_NICE; it uses about a tenth of a core) and keeps its rate whatever the load.
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
REALTIME_PRIORITY = 10  # SCHED_FIFO priority: above every normal task, below the kernel's own threads
_serials = itertools.count(1)
_realtime_ok: bool | None = None


def realtime_available() -> bool:
    """Whether this process may start a program under the real-time scheduler."""
    global _realtime_ok
    if _realtime_ok is None:
        chrt = shutil.which("chrt")
        _realtime_ok = bool(chrt) and subprocess.run([chrt, "--fifo", str(REALTIME_PRIORITY), "true"],
                                                     capture_output=True).returncode == 0
    return _realtime_ok


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

    def __init__(self, realtime: bool = False) -> None:
        reason = aravis_missing()
        if reason:
            raise RuntimeError(reason)
        #: frames keep the camera's own rate on a loaded machine (False where the scheduler refuses)
        self.realtime = realtime and realtime_available()
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
        prefix = ["chrt", "--fifo", str(REALTIME_PRIORITY)] if self.realtime else []
        self.proc = subprocess.Popen([*prefix, FAKE_CAMERA, "-i", ADDRESS, "-s", self.serial],
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
