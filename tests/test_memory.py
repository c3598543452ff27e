"""page_out: the pages of a memory-mapped array handed back to the kernel, its contents unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from graphprof.runtime.memory import page_out


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return -1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_PAGEOUT) is Linux's")
def test_a_mapped_array_is_paged_out_and_reads_the_same(tmp_path):
    data = np.random.default_rng(0).random((2_000_000, 6))  # 96 MB, row-major like the graph's edge attributes
    path = tmp_path / "a.bin"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float64, mode="c", shape=data.shape)
    column = mapped[:, 3].copy()  # touches every page
    before = _rss_file_kib()
    done = page_out(mapped[10:])  # a view of the mapping, not page-aligned
    if not done:
        pytest.skip("this kernel refuses MADV_PAGEOUT (before Linux 5.4)")
    assert _rss_file_kib() < before - 50_000  # most of the 96 MB left the resident set
    np.testing.assert_array_equal(column, data[:, 3])
    np.testing.assert_array_equal(mapped, data)  # read again from the file: the same numbers
    mapped[0, 0] = -1.0  # a page written in this process (copy-on-write) keeps what was written
    assert page_out(mapped)
    assert mapped[0, 0] == -1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_DONTNEED) is Linux's")
@pytest.mark.parametrize("mode", ["r", "w+"])
def test_a_shared_mapping_is_unmapped_and_reads_the_same(tmp_path, mode):
    """Shared mappings (sign's working files) leave the resident set; what was written stays (page cache)."""
    data = np.random.default_rng(1).random((2_000_000, 6))
    path = tmp_path / "a.bin"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float64, mode=mode, shape=data.shape)
    if mode == "w+":  # a fresh file, written through the mapping
        mapped[:] = data
    assert float(mapped[:, 3].sum()) == float(data[:, 3].sum())  # touches every page
    before = _rss_file_kib()
    assert page_out(mapped[10:])
    assert _rss_file_kib() < before - 50_000
    np.testing.assert_array_equal(mapped, data)
    del mapped
    np.testing.assert_array_equal(np.fromfile(path).reshape(data.shape), data)  # in the file


def test_arrays_in_ordinary_memory_are_left_alone():
    assert not page_out(np.zeros((10, 3)))
    assert not page_out(np.zeros(0))


def test_purchase_matrix_reads_mapped_attributes_a_slice_at_a_time_with_the_same_values(tmp_path, monkeypatch):
    """Past PAGE_OUT_MIN_BYTES the mapped [edges, 6] attributes are read a slice of rows at a time, each slice's
    pages handed back: the matrix is the one a whole-column read gives."""
    from fixtures_small import build_shop

    from graphprof.graph import hetero, load_graph

    work = build_shop(tmp_path)
    whole = {a: load_graph(work).purchase_matrix(a) for a in ("quantity", "count")}
    handed = []
    monkeypatch.setattr(hetero, "PAGE_OUT_MIN_BYTES", 0)
    monkeypatch.setattr(hetero, "PAGE_OUT_ROWS", 7)
    real = page_out
    monkeypatch.setattr("graphprof.runtime.memory.page_out", lambda a, m=0: handed.append(len(a)) or real(a, m))
    graph = load_graph(work)
    for attr, want in whole.items():
        got = graph.purchase_matrix(attr)
        assert (got != want).nnz == 0 and np.array_equal(got.indptr, want.indptr)
    edges = whole["count"].nnz
    assert len(handed) >= 2 * (edges // 7) and max(handed) <= 7  # slices of at most 7 rows, for each attribute


def test_reserve_allocates_a_sparse_file_and_says_a_full_disk_as_oserror(tmp_path, monkeypatch):
    import errno
    import os

    from graphprof.runtime.memory import reserve

    path = tmp_path / "m.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(4096, 8))
    reserve(path)
    assert os.stat(path).st_blocks * 512 >= os.path.getsize(path)  # every block allocated

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError) as err:
        reserve(path)
    assert err.value.errno == errno.ENOSPC


def test_trim_gives_freed_heap_memory_back(tmp_path):
    """With the command line's allocator settings (every allocation from the heap, freed memory kept), a freed
    GiB stays resident until ``trim`` gives it back. Run in a child process: the settings are process-wide."""
    import subprocess

    code = """
import numpy as np
from graphprof.runtime.memory import keep_freed_memory, trim
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
assert keep_freed_memory()
base = rss()
a = np.ones(2 ** 27)  # 1 GiB, written so every page is resident
a[-1] = 2
del a
kept = rss() - base
assert trim()
print(kept, rss() - base)
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc_trim: Linux only")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    kept, after = int(out[0]), int(out[1])
    assert kept > 2 ** 29 and after < 2 ** 27
