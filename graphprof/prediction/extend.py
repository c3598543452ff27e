"""The saved graph extended with new users (``graphprof predict``), at a cost that grows with the new users and
their neighbourhood, not with the saved graph; their features: :mod:`graphprof.prediction.extend_features`.

:func:`join` selects the usable rows of the new users' validated tables (each id column factorized once, only the
distinct ids looked up). :func:`extend_graph`: the new users get the indices ``n_old .. n_old + n_new - 1``
(sorted by id) after the saved users; their purchases become ``(user, buys, item)`` edges aggregated per (user,
item) exactly as ``build_graph`` aggregates them (same attributes, same order of the float sums, list price where
a price is missing) and their ties are added in both directions. :class:`ExtendedGraph` keeps the saved tensors as
they are: ``purchase_matrix`` is the saved matrix with the new rows stacked under it, ``social_adjacency`` the saved
one plus the new ties, ``adjacency_rows`` reads only the given users' ties (the saved friend edges are sorted by
source), and the whole ``HeteroData`` (both edge sets concatenated, friend edges in ``build_graph``'s order) is
built only when a model reads ``.data`` (``sage`` / ``gat``). Nothing assumes sorted user ids: lookups hash.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof import workdir
from graphprof.graph import (
    BUY_ATTRS,
    BUY_REDUCERS,
    BUYS,
    FRIEND,
    REV_BUYS,
    ProfileGraph,
    buy_columns,
    index_arrays,
)
from graphprof.graph.aggregate import aggregate_pairs


class ExtendedGraph(ProfileGraph):
    """The saved graph with new users appended (see the module docstring); a :class:`ProfileGraph` to the models.

    Attributes:
        base: the saved graph. n_old: its users. buys: ``(u, i, attrs)`` the new users' edges (global user
        indices, sorted by (u, i); ``attrs`` ``[m, len(BUY_ATTRS)]`` float64). ties: ``(a, b, w)`` one row per
        new tie (global indices, float32 weights).
    """

    def __init__(self, base: ProfileGraph, new_ids: np.ndarray, buys: tuple, ties: tuple):
        self.base, self.n_old, self.buys, self.ties = base, base.num_users, buys, ties
        self.user_ids = np.concatenate([base.user_ids, np.asarray(new_ids, dtype=object)])
        self.item_ids, self.category_ids = base.item_ids, base.category_ids
        self._data, self._cache = None, {}

    @property
    def data(self):
        """The whole extended graph as a ``HeteroData`` (built on first use; imports torch and PyG)."""
        if self._data is None:
            self._data = self._materialize()
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data = value

    @property
    def node_types(self) -> list[str]:
        return self.base.node_types

    def num_nodes(self, node_type: str) -> int:
        return self.num_users if node_type == "user" else self.base.num_nodes(node_type)

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        if self._data is not None:
            return list(self._data.edge_types)
        types = self.base.edge_types
        return types + [FRIEND] if len(self.ties[0]) and FRIEND not in types else types  # _materialize's order

    def edge(self, edge_type: tuple[str, str, str], name: str = "edge_index") -> np.ndarray | None:
        if self._data is None and edge_type not in (BUYS, REV_BUYS, FRIEND):  # not touched by the new users
            return self.base.edge(edge_type, name)
        self.data  # noqa: B018 - the new users' edges are in the materialized graph
        return super().edge(edge_type, name)

    def new_purchase_matrix(self, attr: str = "quantity", copy_structure: bool = True) -> sp.csr_matrix:
        """The new users' rows of :meth:`purchase_matrix`: ``[n_new, num_items]`` (``copy_structure`` as there)."""
        if "new_buys_structure" not in self._cache:
            u, i, _ = self.buys
            n_new = self.num_users - self.n_old
            indptr = np.zeros(n_new + 1, dtype=np.int64)
            np.cumsum(np.bincount(u - self.n_old, minlength=n_new), out=indptr[1:])
            self._cache["new_buys_structure"] = index_arrays(i, indptr, max(n_new, len(self.item_ids)))
        indices, indptr = self._cache["new_buys_structure"]
        if copy_structure:
            indices, indptr = indices.copy(), indptr.copy()
        vals = self.buys[2][:, BUY_ATTRS.index(attr)].astype(np.float64)  # a contiguous copy
        np.nan_to_num(vals, copy=False)
        return sp.csr_matrix((vals, indices, indptr), shape=(len(indptr) - 1, len(self.item_ids)))

    def purchase_matrix(self, attr: str = "quantity") -> sp.csr_matrix:
        key = ("buys", attr)
        if key not in self._cache:
            self._cache[key] = sp.vstack([self.base.purchase_matrix(attr), self.new_purchase_matrix(attr)],
                                         format="csr")
        return self._cache[key]

    def social_adjacency(self) -> sp.csr_matrix:
        if "adj" not in self._cache:
            n, saved = self.num_users, self._saved_edges()
            if saved is None:
                adj = self.base.social_adjacency()
            else:  # CSR straight from the sorted edges: no sort
                indptr = np.zeros(self.n_old + 1, dtype=np.int64)
                np.cumsum(np.bincount(saved[0], minlength=self.n_old), out=indptr[1:])
                adj = sp.csr_matrix((saved[2].astype(np.float64), saved[1], indptr), shape=(self.n_old, self.n_old))
            adj.resize((n, n))
            a, b, w = self.ties
            if len(a):
                w = np.concatenate([w, w]).astype(np.float64)
                adj = (adj + sp.csr_matrix((w, (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n)))
            self._cache["adj"] = adj.tocsr()
        return self._cache["adj"]

    def adjacency_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """``social_adjacency()[rows]`` (the same entries in the same order), read from the rows' own ties: the saved
        friend edges are sorted by source (``build_graph``'s order), so each saved row's are a run found by its
        start (counted once per graph, like a CSR ``indptr``), then the new ties; O(the rows' ties) per call, not
        O(edges)."""
        rows = np.asarray(rows, dtype=np.int64)
        saved = self._saved_edges()
        if "adj" in self._cache or saved is None:
            return self.social_adjacency()[rows]
        parts = [saved, self._new_edges()]
        starts = [self._run_starts(k, part[0]) for k, part in enumerate(parts)]
        spans = [(start[rows], start[rows + 1]) for start in starts]
        counts = [hi - lo for lo, hi in spans]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts[0] + counts[1], out=indptr[1:])
        indices, data = np.empty(indptr[-1], dtype=np.int64), np.empty(indptr[-1])
        for k, ((_, dst, w), (lo, _), cnt) in enumerate(zip(parts, spans, counts)):
            row = np.repeat(np.arange(len(rows)), cnt)
            within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            at = indptr[row] + within + (counts[0][row] if k else 0)  # a row's saved ties, then its new ones
            indices[at], data[at] = dst[lo[row] + within], w[lo[row] + within]
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.num_users))

    def _run_starts(self, k: int, src: np.ndarray) -> np.ndarray:
        """Where each user's run of the sorted sources ``src`` starts (``[num_users + 1]``, a CSR ``indptr``):
        counted once and cached, rather than binary searches of the sources for every block of rows."""
        key = ("run_starts", k)
        if key not in self._cache:
            starts = np.zeros(self.num_users + 1, dtype=np.int64)
            np.cumsum(np.bincount(src, minlength=self.num_users), out=starts[1:])
            self._cache[key] = starts
        return self._cache[key]

    def _saved_edges(self) -> tuple | None:
        """The saved friend edges ``(src, dst, weight)`` if in (source, destination) order, else None."""
        if "saved_edges" not in self._cache:
            base, out = self.base, None
            if FRIEND not in base.edge_types:
                out = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
            else:
                src, dst = base.edge(FRIEND)
                if len(src) < 2 or (np.all(src[1:] >= src[:-1]) and np.all((src[1:] > src[:-1]) | (dst[1:] > dst[:-1]))):
                    out = (src, dst, base.edge(FRIEND, "edge_weight"))
            self._cache["saved_edges"] = out
        return self._cache["saved_edges"]

    def _new_edges(self) -> tuple:
        """The new ties in both directions ``(src, dst, weight)``, in (source, destination) order.

        Ordered as a CSR matrix orders them (rows counted, then each row's few entries sorted): cheaper than an
        argsort of the packed keys. A CSR sums a repeated (source, destination); the joined ties hold none
        (validation rejects repeated and reversed ties), and should one appear the argsort is used instead, which
        keeps every entry."""
        if "new_edges" not in self._cache:
            a, b, w = self.ties
            n = self.num_users
            src, dst, ww = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([w, w])
            csr = sp.csr_matrix((ww, (src, dst)), shape=(n, n)) if len(src) else None
            if csr is not None and csr.nnz == len(src):
                csr.sort_indices()
                starts = csr.indptr.astype(np.int64, copy=False)
                src = np.repeat(np.arange(n, dtype=np.int64), np.diff(starts))
                self._cache[("run_starts", 1)] = starts
                self._cache["new_edges"] = (src, csr.indices.astype(np.int64), csr.data)
            else:
                order = np.argsort(src * np.int64(n) + dst, kind="stable")
                self._cache["new_edges"] = (src[order], dst[order], ww[order])
        return self._cache["new_edges"]

    def _materialize(self):
        import torch
        from torch_geometric.data import HeteroData

        base, n = self.base.data, self.num_users
        data = HeteroData()
        for nt in base.node_types:
            data[nt].num_nodes = base[nt].num_nodes
        data["user"].num_nodes = n
        for et in base.edge_types:
            for name in ("edge_index", "edge_attr", "edge_weight"):
                if name in base[et]:
                    data[et][name] = base[et][name]
        u, i, attrs = self.buys
        if len(u):
            data[BUYS].edge_index = torch.cat([base[BUYS].edge_index, torch.from_numpy(np.stack([u, i]))], dim=1)
            data[BUYS].edge_attr = torch.cat([base[BUYS].edge_attr, torch.from_numpy(attrs)])
            data[REV_BUYS].edge_index = data[BUYS].edge_index.flip(0)
        a, b, w = self.ties
        if len(a):
            src, dst, ww = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([w, w])
            if FRIEND in base.edge_types:
                old = base[FRIEND].edge_index.numpy()
                src, dst = np.concatenate([old[0], src]), np.concatenate([old[1], dst])
                ww = np.concatenate([base[FRIEND].edge_weight.numpy(), ww])
            order = np.argsort(src * np.int64(n) + dst, kind="stable")  # build_graph's order
            data[FRIEND].edge_index = torch.from_numpy(np.stack([src[order], dst[order]]))
            data[FRIEND].edge_weight = torch.from_numpy(ww[order])
        return data


@dataclass
class NewRows:
    """The usable rows of the new users' tables, by :func:`join`.

    Attributes:
        ids: the new user ids, sorted (none in the graph). purchases: the used purchase rows (new users, known
        items); user / item: per used purchase, its user's position in ``ids`` and its item's graph index.
        friendships: the used ties (at least one end new), or None; a / b: their ends' indices in the extended
        graph (saved users first, then ``ids``). counts: what was used and ignored (``predict``'s counts).
    """

    ids: np.ndarray
    purchases: pd.DataFrame
    user: np.ndarray
    item: np.ndarray
    friendships: pd.DataFrame | None
    a: np.ndarray
    b: np.ndarray
    counts: dict


def join(graph: ProfileGraph, tables: dict[str, pd.DataFrame], friend_codes: tuple | None = None) -> NewRows:
    """Select the usable rows of validated new tables: purchases by users not in ``graph`` of items in it, ties
    with at least one end not in ``graph``; the new users are those and the users table's unknown ids.

    Every id column is factorized once (one hash pass over its rows) and only its distinct ids are looked up in
    the graph's users and items, all in Arrow (no Python string per id, so no object conversion or lookup per
    row). ``friend_codes``: validation's factorization of the ties
    (:attr:`~graphprof.ingest.schema.ValidatedTables.friend_codes`), reused rather than hashing both id columns again.
    """
    n_old = graph.num_users
    p = tables["purchases"]
    # the item ids are hashed and looked up beside the user ids (Arrow's kernels release the GIL)
    with ThreadPoolExecutor(max_workers=1) as pool:
        item_job = pool.submit(lambda: _factorize_lookup(p["item_id"], _arrow(graph.item_ids)))
        saved = _arrow(graph.user_ids)
        pc, pu = pd.factorize(p["user_id"])
        pu = _arrow(pu)
        f = tables.get("friendships")
        if f is not None:
            if friend_codes is not None and len(friend_codes[1]) == len(f):
                fu, fa, fb = friend_codes
            else:
                fc, fu = pd.factorize(pd.concat([f["user_id"], f["friend_id"]], ignore_index=True))
                fa, fb = fc[:len(f)], fc[len(f):]
            fu = _arrow(fu)
        users = _arrow(tables["users"]["user_id"]) if "users" in tables else None
        # one lookup of every distinct id in the saved users: its index, or -1
        queries = [q for q in (pu, fu if f is not None else None, users) if q is not None]
        found = _index_in(_concat(queries), saved)
        bounds = np.cumsum([0] + [len(q) for q in queries])
        where_p, where = found[:bounds[1]], (found[bounds[1]:bounds[2]] if f is not None else None)
        where_users = found[bounds[-2]:] if users is not None else None
        ic, item_of_unique = item_job.result()
    p_known_user = (where_p >= 0)[pc]
    item = item_of_unique[ic]
    use_p = ~p_known_user & (item >= 0)
    used_u = np.zeros(len(pu), dtype=bool)
    used_u[pc[use_p]] = True
    named = [_take(pu, used_u)]
    use_f = np.zeros(0, bool)
    if f is not None:
        use_f = ~((where[fa] >= 0) & (where[fb] >= 0))
        in_tie = np.zeros(len(fu), dtype=bool)  # validation's ids include those of rejected rows: not users
        in_tie[fa] = True
        in_tie[fb] = True
        new_f = (where < 0) & in_tie
        named.append(_take(fu, new_f))  # each in a used tie
    if users is not None:
        named.append(_take(users, where_users < 0))
    # one sorted factorization of the new ids named anywhere: the new ids, and each one's position among them
    codes, new_ids = _sorted_factorize(named)
    position = np.full(len(pu), -1, dtype=np.int64)
    position[used_u] = codes[:len(named[0])]
    user = position[pc[use_p]]
    a = b = np.zeros(0, np.int64)
    if f is not None:
        where[new_f] = n_old + codes[len(named[0]):len(named[0]) + len(named[1])]
        a, b = where[fa][use_f], where[fb][use_f]
    counts = {"new_users": int(len(new_ids)), "purchases_used": int(use_p.sum()), "ties_used": int(use_f.sum()),
              "purchases_unknown_item": int(((item < 0) & ~p_known_user).sum()),
              "unknown_items": int((item_of_unique < 0).sum()),
              "purchases_known_user": int(p_known_user.sum()),
              "ties_known_users": int((~use_f).sum()) if f is not None else 0}
    return NewRows(ids=new_ids, purchases=p if use_p.all() else p[use_p], user=user, item=item[use_p],
                   friendships=(f if use_f.all() else f[use_f]) if f is not None else None, a=a, b=b,
                   counts=counts)


def _arrow(values):
    """Ids (a Series, an Index or an array of str) as one Arrow ``large_string`` array (no copy where they are
    Arrow strings already)."""
    import pyarrow as pa

    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array if isinstance(values.dtype, pd.StringDtype) else values.astype(str).to_numpy(object)
    arr = pa.array(values, type=pa.large_string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _concat(arrays: list):
    import pyarrow as pa

    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.large_string())


def _index_in(values, value_set) -> np.ndarray:
    """Each value's position in ``value_set`` (unique; Arrow arrays), -1 where absent."""
    import pyarrow.compute as pac

    if not len(values):
        return np.zeros(0, np.int64)
    found = pac.index_in(values, value_set=value_set)
    return pac.fill_null(found, -1).to_numpy().astype(np.int64)


def _factorize_lookup(ids: pd.Series, known) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(ids)``'s codes, and each distinct id's position in ``known`` (-1 where absent)."""
    codes, uniques = pd.factorize(ids)
    return codes, _index_in(_arrow(uniques), known)


def _take(values, mask: np.ndarray):
    import pyarrow as pa

    return values.filter(pa.array(mask))


def _sorted_factorize(parts: list) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(concatenated parts, sort=True)`` in Arrow (Arrow strings; its binary order of UTF-8 is
    Python's order of str): codes, and the distinct values sorted, as an object array of str."""
    import pyarrow.compute as pac

    values = _concat(parts)
    if not len(values):
        return np.zeros(0, np.int64), np.zeros(0, dtype=object)
    encoded = pac.dictionary_encode(values)
    order = np.asarray(pac.array_sort_indices(encoded.dictionary), dtype=np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    uniques = encoded.dictionary.take(order).to_numpy(zero_copy_only=False)
    return rank[encoded.indices.to_numpy().astype(np.int64)], np.asarray(uniques, dtype=object)


def extend_graph(root: str | Path, graph: ProfileGraph, rows: NewRows) -> ExtendedGraph:
    """``graph`` plus the new users of ``rows`` (:func:`join`), their purchases and their ties."""
    n_old = graph.num_users
    purchases, u, i = rows.purchases, rows.user, rows.item
    # the purchase columns exactly as build_graph computes them
    price = purchases["price"].to_numpy(np.float64)
    if np.isnan(price).any():
        list_price = _list_price(root, graph.item_ids)
        if list_price is not None:
            price = np.where(np.isnan(price), list_price[i], price)
    bu, bi, attrs = aggregate_pairs(u, i, len(graph.item_ids), buy_columns(purchases, price), BUY_REDUCERS)
    buys = (bu + n_old, bi, attrs)  # attrs: BUY_ATTRS' order
    w = rows.friendships["weight"].to_numpy(np.float32) if rows.friendships is not None else np.zeros(0, np.float32)
    return ExtendedGraph(graph, rows.ids, buys, (rows.a, rows.b, w))


def _list_price(root: str | Path, item_ids: np.ndarray) -> np.ndarray | None:
    """The saved items table's prices in graph order (NaN where none), or None without a price column."""
    import pyarrow.parquet as pq

    path = workdir.table_path(Path(root), "items")
    if not path.exists() or "price" not in pq.read_schema(path).names:
        return None
    items = pd.read_parquet(path, columns=["item_id", "price"])
    out = np.full(len(item_ids), np.nan)
    pos = pd.Index(item_ids).get_indexer(items["item_id"])
    out[pos[pos >= 0]] = items["price"].to_numpy(np.float64)[pos >= 0]
    return out
