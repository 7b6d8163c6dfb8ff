"""Give freed heap memory back to the system, so RSS shows what the daemon holds, not what it once held.

The daemon's buffers are bounded (queues, ZeroMQ pipes, catch-up batches), but under a burst they
fill up to their bounds, and glibc's allocator keeps the freed memory in its per-thread arenas
for reuse instead of returning it: RSS then records the highest burst ever seen and creeps up
over days with each new peak.  ``malloc_trim(0)`` returns every free page of every arena to the
system; the service calls it every ``TRIM_INTERVAL_S`` (a few milliseconds each time).  Once a
minute was too seldom: a catch-up burst or a subscriber's backlog (tens of MB, freed again within
seconds) then stayed in RSS for up to a minute, and a soak sampling RSS every 10 s read those
bursts as growth (samples 5 to 10 MB above the level before and after).  What an inference
engine's arena frees after a larger batch than usual (``runtime/onnx.py``) goes back the same
way.  Elsewhere than glibc (musl, macOS) it is a no-op.

``limit_malloc_arenas`` caps how many arenas glibc keeps (by default 8 per core): each thread
that allocates gets an arena of its own up to that cap, and an arena once made keeps its heap
(a few MB) for the life of the process, so a thread first busy after an hour adds a step to RSS
that no trim gives back.  Two arenas serve the daemon's threads (most of its work runs in
ONNX Runtime, FFmpeg and SQLite, which allocate in bulk) without a measurable cost in speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import sys
from typing import Any

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 10.0

_libc: ctypes.CDLL | None = None
_checked = False


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


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
                if hasattr(lib, "mallinfo2"):  # glibc >= 2.33
                    lib.mallinfo2.restype = _MallInfo2
                lib.open_memstream.restype = ctypes.c_void_p
                lib.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
                lib.fclose.argtypes = [ctypes.c_void_p]
                lib.free.argtypes = [ctypes.c_void_p]
                _libc = lib
        except OSError as err:
            log.debug("no malloc_trim here: %s", err)
    return _libc


M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
DAEMON_MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int = DAEMON_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas before the daemon starts its threads; True if the cap was set.

    ``MALLOC_ARENA_MAX`` in the environment (read by glibc itself) is left to win."""
    lib = _glibc()
    if lib is None or "MALLOC_ARENA_MAX" in os.environ or not hasattr(lib, "mallopt"):
        return False
    lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.mallopt.restype = ctypes.c_int
    return bool(lib.mallopt(M_ARENA_MAX, int(count)))


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; True if anything could be released."""
    lib = _glibc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def memory_parts() -> dict[str, float]:
    """Bytes held by each part of the process's memory that can be told apart, for /metrics.

    ``native_in_use``: C allocations live now (glibc: SQLite, ZeroMQ, ONNX Runtime, FFmpeg, NumPy
    arrays, large Python objects); ``native_free``: freed, still inside the allocator's arenas
    (``release_free_memory`` gives its whole pages back, so most of it is not resident);
    ``python_arenas``: CPython's small-object arenas (1 MiB each, given back only when empty) and
    ``python_objects``: the small objects living in them; ``sqlite``: SQLite's own count (part
    of ``native_in_use``).  A part this platform cannot report is absent.
    """
    parts: dict[str, float] = {}
    lib = _glibc()
    if lib is not None and hasattr(lib, "mallinfo2"):
        info = lib.mallinfo2()
        parts["native_in_use"] = float(info.uordblks + info.hblkhd)
        parts["native_free"] = float(info.fordblks)
    parts.update(_pymalloc(lib))
    used = _sqlite_memory_used()
    if used is not None:
        parts["sqlite"] = float(used)
    return parts


def _pymalloc(lib: ctypes.CDLL | None) -> dict[str, float]:
    """CPython's small-object allocator, from its own statistics (what ``sys._debugmallocstats``
    prints), written to memory rather than to stderr; empty where it is not available."""
    stats = getattr(ctypes.pythonapi, "_PyObject_DebugMallocStats", None)
    if lib is None or stats is None or sys.implementation.name != "cpython":
        return {}
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = lib.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return {}
    stats.argtypes = [ctypes.c_void_p]
    try:
        stats(stream)  # prints nothing when pymalloc is not in use (tracemalloc, PYTHONMALLOC=malloc)
    finally:
        lib.fclose(stream)
        text = ctypes.string_at(buf.value, size.value).decode("ascii", "replace") if buf.value else ""
        lib.free(buf)
    arenas = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    objects = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    if arenas is None or objects is None:
        return {}
    return {"python_arenas": float(int(arenas[1].replace(",", "")) * 1024 * 1024),
            "python_objects": float(objects[1].replace(",", ""))}


_sqlite_used: list[Any] = []  # [the C function or None], looked up once


def _sqlite_memory_used() -> int | None:
    """SQLite's own count of the heap it holds (page caches of every connection, statements)."""
    if not _sqlite_used:
        import sqlite3  # noqa: F401  (loads the library the journal uses, so the name finds that one)

        try:
            fn = getattr(ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0"), "sqlite3_memory_used", None)
        except OSError:
            fn = None
        if fn is not None:
            fn.restype = ctypes.c_int64
        _sqlite_used.append(fn)
    fn = _sqlite_used[0]
    return None if fn is None else int(fn())
