"""Validated tables -> a heterogeneous user-item-category graph (PyG ``HeteroData``), saved without pickle.

Node types: ``user``, ``item`` and, where items have a category, ``category``. Edge types:
``(user, buys, item)`` one edge per (user, item) pair with attributes :data:`BUY_ATTRS`,
``(user, friend, user)`` stored in both directions, ``(item, in, category)``, and the reverse
``(item, rev_buys, user)`` and ``(category, rev_in, item)``. Node indices are contiguous; the id maps
(index -> the user's own id) travel with the graph so every output speaks in the user's ids.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.graph.aggregate import aggregate_pairs
from graphprof.ingest.schema import UNKNOWN_CATEGORY, ValidatedTables

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


class ProfileGraph:
    """The graph as numpy arrays, plus the id maps; ``.data`` is the same graph as a PyG ``HeteroData``.

    ``build-graph``, the features and ``predict`` read the numpy arrays (:attr:`edge_types`, :meth:`edge`,
    :meth:`num_nodes`) and never import torch or PyG: those imports alone are ~3 s of every build. ``.data`` is
    built on first use over the same memory (``torch.from_numpy``: no copy; a mirrored reverse type is flipped
    then) and from then on it is what the accessors read, so a model or test that edits it is seen everywhere.

    Args:
        data: the graph as a ``HeteroData`` (or give ``nodes`` and ``edges``).
        nodes: ``{node type: count}``. edges: ``{edge type: {name: array}}`` with ``edge_index`` ``[2, E]`` int64,
            ``edge_attr`` ``[E, len(BUY_ATTRS)]`` float64 on ``BUYS``, ``edge_weight`` ``[E]`` float32 on ``FRIEND``.
        user_ids, item_ids, category_ids: ``ids[i]`` is the user's own id of node ``i`` (str arrays).
    """

    def __init__(self, data=None, user_ids=None, item_ids=None, category_ids=None, *,
                 nodes: dict[str, int] | None = None, edges: dict | None = None):
        if (data is None) == (nodes is None or edges is None) or (data is not None and (nodes or edges)):
            raise TypeError("ProfileGraph needs either data (a HeteroData) or nodes and edges (numpy arrays)")
        self._data, self._nodes, self._edges = data, nodes, edges
        self.user_ids, self.item_ids, self.category_ids = user_ids, item_ids, category_ids

    @property
    def data(self):
        """The graph as a PyG ``HeteroData`` (imports torch and PyG on first use)."""
        if self._data is None:
            self._data = _to_heterodata(self._nodes, self._edges)
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data, self._nodes, self._edges = value, None, None

    @property
    def node_types(self) -> list[str]:
        return list(self._data.node_types) if self._data is not None else list(self._nodes)

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return list(self._data.edge_types) if self._data is not None else list(self._edges)

    def num_nodes(self, node_type: str) -> int:
        return int(self._data[node_type].num_nodes if self._data is not None else self._nodes[node_type])

    def edge(self, edge_type: tuple[str, str, str], name: str = "edge_index") -> np.ndarray | None:
        """One array of an edge type as numpy (``edge_index``, ``edge_attr`` or ``edge_weight``); None where the
        type has no such array. Raises KeyError for an edge type the graph does not have."""
        if self._data is not None:
            store = self._data[edge_type] if edge_type in self._data.edge_types else None
            if store is None:
                raise KeyError(edge_type)
            return store[name].numpy() if name in store else None
        return self._edges[edge_type].get(name)

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
        if FRIEND not in self.edge_types:
            return sp.csr_matrix((n, n))
        ei = self.edge(FRIEND)
        w = self.edge(FRIEND, "edge_weight").astype(np.float64)
        key = ei[0] * np.int64(n) + ei[1]
        if len(key) and np.all(key[1:] > key[:-1]):  # build_graph's order (sorted, unique): CSR directly
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(ei[0], minlength=n), out=indptr[1:])
            return sp.csr_matrix((w, ei[1].astype(np.int64), indptr), shape=(n, n))
        return sp.csr_matrix((w, (ei[0], ei[1])), shape=(n, n))

    def purchase_matrix(self, attr: str = "quantity", copy_structure: bool = True):
        """``scipy.sparse.csr_matrix`` [num_users, num_items] holding one of :data:`BUY_ATTRS` (NaN as 0).

        ``copy_structure=False``: every attribute's matrix shares one ``indices`` / ``indptr`` pair (at 1M users
        160 MB less per matrix); for callers that never sort, prune or write a matrix's structure in place."""
        import scipy.sparse as sp

        ei = self.edge(BUYS)
        vals = self.edge(BUYS, "edge_attr")[:, BUY_ATTRS.index(attr)].astype(np.float64)  # a contiguous copy
        np.nan_to_num(vals, copy=False)
        shape = (self.num_users, len(self.item_ids))
        # the structure is shared by every attribute's matrix; keyed by the edge memory (the cache holds the
        # array, so that memory cannot be another array's while cached)
        source = (ei.__array_interface__["data"][0], ei.shape, ei.strides)
        cached = self.__dict__.get("_buy_csr")
        if cached is None or cached[0] != source:
            structure = None
            if len(ei[0]) and np.all(np.diff(ei[0]) >= 0):  # build_graph's order (sorted by user): CSR directly
                indptr = np.zeros(shape[0] + 1, dtype=np.int64)
                np.cumsum(np.bincount(ei[0], minlength=shape[0]), out=indptr[1:])
                structure = index_arrays(ei[1], indptr, max(shape))
            cached = self.__dict__["_buy_csr"] = (source, structure, ei)
        if cached[1] is not None:
            indices, indptr = cached[1]  # copied unless asked not to: a caller may sort or prune in place
            if copy_structure:
                indices, indptr = indices.copy(), indptr.copy()
            return sp.csr_matrix((vals, indices, indptr), shape=shape)
        return sp.csr_matrix((vals, (ei[0], ei[1])), shape=shape)


def _to_heterodata(nodes: dict[str, int], edges: dict):
    """The arrays as a ``HeteroData``, edge types in their order (the GNNs make their parameters in that order)."""
    import torch
    from torch_geometric.data import HeteroData

    data = HeteroData()
    for nt, n in nodes.items():
        data[nt].num_nodes = int(n)
    for et, arrays in edges.items():
        for name, a in arrays.items():  # a mirror's flipped view is copied here (as torch's flip would)
            data[et][name] = torch.from_numpy(np.ascontiguousarray(a))
    return data


def _check(nodes: dict[str, int], edges: dict, ranges: bool = True) -> None:
    """Shapes and (``ranges``) node index ranges of the arrays, as ``HeteroData.validate`` checked them. The
    ranges read every index: ``load_graph`` skips them, as its arrays are mapped from the file and ``predict``
    reads only a few rows of them (at 1M users the scan was 1.2 s of its 2.6 s load)."""
    for (src, _, dst), arrays in edges.items():
        ei = arrays["edge_index"]
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(f"edge_index of {src}->{dst} must have shape [2, E]. Got {list(ei.shape)} instead")
        if src not in nodes or dst not in nodes:
            raise ValueError(f"edge type {src}->{dst} names a node type the graph does not have")
        if ranges and ei.shape[1] and (ei.min() < 0 or ei[0].max() >= nodes[src] or ei[1].max() >= nodes[dst]):
            raise ValueError(f"edge_index of {src}->{dst} has a node index out of range")
        for name, a in arrays.items():
            if name != "edge_index" and len(a) != ei.shape[1]:
                raise ValueError(f"{name} of {src}->{dst} must have one row per edge. Got {len(a)} rows")


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
    """The per-purchase values ``aggregate_pairs`` reduces (``price``: the purchase's, or the list price)."""
    qty = purchases["quantity"].to_numpy(np.float64)
    return {"quantity": qty, "spend": np.nan_to_num(qty * price),
            "last_time": purchases["timestamp"].to_numpy(np.float64),
            "weight": purchases["weight"].to_numpy(np.float64),
            "priced_quantity": np.where(np.isnan(price), 0.0, qty)}


def index_arrays(indices: np.ndarray, indptr: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``indices`` / ``indptr`` in the integer type scipy keeps them in (int32 where every value fits), so
    that a matrix made from them uses these arrays rather than a converted copy."""
    small = max(dim, int(indptr[-1]) if len(indptr) else 0) < np.iinfo(np.int32).max
    dtype = np.int32 if small else np.int64
    return indices.astype(dtype), indptr.astype(dtype, copy=False)


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

    # the item ids are hashed beside the user ids: Arrow's dictionary encoding releases the GIL (at 1M users
    # the two take ~3 s together instead of ~4.3 s one after the other)
    with ThreadPoolExecutor(max_workers=1) as pool:
        item_job = pool.submit(_factorize, purchases["item_id"], items["item_id"] if items is not None else None)
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
        item_ids, (i, item_rows) = item_job.result()
    nodes = {"user": len(user_ids), "item": len(item_ids)}
    edges: dict = {}

    # purchases -> one edge per (user, item) with aggregated attributes
    price = purchases["price"].to_numpy(np.float64)
    if items is not None and "price" in items:  # a purchase without a price costs the item's list price
        list_price = np.full(len(item_ids), np.nan)
        list_price[item_rows] = items["price"].to_numpy(np.float64)
        price = np.where(np.isnan(price), list_price[i], price)
    bu, bi, attrs = aggregate_pairs(u, i, len(item_ids), buy_columns(purchases, price), BUY_REDUCERS)
    buy_index = np.stack([bu, bi])
    edges[BUYS] = {"edge_index": buy_index, "edge_attr": attrs}  # BUY_ATTRS' order; float64: epoch seconds need it
    edges[REV_BUYS] = {"edge_index": buy_index[::-1]}  # a view: no copy

    if friendships is not None:
        w = friendships["weight"].to_numpy(np.float32)
        n = np.int64(len(user_ids))
        key = np.concatenate([fa * n + fb, fb * n + fa])  # both directions; unique (validation dropped copies)
        if len(w) and (w == w[0]).all():  # the usual unweighted ties: sort the keys alone
            key, weight = np.sort(key), np.full(len(key), w[0], dtype=np.float32)
        else:
            order = np.argsort(key)
            key, weight = key[order], np.concatenate([w, w])[order]
        edges[FRIEND] = {"edge_index": np.stack([key // n, key % n]), "edge_weight": weight}

    category_ids = np.array([], dtype=object)
    if items is not None and "category" in items:
        item_cat = np.full(len(item_ids), UNKNOWN_CATEGORY, dtype=object)
        item_cat[item_rows] = items["category"].astype(str).to_numpy()
        category_ids = np.unique(item_cat.astype(str)).astype(object)
        c = _lookup(category_ids, item_cat)
        nodes["category"] = len(category_ids)
        cat_index = np.stack([np.arange(len(item_ids)), c]).astype(np.int64)
        edges[IN_CAT] = {"edge_index": cat_index}
        edges[REV_IN] = {"edge_index": cat_index[::-1]}

    _check(nodes, edges)
    return ProfileGraph(nodes=nodes, edges=edges, user_ids=user_ids, item_ids=item_ids, category_ids=category_ids)


# ----------------------------------------------------------------------------------------- save / load
def _key(edge_type: tuple[str, str, str], name: str) -> str:
    return "__".join(edge_type) + "." + name


def _flipped(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether edge_index ``a`` is ``b`` flipped (compared row by row: views, no copy)."""
    return a.shape == b.shape and bool(np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0]))


def save_graph(graph: ProfileGraph, root: str | Path) -> None:
    """Write ``graph/tensors.safetensors``, ``graph/meta.json`` and ``tables/ids/*.parquet``."""
    root = Path(root)
    tensors, edge_meta = {}, []
    types = graph.edge_types
    for et in types:
        arrays = {n: graph.edge(et, n) for n in ("edge_index", "edge_attr", "edge_weight")}
        names = [n for n, a in arrays.items() if a is not None]
        entry = {"type": list(et), "num_edges": int(arrays["edge_index"].shape[1])}
        mirror = MIRRORS.get(et)
        if mirror in types and names == ["edge_index"] and _flipped(arrays["edge_index"], graph.edge(mirror)):
            # a reverse type is its forward type's edge_index flipped: noted, not written (at 1M users the
            # reverse purchases were 160 MB of the file, written and hashed for nothing)
            entry["mirror_of"] = list(mirror)
        else:
            for n in names:
                tensors[_key(et, n)] = arrays[n]
            entry["tensors"] = names
        edge_meta.append(entry)
    meta = {"node_types": {nt: graph.num_nodes(nt) for nt in graph.node_types},
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
    tensors = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing=hint, numpy=True)
    try:
        nodes = {nt: int(n) for nt, n in meta["node_types"].items()}
        edges: dict = {}
        for em in meta["edge_types"]:  # the saved order, mirrors too (the GNNs make their parameters in that
            et = tuple(em["type"])      # order, so their initial values depend on it)
            edges[et] = {n: tensors[_key(et, n)] for n in em.get("tensors", ())}
        for em in meta["edge_types"]:
            if "mirror_of" in em:
                edges[tuple(em["type"])]["edge_index"] = edges[tuple(em["mirror_of"])]["edge_index"][::-1]
        _check(nodes, edges, ranges=False)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{root / workdir.GRAPH_TENSORS}: does not match {root / workdir.GRAPH_META} "
                            f"({e}); {hint}") from None
    ids = {}
    for kind in ("user", "item", "category"):
        df = workdir.read_parquet(workdir.ids_path(root, kind), missing=hint)
        ids[kind] = df.sort_values("index")[f"{kind}_id"].astype(str).to_numpy(dtype=object)
    return ProfileGraph(nodes=nodes, edges=edges, user_ids=ids["user"], item_ids=ids["item"],
                        category_ids=ids["category"])


def describe(graph: ProfileGraph) -> dict:
    """Node and edge counts, for logs and ``--json``."""
    return {"nodes": {nt: graph.num_nodes(nt) for nt in graph.node_types},
            "edges": {"__".join(et): int(graph.edge(et).shape[1]) for et in graph.edge_types}}


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
        if FRIEND in graph.edge_types:
            ei = graph.edge(FRIEND)
            w = graph.edge(FRIEND, "edge_weight")
            keep = ei[0] < ei[1]
            g.add_weighted_edges_from(zip(graph.user_ids[ei[0][keep]], graph.user_ids[ei[1][keep]],
                                          w[keep].tolist()))
        return g
    if view == "purchases":
        g.add_nodes_from((("user", u) for u in graph.user_ids), bipartite=0)
        g.add_nodes_from((("item", i) for i in graph.item_ids), bipartite=1)
        ei = graph.edge(BUYS)
        attrs = graph.edge(BUYS, "edge_attr")
        g.add_edges_from((("user", u), ("item", i), dict(zip(BUY_ATTRS, row)))
                         for u, i, row in zip(graph.user_ids[ei[0]], graph.item_ids[ei[1]], attrs.tolist()))
        return g
    raise ConfigError(f"view must be 'social' or 'purchases'. Got {view!r} instead")


def drop_user_edges(graph: ProfileGraph, users) -> ProfileGraph:
    """A copy of the graph without any purchase or tie of the given users (node indices): they stay as
    isolated nodes, so every index still means the same user. For inductive evaluation."""
    drop = np.zeros(graph.num_users, dtype=bool)
    drop[np.asarray(users, dtype=np.int64)] = True
    nodes = {nt: graph.num_nodes(nt) for nt in graph.node_types}
    edges: dict = {}
    for et in graph.edge_types:
        ei = graph.edge(et)
        if et[0] == "user" and et[2] == "user":
            keep = ~(drop[ei[0]] | drop[ei[1]])
        elif et[0] == "user":
            keep = ~drop[ei[0]]
        elif et[2] == "user":
            keep = ~drop[ei[1]]
        else:
            keep = np.ones(ei.shape[1], dtype=bool)
        edges[et] = {name: (a[:, keep] if name == "edge_index" else a[keep])
                     for name in ("edge_index", "edge_attr", "edge_weight") if (a := graph.edge(et, name)) is not None}
    return ProfileGraph(nodes=nodes, edges=edges, user_ids=graph.user_ids, item_ids=graph.item_ids,
                        category_ids=graph.category_ids)
