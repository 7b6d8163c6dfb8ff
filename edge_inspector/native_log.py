"""Route what C libraries write to stderr (FFmpeg, OpenCV, GStreamer, ONNX Runtime) through logging.

FFmpeg and OpenCV print straight to file descriptor 2 (``[rtsp @ 0x55…] method DESCRIBE failed:
404``, ``[ WARN:0@5.9] global cap_ffmpeg_impl.hpp:435 … Stream timeout``).  Under
``log_format = "json"`` those raw lines break every log shipper's parser, they bypass the
redaction of credentials, and on a terminal they tear through the status table.  So the daemon
points fd 2 at a pipe, a reader thread turns each line into a log record of the
``edge_inspector.native`` logger (level taken from the line), and the log handler writes to the
original stderr.  A flood of identical lines (a broken stream logs one per packet) is collapsed
into one line with a repeat count.

The pipe's write end is non-blocking: if the reader ever fell behind, a library's log line is
dropped rather than the library blocked inside a write while holding its locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
from typing import Iterator, TextIO

log = logging.getLogger("edge_inspector.native")

REPEAT_WINDOW_S = 5.0
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]+")
_OPENCV_LEVEL_RE = re.compile(r"^\[\s*(ERROR|WARN|INFO|DEBUG|VERBOSE|FATAL):")


#: what PortAudio's start-up prints while it probes every ALSA, JACK and OSS backend it was built
#: with (dozens of "ALSA lib … Unknown PCM", "jack server is not running" lines on any machine
#: without those): not a problem of the station, so debug only
_AUDIO_PROBE_RE = re.compile(r"^(ALSA lib |Cannot connect to server|jack server is not running|JackShm|"
                             r"Cannot open device /dev/dsp|Expression 'ret' failed|Expression 'alsa_)")


def level_of(line: str) -> int:
    """Log level for one native line: OpenCV names its level, FFmpeg lines are warnings."""
    if _AUDIO_PROBE_RE.match(line):
        return logging.DEBUG
    m = _OPENCV_LEVEL_RE.match(line)
    if m:
        return {"FATAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARN": logging.WARNING,
                "INFO": logging.INFO}.get(m.group(1), logging.DEBUG)
    lowered = line.lower()
    if "error" in lowered or "failed" in lowered:
        return logging.WARNING  # FFmpeg's "errors" on a live stream are recoverable by design
    return logging.INFO


def origin_of(line: str) -> str:
    if _AUDIO_PROBE_RE.match(line):
        return "portaudio"
    if _OPENCV_LEVEL_RE.match(line):
        return "opencv"
    if line.startswith("[") and " @ " in line.split("]", 1)[0]:
        return "ffmpeg"
    return "native"


@contextlib.contextmanager
def quiet_stderr(what: str) -> Iterator[None]:
    """Keep what C code prints to fd 2 inside the block off the terminal: it is logged at debug.

    For short library calls known to chatter (PortAudio's device probe) in commands whose own
    output must stay readable (``check-config``).  Under the daemon's :class:`NativeLogCapture`
    fd 2 is already a pipe into the log (where :func:`level_of` files such lines as debug), so
    nothing is swapped there: other threads' lines must not be swallowed meanwhile.
    """
    if NativeLogCapture.active:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for raw in sink.read(1 << 20).splitlines():
                if raw.strip():
                    log.debug("%s: %s", what, raw.decode("utf-8", "replace").rstrip(), extra={"origin": what})


class NativeLogCapture:
    """Owns the fd-2 redirection and its reader thread; :meth:`start` returns the real stderr."""

    active = 0  # captures running in this process (quiet_stderr leaves fd 2 alone meanwhile)

    def __init__(self) -> None:
        self._saved_fd: int | None = None
        self._read_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stream: TextIO | None = None
        self._stopping = False
        self.lines = 0
        self.collapsed = 0

    def start(self) -> TextIO:
        """Redirect fd 2 into the pipe; returns a text stream on the original stderr for handlers."""
        if self._stream is not None:
            return self._stream
        self._saved_fd = os.dup(2)
        NativeLogCapture.active += 1
        self._stopping = False
        self._new_pipe()
        self._stream = os.fdopen(os.dup(self._saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._run, name="native-log", daemon=True)
        self._thread.start()
        return self._stream

    def _new_pipe(self) -> None:
        """Point fd 2 at a fresh pipe (at start, and when a restart finds the old one broken)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read_fd = read_fd

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        from edge_inspector.supervision import run_supervised

        run_supervised("native-log", self._read_loop, restart=True, backoff_s=(0.05, 1.0))

    def _read_loop(self) -> None:
        if self._read_fd is None:  # a restart after the pipe broke
            self._new_pipe()
        assert self._read_fd is not None
        pending = b""
        last_key, last_emit, repeats = "", 0.0, 0
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                if self._stopping:
                    return
                self._read_fd = None  # broken under us: the supervisor restarts with a new pipe
                raise
            if not chunk:
                if self._stopping:
                    return
                raise OSError("stderr pipe closed unexpectedly")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > 65536:  # a runaway line without newline: emit it as is
                lines.append(pending)
                pending = b""
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if not line.strip():
                    continue
                self.lines += 1
                key = _ADDRESS_RE.sub("", line)
                now = time.monotonic()
                if key == last_key and now - last_emit < REPEAT_WINDOW_S:
                    repeats += 1
                    self.collapsed += 1
                    continue
                if repeats:
                    log.log(level_of(last_key), "(the previous native message repeated %d more times)", repeats,
                            extra={"origin": origin_of(last_key)})
                last_key, last_emit, repeats = key, now, 0
                log.log(level_of(line), "%s", line, extra={"origin": origin_of(line)})

    def stop(self) -> None:
        """Put fd 2 back; lines still in the pipe are read out first (bounded wait)."""
        if self._saved_fd is None:
            return
        self._stopping = True
        os.dup2(self._saved_fd, 2)  # closes our pipe's write end: the reader sees EOF
        os.close(self._saved_fd)
        self._saved_fd = None
        NativeLogCapture.active -= 1
        if self._thread is not None:
            self._thread.join(1.0)
        if self._read_fd is not None and not self.alive:
            os.close(self._read_fd)
            self._read_fd = None
