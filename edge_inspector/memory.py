"""Give freed heap memory back to the system, so RSS shows what the daemon holds, not what it once held.

The daemon's buffers are bounded (queues, ZeroMQ pipes, catch-up batches), but under a burst they
fill up to their bounds, and glibc's allocator keeps the freed memory in its per-thread arenas
for reuse instead of returning it: RSS then records the highest burst ever seen and creeps up
over days with each new peak.  ``malloc_trim(0)`` returns every free page of every arena to the
system; the service calls it every ``TRIM_INTERVAL_S`` (a few milliseconds each time).  Once a
minute was too seldom: a catch-up burst or a subscriber's backlog (tens of MB, freed again within
seconds) then stayed in RSS for up to a minute, and a soak sampling RSS every 10 s read those
bursts as growth (samples 5 to 10 MB above the level before and after).  Elsewhere than glibc
(musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 10.0

_libc: ctypes.CDLL | None = None
_checked = False


def _glibc() -> ctypes.CDLL | None:
    global _libc, _checked
    if not _checked:
        _checked = True
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            if lib is not None and hasattr(lib, "malloc_trim"):
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.malloc_trim.restype = ctypes.c_int
                _libc = lib
        except OSError as err:
            log.debug("no malloc_trim here: %s", err)
    return _libc


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; True if anything could be released."""
    lib = _glibc()
    return bool(lib.malloc_trim(0)) if lib is not None else False
