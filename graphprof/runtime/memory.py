"""Keep the memory numpy frees for reuse, rather than giving it back to the kernel and faulting it in again.

glibc serves a large allocation (every one above its highest mmap threshold, 32 MiB on 64-bit) with a mapping
of its own and unmaps it when it is freed, so a stage that makes many large temporaries has the kernel map and
zero fresh pages for each one. :func:`keep_freed_memory` sets three ``mallopt`` parameters: ``M_MMAP_MAX`` 0
(no allocation gets its own mapping: all come from the heap), ``M_TRIM_THRESHOLD`` :data:`KEEP_FREE` (free
memory at the top of the heap is kept rather than trimmed) and ``M_TOP_PAD`` :data:`TOP_PAD` (each growth of
the heap asks the kernel for that much more, so it grows in few steps; pages not yet touched are not resident).
Freed blocks then stay in the heap and the next temporary reuses them. The cost: the process keeps what it
freed, so its resident memory does not fall back after a stage's peak.

Only the command line calls this (one process, one command); the Python API leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's mallopt parameters (malloc.h)
KEEP_FREE = 2**31 - 1  # bytes of free heap top kept rather than trimmed (mallopt takes a C int)
TOP_PAD = 1 << 30  # bytes asked of the kernel beyond each heap growth


def keep_freed_memory() -> bool:
    """Set the three ``mallopt`` parameters above for the whole process. Returns True where all three were set;
    False where they do not apply (not Linux, or no glibc ``libc.so.6``: nothing changed) or glibc refused one (in
    the order above; those before it stay set)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl, or no libc.so.6
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, KEEP_FREE) and mallopt(M_TOP_PAD, TOP_PAD))
