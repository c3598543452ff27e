"""Keep memory that numpy frees for reuse, rather than giving it back to the kernel and faulting it in again.

glibc serves every allocation above 32 MB with its own ``mmap`` and returns it with ``munmap`` when freed; a
stage that makes many 10M-row temporaries (build-graph at 1M users makes hundreds) then pays the kernel to
zero fresh pages for each one: ~15 s of system time on 2 cores at 1M users. With mmap off and a high trim
threshold, freed blocks stay in the heap and the next temporary reuses them. The cost is that the process
keeps its peak (the figures in benchmarks/RESULTS.md are peak RSS either way).

Only the command line calls this (one process, one command); the Python API leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's mallopt parameters (malloc.h)
KEEP_FREE = 2**31 - 1  # bytes of free heap top kept rather than trimmed (mallopt takes a C int)
TOP_PAD = 1 << 30  # bytes asked of the kernel beyond each heap growth


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above. Returns False where it does not apply (not Linux/glibc), changing nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl, or no libc.so.6
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, KEEP_FREE) and mallopt(M_TOP_PAD, TOP_PAD))
