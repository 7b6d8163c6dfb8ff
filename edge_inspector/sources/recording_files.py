"""The files of a recording: their names, writers that survive a hard stop, and checks on replay.

See :mod:`edge_inspector.sources.recording` for the directory layout and why these formats.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge_inspector.errors import InputError, UserError

log = logging.getLogger(__name__)

FORMAT = "edge-inspector/recording/1"
MANIFEST = "manifest.json"
VIDEO_SUFFIX = ".mkv"
FRAME_TIMESTAMPS = ".timestamps.csv"  # <stem>.timestamps.csv next to <stem>.mkv
AUDIO_TIMESTAMPS = ".chunks.csv"  # <stem>.chunks.csv next to <stem>.wav
FRAME_HEADER = "index,ts,mono"
AUDIO_HEADER = "sample,ts,mono,discontinuity"
JPEG_QUALITY = 95
WAV_HEADER_BYTES = 44
WAV_PATCH_S = 1.0
WAV_MAX_DATA = 0xFFFFFFFF - 36


class RecordingError(InputError):
    """A file of the recording could not be written (exit 1)."""


def utc_iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_error(path: Path, exc: BaseException) -> RecordingError:
    """One line that says what happened to which file (disk full is the common case)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return RecordingError(f"disk full: cannot write {path} (No space left on device); "
                              "everything recorded before this point is kept")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return RecordingError(f"cannot write {path}: {reason}")


# -- writers --------------------------------------------------------------------------------
class CsvWriter:
    """A line-per-item sidecar, flushed every row so a hard stop loses at most one row."""

    def __init__(self, path: Path, header: str) -> None:
        self.path = path
        try:
            self.fh: TextIO | None = open(path, "w", encoding="ascii", newline="")
            self.row(header)
        except OSError as exc:
            raise write_error(path, exc) from None

    def row(self, line: str) -> None:
        assert self.fh is not None
        try:
            self.fh.write(line + "\n")
            self.fh.flush()
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def close(self) -> None:
        if self.fh is not None:
            fh, self.fh = self.fh, None
            try:
                fh.close()
            except OSError as exc:  # the unflushed tail cannot be written
                log.warning("%s", write_error(self.path, exc))


class VideoWriter:
    """BGR frames -> ``<cam>.mkv`` through ``ffmpeg`` (MJPEG stream copy, or FFV1 intra-only)."""

    def __init__(self, path: Path, codec: str, fps: float, width: int, height: int) -> None:
        if shutil.which("ffmpeg") is None:
            raise UserError("record needs the ffmpeg program on PATH (apt-get install ffmpeg)")
        self.path, self.codec, self.size = path, codec, (width, height)
        rate = f"{fps:.6g}"
        if codec == "mjpeg":  # JPEG-encoded here (OpenCV releases the GIL), muxed without re-encoding
            source = ["-f", "mjpeg", "-framerate", rate, "-i", "pipe:0", "-c:v", "copy"]
        else:
            source = ["-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-framerate", rate,
                      "-i", "pipe:0", "-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1", "-pix_fmt", "bgr0"]
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", *source, "-f", "matroska", "-y", str(path)]
        self._stderr = tempfile.TemporaryFile()  # not next to the video: that disk may be the full one
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._stderr, start_new_session=True)

    def _failure(self) -> RecordingError:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._stderr.seek(0)
        message = self._stderr.read().decode(errors="replace").strip()
        if "No space left" in message:
            return write_error(self.path, OSError(errno.ENOSPC, "No space left on device"))
        return RecordingError(f"cannot write {self.path}: ffmpeg failed: {message.splitlines()[-1] if message else self.proc.returncode}")

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self.codec == "mjpeg":
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RecordingError(f"cannot JPEG-encode a {image.shape} frame for {self.path}")
            data = buf.tobytes()
        else:
            data = np.ascontiguousarray(image).tobytes()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except OSError:  # broken pipe: ffmpeg exited (disk full, killed)
            raise self._failure() from None

    def close(self) -> None:
        """Finish the file (ffmpeg writes the index); raises if ffmpeg failed on the way."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        try:
            if code != 0:
                raise self._failure()
        finally:
            self._stderr.close()


def wav_header(rate: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header of 16-bit mono PCM."""
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


class WavWriter:
    """16-bit PCM mono WAV whose header is rewritten every ``WAV_PATCH_S`` seconds and on close."""

    def __init__(self, path: Path, rate: int) -> None:
        self.path, self.rate, self.data_bytes = path, int(rate), 0
        self._patched = time.monotonic()
        try:
            self.fh = open(path, "w+b")
            self.fh.write(wav_header(self.rate, 0))
            self.fh.flush()
        except OSError as exc:
            raise write_error(path, exc) from None

    def write(self, samples: np.ndarray) -> None:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        if self.data_bytes + len(pcm) > WAV_MAX_DATA:
            raise RecordingError(f"{self.path}: a WAV file holds at most 4 GiB; start a new recording")
        try:
            self.fh.write(pcm)
            self.data_bytes += len(pcm)
            if time.monotonic() - self._patched >= WAV_PATCH_S:
                self._patch()
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def _patch(self) -> None:
        self.fh.flush()
        self.fh.seek(4)
        self.fh.write(struct.pack("<I", 36 + self.data_bytes))
        self.fh.seek(40)
        self.fh.write(struct.pack("<I", self.data_bytes))
        self.fh.seek(0, os.SEEK_END)
        self.fh.flush()
        self._patched = time.monotonic()

    def close(self) -> None:
        try:
            self._patch()
            self.fh.close()
        except OSError as exc:
            # the data written so far stays; the header may be a second stale and replay repairs it
            log.warning("%s", write_error(self.path, exc))




# -- reading a recording back --------------------------------------------------------------------
def read_sidecar(path: Path, header: str) -> list[list[str]]:
    """Data rows of a sidecar CSV; a last line cut short by a hard stop is ignored."""
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if not lines or lines[0].strip() != header:
        raise InputError(f"{path}: not a recording sidecar (expected the header {header!r})")
    width = len(header.split(","))
    rows = [line.split(",") for line in lines[1:] if line.strip()]
    if rows and len(rows[-1]) != width:
        rows.pop()
    return rows


class WavCheck:
    """What a WAV's header says against what the file holds (for hard-stopped recordings)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.data_offset = self.declared = self.rate = self.block_align = 0
        self._trailer = b""
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(size + (size & 1))
                    if len(fmt) >= 16:
                        _, _, self.rate, _, self.block_align, _ = struct.unpack("<HHIIHH", fmt[:16])
                elif cid == b"data":
                    self.data_offset, self.declared = fh.tell(), size
                    fh.seek(self.data_offset + size + (size & 1))
                    self._trailer = fh.read(4)
                    return
                else:
                    fh.seek(size + (size & 1), os.SEEK_CUR)

    @property
    def available(self) -> int:
        """Whole sample frames' bytes present after the data chunk header."""
        n = max(0, self.size - self.data_offset)
        return n - n % max(1, self.block_align)

    @property
    def truncated(self) -> bool:
        """The header promises more audio than the file holds (a cut copy, a full disk)."""
        return bool(self.data_offset) and self.declared not in (0, 0xFFFFFFFF) and self.declared > self.available

    @property
    def stale(self) -> bool:
        """Audio after the declared data that is not another RIFF chunk: a header not yet rewritten."""
        if not self.data_offset or self.truncated:
            return False
        if self.declared in (0, 0xFFFFFFFF):
            return self.available > 0
        extra = self.available - self.declared
        return extra > 8 and not (len(self._trailer) == 4 and all(32 <= b < 127 for b in self._trailer))

    def repaired_copy(self, directory: Path) -> Path:
        """A copy whose header matches the audio present (the recording itself is left untouched)."""
        out = directory / self.path.name
        with open(self.path, "rb") as src, open(out, "wb") as dst:
            header = bytearray(src.read(self.data_offset))
            struct.pack_into("<I", header, 4, self.data_offset - 8 + self.available)
            struct.pack_into("<I", header, self.data_offset - 4, self.available)
            dst.write(header)
            remaining = self.available
            while remaining > 0:
                block = src.read(min(remaining, 1 << 20))
                if not block:
                    break
                dst.write(block)
                remaining -= len(block)
        return out
