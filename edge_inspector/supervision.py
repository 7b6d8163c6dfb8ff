"""Supervision of long-lived threads: no thread dies silently, no half-dead daemon reports healthy.

Every long-lived thread of the daemon runs its work through :func:`run_supervised`.  An
unexpected exception is logged once with its traceback (a known condition, a
:class:`~edge_inspector.errors.UserError` such as a full disk, as one line without one), counted
in :class:`ThreadHealth`, and then either

- the work is restarted after a backoff (0.5 s doubling to 10 s; a run that lasted a minute
  resets it), for components that can start afresh: the catch-up server, the publisher loop, the
  health server, the native log reader; or
- the thread is marked *fatal*: :attr:`ThreadHealth.fatal` names it, ``/readyz`` and
  ``/healthz`` answer 503, and the service stops with exit code 1 so systemd restarts the
  whole daemon (the inspectors, whose state cannot be rebuilt behind a running line's back).

The counts are exported as ``edge_inspector_thread_failures_total`` and
``edge_inspector_thread_restarts_total`` per thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from edge_inspector.errors import UserError

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 10.0)
STABLE_RUN_S = 60.0  # a run that lasted this long resets the backoff


class ThreadHealth:
    """Failures and restarts per thread name, and the first failure that could not be recovered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures: dict[str, int] = {}
        self.restarts: dict[str, int] = {}
        self.fatal: str | None = None

    def record_failure(self, name: str, exc: BaseException, restarting: bool) -> int:
        """Count one failure; returns how many this thread has had (1 = first)."""
        with self._lock:
            n = self.failures.get(name, 0) + 1
            self.failures[name] = n
            if restarting:
                self.restarts[name] = self.restarts.get(name, 0) + 1
            elif self.fatal is None:
                self.fatal = f"{name}: {describe(exc)}"
            return n

    def mark_fatal(self, name: str, reason: str) -> None:
        """A component found dead by a periodic check (not by an exception in our code)."""
        with self._lock:
            self.failures[name] = self.failures.get(name, 0) + 1
            if self.fatal is None:
                self.fatal = f"{name}: {reason}"

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self.failures), dict(self.restarts)


#: where threads that live outside a service (the native log reader) report
PROCESS_HEALTH = ThreadHealth()


def describe(exc: BaseException) -> str:
    """One line naming the exception (``UserError`` messages are already sentences)."""
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def log_failure(name: str, exc: BaseException, count: int, restarting: bool) -> None:
    """Log a thread failure: the first with its traceback, repeats as one line."""
    what = f"restarting in a moment (failure {count})" if restarting else "giving up: the daemon stops"
    if isinstance(exc, UserError) and exc.quiet:
        return
    if isinstance(exc, UserError):
        log.error("%s: %s; %s", name, exc, what)
    elif count == 1:
        log.error("thread %s failed; %s", name, what, exc_info=(type(exc), exc, exc.__traceback__))
    else:
        log.error("thread %s failed again: %s; %s", name, describe(exc), what)


def run_supervised(
    name: str,
    body: Callable[[], None],
    *,
    restart: bool,
    stop: threading.Event | None = None,
    health: ThreadHealth | None = None,
    backoff_s: tuple[float, float] = BACKOFF_S,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> None:
    """Run ``body`` until it returns; on an exception log, count, and restart it or give up.

    A ``body`` that returns has finished its job (a clean stop).  An exception raised while
    ``stop`` is set is part of shutting down and is not counted.
    """
    health = health or PROCESS_HEALTH
    delay = backoff_s[0]
    while True:
        started = time.monotonic()
        try:
            body()
            return
        except Exception as exc:  # noqa: BLE001 - this is the one place that must catch everything
            if stop is not None and stop.is_set():
                log.debug("thread %s ended while stopping: %s", name, describe(exc))
                return
            count = health.record_failure(name, exc, restarting=restart)
            log_failure(name, exc, count, restart)
            if not restart:
                if on_fatal is not None:
                    on_fatal(exc)
                return
        if time.monotonic() - started >= STABLE_RUN_S:
            delay = backoff_s[0]
        if stop is not None:
            if stop.wait(delay):
                return
        else:
            time.sleep(delay)
        delay = min(delay * 2, backoff_s[1])


def lower_priority(niceness: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux: nice is per thread) by ``niceness``.

    For helper threads whose work can wait (pictures, previews): under full load the scheduler
    runs the inspection threads first.  Does nothing where that is not possible.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except (AttributeError, OSError):
        pass
