"""Social-graph statistics of the user features: degree, PageRank and local clustering coefficient, from the
friendship adjacency. Used by :func:`graphprof.features.build_features`."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

#: Products (entries of a row block of the oriented U @ U and Uᵀ @ U) computed at once when counting triangles.
CLUSTERING_BLOCK = 2_000_000


def pagerank(adj: sp.csr_matrix, alpha: float = 0.85, tol: float = 1e-10, max_iter: int = 200,
             symmetric: bool = False) -> np.ndarray:
    """PageRank by power iteration on a sparse adjacency (dangling mass spread uniformly), scaled so the
    mean is 1 (comparable across graph sizes).

    ``symmetric``: the caller knows ``adj`` equals its transpose (the friendship adjacency, built with both
    directions of every tie), so the product with the transpose is read row by row from ``adj`` itself, in
    threads over row ranges: the same sums in the same order (each row's columns ascending), with gathers in
    place of scattered writes."""
    n = adj.shape[0]
    if n == 0:
        return np.zeros(0)
    out_deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.divide(1.0, out_deg, out=np.zeros_like(out_deg), where=out_deg > 0)
    dangling = out_deg == 0
    threads = _workers() if symmetric and n >= PARALLEL_MIN_ROWS else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if threads > 1:
            product = _row_parallel(adj, pool, threads)
        else:
            adj_t = adj.T  # a CSC view, no copy: transitionᵀ r = adjᵀ (r / out_degree)
            product = adj_t.__matmul__
        r = np.full(n, 1.0 / n)
        for _ in range(max_iter):
            new = alpha * (product(inv * r) + r[dangling].sum() / n) + (1 - alpha) / n
            done = np.abs(new - r).sum() < tol
            r = new
            if done:
                break
    return r * n


#: rows from which the social statistics split their sparse products over threads
PARALLEL_MIN_ROWS = 1 << 20


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _row_parallel(m: sp.csr_matrix, pool: ThreadPoolExecutor, k: int):
    """``x -> m @ x`` computed over ``k`` row ranges in ``pool``'s threads (scipy's sparse kernels release the
    GIL): each row's sum is the one the whole product makes."""
    bounds = np.linspace(0, m.shape[0], k + 1).astype(np.int64)
    parts = [m[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]

    def product(x: np.ndarray) -> np.ndarray:
        return np.concatenate(list(pool.map(lambda part: part @ x, parts)))

    return product


def clustering(adj: sp.csr_matrix) -> np.ndarray:
    """Local clustering coefficient of each node of an undirected, unweighted graph.

    Triangles are counted on the graph oriented from lower to higher (degree, id) rank: every node keeps at
    most ~sqrt(2E) out-neighbours, so no product touches a hub's full neighbourhood squared (as the undirected
    ``(A @ A) * A`` would). A triangle ``x < y < z`` is found
    once in ``W = (U @ U) * U`` at ``(x, z)`` (row sums count it for x, column sums for z) and once in
    ``T = (Uᵀ @ U) * U`` at ``(y, z)`` (row sums count it for y). Row blocks of ~``CLUSTERING_BLOCK`` products
    each keep the memory bounded and are counted in threads; the counts are exact integers either way.
    """
    adj = sp.csr_matrix(adj)
    n = adj.shape[0]
    if not adj.has_canonical_format:
        adj = adj.copy()
        adj.sum_duplicates()
    index = np.int32 if n < 2**31 - 1 else np.int64
    row = np.repeat(np.arange(n, dtype=index), np.diff(adj.indptr))
    col = adj.indices.astype(index, copy=False)
    edge = (adj.data > 0) & (row != col)
    deg = np.bincount(row[edge], minlength=n).astype(np.float64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), deg))] = np.arange(n)
    up = edge & (rank[row] < rank[col])
    del rank, edge
    # U in CSR order already: the rows are sorted and each row's columns ascending
    keep_row, keep_col = row[up], col[up]
    del row, up
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keep_row, minlength=n), out=indptr[1:])
    del keep_row
    u = sp.csr_matrix((np.ones(len(keep_col)), keep_col, indptr), shape=(n, n))
    ut = u.T.tocsr()
    out_deg = np.diff(u.indptr).astype(np.float64)
    cost = np.cumsum(u @ out_deg + ut @ out_deg + 1.0) if n else np.zeros(0)
    bounds = np.searchsorted(cost, np.arange(0.0, cost[-1] if n else 0.0, CLUSTERING_BLOCK)[1:]).tolist()
    spans = [(lo, hi) for lo, hi in zip([0] + bounds, bounds + [n]) if hi > lo]

    def count(span_list) -> np.ndarray:
        triangles = np.zeros(n)
        for lo, hi in span_list:
            block = u[lo:hi]
            w = (block @ u).multiply(block).tocsr()
            triangles[lo:hi] += np.asarray(w.sum(axis=1)).ravel()
            triangles += np.bincount(w.indices, weights=w.data, minlength=n)
            triangles[lo:hi] += np.asarray((ut[lo:hi] @ u).multiply(block).sum(axis=1)).ravel()
        return triangles

    k = _workers() if n >= PARALLEL_MIN_ROWS else 1
    with ThreadPoolExecutor(max_workers=k) as pool:
        triangles = sum(pool.map(count, [spans[j::k] for j in range(k)]), np.zeros(n))  # whole numbers: exact
    pairs = deg * (deg - 1) / 2.0
    return np.divide(triangles, pairs, out=np.zeros_like(triangles), where=pairs > 0)


def _social_stats(adj: sp.csr_matrix, n_users: int) -> dict[str, np.ndarray]:
    deg = np.diff(adj.indptr).astype(np.float64)
    return {"social_degree": deg, "log_social_degree": np.log1p(deg),
            "pagerank": pagerank(adj, symmetric=True) if adj.nnz else np.ones(n_users),
            "clustering": clustering(adj) if adj.nnz else np.zeros(n_users)}
