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

:func:`trim` gives the freed memory back at once (glibc's ``malloc_trim``), where a stage's temporaries would
otherwise stay resident as the level every later stage starts from (GiBs at millions of users).

:func:`page_out` hands the pages of a memory-mapped array back to the kernel once the part needed of it is read.
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


def trim() -> bool:
    """Give the heap's free pages back to the kernel (glibc's ``malloc_trim(0)``: every free page, not only the
    heap's top). Returns whether any were given back; False where it does not apply (not Linux, no glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(malloc_trim(0))


MADV_DONTNEED = 4  # unmap these pages: a shared file mapping's stay in the page cache (written ones included)
MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages (clean file pages are dropped, read again when touched)
PAGE = 4096


def page_out(a, min_bytes: int = 0) -> bool:
    """Hand the pages of ``a``, where it is a view of a memory-mapped file (``np.memmap``), back to the kernel:
    a column read out of a row-major mapped array touches every page of it, and those pages would stay resident
    (counted in the process's memory) until the kernel needs them. The array's contents do not change (pages
    written in this process are kept); they are read again when next touched. A shared mapping (modes ``r``,
    ``r+``, ``w+``) is unmapped only (``MADV_DONTNEED``): its pages stay in the page cache, so a file read
    again and again (``sign``'s hops, a row block at a time) comes back from memory, not from the disk. A
    copy-on-write mapping (mode ``c``) is paged out (``MADV_PAGEOUT``), which keeps the pages it wrote. Returns
    whether it was done (False off Linux, for arrays in ordinary memory or smaller than ``min_bytes``, or where
    the kernel refuses)."""
    import numpy as np

    base = a
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    if base is None or not sys.platform.startswith("linux") or a.nbytes == 0 or a.nbytes < min_bytes:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return False
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    start = a.__array_interface__["data"][0]
    first = start + sum(min(0, s * (n - 1)) for s, n in zip(a.strides, a.shape))
    end = start + sum(max(0, s * (n - 1)) for s, n in zip(a.strides, a.shape)) + a.itemsize
    lo = first - first % PAGE
    advice = MADV_PAGEOUT if getattr(base, "mode", "c") == "c" else MADV_DONTNEED
    return libc.madvise(lo, end - lo, advice) == 0


def reserve(path) -> None:
    """Allocate the disk blocks of the file ``path`` (its whole length) now: a memory-mapped file is sparse
    until written, and a write into it on a full disk kills the process (SIGBUS) where this raises
    ``OSError(ENOSPC)``, which the command line reports."""
    import os

    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fh.fileno(), 0, size)
