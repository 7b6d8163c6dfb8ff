"""Streaming audio helpers for microphone sources: ring buffer, resampler, mixing, chunking.

The PortAudio callback runs on a real-time thread that must never block on the inspector,
so it only copies into a preallocated :class:`AudioRing`; the source thread drains the ring,
mixes to mono and resamples with :class:`StreamResampler`, which produces exactly what
``scipy.signal.resample_poly`` would produce on the whole signal, block by block, so chunk
boundaries never leave clicks or phase jumps in the model's input.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from math import gcd
from typing import Iterator

import numpy as np
from scipy.signal import firwin

from edge_inspector.sources.base import Chunk


def to_mono(frames: np.ndarray, channel: int | None) -> np.ndarray:
    """Pick one channel (``channel`` index) or downmix by the mean of all channels."""
    if frames.ndim == 1:
        return frames.astype(np.float32, copy=False)
    if channel is not None:
        if channel >= frames.shape[1]:
            raise ValueError(f"channel {channel} requested but the input has {frames.shape[1]}")
        return np.ascontiguousarray(frames[:, channel], dtype=np.float32)
    return frames.mean(axis=1, dtype=np.float32)


class StreamResampler:
    """Polyphase resampler whose block-wise output equals one-shot ``resample_poly``.

    Output sample ``n`` is ``sum_k h[p + up*k] * x[i0 - k]`` with ``m = n*down + half_len``,
    ``p = m % up`` and ``i0 = m // up`` (the same filter and alignment as
    ``resample_poly(x, up, down)``).  An output is emitted as soon as every input it needs has
    arrived, so the latency is only half the filter (about 0.6 ms for 48 kHz -> 16 kHz).
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        g = gcd(int(in_rate), int(out_rate))
        self.up = int(out_rate) // g
        self.down = int(in_rate) // g
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        max_rate = max(self.up, self.down)
        self.half_len = 10 * max_rate
        if self.up == self.down:
            max_rate = 2  # no filtering happens; a valid placeholder design keeps state uniform
        h = firwin(2 * self.half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        taps = -(-len(h) // self.up)  # taps per phase
        padded = np.zeros(taps * self.up)
        padded[: len(h)] = h
        # phases[p, k] = h[p + up*k]; reversed along k so a window x[i0-K+1 .. i0] dots with it
        self._phases = padded.reshape(taps, self.up).T[:, ::-1].astype(np.float64)
        self._taps = taps
        self.reset()

    def reset(self) -> None:
        """Forget all history: the next input starts a new, independent signal."""
        self._n_next = 0  # next output index
        self._n_in = 0  # inputs received
        self._base = -(self._taps - 1)  # global index of _buf[0]; zeros before the start
        self._buf = np.zeros(self._taps - 1, dtype=np.float64)

    @property
    def n_in(self) -> int:
        """Input samples received since the last reset."""
        return self._n_in

    @property
    def n_out(self) -> int:
        """Output samples produced since the last reset."""
        return self._n_next

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed mono input; returns every output sample that is now fully determined."""
        if self.identity:
            self._n_in += len(x)
            self._n_next += len(x)
            return x.astype(np.float32, copy=False)
        self._buf = np.concatenate([self._buf, x.astype(np.float64, copy=False)])
        self._n_in += len(x)
        # last n with i0(n) <= n_in - 1
        n_end = ((self._n_in - 1) * self.up + self.up - 1 - self.half_len) // self.down + 1
        if n_end <= self._n_next:
            return np.zeros(0, dtype=np.float32)
        n = np.arange(self._n_next, n_end)
        m = n * self.down + self.half_len
        p = m % self.up
        i0 = m // self.up - self._base  # index into _buf of the newest input used
        idx = i0[:, None] - (self._taps - 1) + np.arange(self._taps)[None, :]
        out = np.einsum("ij,ij->i", self._buf[idx], self._phases[p])
        self._n_next = int(n_end)
        keep_from = int(((self._n_next * self.down + self.half_len) // self.up) - self._base)
        keep_from -= self._taps - 1
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._base += keep_from
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        """End of signal: the remaining outputs, as ``resample_poly`` pads with zeros."""
        total = -(-self._n_in * self.up // self.down)
        if self.identity or total <= self._n_next:
            return np.zeros(0, dtype=np.float32)
        pad = self._taps + self.half_len // self.up + 1
        n_in = self._n_in
        tail = self.process(np.zeros(pad, dtype=np.float32))
        self._n_in = n_in
        return tail[: total - (self._n_next - len(tail))]


@dataclass(slots=True)
class RingRead:
    """A contiguous run of frames drained from the ring."""

    frames: np.ndarray  # (n, channels) float32
    start: int  # absolute frame index of frames[0]
    ts: float  # wall time of frames[0]
    gap: bool  # frames were lost right before frames[0]
    lost: int  # how many frames were lost there (estimate for device overflows)


class AudioRing:
    """Fixed-capacity frame ring written by the PortAudio callback, read by the source thread.

    When the reader falls behind the oldest frames are overwritten and counted (``overruns``);
    a device-side overflow (``write(..., overflow=True)``) is recorded as a gap.  Reads never span a gap, so the
    reader can reset its resampler exactly where the audio stops being contiguous.
    """

    def __init__(self, capacity: int, channels: int, rate: int, origin_window: int = 64) -> None:
        self.capacity = int(capacity)
        self.channels = int(channels)
        self.rate = int(rate)
        self._data = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._write = 0  # absolute index of the next frame to write
        self._read = 0  # absolute index of the next frame to read
        self._anchors: collections.deque[tuple[int, float]] = collections.deque()
        self._origins: collections.deque[float] = collections.deque(maxlen=origin_window)
        self._gaps: list[tuple[int, int]] = []  # (absolute index, frames lost), sorted
        self.cond = threading.Condition()
        self.overruns = 0  # frames overwritten before they were read
        self.overrun_events = 0  # writes that had to overwrite unread frames
        self.writes = 0  # callbacks so far
        self.device_overflows = 0  # overflow events reported by the device
        self.last_write_mono = time.monotonic()

    def write(self, frames: np.ndarray, ts: float, overflow: bool = False) -> None:
        """Append frames captured at wall time ``ts`` (first frame); never blocks for long."""
        n = len(frames)
        with self.cond:
            if overflow:
                self.device_overflows += 1
                lost = 0
                if self._anchors:
                    a_idx, a_ts = self._anchors[-1]
                    lost = max(0, round((ts - a_ts) * self.rate) - (self._write - a_idx))
                self._gaps.append((self._write, lost))
                self._gaps.sort()
                self._origins.clear()  # the device clock restarted: forget the old origin
            # Per-callback times jitter (and the driver's latency report can be off by a few
            # hundred ms for a callback); the median origin of recent callbacks is robust.
            self._origins.append(ts - self._write / self.rate)
            ts = float(np.median(self._origins)) + self._write / self.rate
            if n > self.capacity:
                frames = frames[-self.capacity :]
                skipped = n - self.capacity
                self._write += skipped
                ts += skipped / self.rate
                n = self.capacity
            start = self._write % self.capacity
            first = min(n, self.capacity - start)
            self._data[start : start + first] = frames[:first]
            self._data[: n - first] = frames[first:]
            self._anchors.append((self._write, ts))
            self._write += n
            excess = self._write - self._read - self.capacity
            if excess > 0:
                self.overruns += excess
                self.overrun_events += 1
                self._gaps.append((self._read + excess, excess))
                self._gaps.sort()
                self._read += excess
            while len(self._anchors) > 1 and self._anchors[1][0] <= self._read:
                self._anchors.popleft()
            self.writes += 1
            self.last_write_mono = time.monotonic()
            self.cond.notify_all()

    def _ts_of(self, index: int) -> float:
        a_idx, a_ts = self._anchors[0]
        for idx, t in self._anchors:
            if idx > index:
                break
            a_idx, a_ts = idx, t
        return a_ts + (index - a_idx) / self.rate

    def read(self, timeout: float) -> RingRead | None:
        """Drain up to the next gap; None if nothing arrived within ``timeout`` seconds."""
        with self.cond:
            if self._write == self._read:
                self.cond.wait(timeout)
                if self._write == self._read:
                    return None
            gap = False
            lost = 0
            while self._gaps and self._gaps[0][0] <= self._read:
                _, lost_here = self._gaps.pop(0)
                gap, lost = True, lost + lost_here
            end = self._write
            if self._gaps:
                end = min(end, self._gaps[0][0])
            n = end - self._read
            start = self._read % self.capacity
            idx = (start + np.arange(n)) % self.capacity
            frames = self._data[idx]
            ts = self._ts_of(self._read)
            out = RingRead(frames, self._read, ts, gap, lost)
            self._read = end
            return out


class Chunker:
    """Cuts a stream of output samples into fixed-size chunks with offsets and timestamps.

    A *segment* is a run of contiguous audio; ``start_segment`` begins a new one at a given
    offset and wall time, drops the unfinished partial chunk and flags the next chunk.
    """

    def __init__(self, source: str, sample_rate: int, chunk_s: float) -> None:
        self.source = source
        self.rate = int(sample_rate)
        self.size = max(1, int(round(chunk_s * sample_rate)))
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._seg_offset = 0.0
        self._seg_done = 0  # samples of this segment already emitted
        self._anchors: list[tuple[int, float]] = []  # (sample index in segment, wall time)
        self._discontinuity = True

    @property
    def end_offset(self) -> float:
        """Offset just after the last sample received (emitted or pending)."""
        return self._seg_offset + (self._seg_done + self._pending_n) / self.rate

    @property
    def end_ts(self) -> float:
        a_idx, a_ts = self._anchors[-1]
        return a_ts + (self._seg_done + self._pending_n - a_idx) / self.rate

    def start_segment(self, offset_s: float, ts: float) -> None:
        self._pending, self._pending_n = [], 0
        self._seg_offset, self._seg_done = offset_s, 0
        self._anchors = [(0, ts)]
        self._discontinuity = True

    def push(self, samples: np.ndarray, ts: float | None = None, final: bool = False) -> Iterator[Chunk]:
        """Add samples (``ts``: wall time of ``samples[0]`` if known, else extrapolated from
        the segment start); yield every complete chunk (and the remainder when ``final``)."""
        if ts is not None and len(samples):
            self._anchors.append((self._seg_done + self._pending_n, ts))
        if len(samples):
            self._pending.append(samples)
            self._pending_n += len(samples)
        while self._pending_n >= self.size or (final and self._pending_n > 0):
            buf = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            n = min(self.size, len(buf))
            rest = buf[n:]
            self._pending = [rest] if len(rest) else []
            self._pending_n = len(rest)
            start = self._seg_done / self.rate
            while len(self._anchors) > 1 and self._anchors[1][0] <= self._seg_done:
                self._anchors.pop(0)
            a_idx, a_ts = self._anchors[0]
            ts = a_ts + (self._seg_done - a_idx) / self.rate
            self._seg_done += n
            yield Chunk(
                source=self.source,
                offset_s=self._seg_offset + start,
                ts=ts,
                mono=ts + (time.monotonic() - time.time()),
                samples=np.ascontiguousarray(buf[:n], dtype=np.float32),
                sample_rate=self.rate,
                discontinuity=self._discontinuity,
            )
            self._discontinuity = False
