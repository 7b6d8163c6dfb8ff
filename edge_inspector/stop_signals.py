"""SIGINT and SIGTERM for the long-running commands (``run``, ``tail``, ``record``, ``replay``).

A shell starts a background job (``cmd &``, ``nohup``, a CI script, a supervisor written in
shell) with SIGINT *ignored*, and Python then installs no ``KeyboardInterrupt`` handler: such a
process would ignore Ctrl-C forwarded to it, and SIGTERM would kill it without its clean-up (no
exit 0, no flushed journal).  So every long-running command installs both handlers explicitly,
whatever disposition it inherited, and puts the previous ones back when it is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[int, object], None]


@contextlib.contextmanager
def on_stop_signals(handler: Handler) -> Iterator[None]:
    """Call ``handler(signum, frame)`` on SIGINT and SIGTERM inside the block.

    Signal handlers belong to the main thread; elsewhere (a command run by a test's worker
    thread) the block runs with the dispositions it has.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_stop_signals() -> contextlib.AbstractContextManager[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` inside the block (a command's normal stop)."""
    return on_stop_signals(_interrupt)
