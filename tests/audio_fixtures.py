"""A private PulseAudio server with a null sink, for microphone tests on real audio paths.

Sound played with ``paplay -d line0`` comes back on the ``line0.monitor`` source, which is
the default source, which is what PortAudio's ``pulse`` device records.  The server runs in
the foreground as our child (no pid file, no autospawn) so tests can kill and restart it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import scipy.io.wavfile

SINK = "line0"
RATE = 48000


def _die_with_parent() -> None:
    """Linux: the server gets SIGKILL if the test process dies without its teardown."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PulseServer:
    """One PulseAudio daemon in a private runtime directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "runtime"
        self.runtime.mkdir(mode=0o700)
        client_conf = root / "client.conf"
        client_conf.write_text("autospawn = no\n")
        self.env = {
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.runtime}/pulse/native",
            "PULSE_CLIENTCONFIG": str(client_conf),
            "PULSE_STATE_PATH": str(root / "state"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "pulseaudio.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "pulseaudio", "-n", "--daemonize=no", "--use-pid-file=no",
                    "--exit-idle-time=-1", "--disallow-exit", "--log-target=stderr",
                    "--load=module-native-protocol-unix",
                    f"--load=module-null-sink sink_name={SINK} rate={RATE} channels=2",
                ],
                env=self._env(), stdout=log, stderr=log, preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 10
        while self.pactl("info").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pulseaudio did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.pactl("set-default-source", f"{SINK}.monitor", check=True)

    def kill(self) -> None:
        """Simulate the device vanishing: SIGKILL, no goodbye to clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def pactl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["pactl", *args], env=self._env(), capture_output=True, check=check, timeout=10)

    def play(self, wav: Path) -> "Playback":
        """Start ``paplay`` into the null sink; returns at once."""
        return Playback(wav, self._env())


class Playback:
    """``paplay -v`` playing a file into the null sink, watched: when its stream really started
    and whether it ran dry on the way.

    The sound starts when the server starts the stream, not when paplay is spawned: on a busy
    machine that can be a second later, so a test that checks when a sound arrived counts from
    the window [requested_at, started_at] in which it really began (started_at is when paplay
    said so, a little after). paplay keeps half a second queued (``LATENCY_MS``) so that a busy
    machine does not make it run dry; a stream that does anyway plays a gap (``gaps``), and what
    was heard is not the file.
    """

    LATENCY_MS = 500

    def __init__(self, wav: Path, env: dict[str, str]) -> None:
        self.requested_at = time.time()
        self.started_at: float | None = None
        self.gaps = 0
        self.messages: list[str] = []
        self._started = threading.Event()
        self.proc = subprocess.Popen(["paplay", "-v", f"--latency-msec={self.LATENCY_MS}", "-d", SINK, str(wav)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, name="paplay-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:  # text mode: paplay's carriage-return status lines become lines
            line = raw.replace("\x1b[K", "").strip()
            if not line or line.startswith("Time:"):
                continue
            if line == "Stream started.":
                if self.started_at is None:
                    self.started_at = time.time()
                    self._started.set()
                else:
                    self.gaps += 1  # started again after running dry mid-stream
            self.messages.append(line)
        self._started.set()

    def wait(self, timeout: float) -> int:
        """paplay's exit code once the file has played (TimeoutExpired after ``timeout`` s)."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def start_window(self, timeout: float = 10.0) -> tuple[float, float]:
        """(requested_at, started_at): the sound began inside this window."""
        self._started.wait(timeout)
        assert self.started_at is not None, f"paplay never started its stream: {self.messages}"
        return self.requested_at, self.started_at

    def report(self) -> str:
        return "; ".join(self.messages)


@pytest.fixture(scope="module", name="pulse_server")
def pulse_server_fixture() -> Iterator[PulseServer]:
    """A running private PulseAudio; this process's PulseAudio clients talk to it."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip("pulseaudio/paplay not installed (setup.sh --dev installs them)")
    pytest.importorskip("pyaudio", reason="PyAudio not installed (pip install pyaudio)")
    root = Path(tempfile.mkdtemp(prefix="ei-pulse-"))
    server = PulseServer(root)
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


def write_wav(path: Path, left: np.ndarray, right: np.ndarray, rate: int = RATE) -> Path:
    """16-bit stereo WAV from two float channels in [-1, 1]."""
    data = np.stack([left, right], axis=1)
    scipy.io.wavfile.write(path, rate, (np.clip(data, -1, 1) * 32767).astype(np.int16))
    return path


def tone(freq: float, seconds: float, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
