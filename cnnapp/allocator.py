"""Bound glibc's malloc arenas before TensorFlow starts its thread pools.

glibc gives every thread that allocates concurrently an arena of its own (up to 8 per core) and keeps
the blocks freed in it for reuse: with tf.data's and TensorFlow's pools each freeing 25 MB batches and
49 KB photos in a different arena, the process's RSS climbs to the sum of every arena's high-water
mark. Two arenas keep the reuse (no fresh mapping per tensor, so steps are not slower) and cut that sum:
reading the disk cache of 22,500 photos at 128 px for two epochs peaked at 1,504 MB with glibc's
default and at 1,276 MB with two arenas and the 64 MB shuffle window (docs/bench/data.md).

`MALLOC_ARENA_MAX` set by the user wins; on a libc without `mallopt` this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8   # glibc's mallopt parameter
ARENAS = 2


def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Ask glibc for at most `arenas` malloc arenas; True when it took the setting. Call it before any
    thread is started (arenas already made stay)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
