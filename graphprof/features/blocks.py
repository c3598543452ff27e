"""The user features of a large graph, fitted once and then computed and written a block of users at a time.

``build_features`` holds every user's row and the four purchase matrices of the whole graph at once; at ten
million users those are many GiB beside the graph. :func:`write_features` writes the same files as
``save_features(build_features(graph))`` with at most one block of users' rows and purchase matrices in memory:

* What is fitted over all users is fitted first: the recency reference and the recency of users without a
  purchase, the most bought categories, and the SVD components, fitted on the very rows ``truncated_svd`` samples
  (:func:`graphprof.features.users.svd_fit_rows`).
* Each block's rows are then made by the whole-graph code given that state (as ``predict`` makes a new user's):
  every column but the social ones is a function of the user's own purchase row, so the block's rows equal the
  whole graph's. The social statistics (PageRank, clustering) are global and computed once for every user.
* The item table is made from the whole graph's columns, one attribute at a time.

A graph of at most one block goes through ``build_features`` itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof import workdir
from graphprof.features.social import _social_stats
from graphprof.features.users import (
    CATEGORY_SVD_DIM,
    ITEM_SVD_DIM,
    MAX_CATEGORY_SHARES,
    SECONDS_PER_DAY,
    _behaviour,
    _category_mix,
    _item_table,
    build_features,
    fit_components,
    item_category_matrix,
    save_feature_state,
    save_features,
    svd_fit_rows,
    truncated_svd,
    user_max,
)
from graphprof.graph import BUY_ATTRS, BUYS, IN_CAT, ProfileGraph
from graphprof.graph.hetero import EdgeRows
from graphprof.runtime import progress

#: users whose rows are made at once
BLOCK_USERS = 1_000_000


def write_features(graph: ProfileGraph, root: str | Path, seed: int = 0,
                   block_users: int | None = None) -> tuple[int, int]:
    """``save_features(build_features(graph, seed), root, seed)``, a block of ``block_users`` users at a time.
    Returns the shape of the user features (users, columns)."""
    block = block_users or BLOCK_USERS
    n = graph.num_users
    if n <= block:
        features = build_features(graph, seed=seed)
        save_features(features, root, seed)
        return features.frame.shape
    rows_of = EdgeRows(graph.edge(BUYS)[0], n)
    indptr = rows_of.indptr
    state = _fit_state(graph, rows_of, seed)
    social = _social_stats(graph.social_adjacency(), n)
    root = Path(root)
    groups = None
    users_path = root / workdir.FEATURES_USERS

    def write_users(tmp: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        nonlocal groups
        writer, schema = None, None
        try:
            for lo in progress.track(range(0, n, block), desc="features", unit="block"):
                hi = min(n, lo + block)
                f, groups = _block_rows(graph, indptr, lo, hi, seed, state)
                for name, values in social.items():
                    f[name] = values[lo:hi]
                frame = pd.concat([pd.DataFrame({"user_id": pd.Series(graph.user_ids[lo:hi], dtype="string")}),
                                   f.astype(np.float64)], axis=1)
                table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(tmp, schema, use_dictionary=["user_id"])
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()

    workdir.atomic_write(users_path, write_users)
    groups["graph"] = ["social_degree", "log_social_degree", "pagerank", "clustering"]
    items = _items(graph, state)
    workdir.write_parquet(root / workdir.FEATURES_ITEMS,
                          pd.concat([pd.DataFrame({"item_id": pd.Series(graph.item_ids, dtype="string")}), items],
                                    axis=1))
    n_cols = sum(len(v) for v in groups.values())
    save_feature_state(root, state, groups, seed, n, n_cols)
    return n, n_cols


def _rows_matrix(graph: ProfileGraph, rows_of: EdgeRows, rows: np.ndarray, attr: str) -> sp.csr_matrix:
    """The purchase matrix of ``attr`` (NaN as 0), rows ``rows`` only (sorted users)."""
    pos, sub = rows_of.take(rows)
    vals = np.nan_to_num(graph.edge(BUYS, "edge_attr")[pos, BUY_ATTRS.index(attr)].astype(np.float64))
    return sp.csr_matrix((vals, graph.edge(BUYS)[1][pos], sub), shape=(len(rows), len(graph.item_ids)))


def _block_graph(graph: ProfileGraph, indptr: np.ndarray, lo: int, hi: int) -> ProfileGraph:
    """Users ``lo:hi`` with their purchases and every item's category: what the purchase columns read."""
    a, b = indptr[lo], indptr[hi]
    ei = graph.edge(BUYS)
    nodes = {"user": hi - lo, "item": len(graph.item_ids)}
    edges = {BUYS: {"edge_index": np.stack([ei[0][a:b] - lo, ei[1][a:b]]),
                    "edge_attr": graph.edge(BUYS, "edge_attr")[a:b]}}
    if IN_CAT in graph.edge_types:
        nodes["category"] = len(graph.category_ids)
        edges[IN_CAT] = {"edge_index": graph.edge(IN_CAT)}
    return ProfileGraph(nodes=nodes, edges=edges, user_ids=graph.user_ids[lo:hi], item_ids=graph.item_ids,
                        category_ids=graph.category_ids)


def _block_rows(graph, indptr, lo: int, hi: int, seed: int, state: dict) -> tuple[pd.DataFrame, dict]:
    """The purchase columns of users ``lo:hi``, in ``build_features``' order, and their groups."""
    sub = _block_graph(graph, indptr, lo, hi)
    attrs = {name: sub.purchase_matrix(name, copy_structure=False)
             for name in ("count", "quantity", "spend", "priced_quantity")}
    f, groups, quantity = _behaviour(sub, attrs, state, {})
    f, _ = _category_mix(sub, attrs, quantity, seed, state, {}, f, groups)
    if "item_svd_components" in state:
        item_svd, _ = truncated_svd(attrs["count"].log1p(), ITEM_SVD_DIM, seed, "item_svd",
                                    state["item_svd_components"])
    else:
        item_svd = pd.DataFrame(index=range(hi - lo))
    groups["item_svd"] = list(item_svd.columns)
    return pd.concat([f, item_svd], axis=1), groups


def _fit_state(graph: ProfileGraph, rows_of: EdgeRows, seed: int) -> dict:
    """What ``build_features`` fits over every user, fitted here without the whole purchase matrices."""
    n = graph.num_users
    ei = graph.edge(BUYS)
    state: dict = {}
    last = graph.edge(BUYS, "edge_attr")[:, BUY_ATTRS.index("last_time")].astype(np.float64)
    ok = np.isfinite(last)
    if ok.any():
        ref = float(last[ok].max())
        recency = (ref - user_max(ei[0], last, n)) / SECONDS_PER_DAY
        missing = ~np.isfinite(recency)
        recency[missing] = recency[~missing].max() + 1 if (~missing).any() else 0.0
        state["ref_time"] = ref
        state["max_recency"] = float(recency.max()) if len(recency) else 0.0
    del last, ok
    # the rows both SVDs are fitted on, as truncated_svd picks them (every user with a purchase has a category row)
    rows = svd_fit_rows(n, np.flatnonzero(np.diff(rows_of.indptr) > 0), seed)
    if rows is None:
        rows = np.arange(n)
    if IN_CAT in graph.edge_types and len(graph.category_ids):
        n_cat = len(graph.category_ids)
        to_cat = item_category_matrix(graph, len(graph.item_ids), n_cat)
        item_cat = to_cat.indices.astype(np.int64)
        qty = np.nan_to_num(graph.edge(BUYS, "edge_attr")[:, BUY_ATTRS.index("quantity")].astype(np.float64))
        totals = np.bincount(item_cat[ei[1]], weights=qty, minlength=n_cat)  # whole numbers: exact in any order
        del qty
        top = np.argsort(-totals, kind="stable")[:MAX_CATEGORY_SHARES]
        state["top_categories"] = [str(graph.category_ids[c]) for c in top]
        if n_cat > MAX_CATEGORY_SHARES:
            user_cat = (_rows_matrix(graph, rows_of, rows, "quantity") @ to_cat).tocsr()
            comps = fit_components(user_cat, CATEGORY_SVD_DIM, seed, (n, n_cat))
            if comps is not None:
                state["cat_svd_components"] = comps
    comps = fit_components(_rows_matrix(graph, rows_of, rows, "count").log1p(), ITEM_SVD_DIM, seed,
                           (n, len(graph.item_ids)))
    if comps is not None:
        state["item_svd_components"] = comps
    return state


def _items(graph: ProfileGraph, state: dict) -> pd.DataFrame:
    """The item table of ``build_features``, from the whole graph's columns, one purchase matrix at a time."""

    class _One(dict):
        """The attribute matrices ``_item_table`` reads, each made when read and dropped after."""

        def __getitem__(self, name):
            return graph.purchase_matrix(name, copy_structure=False)

    item_cat = None
    if IN_CAT in graph.edge_types and len(graph.category_ids):
        item_cat = item_category_matrix(graph, len(graph.item_ids), len(graph.category_ids)).indices.astype(np.int64)
    comps = state.get("item_svd_components")
    return _item_table(graph, _One(), item_cat, comps.T if comps is not None else None)


__all__ = ["BLOCK_USERS", "write_features"]
