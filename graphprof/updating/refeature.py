"""The feature rows of the users an update touched, in the saved feature space, read from their own edges.

Every feature but PageRank is a function of the user's purchases, ties and neighbours' ties
(:func:`graphprof.prediction.extend_features._row_features` computes them for ``predict``'s new users; here the same
code reads the rows of the merged graph), so a touched user's row equals what ``build_features(merged graph,
state=saved)`` gives it. Who is touched: users with new purchases, both ends of a new tie, every common friend of
a new tie's ends (their clustering moves), new users. PageRank is global: the saved users keep their saved score,
new users get the PageRank equation solved over their own rows around their neighbours' scores (as ``predict``
estimates it). So an update never moves a saved user's PageRank; ``train`` after updates, or a rebuild, does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graphprof.features import item_category_matrix, lookup_sorted
from graphprof.graph import BUY_ATTRS, BUYS, FRIEND, IN_CAT, ProfileGraph
from graphprof.graph.hetero import EdgeRows
from graphprof.prediction.extend_features import ALPHA, LOCAL_MAX_ITER, LOCAL_TOL, _row_features


class _View:
    """What ``_row_features`` reads of a graph (``ExtendedGraph``'s names), over given rows of a whole graph."""

    def __init__(self, graph: ProfileGraph):
        self.base, self.item_ids, self.category_ids = graph, graph.item_ids, graph.category_ids
        self.num_users = graph.num_users
        self.buy_rows = EdgeRows(graph.edge(BUYS)[0], graph.num_users)
        self.has_friends = FRIEND in graph.edge_types
        if self.has_friends:
            self.friend_rows = EdgeRows(graph.edge(FRIEND)[0], graph.num_users)
        self.buys = None

    def adjacency_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        rows = np.asarray(rows, dtype=np.int64)
        n = self.num_users
        if not self.has_friends:
            return sp.csr_matrix((len(rows), n))
        pos, indptr = self.friend_rows.take(rows)
        dst = self.base.edge(FRIEND)[1][pos]
        w = self.base.edge(FRIEND, "edge_weight")[pos].astype(np.float64)
        return sp.csr_matrix((w, dst, indptr), shape=(len(rows), n))

    def purchase_rows(self, rows: np.ndarray) -> dict:
        pos, indptr = self.buy_rows.take(rows)
        items = self.base.edge(BUYS)[1][pos]
        attrs = self.base.edge(BUYS, "edge_attr")[pos]
        self.buys = (None, None, attrs)
        out = {}
        for name in ("count", "quantity", "spend", "priced_quantity"):
            vals = np.nan_to_num(attrs[:, BUY_ATTRS.index(name)].astype(np.float64))
            out[name] = sp.csr_matrix((vals, items, indptr), shape=(len(rows), len(self.item_ids)))
        return out


def touched_users(graph: ProfileGraph, bought: np.ndarray, ties: tuple, new_users: np.ndarray,
                  view: _View | None = None) -> np.ndarray:
    """The users whose feature rows the batch changes (sorted indices of the merged graph)."""
    a, b = ties
    parts = [bought, a, b, new_users]
    if len(a):
        view = view or _View(graph)
        ra, rb = view.adjacency_rows(a), view.adjacency_rows(b)
        ra.data[:] = 1.0
        rb.data[:] = 1.0
        common = ra.multiply(rb).tocoo()  # a common friend of a new tie's ends: one more triangle
        parts.append(common.col.astype(np.int64))
    return np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]))


def feature_rows(graph: ProfileGraph, state: dict, columns: list[str], rows: np.ndarray,
                 pagerank: np.ndarray, new: np.ndarray, view: _View | None = None) -> np.ndarray:
    """``[len(rows), len(columns)]``: the rows' features in the saved space (see the module docstring).

    ``pagerank``: every user's score in the merged graph's order (saved scores; new users' entries ignored);
    ``new``: which of ``rows`` are new users (their PageRank is estimated)."""
    view = view or _View(graph)
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), len(columns)))
    if not len(rows):
        return out
    shared = {"to_cat": None, "top": None}
    for name in ("cat_svd_components", "item_svd_components"):
        if state.get(name) is not None:
            shared[name] = np.ascontiguousarray(np.asarray(state[name]).T)
    if IN_CAT in graph.edge_types and len(graph.category_ids) and "top_categories" in state:
        shared["to_cat"] = item_category_matrix(graph, len(graph.item_ids), len(graph.category_ids))
        shared["top"] = lookup_sorted(graph.category_ids, state["top_categories"])
    m = view.purchase_rows(rows)
    adj = view.adjacency_rows(rows)
    weight = np.zeros(graph.num_users)
    f = _row_features(view, state, m, 0, adj, shared, weight)
    position = {c: j for j, c in enumerate(columns)}
    f["pagerank"] = None
    if sorted(f) != sorted(columns):
        from graphprof.errors import ArtifactError

        raise ArtifactError(f"features/meta.json: the saved feature state must give the saved feature columns. Got "
                            f"{sorted(set(f) ^ set(columns))} on one side only; re-run 'graphprof build-graph'")
    for name, values in f.items():
        if values is not None:
            out[:, position[name]] = values
    pr = pagerank[rows].astype(np.float64)
    if new.any():
        pr[new] = _new_pagerank(view, rows[new], pagerank, ~_is_new_mask(graph.num_users, rows[new]))
    out[:, position["pagerank"]] = pr
    return out


def _is_new_mask(n: int, new_rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[new_rows] = True
    return mask


def _new_pagerank(view: _View, new_rows: np.ndarray, saved: np.ndarray, is_saved: np.ndarray) -> np.ndarray:
    """Mean-1 PageRank of new users: ``r_v = (1 - a) + a (sum_u A_vu r_u / W_u + d)`` iterated over the new rows,
    saved neighbours at their saved scores, ``W`` weighted degrees in the merged graph, ``d`` the saved dangling
    mass per user (``predict``'s local estimate without its mean-field move of the saved scores)."""
    rows = view.adjacency_rows(new_rows)
    deg = np.zeros(view.num_users)
    if view.has_friends:
        g = view.base
        deg = np.bincount(g.edge(FRIEND)[0], weights=g.edge(FRIEND, "edge_weight").astype(np.float64),
                          minlength=view.num_users)
    dangling = float(saved[is_saved & (deg == 0)].sum()) / max(int(is_saved.sum()), 1)
    if not rows.nnz:
        return np.full(len(new_rows), (1 - ALPHA) + ALPHA * dangling)
    flow = rows.tocoo()
    contrib_w = flow.data / deg[flow.col]
    on_saved = is_saved[flow.col]
    boundary = np.bincount(flow.row[on_saved], weights=contrib_w[on_saved] * saved[flow.col[on_saved]],
                           minlength=len(new_rows))
    local = np.full(view.num_users, -1, dtype=np.int64)
    local[new_rows] = np.arange(len(new_rows))
    inner = sp.csr_matrix((contrib_w[~on_saved], (flow.row[~on_saved], local[flow.col[~on_saved]])),
                          shape=(len(new_rows), len(new_rows)))
    r = np.ones(len(new_rows))
    for _ in range(LOCAL_MAX_ITER):
        nxt = (1 - ALPHA) + ALPHA * (boundary + inner @ r + dangling)
        done = np.abs(nxt - r).max() < LOCAL_TOL
        r = nxt
        if done or not inner.nnz:
            break
    return r
