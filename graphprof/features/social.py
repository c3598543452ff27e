"""Social-graph statistics of the user features: degree, PageRank and local clustering coefficient, from the
friendship adjacency. Used by :func:`graphprof.features.build_features`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Products (entries of a row block of the oriented U @ U and Uᵀ @ U) computed at once when counting triangles.
CLUSTERING_BLOCK = 2_000_000


def pagerank(adj: sp.csr_matrix, alpha: float = 0.85, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """PageRank by power iteration on a sparse adjacency (dangling mass spread uniformly), scaled so the
    mean is 1 (comparable across graph sizes)."""
    n = adj.shape[0]
    if n == 0:
        return np.zeros(0)
    out_deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.divide(1.0, out_deg, out=np.zeros_like(out_deg), where=out_deg > 0)
    adj_t = adj.T  # a CSC view, no copy: transitionᵀ r = adjᵀ (r / out_degree)
    dangling = out_deg == 0
    r = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        new = alpha * (adj_t @ (inv * r) + r[dangling].sum() / n) + (1 - alpha) / n
        done = np.abs(new - r).sum() < tol
        r = new
        if done:
            break
    return r * n


def clustering(adj: sp.csr_matrix) -> np.ndarray:
    """Local clustering coefficient of each node of an undirected, unweighted graph.

    Triangles are counted on the graph oriented from lower to higher (degree, id) rank: every node keeps at
    most ~sqrt(2E) out-neighbours, so no product touches a hub's full neighbourhood squared (as the undirected
    ``(A @ A) * A`` would). A triangle ``x < y < z`` is found
    once in ``W = (U @ U) * U`` at ``(x, z)`` (row sums count it for x, column sums for z) and once in
    ``T = (Uᵀ @ U) * U`` at ``(y, z)`` (row sums count it for y). Row blocks of ~``CLUSTERING_BLOCK`` products
    each keep the memory bounded; the counts are exact integers either way.
    """
    coo = sp.csr_matrix(adj).tocoo(copy=True)
    coo.sum_duplicates()
    edge = (coo.data > 0) & (coo.row != coo.col)
    row, col = coo.row[edge].astype(np.int64), coo.col[edge].astype(np.int64)
    n = adj.shape[0]
    deg = np.bincount(row, minlength=n).astype(np.float64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), deg))] = np.arange(n)
    up = rank[row] < rank[col]
    u = sp.csr_matrix((np.ones(int(up.sum())), (row[up], col[up])), shape=(n, n))
    ut = u.T.tocsr()
    out_deg = np.diff(u.indptr).astype(np.float64)
    triangles = np.zeros(n)
    cost = np.cumsum(u @ out_deg + ut @ out_deg + 1.0) if n else np.zeros(0)
    bounds = np.searchsorted(cost, np.arange(0.0, cost[-1] if n else 0.0, CLUSTERING_BLOCK)[1:]).tolist()
    for lo, hi in zip([0] + bounds, bounds + [n]):
        if hi > lo:
            block = u[lo:hi]
            w = (block @ u).multiply(block).tocsr()
            triangles[lo:hi] += np.asarray(w.sum(axis=1)).ravel()
            triangles += np.bincount(w.indices, weights=w.data, minlength=n)
            triangles[lo:hi] += np.asarray((ut[lo:hi] @ u).multiply(block).sum(axis=1)).ravel()
    pairs = deg * (deg - 1) / 2.0
    return np.divide(triangles, pairs, out=np.zeros_like(triangles), where=pairs > 0)


def _social_stats(adj: sp.csr_matrix, n_users: int) -> dict[str, np.ndarray]:
    deg = np.diff(adj.indptr).astype(np.float64)
    return {"social_degree": deg, "log_social_degree": np.log1p(deg),
            "pagerank": pagerank(adj) if adj.nnz else np.ones(n_users),
            "clustering": clustering(adj) if adj.nnz else np.zeros(n_users)}
