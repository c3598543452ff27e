"""Validated tables -> a :class:`~graphprof.graph.hetero.ProfileGraph`: ids factorized, purchases reduced to one
edge per (user, item), ties in both directions, items in their categories."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from graphprof.graph.aggregate import aggregate_pairs
from graphprof.graph.hetero import (
    BUY_ATTRS,
    BUYS,
    FRIEND,
    IN_CAT,
    REV_BUYS,
    REV_IN,
    ProfileGraph,
    _check,
    _lookup,
)
from graphprof.ingest.schema import UNKNOWN_CATEGORY, ValidatedTables


def _factorize(*columns: pd.Series | None) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Sorted unique ids over every column (missing values ignored) and each column's codes into them.

    One hash pass over all the ids (``pd.factorize``), then only the uniques are sorted: O(n) rather than the
    O(n log n) string sort a ``np.unique`` over every row would cost.

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

    # the item ids are hashed beside the user ids: Arrow's dictionary encoding releases the GIL, so the two
    # overlap rather than run one after the other
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
    # purchases -> one edge per (user, item) with aggregated attributes
    bu, bi, attrs = aggregate_pairs(u, i, len(item_ids), buy_columns(purchases, purchase_prices(
        purchases, items, item_rows, i, len(item_ids))), BUY_REDUCERS)
    ties = None if friendships is None else (fa, fb, friendships["weight"].to_numpy(np.float32))
    return assemble_graph(user_ids, item_ids, (bu, bi, attrs), ties, items, item_rows)


def purchase_prices(purchases: pd.DataFrame, items: pd.DataFrame | None, item_rows: np.ndarray | None,
                    i: np.ndarray, n_items: int) -> np.ndarray:
    """Each purchase's price: its own, or where it has none the list price of its item (``i``: item codes)."""
    price = purchases["price"].to_numpy(np.float64)
    if items is not None and "price" in items:  # a purchase without a price costs the item's list price
        list_price = np.full(n_items, np.nan)
        list_price[item_rows] = items["price"].to_numpy(np.float64)
        price = np.where(np.isnan(price), list_price[i], price)
    return price


def assemble_graph(user_ids: np.ndarray, item_ids: np.ndarray, buys: tuple, ties: tuple | None,
                   items: pd.DataFrame | None, item_rows: np.ndarray | None) -> ProfileGraph:
    """The graph from coded parts: ``buys`` the reduced purchase edges ``(u, i, attrs)`` sorted by (u, i);
    ``ties`` the kept ties as user codes and weights ``(a, b, weight)``; ``items`` the items table with
    ``item_rows`` its rows' item codes."""
    nodes = {"user": len(user_ids), "item": len(item_ids)}
    edges: dict = {}
    bu, bi, attrs = buys
    buy_index = np.stack([bu, bi])
    edges[BUYS] = {"edge_index": buy_index, "edge_attr": attrs}  # BUY_ATTRS' order; float64: epoch seconds need it
    edges[REV_BUYS] = {"edge_index": buy_index[::-1]}  # a view: no copy

    if ties is not None:
        fa, fb, w = ties
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
