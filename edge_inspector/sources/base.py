"""Timestamped items, bounded queues with an explicit overflow policy, and the source thread.

Every camera and microphone is a thread that reads from its device and puts items into its
own bounded queue.  Live sources use ``drop_oldest`` so latency stays bounded when the
inspector falls behind (every drop is counted); file and replay sources use ``block`` so no
frame is ever skipped and results are deterministic.
"""

from __future__ import annotations

import abc
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterator, Literal, TypeVar


from edge_inspector.errors import UserError
from edge_inspector.redact import redact_text
from edge_inspector.supervision import ThreadHealth, run_supervised
from edge_inspector.values import Chunk, Frame  # noqa: F401 - what sources deliver, named where they are made

log = logging.getLogger(__name__)

QueuePolicy = Literal["drop_oldest", "block"]
SourceState = Literal["online", "offline", "reconnecting", "ended"]
StatusCallback = Callable[[str, str, str], None]  # (source name, state, detail)
#: metrics only some kinds of source have: name -> (help, type, value by extra labels)
KindMetrics = dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]


T = TypeVar("T")


@dataclass
class QueueStats:
    put: int = 0
    dropped: int = 0


class BoundedQueue(Generic[T]):
    """A bounded FIFO with an overflow policy and a shared wake-up condition.

    Several queues can share one ``threading.Condition`` so a single inspector thread can
    wait for "any camera has a frame" and batch across cameras.
    """

    def __init__(
        self, maxsize: int, policy: QueuePolicy, wakeup: threading.Condition | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.policy = policy
        self.wakeup = wakeup or threading.Condition()
        self._items: collections.deque[T] = collections.deque()
        self._closed = False
        self.stats = QueueStats()

    def put(self, item: T, stop: threading.Event | None = None) -> bool:
        """Add ``item``; returns False only if a blocking put was abandoned because of ``stop``."""
        with self.wakeup:
            if self.policy == "block":
                while len(self._items) >= self.maxsize:
                    if stop is not None and stop.is_set():
                        return False
                    self.wakeup.wait(0.05)
            elif len(self._items) >= self.maxsize:
                self._items.popleft()
                self.stats.dropped += 1
            self._items.append(item)
            self.stats.put += 1
            self.wakeup.notify_all()
            return True

    def get_nowait(self) -> T | None:
        with self.wakeup:
            if not self._items:
                return None
            item = self._items.popleft()
            self.wakeup.notify_all()  # a blocked producer may continue
            return item

    def close(self) -> None:
        """The producer is finished; consumers drain what is left."""
        with self.wakeup:
            self._closed = True
            self.wakeup.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def exhausted(self) -> bool:
        with self.wakeup:
            return self._closed and not self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class SourceCounters:
    items: int = 0
    reconnects: int = 0
    errors: int = 0
    overflows: int = 0  # device-side overruns (audio input overflow)
    stale: int = 0  # frames that arrived too late to be published as fresh (dropped)
    stalls: int = 0  # times the source delivered nothing for its stall timeout
    last_error: str = ""
    state: str = "starting"  # so a source that is missing at start-up still reports "offline"
    extra: dict[str, float] = field(default_factory=dict)


class SourceThread(threading.Thread, Generic[T], metaclass=abc.ABCMeta):
    """Base for capture threads: open, read until stopped, reconnect live sources with backoff.

    Subclasses implement :meth:`open`, :meth:`read_items` and :meth:`release`.  File sources
    set ``live = False``: they end when the file ends (or loop) instead of reconnecting.
    """

    kind: str = "source"

    def __init__(
        self,
        name: str,
        uri: str,
        queue: BoundedQueue[T],
        on_status: StatusCallback | None = None,
        live: bool = True,
        backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        super().__init__(name=f"{self.kind}:{name}", daemon=True)
        self.source_name = name
        self.uri = uri
        self.queue = queue
        self.live = live
        self.on_status = on_status or (lambda *_: None)
        self.backoff_s = backoff_s
        self.stop_event = threading.Event()
        self.counters = SourceCounters()
        self.fatal_error: str | None = None
        #: a live source that delivers nothing for this long is reported offline (None: never)
        self.stall_after_s: float | None = None
        self.last_progress = time.monotonic()
        self._state_lock = threading.Lock()
        self.health: ThreadHealth | None = None  # where a failure of this thread is counted

    # -- subclass hooks --------------------------------------------------------------------
    @abc.abstractmethod
    def open(self) -> None:
        """Open the device or file; raise to report it offline (live) or failed (file)."""

    @abc.abstractmethod
    def read_items(self) -> Iterator[T]:
        """Yield items until the stream ends (file) or fails (raise)."""

    def release(self) -> None:
        pass

    def source_metrics(self) -> KindMetrics:
        """What this kind of source counts beyond :class:`SourceCounters` (a camera stream's buffers)."""
        return {}

    # -- lifecycle ----------------------------------------------------------------------
    def _set_state(self, state: str, detail: str = "", only_if: str | None = None) -> bool:
        """Report a state change once (thread-safe: the stall check runs in another thread).

        ``only_if`` makes the change conditional on the current state, atomically.
        """
        with self._state_lock:
            if state == self.counters.state or (only_if is not None and self.counters.state != only_if):
                return False
            self.counters.state = state
            try:
                self.on_status(self.source_name, state, redact_text(detail))
            except Exception as exc:  # noqa: BLE001 - reporting must not break capture
                if not (isinstance(exc, UserError) and exc.quiet):
                    log.warning("source %s: status %s not reported: %s", self.source_name, state, exc)
            return True

    def progress(self) -> None:
        """The device delivered a fresh item (called per read, also for items skipped by a rate limit)."""
        self.last_progress = time.monotonic()

    def check_stall(self, now_mono: float | None = None) -> bool:
        """Report an online live source that delivered nothing for ``stall_after_s`` as offline.

        Called periodically from outside the capture thread, which may be blocked in a read
        that only times out later: the state, ``/readyz`` and the heartbeat flip within the
        stall timeout, not after the read gives up.  True when it flipped now.
        """
        limit = self.stall_after_s
        if not self.live or limit is None or self.counters.state != "online":
            return False
        silent = (time.monotonic() if now_mono is None else now_mono) - self.last_progress
        if silent < limit:
            return False
        if self._set_state("offline", f"no frame for {silent:.1f} s (stream stalled)", only_if="online"):
            self.counters.stalls += 1
            log.warning("source %s stalled: nothing received for %.1f s", self.source_name, silent)
            return True
        return False

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        """The capture loop under supervision: a bug that escapes it restarts a live source."""

        def fatal(exc: BaseException) -> None:
            self.fatal_error = self.fatal_error or f"{self.source_name}: {redact_text(str(exc))}"

        try:
            run_supervised(self.name, self._capture, restart=self.live, stop=self.stop_event,
                           health=self.health, on_fatal=fatal)
        finally:
            self.queue.close()  # first: the inspector may drain and finish right away
            self._set_state("ended")

    def _capture(self) -> None:
        delay = self.backoff_s[0]
        try:
            while not self.stop_event.is_set():
                try:
                    self.open()
                    self.progress()
                    self._set_state("online")
                    delay = self.backoff_s[0]
                    for item in self.read_items():
                        if not self.queue.put(item, self.stop_event):
                            break
                        self.counters.items += 1
                        self.progress()
                        if self.counters.state != "online":  # a stall that ended by itself
                            self._set_state("online", "frames flowing again")
                        if self.stop_event.is_set():
                            break
                    if not self.live:
                        break
                    if not self.stop_event.is_set():
                        raise OSError("stream ended")
                except Exception as exc:  # noqa: BLE001 - a source must never kill the daemon
                    self.counters.errors += 1
                    self.counters.last_error = redact_text(str(exc))
                    if not self.live or isinstance(exc, UserError):  # retrying cannot fix these
                        self.fatal_error = f"{self.source_name}: {self.counters.last_error}"
                        log.error("source %s failed: %s", self.source_name, self.counters.last_error)
                        break
                    log.warning("source %s lost (%s); reconnecting in %.1fs",
                                self.source_name, self.counters.last_error, delay)
                    self._set_state("offline", self.counters.last_error)
                    self.release()
                    if self.stop_event.wait(delay):
                        break
                    self._set_state("reconnecting")
                    self.counters.reconnects += 1
                    delay = min(delay * 2, self.backoff_s[1])
        finally:
            self.release()


def sleep_until(deadline_mono: float, stop: threading.Event) -> bool:
    """Sleep until a monotonic deadline; True if stopped meanwhile (used for rate limits)."""
    remaining = deadline_mono - time.monotonic()
    return stop.wait(remaining) if remaining > 0 else stop.is_set()
