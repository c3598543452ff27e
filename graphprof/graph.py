"""Validated tables -> a heterogeneous user-item-category graph (PyG ``HeteroData``), saved without pickle.

Node types: ``user``, ``item`` and, where items have a category, ``category``. Edge types:
``(user, buys, item)`` one edge per (user, item) pair with attributes :data:`BUY_ATTRS`,
``(user, friend, user)`` stored in both directions, ``(item, in, category)``, and the reverse
``(item, rev_buys, user)`` and ``(category, rev_in, item)``. Node indices are contiguous; the id maps
(index -> the user's own id) travel with the graph so every output speaks in the user's ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.schema import UNKNOWN_CATEGORY, ValidatedTables

BUYS = ("user", "buys", "item")
REV_BUYS = ("item", "rev_buys", "user")
FRIEND = ("user", "friend", "user")
IN_CAT = ("item", "in", "category")
REV_IN = ("category", "rev_in", "item")
#: reverse edge types and the forward type each one mirrors (saved once, flipped on load)
MIRRORS = {REV_BUYS: BUYS, REV_IN: IN_CAT}
#: Columns of ``data[BUYS].edge_attr``: purchases (rows), total quantity, spend, last time (epoch s, NaN if
#: unknown), summed weight (ratings where given, else 1 per purchase), quantity with a known price (so an
#: average price is spend / priced_quantity: a purchase without a price does not count as free).
BUY_ATTRS = ("count", "quantity", "spend", "last_time", "weight", "priced_quantity")


@dataclass
class ProfileGraph:
    """A ``HeteroData`` graph plus the id maps.

    Attributes:
        data: the graph. ``data[t].num_nodes`` for each node type; ``edge_index`` shape ``[2, E]``;
            ``data[BUYS].edge_attr`` shape ``[E, len(BUY_ATTRS)]`` (float64); ``data[FRIEND].edge_weight`` shape ``[E]``.
        user_ids, item_ids, category_ids: ``ids[i]`` is the user's own id of node ``i`` (str arrays).
    """

    data: HeteroData
    user_ids: np.ndarray
    item_ids: np.ndarray
    category_ids: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def user_index(self, ids) -> np.ndarray:
        """Indices of the given user ids; -1 where an id is unknown."""
        return _lookup(self.user_ids, ids)

    def item_index(self, ids) -> np.ndarray:
        return _lookup(self.item_ids, ids)

    def social_adjacency(self):
        """Symmetric ``scipy.sparse.csr_matrix`` [num_users, num_users] of friendship weights."""
        import scipy.sparse as sp

        n = self.num_users
        if FRIEND not in self.data.edge_types:
            return sp.csr_matrix((n, n))
        ei = self.data[FRIEND].edge_index.numpy()
        w = self.data[FRIEND].edge_weight.numpy().astype(np.float64)
        key = ei[0] * np.int64(n) + ei[1]
        if len(key) and np.all(key[1:] > key[:-1]):  # build_graph's order (sorted, unique): CSR directly
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(ei[0], minlength=n), out=indptr[1:])
            return sp.csr_matrix((w, ei[1].astype(np.int64), indptr), shape=(n, n))
        return sp.csr_matrix((w, (ei[0], ei[1])), shape=(n, n))

    def purchase_matrix(self, attr: str = "quantity"):
        """``scipy.sparse.csr_matrix`` [num_users, num_items] holding one of :data:`BUY_ATTRS`."""
        import scipy.sparse as sp

        edge_index = self.data[BUYS].edge_index
        ei = edge_index.numpy()
        vals = np.nan_to_num(self.data[BUYS].edge_attr[:, BUY_ATTRS.index(attr)].numpy().astype(np.float64))
        shape = (self.num_users, len(self.item_ids))
        cached = self.__dict__.get("_buy_csr")
        if cached is None or cached[0] is not edge_index:  # the structure is shared by every attribute's matrix
            structure = None
            if len(ei[0]) and np.all(np.diff(ei[0]) >= 0):  # build_graph's order (sorted by user): CSR directly
                indptr = np.zeros(shape[0] + 1, dtype=np.int64)
                np.cumsum(np.bincount(ei[0], minlength=shape[0]), out=indptr[1:])
                structure = (ei[1].astype(np.int64), indptr)
            cached = self.__dict__["_buy_csr"] = (edge_index, structure)
        if cached[1] is not None:
            indices, indptr = cached[1]  # copies: a caller may sort or prune its matrix in place
            return sp.csr_matrix((vals, indices.copy(), indptr.copy()), shape=shape)
        return sp.csr_matrix((vals, (ei[0], ei[1])), shape=shape)


def _lookup(ids: np.ndarray, query) -> np.ndarray:
    """Positions of ``query`` in the unique ``ids``; -1 where absent (a hash lookup: O(len(query)))."""
    if not len(ids):
        return np.full(len(query), -1, dtype=np.int64)
    return pd.Index(ids).get_indexer(pd.Index(np.asarray(query, dtype=object)).astype(str)).astype(np.int64)


def _factorize(*columns: pd.Series | None) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Sorted unique ids over every column (missing values ignored) and each column's codes into them.

    One hash pass over all the ids (``pd.factorize``), then only the uniques are sorted: O(n) instead of the
    O(n log n) string sort a ``np.unique`` over every row would cost (10M purchases: seconds, not a minute).

    Returns:
        ids: sorted unique ids (object array of str); codes: per column an int64 array ``[len(column)]``
        (``-1`` for a missing value), ``None`` where the column is ``None``.
    """
    present = [c for c in columns if c is not None]
    if not present:
        return np.array([], dtype=object), [None] * len(columns)
    joined = pd.concat([c.astype("str") if c.dtype != "str" else c for c in present], ignore_index=True)
    codes, uniques = pd.factorize(joined, sort=True)
    ids = np.asarray(uniques, dtype=object)
    out, start = [], 0
    for c in columns:
        if c is None:
            out.append(None)
            continue
        out.append(codes[start:start + len(c)].astype(np.int64, copy=False))
        start += len(c)
    return ids, out


#: how each purchase column becomes the (user, item) edge's attribute
BUY_REDUCERS = {c: {"last_time": "max", "count": "count"}.get(c, "sum") for c in BUY_ATTRS}  # BUY_ATTRS' order


def buy_columns(purchases: pd.DataFrame, price: np.ndarray) -> dict[str, np.ndarray]:
    """The per-purchase values ``_aggregate_buys`` reduces (``price``: the purchase's, or the list price)."""
    qty = purchases["quantity"].to_numpy(np.float64)
    return {"quantity": qty, "spend": np.nan_to_num(qty * price),
            "last_time": purchases["timestamp"].to_numpy(np.float64),
            "weight": purchases["weight"].to_numpy(np.float64),
            "priced_quantity": np.where(np.isnan(price), 0.0, qty)}


def _aggregate_buys(u, i, n_items, columns: dict[str, np.ndarray], reducers: dict[str, str]):
    """One row per (user, item): ``columns`` reduced (``sum``, ``max`` or ``count``: rows) over the purchases of the pair.

    The rows are put in a canonical order first (pair, then the values), so float sums do not depend on the
    order of the input rows; then each run of a pair is reduced with ``np.add.reduceat`` (sequential, hence
    deterministic). Returns ``(u, i, values)`` with pairs sorted by (u, i) and ``values`` one float64 array
    ``[pairs, len(reducers)]``, a column per reducer in ``reducers``' order (written in place: at 1M users a
    stack of separate columns was another 480 MB).
    """
    key = u * np.int64(n_items) + i
    n = len(key)
    if n and int(key.max()) < np.iinfo(np.int64).max // n:
        # (pair, row) packed into one int64 and sorted by value: the stable order, ~2x faster than argsort
        packed = key * np.int64(n) + np.arange(n, dtype=np.int64)
        packed.sort()
        key, order = np.divmod(packed, n)
        del packed
    else:
        order = np.argsort(key, kind="stable")
        key = key[order]
    new_run = np.r_[True, key[1:] != key[:-1]] if len(key) else np.array([], bool)
    starts = np.flatnonzero(new_run)
    # only rows of pairs bought more than once need the canonical (value) order: sort just those, in place
    run_len = np.diff(np.r_[starts, len(key)])
    multi = np.repeat(run_len > 1, run_len)
    if multi.any():
        pos = np.flatnonzero(multi)
        rows = order[pos]
        order[pos] = rows[np.lexsort(tuple(columns[c][rows] for c in sorted(columns)) + (key[pos],))]
    values = np.empty((len(starts), len(reducers)), dtype=np.float64)
    done: list[tuple[np.ndarray, str, int]] = []
    for j, (name, how) in enumerate(reducers.items()):
        out = values[:, j]
        if how == "count":  # rows per pair: the run lengths, no values to gather
            out[:] = run_len
            continue
        col = columns[name]
        # a column equal to one already reduced the same way (quantity and priced_quantity where every purchase
        # has a price), or one constant value (weight 1): no 10M-row gather
        same = next((k for c, h, k in done if h == how and np.array_equal(c, col)), None)
        if same is not None:
            out[:] = values[:, same]
            continue
        done.append((col, how, j))
        if not len(col):
            continue
        if not np.isnan(col[0]) and (col == col[0]).all():
            if how == "sum":
                np.multiply(run_len, col[0], out=out)
            else:
                out[:] = col[0]
            continue
        v = col[order]
        if how == "sum":
            np.add.reduceat(v, starts, out=out)
        else:  # max, NaN where every value of the pair is NaN (unknown time)
            np.copyto(v, -np.inf, where=np.isnan(v))
            m = np.maximum.reduceat(v, starts)
            m[np.isneginf(m)] = np.nan
            out[:] = m
    pair = key[starts]
    return pair // n_items, pair % n_items, values


def build_graph(tables: ValidatedTables) -> ProfileGraph:
    """Build the graph from validated tables. Users are the union of the users table, buyers and both ends
    of every tie; items the union of the items table and bought items. Ids are sorted, so the same rows in
    any order give the same graph. Vectorized throughout (hash factorization of ids, sorted run reductions).

    Returns:
        ProfileGraph
    """
    t = tables.tables
    purchases = t["purchases"]
    friendships = t.get("friendships")
    if friendships is not None and not len(friendships):
        friendships = None
    users = t.get("users")
    items = t.get("items")

    codes = tables.friend_codes
    if friendships is not None and codes is not None and len(codes[1]) == len(friendships):
        # the ties' ids were factorized by validation: only their distinct ids (the ones kept rows use) join
        # the purchases' and users' here, then the ties' codes are mapped through them
        uniques, ca, cb = codes
        used = np.zeros(len(uniques), dtype=bool)
        used[ca] = True
        used[cb] = True
        user_ids, (u, _, remap) = _factorize(purchases["user_id"], users["user_id"] if users is not None else None,
                                             uniques[used].reset_index(drop=True))
        full = np.full(len(uniques), -1, dtype=np.int64)
        full[used] = remap
        fa, fb = full[ca], full[cb]
    else:
        user_ids, (u, _, fa, fb) = _factorize(purchases["user_id"], users["user_id"] if users is not None else None,
                                              friendships["user_id"] if friendships is not None else None,
                                              friendships["friend_id"] if friendships is not None else None)
    item_ids, (i, item_rows) = _factorize(purchases["item_id"], items["item_id"] if items is not None else None)
    data = HeteroData()
    data["user"].num_nodes = len(user_ids)
    data["item"].num_nodes = len(item_ids)

    # purchases -> one edge per (user, item) with aggregated attributes
    price = purchases["price"].to_numpy(np.float64)
    if items is not None and "price" in items:  # a purchase without a price costs the item's list price
        list_price = np.full(len(item_ids), np.nan)
        list_price[item_rows] = items["price"].to_numpy(np.float64)
        price = np.where(np.isnan(price), list_price[i], price)
    bu, bi, attrs = _aggregate_buys(u, i, len(item_ids), buy_columns(purchases, price), BUY_REDUCERS)
    buy_index = torch.from_numpy(np.stack([bu, bi]))
    data[BUYS].edge_index = buy_index
    data[BUYS].edge_attr = torch.from_numpy(attrs)  # BUY_ATTRS' order; float64: epoch seconds need it
    data[REV_BUYS].edge_index = buy_index.flip(0)

    if friendships is not None:
        w = friendships["weight"].to_numpy(np.float32)
        n = np.int64(len(user_ids))
        key = np.concatenate([fa * n + fb, fb * n + fa])  # both directions; unique (validation dropped copies)
        if len(w) and (w == w[0]).all():  # the usual unweighted ties: sort the keys alone
            key, weight = np.sort(key), np.full(len(key), w[0], dtype=np.float32)
        else:
            order = np.argsort(key)
            key, weight = key[order], np.concatenate([w, w])[order]
        data[FRIEND].edge_index = torch.from_numpy(np.stack([key // n, key % n]))
        data[FRIEND].edge_weight = torch.from_numpy(weight)

    category_ids = np.array([], dtype=object)
    if items is not None and "category" in items:
        item_cat = np.full(len(item_ids), UNKNOWN_CATEGORY, dtype=object)
        item_cat[item_rows] = items["category"].astype(str).to_numpy()
        category_ids = np.unique(item_cat.astype(str)).astype(object)
        c = _lookup(category_ids, item_cat)
        data["category"].num_nodes = len(category_ids)
        cat_index = torch.from_numpy(np.stack([np.arange(len(item_ids)), c]).astype(np.int64))
        data[IN_CAT].edge_index = cat_index
        data[REV_IN].edge_index = cat_index.flip(0)

    data.validate(raise_on_error=True)
    return ProfileGraph(data=data, user_ids=user_ids, item_ids=item_ids, category_ids=category_ids)


# ----------------------------------------------------------------------------------------- save / load
def _key(edge_type: tuple[str, str, str], name: str) -> str:
    return "__".join(edge_type) + "." + name


def _flipped(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether edge_index ``a`` is ``b`` flipped (compared row by row: views, no copy)."""
    return a.shape == b.shape and bool(torch.equal(a[0], b[1]) and torch.equal(a[1], b[0]))


def save_graph(graph: ProfileGraph, root: str | Path) -> None:
    """Write ``graph/tensors.safetensors``, ``graph/meta.json`` and ``tables/ids/*.parquet``."""
    root = Path(root)
    data = graph.data
    tensors, edge_meta = {}, []
    for et in data.edge_types:
        store = data[et]
        names = [n for n in ("edge_index", "edge_attr", "edge_weight") if n in store]
        entry = {"type": list(et), "num_edges": int(store.edge_index.shape[1])}
        mirror = MIRRORS.get(et)
        if mirror in data.edge_types and names == ["edge_index"] and _flipped(store.edge_index,
                                                                              data[mirror].edge_index):
            # a reverse type is its forward type's edge_index flipped: noted, not written (at 1M users the
            # reverse purchases were 160 MB of the file, written and hashed for nothing)
            entry["mirror_of"] = list(mirror)
        else:
            for n in names:
                tensors[_key(et, n)] = store[n]
            entry["tensors"] = names
        edge_meta.append(entry)
    meta = {"node_types": {nt: int(data[nt].num_nodes) for nt in data.node_types},
            "edge_types": edge_meta, "buy_attrs": list(BUY_ATTRS)}
    workdir.write_safetensors(root / workdir.GRAPH_TENSORS, tensors)
    for kind, ids in (("user", graph.user_ids), ("item", graph.item_ids), ("category", graph.category_ids)):
        workdir.write_parquet(workdir.ids_path(root, kind),
                              pd.DataFrame({f"{kind}_id": pd.Series(ids, dtype="string"),
                                            "index": np.arange(len(ids), dtype=np.int64)}))
    workdir.write_json(root / workdir.GRAPH_META, meta)  # last: its presence means the graph is complete


def load_graph(root: str | Path = workdir.DEFAULT_WORKDIR) -> ProfileGraph:
    """Load a graph saved by :func:`save_graph` (safetensors + JSON + Parquet; nothing is unpickled).

    Raises:
        ArtifactError: no graph in ``root``, or a damaged one.
    """
    root = Path(root)
    workdir.require_built(root)
    hint = "run 'graphprof build-graph' again"
    meta = workdir.read_json(root / workdir.GRAPH_META, missing=hint)
    tensors = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing=hint)
    data = HeteroData()
    for nt, n in meta["node_types"].items():
        data[nt].num_nodes = n
    try:
        for em in meta["edge_types"]:
            et = tuple(em["type"])
            store = data[et]  # created here for a mirror too: the edge types keep their saved order (the GNNs'
            for n in em.get("tensors", ()):  # parameters are made in that order, so their initial values too)
                store[n] = tensors[_key(et, n)]
        for em in meta["edge_types"]:
            if "mirror_of" in em:
                data[tuple(em["type"])].edge_index = data[tuple(em["mirror_of"])].edge_index.flip(0)
    except (KeyError, AttributeError) as e:
        raise ArtifactError(f"{root / workdir.GRAPH_TENSORS}: does not match {root / workdir.GRAPH_META} "
                            f"({e}); {hint}") from None
    ids = {}
    for kind in ("user", "item", "category"):
        df = workdir.read_parquet(workdir.ids_path(root, kind), missing=hint)
        ids[kind] = df.sort_values("index")[f"{kind}_id"].astype(str).to_numpy(dtype=object)
    return ProfileGraph(data=data, user_ids=ids["user"], item_ids=ids["item"], category_ids=ids["category"])


def describe(graph: ProfileGraph) -> dict:
    """Node and edge counts, for logs and ``--json``."""
    d = graph.data
    return {"nodes": {nt: int(d[nt].num_nodes) for nt in d.node_types},
            "edges": {"__".join(et): int(d[et].edge_index.shape[1]) for et in d.edge_types}}


# -------------------------------------------------------------------------------------------- networkx
def to_networkx(graph: ProfileGraph, view: str = "social"):
    """networkx views for analytics, with the user's own ids as node names.

    Args:
        view: ``"social"`` -> undirected ``nx.Graph`` of users with tie ``weight``;
            ``"purchases"`` -> bipartite ``nx.Graph`` of ``("user", id)`` and ``("item", id)`` nodes
            (attribute ``bipartite`` 0/1) with the :data:`BUY_ATTRS` on each edge.
    """
    import networkx as nx

    from graphprof.errors import ConfigError

    g = nx.Graph()
    if view == "social":
        g.add_nodes_from(graph.user_ids)
        if FRIEND in graph.data.edge_types:
            ei = graph.data[FRIEND].edge_index.numpy()
            w = graph.data[FRIEND].edge_weight.numpy()
            keep = ei[0] < ei[1]
            g.add_weighted_edges_from(zip(graph.user_ids[ei[0][keep]], graph.user_ids[ei[1][keep]],
                                          w[keep].tolist()))
        return g
    if view == "purchases":
        g.add_nodes_from((("user", u) for u in graph.user_ids), bipartite=0)
        g.add_nodes_from((("item", i) for i in graph.item_ids), bipartite=1)
        ei = graph.data[BUYS].edge_index.numpy()
        attrs = graph.data[BUYS].edge_attr.numpy()
        g.add_edges_from((("user", u), ("item", i), dict(zip(BUY_ATTRS, row)))
                         for u, i, row in zip(graph.user_ids[ei[0]], graph.item_ids[ei[1]], attrs.tolist()))
        return g
    raise ConfigError(f"view must be 'social' or 'purchases'. Got {view!r} instead")


def drop_user_edges(graph: ProfileGraph, users) -> ProfileGraph:
    """A copy of the graph without any purchase or tie of the given users (node indices): they stay as
    isolated nodes, so every index still means the same user. For inductive evaluation."""
    drop = np.zeros(graph.num_users, dtype=bool)
    drop[np.asarray(users, dtype=np.int64)] = True
    data = graph.data
    out = HeteroData()
    for nt in data.node_types:
        out[nt].num_nodes = data[nt].num_nodes
    for et in data.edge_types:
        store = data[et]
        ei = store.edge_index
        if et[0] == "user" and et[2] == "user":
            keep = ~(torch.from_numpy(drop)[ei[0]] | torch.from_numpy(drop)[ei[1]])
        elif et[0] == "user":
            keep = ~torch.from_numpy(drop)[ei[0]]
        elif et[2] == "user":
            keep = ~torch.from_numpy(drop)[ei[1]]
        else:
            keep = torch.ones(ei.shape[1], dtype=torch.bool)
        for name in ("edge_index", "edge_attr", "edge_weight"):
            if name in store:
                value = store[name]
                out[et][name] = value[:, keep] if name == "edge_index" else value[keep]
    return ProfileGraph(data=out, user_ids=graph.user_ids, item_ids=graph.item_ids, category_ids=graph.category_ids)
