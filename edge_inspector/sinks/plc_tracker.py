"""Part tracking for the reject gate, independent of Modbus and OPC UA.

One :class:`CameraTracker` per camera turns triggers and verdict events into *decisions* a PLC
can act on:

- ``trigger = "plc"``: the PLC announces a part (its id, or an encoder count) when it passes the
  camera; the first frame captured at or after that moment decides it.  A part with no decision
  ``decision_deadline_ms`` after its trigger is answered **reject** (defect code 255) and counted:
  a missing decision must never let a part through.
- ``trigger = "frame"``: every inspected frame is a part, its id the frame index.

With ``handshake`` each decision waits in a queue until the previous one is acknowledged
(result-valid / acknowledge, like a vision sensor's result buffer); without it the newest
decision overwrites the last one.  The servers only read this state and forward the PLC's
writes; everything runs on the bridge's event loop thread.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PASS, REJECT = 1, 2
CODE_OK, CODE_OTHER, CODE_DEADLINE = 0, 99, 255
STATE_COMPLETED, STATE_ABORTED = 1, 3  # OPC 40100 ResultState: completed / aborted (deadline)
TS_TOLERANCE_S = 0.001  # event timestamps carry milliseconds


@dataclass(frozen=True)
class Decision:
    part_id: int
    result: int  # PASS | REJECT
    code: int  # CODE_OK, the label's index in the model's labels, CODE_OTHER, CODE_DEADLINE
    score_milli: int
    seq: int  # the verdict event's seq (0 for a deadline reject)
    state: int  # STATE_COMPLETED | STATE_ABORTED
    created: float  # wall clock


def parse_ts(ts: str) -> float:
    """The events' ``2026-11-23T10:15:02.125Z`` -> epoch seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class CameraTracker:
    """Triggers, decisions and the handshake of one camera."""

    def __init__(self, name: str, index: int, frame_trigger: bool, deadline_s: float, handshake: bool,
                 max_pending: int, codes: dict[str, int]) -> None:
        self.name = name
        self.index = index
        self.frame_trigger = frame_trigger
        self.deadline_s = deadline_s
        self.handshake = handshake
        self.max_pending = max_pending
        self.codes = codes
        self.online = False
        self.parts: collections.deque[tuple[int, float, float]] = collections.deque()  # id, wall, deadline mono
        self.waiting: collections.deque[Decision] = collections.deque()  # decided, not yet presented
        self.current: Decision | None = None
        self.result_valid = False
        self.result_counter = 0
        self.deadline_misses = 0
        self.overflows = 0
        self.triggers = 0
        self.version = 0  # bumped on every visible change, so servers know to refresh

    # -- inputs ------------------------------------------------------------------------------
    def trigger(self, part_id: int, now_wall: float | None = None, now_mono: float | None = None) -> None:
        """The PLC announced a part."""
        now_wall = time.time() if now_wall is None else now_wall
        now_mono = time.monotonic() if now_mono is None else now_mono
        self.parts.append((part_id & 0xFFFFFFFF, now_wall, now_mono + self.deadline_s))
        self.triggers += 1
        self._changed()

    def on_verdict(self, ev: dict[str, Any]) -> None:
        """A ``verdict.<camera>`` event."""
        if self.frame_trigger:
            self._decide(int(ev.get("frame") or 0), ev)
            return
        captured = parse_ts(str(ev["ts"]))
        if self.parts and captured + TS_TOLERANCE_S >= self.parts[0][1]:
            part_id = self.parts.popleft()[0]
            self._decide(part_id, ev)
        # else: a frame from before the oldest waiting part was triggered, or no part waits

    def on_status(self, state: str) -> None:
        online = state == "online"
        if online != self.online:
            self.online = online
            self._changed()

    def acknowledge(self) -> None:
        """The PLC read the presented result."""
        if self.result_valid:
            self.result_valid = False
            self._present()
            self._changed()

    def tick(self, now_mono: float | None = None) -> None:
        """Fail-safe: every part past its deadline is rejected."""
        now_mono = time.monotonic() if now_mono is None else now_mono
        while self.parts and self.parts[0][2] <= now_mono:
            part_id = self.parts.popleft()[0]
            self.deadline_misses += 1
            self._queue(Decision(part_id, REJECT, CODE_DEADLINE, 0, 0, STATE_ABORTED, time.time()))

    # -- decisions ---------------------------------------------------------------------------
    def _decide(self, part_id: int, ev: dict[str, Any]) -> None:
        label = str(ev.get("label", ""))
        defect = bool(ev.get("defect"))
        code = CODE_OK if not defect else self.codes.get(label, CODE_OTHER)
        score = ev.get("score")
        milli = int(round(max(0.0, min(1.0, float(score))) * 1000)) if isinstance(score, (int, float)) else 0
        self._queue(Decision(part_id & 0xFFFFFFFF, REJECT if defect else PASS, code, milli, int(ev["seq"]),
                             STATE_COMPLETED, time.time()))

    def _queue(self, decision: Decision) -> None:
        if not self.handshake:
            self.current, self.result_valid = decision, True
            self.result_counter = (self.result_counter + 1) & 0xFFFFFFFF
            self._changed()
            return
        if len(self.waiting) >= self.max_pending:
            self.waiting.popleft()  # the PLC stopped acknowledging: keep the newest, count the loss
            self.overflows += 1
        self.waiting.append(decision)
        self._present()
        self._changed()

    def _present(self) -> None:
        if not self.result_valid and self.waiting:
            self.current = self.waiting.popleft()
            self.result_valid = True
            self.result_counter = (self.result_counter + 1) & 0xFFFFFFFF

    def _changed(self) -> None:
        self.version += 1

    @property
    def fault(self) -> bool:
        return not self.online
