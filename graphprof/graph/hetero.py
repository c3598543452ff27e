"""Validated tables -> a heterogeneous user-item-category graph (PyG ``HeteroData``), saved without pickle.

Node types: ``user``, ``item`` and, where items have a category, ``category``. Edge types:
``(user, buys, item)`` one edge per (user, item) pair with attributes :data:`BUY_ATTRS`,
``(user, friend, user)`` stored in both directions, ``(item, in, category)``, and the reverse
``(item, rev_buys, user)`` and ``(category, rev_in, item)``. Node indices are contiguous; the id maps
(index -> the user's own id) travel with the graph so every output speaks in the user's ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
#: mapped edge attributes from this size on are handed back to the kernel once a column is read from them: below
#: it, keeping them resident costs little and saves reading them again for the next column
PAGE_OUT_MIN_BYTES = 1 << 30
#: rows of the mapped edge attributes read between two hand-backs of their pages (about 48 MB)
PAGE_OUT_ROWS = 1 << 20


def _sorted_unique(ei: np.ndarray, n: int, step: int = PAGE_OUT_ROWS) -> bool:
    """Whether the edges ``ei`` ``[2, E]`` are sorted by (source, target) without repeats, checked a slice at a
    time (no key array as long as the edges)."""
    last = -1
    for lo in range(0, ei.shape[1], step):
        key = ei[0, lo:lo + step] * np.int64(n) + ei[1, lo:lo + step]
        if key[0] <= last or not np.all(key[1:] > key[:-1]):
            return False
        last = int(key[-1])
    return ei.shape[1] > 0


class EdgeRows:
    """CSR rows of a graph's edges sorted by source (``build_graph``'s order): the positions of given sources'
    edges, without building the whole matrix."""

    def __init__(self, src: np.ndarray, n: int):
        self.indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=self.indptr[1:])

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The edge positions of ``rows`` in order, and the rows' CSR ``indptr``."""
        lo, hi = self.indptr[rows], self.indptr[rows + 1]
        counts = hi - lo
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        pos = np.repeat(lo - indptr[:-1], counts) + np.arange(indptr[-1])
        return pos, indptr


class ProfileGraph:
    """The graph as numpy arrays, plus the id maps; ``.data`` is the same graph as a PyG ``HeteroData``.

    ``build-graph``, the features and ``predict`` read the numpy arrays (:attr:`edge_types`, :meth:`edge`,
    :meth:`num_nodes`) and never import torch or PyG: they need neither, and importing them is slow. ``.data`` is
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
        from graphprof.runtime.memory import page_out

        ei = self.edge(FRIEND)
        mapped_w = self.edge(FRIEND, "edge_weight")
        w = mapped_w.astype(np.float64)
        if _sorted_unique(ei, n):  # build_graph's order: CSR directly
            index = np.int32 if max(n, ei.shape[1]) < 2 ** 31 else np.int64  # what scipy keeps: no int64 copy
            indptr = np.zeros(n + 1, dtype=index)
            np.cumsum(np.bincount(ei[0], minlength=n), out=indptr[1:])
            adj = sp.csr_matrix((w, ei[1].astype(index), indptr), shape=(n, n))
        else:
            adj = sp.csr_matrix((w, (ei[0], ei[1])), shape=(n, n))
        for mapped in (ei, mapped_w):  # mapped from the work directory: copied into the matrix, pages not needed
            page_out(mapped, PAGE_OUT_MIN_BYTES)
        return adj

    def purchase_matrix(self, attr: str = "quantity", copy_structure: bool = True):
        """``scipy.sparse.csr_matrix`` [num_users, num_items] holding one of :data:`BUY_ATTRS` (NaN as 0).

        ``copy_structure=False``: every attribute's matrix shares one ``indices`` / ``indptr`` pair (no copy of
        the structure per matrix); for callers that never sort, prune or write a matrix's structure in place."""
        import scipy.sparse as sp

        from graphprof.runtime.memory import page_out

        ei = self.edge(BUYS)
        attrs = self.edge(BUYS, "edge_attr")
        col = BUY_ATTRS.index(attr)
        if attrs.nbytes < PAGE_OUT_MIN_BYTES:
            vals = attrs[:, col].astype(np.float64)  # a contiguous copy
        else:  # mapped from the work directory: a column read touches every page of the [edges, 6] array, so
            # it is read a slice of rows at a time and each slice's pages are handed back before the next
            vals = np.empty(len(attrs), dtype=np.float64)
            for lo in range(0, len(attrs), PAGE_OUT_ROWS):
                part = attrs[lo:lo + PAGE_OUT_ROWS]
                vals[lo:lo + len(part)] = part[:, col]
                page_out(part)
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
            if structure is not None:  # read into the structure: the mapped edges' pages are not needed
                page_out(ei, PAGE_OUT_MIN_BYTES)
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
    """Shapes and (``ranges``) node index ranges of the arrays, as ``HeteroData.validate`` checks them. The
    ranges read every index: ``load_graph`` skips them, as its arrays are mapped from the file and ``predict``
    reads only a few rows of them (the scan would read every page of the file)."""
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


def index_arrays(indices: np.ndarray, indptr: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``indices`` / ``indptr`` in the integer type scipy keeps them in (int32 where every value fits), so
    that a matrix made from them uses these arrays rather than a converted copy."""
    small = max(dim, int(indptr[-1]) if len(indptr) else 0) < np.iinfo(np.int32).max
    dtype = np.int32 if small else np.int64
    return indices.astype(dtype), indptr.astype(dtype, copy=False)
