"""Giving memory back: glibc keeps what a busy cycle freed (per-thread arenas, the top of the
heap) unless asked. `veille run` caps the arenas at start and trims after its periodic jobs;
elsewhere (musl, macOS) these do nothing.

ctypes rather than a package: two libc calls, no package does just this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
ARENAS = 2  # the event loop thread and the store/fetch threads share two arenas


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # glibc only
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas for the threads started from now on; whether it applied."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, arenas) == 1)


def trim() -> bool:
    """Return the free memory at the top of the heaps to the system; whether any was."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0) == 1)
