"""Sparse helpers of ``sign``'s aggregates (row scaling is :func:`graphprof.models.bag.row_scale`): the top-k
entries of each row, and the social hop of a sparse bag of items (``A @ T`` cut to the top-k of each row) in row
blocks over the cores."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

#: Entries (before the top-k) of the row blocks of a sparse social hop ``A @ T`` in flight together.
HOP_BLOCK_NNZ = 4_000_000
#: Below this many entries a hop is one product (threads would cost more than they save).
PARALLEL_MIN_NNZ = 1_000_000


def top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` entries of largest magnitude in every row (ties: the lower column), vectorised.

    One stable radix sort of an int64 key (row in the high 32 bits, the float32 magnitude's bit pattern, which
    orders like the value for non-negative floats, inverted in the low 32): O(nnz), no per-row loop.

    Shapes: ``m`` ``[n, d]`` -> ``[n, d]`` with at most ``k`` non-zeros per row.
    """
    m = m.tocsr()
    m.sum_duplicates()
    m.sort_indices()
    counts = np.diff(m.indptr)
    if len(counts) == 0 or counts.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    bits = np.abs(m.data).astype(np.float32).view(np.uint32).astype(np.int64)
    order = np.argsort((rows << 32) | (0xFFFFFFFF - bits), kind="stable")
    rank = np.arange(m.nnz) - m.indptr[rows[order]]
    keep = np.sort(order[rank < k])
    indptr = np.concatenate([[0], np.cumsum(np.minimum(counts, k))])
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def sparse_hop(adj: sp.csr_matrix, m: sp.csr_matrix, k: int, block_nnz: int = HOP_BLOCK_NNZ,
               workers: int | None = None) -> sp.csr_matrix:
    """``top_k_per_row(adj @ m, k)`` computed in row blocks of ``adj`` (the blocks in flight together hold at most
    about ``block_nnz`` entries before the top-k), so memory is ``O(rows * k)`` plus ``block_nnz``, not the full
    product (the full second hop holds up to rows x friends² x a bag's entries). ``workers`` blocks run at once
    (default: the CPUs, at most 4; scipy's product and numpy's sort release the GIL), each at most
    ``block_nnz / workers`` large, at least one per worker past ``PARALLEL_MIN_NNZ`` entries. Every row is its
    own: the result is the same for any blocks and workers.

    Shapes: ``adj`` ``[n, n]``, ``m`` ``[n, d]`` -> ``[n, d]`` with at most ``k`` non-zeros per row.
    """
    adj, m = adj.tocsr(), m.tocsr()
    per_row = np.diff(m.indptr)
    # an upper bound on each output row's entries: sum over its neighbours of their entries (counted on the
    # adjacency's structure: its weights, row-normalised, would give their mean)
    ones = sp.csr_matrix((np.ones(adj.nnz), adj.indices, adj.indptr), shape=adj.shape)
    cost = np.cumsum(ones @ per_row.astype(np.float64)) if adj.shape[0] else np.zeros(0)
    del ones
    workers = workers or min(os.cpu_count() or 1, 4)
    if not len(cost) or cost[-1] <= min(block_nnz, PARALLEL_MIN_NNZ if workers > 1 else block_nnz):
        return top_k_per_row(adj @ m, k)
    # at least one block per worker; none larger than its share of block_nnz
    size = max(min(block_nnz // workers, int(np.ceil(cost[-1] / workers))), 1)
    bounds = np.unique(np.searchsorted(cost, np.arange(size, cost[-1], size)))
    edges = [0] + [int(b) for b in bounds if 0 < b < adj.shape[0]] + [adj.shape[0]]
    spans = [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda span: top_k_per_row(adj[span[0]:span[1]] @ m, k), spans))
    return sp.vstack(parts, format="csr")
