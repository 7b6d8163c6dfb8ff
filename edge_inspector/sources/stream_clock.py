"""When was a network stream's frame really captured?  Its own timestamps, mapped to our clock.

A frame read from an IP camera is not a frame captured now: FFmpeg hands over a burst of
buffered frames right after connecting (about a second of them), and after a stall OpenCV
returns the last frame it held, seconds late.  Stamping those with the read time would tie a
verdict to the wrong part on the conveyor.

So each frame's presentation timestamp (RTP, as FFmpeg reports it in ``CAP_PROP_POS_MSEC``;
MJPEG over HTTP has none, the camera passes None) is mapped to the monotonic clock: ``offset = arrival - pts``.  The
smallest offset seen is the frame that travelled fastest; every other frame is older than it
looks by ``offset - min_offset``.  The minimum is allowed to creep up by 1 ms per second so a
camera clock that runs slow cannot make frames look ever older; a timestamp that jumps back (a
camera restart) or a frame that would be 30 s old starts a new mapping.

A frame older than ``max_age_s`` is *stale*: the source drops and counts it instead of
publishing it as fresh.  Streams without usable timestamps fall back to the time the read took:
a read that blocked longer than ``max_age_s`` plus one frame period delivered a frame of unknown
age, which is stale too.  The burst right after connecting is dropped as stale until a read
waits for the camera and the offsets stop falling (the backlog is drained), for at most
``WARMUP_MAX_S``.  Until the first frame that travelled with no backlog, the mapping can only
underestimate ages; it converges as soon as the reader keeps up with the camera.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

DRIFT_S_PER_S = 0.001  # how fast the fastest-frame offset may creep up (camera clock running slow)
REANCHOR_AGE_S = 30.0  # a frame "older" than this means the stream's clock jumped: map afresh
BACKWARD_JUMP_S = 1.0  # a timestamp this far below the previous one: the camera restarted its clock
WARMUP_MAX_S = 3.0  # the connect-time backlog is drained within this, or accepted as it is
SETTLE_FRAMES = 8  # warm-up ends once the fastest-frame offset held still over this many frames


@dataclass(frozen=True, slots=True)
class Stamp:
    """Capture time of one frame on both clocks, its age when read, and whether it is stale."""

    ts: float  # wall clock (seconds since the epoch)
    mono: float  # monotonic clock
    age_s: float
    stale: bool
    reason: str = ""


class StreamClock:
    """Maps one connection's stream timestamps to capture times; :meth:`reset` on reconnect."""

    def __init__(self, max_age_s: float, fps_hint: float = 0.0, backlog: bool = True) -> None:
        self.max_age_s = max_age_s
        self.period_s = 1.0 / fps_hint if fps_hint and 0 < fps_hint < 1000 else 0.0
        #: False for streams that start empty on every connection (a GigE camera's acquisition):
        #: nothing to drain, so no warm-up
        self.backlog = backlog
        self.reset()

    def reset(self, fps_hint: float | None = None) -> None:
        if fps_hint is not None:
            self.period_s = 1.0 / fps_hint if 0 < fps_hint < 1000 else 0.0
        self._min_offset: float | None = None
        self._last_pts: float | None = None
        self._last_mono = 0.0
        self._opened_mono = time.monotonic()
        self._warming = self.backlog
        self._recent_min: collections.deque[float] = collections.deque(maxlen=SETTLE_FRAMES)

    def _warmup_over(self, read_s: float, now_mono: float) -> bool:
        """The backlog is drained once a read had to wait for the camera and offsets stopped falling.

        A read can be slow while data is still queued (a busy CPU decodes slowly), so the
        offsets must also have settled: over the last ``SETTLE_FRAMES`` frames the fastest one
        improved by less than half a frame period.
        """
        if not self._warming:
            return True
        wait_s = max(0.005, 0.5 * self.period_s) if self.period_s else 0.01
        history = self._recent_min
        settled = len(history) < SETTLE_FRAMES or history[0] - history[-1] < max(0.005, 0.5 * self.period_s)
        if (read_s >= wait_s and settled) or now_mono - self._opened_mono >= WARMUP_MAX_S:
            self._warming = False
        return not self._warming

    def stamp(self, pts_ms: float | None, read_s: float, now_mono: float | None = None,
              now_wall: float | None = None) -> Stamp:
        """Capture time of a frame that finished reading at ``now`` after a read of ``read_s``."""
        now_mono = time.monotonic() if now_mono is None else now_mono
        now_wall = time.time() if now_wall is None else now_wall
        pts = pts_ms / 1000.0 if pts_ms is not None and math.isfinite(pts_ms) and pts_ms > 0 else None
        if pts is None:
            warm = self._warmup_over(read_s, now_mono)
            age = 0.0
            stale_read = read_s > self.max_age_s + self.period_s
            stale = stale_read or not warm
            reason = ("read blocked %.1f s" % read_s) if stale_read else ("connect backlog" if stale else "")
            return Stamp(now_wall, now_mono, age, stale, reason)
        if self._last_pts is not None and pts < self._last_pts - BACKWARD_JUMP_S:
            self._min_offset = None  # the camera's clock restarted
        offset = now_mono - pts
        if self._min_offset is None:
            self._min_offset = offset
        else:
            creep = DRIFT_S_PER_S * max(0.0, now_mono - self._last_mono)
            self._min_offset = min(self._min_offset + creep, offset)
        self._recent_min.append(self._min_offset)
        warm = self._warmup_over(read_s, now_mono)
        age = offset - self._min_offset
        if age > REANCHOR_AGE_S:
            self._min_offset, age = offset, 0.0
        self._last_pts, self._last_mono = max(pts, self._last_pts or pts), now_mono
        stale = age > self.max_age_s or not warm
        reason = ("%.1f s old" % age) if age > self.max_age_s else ("connect backlog" if stale else "")
        return Stamp(now_wall - age, now_mono - age, age, stale, reason)
