"""Giving memory back after a catch-up, for a daemon that runs for months.

A first sync (or a catch-up after an outage) reads pages of hundreds of tickets, a few in flight at
once in the read-ahead threads; then the daemon idles on one small page per poll for months. Two
glibc behaviours would keep that peak resident for good:

* each thread that allocates gets its own malloc arena, and memory freed in the read-ahead threads'
  arenas is never reused by the poll's thread: :func:`limit_malloc_arenas` caps them (the effect of
  ``MALLOC_ARENA_MAX``, set from inside because a library cannot count on its environment);
* freed heap is not returned to the system: :func:`release_after_catch_up` collects and trims once
  a poll that read many tickets is done.

Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from functools import cache

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # <malloc.h>
ARENAS = 1


@cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018  # glibc only
    except (OSError, AttributeError):
        return None
    return libc


@cache
def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def release_after_catch_up() -> bool:
    gc.collect()
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
