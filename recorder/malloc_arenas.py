"""Bound glibc's malloc arenas in a recorder process (one thread per camera).

glibc gives threads that contend for the heap arenas of their own, up to 8 per
core, and memory freed in an arena stays in it.  Every camera thread allocates
and frees megabytes a second (FFmpeg's fragment and I/O buffers, PyAV's copies
of them for the spool file), so each arena ends up holding a camera's worth of
freed, fragmented buffers: measured in ``bench/record`` (10 cameras, 1080p
4.8 Mbit/s, 10 s segments) the process held 9.0 MiB per camera with glibc's
default and 4.8 with two arenas (``MALLOC_ARENA_MAX=2``), at the same CPU.

``mallopt(M_ARENA_MAX)`` has the environment variable's effect when it runs
before the threads allocate: :class:`recorder.service.RecorderService` calls
:func:`bound_arenas` before it starts any.  Without glibc (musl, macOS) it does
nothing.  ``MALLOC_ARENA_MAX`` set in the environment wins (an operator's choice).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

#: glibc's mallopt parameter number for the arena cap (malloc.h: M_ARENA_MAX -8)
M_ARENA_MAX = -8
#: arenas a recorder process uses: two lets the uploader and a camera allocate side by side
RECORDER_ARENAS = 2

_done = False


def bound_arenas(arenas: int = RECORDER_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process (once); True if it was set."""
    global _done
    if _done or "MALLOC_ARENA_MAX" in os.environ:
        return False
    _done = True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # not glibc: its own allocator rules
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return ok
