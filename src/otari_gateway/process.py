"""Process-level tuning applied once start-up is complete."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Two arenas: the event loop's and one shared by the helper threads (tokio's HTTP workers,
# aiosqlite, start-up loading). glibc's default, eight per core, gives each thread its own
# heap that keeps its high-water mark.
_ARENAS = 2
# Fixed at glibc's initial value: by default the threshold rises after a large buffer is
# freed, so later request bodies of that size land on the heap and pin it instead of being
# returned to the system when done.
_MMAP_THRESHOLD_BYTES = 128 * 1024
_TRIM_THRESHOLD_BYTES = 128 * 1024

# Young-generation threshold: the default (700) runs a collection every few requests.
_GEN0_THRESHOLD = 20_000


def settle_heap() -> None:
    """Move everything allocated during start-up out of the collector's view.

    Imports, SQLAlchemy metadata and pydantic schemas are long-lived; without this every
    full collection walks them again (measured under load: 35–60 ms pauses, 2–3 per second,
    which is most of the p99 latency).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, gen1, gen2)


def tune_malloc() -> None:
    """Bound glibc's per-thread heaps; call before any helper thread starts.

    Measured after chat and stream load at 64 connections (one worker): 157 MB resident
    instead of 163 MB, at the same throughput. A no-op where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return
    mallopt(_M_ARENA_MAX, _ARENAS)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
