"""The new users' feature rows in the saved feature space (``graphprof predict``), on an
:class:`~graphprof.prediction.extend.ExtendedGraph`: their cost grows with the new users and their neighbourhood.

:func:`new_user_features`: behaviour, recency, category mix, the item / category SVD projections (the fitted
components in ``state``), social degree and clustering are per-user and equal what ``build_features(extended
graph, state=saved)`` gives on those rows (tests/test_predict.py checks it against a whole rebuild); they read the
new users' purchases, their own ties and their neighbours' ties only. PageRank is global. By default
(``pagerank="local"``) a new user's score is a local estimate: the PageRank equation solved on the new users' rows,
their saved neighbours' saved scores moved by the mean-field rule for the added users and ties (see
:func:`_local_pagerank`); tests/test_predict.py bounds its error against the power iteration over the extended
graph. ``pagerank="exact"`` runs that power iteration instead (O(edges of the whole graph) per iteration, where
the local estimate's cost grows with the new users' neighbourhood). The saved users keep their saved features,
also where new ties reach them (their degree, clustering and PageRank as of ``build-graph``).
:class:`ExtendedFeatures` reads the saved rows only when a model needs users other than the new ones (``lr``
never does).
"""

from __future__ import annotations

import inspect
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.features import (
    CATEGORY_SVD_DIM,
    ITEM_SVD_DIM,
    MAX_CATEGORY_SHARES,
    SECONDS_PER_DAY,
    UserFeatures,
    item_category_matrix,
    lookup_sorted,
    pagerank,
    truncated_svd,
)
from graphprof.graph import BUY_ATTRS, FRIEND, IN_CAT
from graphprof.prediction.extend import ExtendedGraph

ALPHA = inspect.signature(pagerank).parameters["alpha"].default  # the damping build-graph used
LOCAL_TOL = 1e-10
LOCAL_MAX_ITER = 200
PAGERANK_MODES = ("local", "exact")
CHUNK_ROWS = 1 << 16  # new users per block of new_user_features
PARALLEL_MIN_NNZ = 1 << 20  # entries below which the local PageRank's product runs in one thread
HINT = "run 'graphprof build-graph' first"


def load_state(root: str | Path) -> tuple[dict, dict, list[str]]:
    """``features/meta.json``, the fitted state (as ``load_features`` returns it) and the feature columns, without
    reading the users' feature rows."""
    import pyarrow.parquet as pq

    root = Path(root)
    meta = workdir.read_json(root / workdir.FEATURES_META, missing=HINT)
    state = dict(meta.get("state", {}))
    if meta.get("state_arrays"):
        arrays = workdir.read_safetensors(root / workdir.FEATURES_STATE, missing=HINT, numpy=True)
        state.update({k: arrays[k] for k in meta["state_arrays"]})
    path = root / workdir.FEATURES_USERS
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {HINT}")
    columns = [c for c in pq.read_schema(path).names if c != "user_id"]
    return meta, state, columns


def saved_item_ids(root: str | Path) -> np.ndarray:
    """The item ids of ``features/items.parquet`` (that column only), as str."""
    path = Path(root) / workdir.FEATURES_ITEMS
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {HINT}")
    return pd.read_parquet(path, columns=["item_id"])["item_id"].astype(str).to_numpy(dtype=object)


def new_user_features(ext: ExtendedGraph, state: dict, columns: list[str], root: str | Path,
                      pagerank_mode: str = "local", workers: int | None = None) -> np.ndarray:
    """The new users' feature rows ``[n_new, len(columns)]`` in the saved space (see the module docstring).

    Every feature but PageRank is a function of the user's own row (its purchases, its ties and its neighbours'
    ties), so the rows are computed in blocks of ``CHUNK_ROWS`` users, ``workers`` blocks at a time (default: one
    per CPU, at most 4). numpy's and scipy's kernels release the GIL, so threads use the cores, and a block's
    arrays stay small; a block's rows are the same numbers as a whole-matrix computation gives them.

    Raises:
        ArtifactError: the saved state gives other columns than the saved features (a damaged work directory).
    """
    n_old, n_new = ext.n_old, ext.num_users - ext.n_old
    if not n_new:
        return np.zeros((0, len(columns)))
    m = {name: ext.new_purchase_matrix(name, copy_structure=False)  # the blocks slice them: copies
         for name in ("count", "quantity", "spend", "priced_quantity")}
    shared = {"to_cat": None, "top": None}
    for name in ("cat_svd_components", "item_svd_components"):  # transposed once, not in every block
        if state.get(name) is not None:
            shared[name] = np.ascontiguousarray(np.asarray(state[name]).T)
    if IN_CAT in ext.base.edge_types and len(ext.category_ids) and "top_categories" in state:
        shared["to_cat"] = item_category_matrix(ext.base, len(ext.item_ids), len(ext.category_ids))
        shared["top"] = lookup_sorted(ext.category_ids, state["top_categories"])
    # the new rows of the adjacency (the saved and new edges sorted once, here, not in the threads)
    rows = ext.adjacency_rows(np.arange(n_old, ext.num_users))
    out = np.empty((n_new, len(columns)))
    weight = np.zeros(ext.num_users)  # weighted degree of each new user's neighbours, for the PageRank estimate
    position = {c: j for j, c in enumerate(columns)}

    def block(span: tuple[int, int]) -> None:
        lo, hi = span
        f = _row_features(ext, state, {k: v[lo:hi] for k, v in m.items()}, int(m["count"].indptr[lo]), rows[lo:hi],
                          shared, weight)
        f["pagerank"] = None  # global: below
        if sorted(f) != sorted(columns):
            raise ArtifactError(f"{Path(root) / workdir.FEATURES_META}: the saved feature state must give the "
                                f"saved feature columns. Got {sorted(set(f) ^ set(columns))} on one side only; "
                                "re-run 'graphprof build-graph' and 'graphprof train'")
        for name, values in f.items():
            if values is not None:
                out[lo:hi, position[name]] = values

    spans = [(lo, min(lo + CHUNK_ROWS, n_new)) for lo in range(0, n_new, CHUNK_ROWS)]
    workers = workers or min(len(spans), os.cpu_count() or 1, 4)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(block, spans))
    else:
        for span in spans:
            block(span)
    if pagerank_mode == "exact":
        adj = ext.social_adjacency()
        out[:, position["pagerank"]] = pagerank(adj)[n_old:] if adj.nnz else np.ones(n_new)
    else:
        out[:, position["pagerank"]] = _local_pagerank(ext, rows, weight, root)
    return out


def _row_features(ext: ExtendedGraph, state: dict, m: dict, first_buy: int, rows: sp.csr_matrix, shared: dict,
                  weight: np.ndarray) -> dict:
    """Every feature but PageRank of a block of new users: ``m`` their purchase matrices (their rows' edges are
    ``ext.buys`` from ``first_buy`` on), ``rows`` their adjacency rows; writes their neighbours' weighted degrees
    into ``weight``."""
    count, quantity, spend, priced = (np.asarray(m[k].sum(axis=1)).ravel()
                                      for k in ("count", "quantity", "spend", "priced_quantity"))
    f = {"n_purchases": np.log1p(count), "log_quantity": np.log1p(quantity), "log_monetary": np.log1p(spend),
         "distinct_items": np.log1p(np.diff(m["count"].indptr).astype(np.float64)),
         "log_avg_price": np.log1p(np.divide(spend, priced, out=np.zeros_like(spend), where=priced > 0))}
    if "ref_time" in state:
        # the block's (user, item) edges: ext.buys is sorted by user, as the matrices' rows are
        indptr = m["count"].indptr
        last = ext.buys[2][first_buy:first_buy + indptr[-1], BUY_ATTRS.index("last_time")]
        last = np.where(np.isfinite(last), last, -np.inf)
        user_last = np.full(len(count), -np.inf)
        has = np.diff(indptr) > 0
        if has.any():
            user_last[has] = np.maximum.reduceat(last, indptr[:-1][has])
        recency = (float(state["ref_time"]) - user_last) / SECONDS_PER_DAY
        recency[~np.isfinite(recency)] = state["max_recency"]
        f["recency_days"] = np.log1p(np.maximum(recency, 0.0))  # after the reference time: 0 days old
    f["has_purchases"] = (count > 0).astype(np.float64)
    if shared["to_cat"] is not None:
        to_cat, top = shared["to_cat"], shared["top"]
        user_cat = (m["quantity"] @ to_cat).tocsr()
        shares = sp.diags(np.divide(1.0, quantity, out=np.zeros_like(quantity), where=quantity > 0)) @ user_cat
        shares = shares.toarray()[:, top] if to_cat.shape[1] <= 4 * MAX_CATEGORY_SHARES else shares[:, top].toarray()
        f.update({f"cat_share_{ext.category_ids[c]}": shares[:, j] for j, c in enumerate(top)})
        if state.get("cat_svd_components") is not None:
            f.update(truncated_svd(user_cat, CATEGORY_SVD_DIM, 0, "cat_svd", state["cat_svd_components"],
                          shared.get("cat_svd_components"))[0].items())
    if state.get("item_svd_components") is not None:
        f.update(truncated_svd(m["count"].log1p(), ITEM_SVD_DIM, 0, "item_svd", state["item_svd_components"],
                      shared.get("item_svd_components"))[0].items())
    # the block's adjacency rows and their neighbours' rows (of the extended graph): their ties only
    nb, local = np.unique(rows.indices, return_inverse=True)
    reach = ext.adjacency_rows(nb)
    weight[nb] = np.asarray(reach.sum(axis=1)).ravel()  # a neighbour's row is the same in every block
    deg = np.diff(rows.indptr).astype(np.float64)
    f["social_degree"], f["log_social_degree"] = deg, np.log1p(deg)
    f["clustering"] = _clustering_rows(rows, nb, local.ravel(), reach)
    return f


def _clustering_rows(rows: sp.csr_matrix, nb: np.ndarray, local: np.ndarray, reach: sp.csr_matrix) -> np.ndarray:
    """``features.clustering`` of some users only: ``rows`` their adjacency rows, ``reach`` the rows of their
    neighbours ``nb`` (sorted; ``local``: each entry of ``rows`` as a row of ``reach``). A triangle through a user
    closes on one of its own neighbours, so the neighbours' ties are first cut to those among ``nb``."""
    pos = np.full(rows.shape[1], -1, dtype=np.int64)
    pos[nb] = np.arange(len(nb))
    to = pos[reach.indices]
    keep = to >= 0
    indptr = np.zeros(len(nb) + 1, dtype=np.int64)
    np.cumsum(np.bincount(np.repeat(np.arange(len(nb)), np.diff(reach.indptr))[keep], minlength=len(nb)),
              out=indptr[1:])
    among = sp.csr_matrix((np.ones(int(keep.sum())), to[keep], indptr), shape=(len(nb), len(nb)))
    hop = sp.csr_matrix((np.ones(rows.nnz), local, rows.indptr), shape=(rows.shape[0], len(nb)))
    triangles = np.asarray((hop @ among).multiply(hop).sum(axis=1)).ravel() / 2.0
    deg = np.diff(rows.indptr).astype(np.float64)
    pairs = deg * (deg - 1) / 2.0
    return np.divide(triangles, pairs, out=np.zeros_like(triangles), where=pairs > 0)


def _local_pagerank(ext: ExtendedGraph, rows: sp.csr_matrix, weight: np.ndarray, root: str | Path) -> np.ndarray:
    """Mean-1 PageRank of the new rows, estimated around the saved scores (see the module docstring).

    The PageRank equation ``r_v = (1 - a) + a (sum_u A_vu r_u / W_u + d)`` (``W_u`` weighted degrees in the extended
    graph, ``d`` the saved dangling mass per user) is iterated over the new rows only. A saved neighbour's score is
    its saved one moved as the mean-field approximation ``r_u ~ (1 - a) + a n W_u / sum(W)`` says it moves when
    users and ties are added: ``r_u = (1 - a) + (saved_u - (1 - a)) * (n / n_old) * (sum(W_old) / sum(W)) *
    W_u / W_old_u`` (more users: a larger mean-1 total; more tie weight: less per tie; its own new ties: more).
    ``rows``: the new users' adjacency rows; ``weight``: per user of the extended graph, its weighted degree there
    (needed, and set, for the new users' neighbours)."""
    n_old, n_new, n = ext.n_old, rows.shape[0], ext.num_users
    saved = pd.read_parquet(Path(root) / workdir.FEATURES_USERS, columns=["pagerank", "social_degree"])
    r_old, deg_old = saved["pagerank"].to_numpy(np.float64), saved["social_degree"].to_numpy(np.float64)
    dangling = float(r_old[deg_old == 0].sum()) / max(len(r_old), 1)
    if not rows.nnz:
        return np.full(n_new, (1 - ALPHA) + ALPHA * dangling)
    a, b, w = ext.ties
    w = w.astype(np.float64)
    saved_w = ext.base.edge(FRIEND, "edge_weight") if FRIEND in ext.base.edge_types else np.zeros(0)
    total_old = float(saved_w.sum(dtype=np.float64))  # sum of the weighted degrees, saved graph
    total = total_old + 2.0 * float(w.sum())
    old = rows.indices < n_old
    old_nb = rows.indices[old]  # per tie of a new user to a saved one: that saved user
    added = np.bincount(np.concatenate([a, b]), weights=np.concatenate([w, w]), minlength=n)[old_nb]
    weight_old = weight[old_nb] - added
    scale = (n / n_old) * (total_old / total) if total_old > 0 else 1.0
    moved = np.where(weight_old > 0,
                     (1 - ALPHA) + (r_old[old_nb] - (1 - ALPHA)) * scale * weight[old_nb]
                     / np.where(weight_old > 0, weight_old, 1.0),
                     (1 - ALPHA) + ALPHA * n * weight[old_nb] / total)  # isolated in the saved graph: mean field
    flow = rows.data / weight[rows.indices]
    ptr = np.repeat(np.arange(n_new), np.diff(rows.indptr))
    boundary = np.bincount(ptr[old], weights=flow[old] * moved, minlength=n_new)
    inner = sp.csr_matrix((flow[~old], (ptr[~old], rows.indices[~old] - n_old)), shape=(n_new, n_new))
    r = np.ones(n_new)
    with _RowBlocks(inner) as product:
        for _ in range(LOCAL_MAX_ITER):
            new = (1 - ALPHA) + ALPHA * (boundary + product(r) + dangling)
            done = np.abs(new - r).max() < LOCAL_TOL
            r = new
            if done or not inner.nnz:
                break
    return r


class _RowBlocks:
    """``m @ x`` for many ``x``, the rows in one block per core (scipy's product releases the GIL): each row is
    its own dot product, so the result is the same, bit for bit, as one product. The blocks and the threads are
    made once, for every product of the local PageRank's iterations."""

    def __init__(self, m: sp.csr_matrix, workers: int | None = None):
        workers = min(workers or os.cpu_count() or 1, 4)
        if m.nnz < PARALLEL_MIN_NNZ or workers < 2:
            self.spans, self.pool = [(0, m.shape[0])], None
        else:
            cuts = np.searchsorted(m.indptr, np.arange(1, workers) * (m.nnz / workers))
            edges = [0] + sorted({int(c) for c in cuts if 0 < c < m.shape[0]}) + [m.shape[0]]
            self.spans = list(zip(edges[:-1], edges[1:]))
            self.pool = ThreadPoolExecutor(max_workers=len(self.spans))
        self.blocks = [m[lo:hi] for lo, hi in self.spans] if self.pool else [m]
        self.rows = m.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.pool is None:
            return self.blocks[0] @ x
        out = np.empty(self.rows)

        def one(k: int) -> None:
            lo, hi = self.spans[k]
            out[lo:hi] = self.blocks[k] @ x

        list(self.pool.map(one, range(len(self.blocks))))
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class ExtendedFeatures(UserFeatures):
    """The saved feature rows followed by the new users' rows (``new``), in the saved space. The saved rows are
    read from ``features/users.parquet`` the first time a model needs a user other than the new ones; ``items``
    (the saved item features, which only ``sage`` / ``gat`` read) likewise."""

    def __init__(self, root: str | Path, user_ids: np.ndarray, columns: list[str], new: np.ndarray,
                 groups: dict, item_ids: np.ndarray, state: dict):
        self.root, self.user_ids, self.columns, self.new = Path(root), user_ids, list(columns), new
        new.setflags(write=False)  # handed out as is by take_rows
        self.n_old = len(user_ids) - len(new)
        self.groups, self.item_ids, self.state = groups, item_ids, state
        self._full, self._items = None, None

    def full_matrix(self) -> np.ndarray:
        """Every user's row ``[num_users, num_features]`` (read-only: shared)."""
        if self._full is None:
            import pyarrow.parquet as pq

            path = self.root / workdir.FEATURES_USERS
            if not path.exists():
                raise ArtifactError(f"{path}: not found; {HINT}")
            saved = pq.read_table(path, columns=self.columns)  # straight into one array: no DataFrame
            if saved.num_rows != self.n_old:
                raise ArtifactError(f"{path}: must have one row per saved user ({self.n_old}). Got "
                                    f"{saved.num_rows}; {HINT}")
            full = np.empty((len(self.user_ids), len(self.columns)))
            for j, name in enumerate(self.columns):
                full[:self.n_old, j] = saved.column(name).to_numpy()
            del saved
            full[self.n_old:] = self.new
            full.setflags(write=False)
            self._full = full
        return self._full

    def take_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self._full is None and (not len(rows) or rows.min() >= self.n_old):
            if len(rows) == len(self.new) and (rows == np.arange(self.n_old, len(self.user_ids))).all():
                return self.new  # every new row in order (predict's case): no copy
            return self.new[rows - self.n_old]
        return self.full_matrix()[rows]

    @property
    def matrix(self) -> np.ndarray:
        return self.full_matrix()

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.full_matrix(), columns=self.columns, copy=False)

    @frame.setter
    def frame(self, value) -> None:
        raise AttributeError("ExtendedFeatures.frame is read-only")

    @property
    def items(self) -> pd.DataFrame:
        if self._items is None:
            items = workdir.read_parquet(self.root / workdir.FEATURES_ITEMS, missing=HINT)
            self._items = items.drop(columns=["item_id"])
        return self._items

    @items.setter
    def items(self, value) -> None:
        self._items = value
