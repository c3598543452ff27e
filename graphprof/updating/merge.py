"""A batch of validated rows merged into the saved graph and tables, as a rebuild from all the rows would give.

The graph keeps ``build_graph``'s layout: users, items and categories sorted by id, purchase edges sorted by
(user, item), friend edges by (source, destination). New ids are inserted at their sorted places; since that
moves every later index by a count, the saved edges are renumbered by a monotone map (still sorted) and the
batch's edges are inserted by binary search, so no saved edge is sorted again. A batch purchase of a (user, item)
pair already in the graph is added to that edge (counts, quantity, spend and weight summed, the last time the
later one), exactly as ``build_graph`` reduces all of a pair's purchases.

Rows that contradict the work directory are rejected here with a reason, as validation rejects rows that
contradict each other: a tie already in the graph (a rebuild would reject the copy), a tie in a work directory
built without friendships, an item row that changes a known item's category or price.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from graphprof.graph import (
    BUY_ATTRS,
    BUY_REDUCERS,
    BUYS,
    FRIEND,
    IN_CAT,
    REV_BUYS,
    REV_IN,
    ProfileGraph,
    buy_columns,
)
from graphprof.graph.aggregate import aggregate_pairs
from graphprof.ingest.io import ROW
from graphprof.ingest.schema import REJECT_COLUMNS, UNKNOWN_CATEGORY


@dataclass
class Merged:
    """The merged graph and tables, and where the batch landed.

    Attributes:
        graph: the merged graph. user_map / item_map: each saved user's / item's index in it. new_users /
        new_items: the indices of the added ones. bought: users with a purchase in the batch. ties: ``(a, b)``
        the added ties' ends. labelled: users whose users-table row the batch set or changed.
        tables: users and items merged with the saved ones, purchases and friendships the batch's kept rows (each
        saved as a part of its table, :func:`graphprof.workdir.table_parts`; all without ``__row__``). rejects: per table, the rows rejected against the work directory
        (:data:`REJECT_COLUMNS`). cat_map: each saved category's index (None without categories).
    """

    graph: ProfileGraph
    user_map: np.ndarray
    item_map: np.ndarray
    new_users: np.ndarray
    new_items: np.ndarray
    bought: np.ndarray
    ties: tuple[np.ndarray, np.ndarray]
    labelled: np.ndarray
    tables: dict[str, pd.DataFrame]
    rejects: dict[str, pd.DataFrame] = field(default_factory=dict)
    cat_map: np.ndarray | None = None
    pairs_merged: int = 0  # the batch's (user, item) pairs that were edges already


def insert_ids(old: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``old`` (sorted, unique) with the ``candidates`` not in it inserted at their sorted places.

    Returns: the merged ids, each old id's index in them, and the added ids' indices (sorted)."""
    cand = pd.unique(pd.Series(np.asarray(candidates, dtype=object), dtype=object).astype(str))
    known = pd.Index(old).get_indexer(cand) >= 0 if len(old) else np.zeros(len(cand), bool)
    added = np.sort(np.asarray(cand[~known], dtype=object))
    if not len(added):
        return old, np.arange(len(old), dtype=np.int64), np.zeros(0, np.int64)
    at = np.searchsorted(old, added)
    shift = np.cumsum(np.bincount(at, minlength=len(old) + 1))[:len(old)]
    return (np.insert(old, at, added), np.arange(len(old), dtype=np.int64) + shift,
            at + np.arange(len(added), dtype=np.int64))


def _lookup(ids: np.ndarray, index: pd.Index, values: pd.Series) -> np.ndarray:
    return index.get_indexer(pd.Index(values.astype(str).to_numpy(dtype=object))).astype(np.int64)


def _reject_rows(df: pd.DataFrame, mask: np.ndarray, source: str, column: str, values, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"source_file": source, "source_row": df[ROW].to_numpy()[mask], "column": column,
                         "value": np.asarray(values, dtype=object)[mask].astype(str), "reason": reason},
                        columns=REJECT_COLUMNS)


def merge(graph: ProfileGraph, saved: dict[str, pd.DataFrame | None], batch: dict[str, pd.DataFrame],
          sources: dict[str, str]) -> Merged:
    """Merge the validated ``batch`` tables into ``graph`` and the ``saved`` users and items tables
    (``sources``: each batch table's file, for the rejects)."""
    if len(graph.user_ids) > 1 and not (graph.user_ids[1:] > graph.user_ids[:-1]).all():
        from graphprof.errors import ArtifactError

        raise ArtifactError("graph/: the saved user ids must be sorted (build-graph's layout). Got another order; "
                            "re-run 'graphprof build-graph'")
    rejects: dict[str, pd.DataFrame] = {}
    batch = dict(batch)
    items_b = batch.get("items")
    if items_b is not None:
        items_b, rejects["items"] = _check_items(saved.get("items"), items_b, sources.get("items", "items"))
        batch["items"] = items_b
    friends = batch.get("friendships")
    if friends is not None and len(friends) and FRIEND not in graph.edge_types:
        rejects["friendships"] = _reject_rows(
            friends, np.ones(len(friends), bool), sources.get("friendships", "friendships"), "user_id",
            friends["user_id"], "friendships must go to a work directory built with friendships. Got a work "
            "directory without any; re-run 'graphprof build-graph' with them")
        friends = batch["friendships"] = friends.iloc[:0]
    p = batch["purchases"]
    users_b = batch.get("users")
    # every id the batch names: users first, then items
    named_users = [p["user_id"]] + ([friends["user_id"], friends["friend_id"]] if friends is not None else []) \
        + ([users_b["user_id"]] if users_b is not None else [])
    user_ids, user_map, new_users = insert_ids(graph.user_ids, pd.concat(named_users, ignore_index=True).to_numpy())
    named_items = [p["item_id"]] + ([items_b["item_id"]] if items_b is not None else [])
    item_ids, item_map, new_items = insert_ids(graph.item_ids, pd.concat(named_items, ignore_index=True).to_numpy())
    uindex, iindex = pd.Index(user_ids), pd.Index(item_ids)
    nodes = {nt: graph.num_nodes(nt) for nt in graph.node_types}
    nodes["user"], nodes["item"] = len(user_ids), len(item_ids)
    edges: dict = {}
    tables = {k: (v.copy() if v is not None else None) for k, v in saved.items()}

    u, i = _lookup(user_ids, uindex, p["user_id"]), _lookup(item_ids, iindex, p["item_id"])
    all_items = tables.get("items") if items_b is None else pd.concat(
        [t for t in (tables.get("items"), items_b.drop(columns=[ROW])) if t is not None], ignore_index=True)
    price = p["price"].to_numpy(np.float64)
    if all_items is not None and "price" in all_items and np.isnan(price).any():
        list_price = np.full(len(item_ids), np.nan)
        list_price[_lookup(item_ids, iindex, all_items["item_id"])] = all_items["price"].to_numpy(np.float64)
        price = np.where(np.isnan(price), list_price[i], price)
    pairs_merged = 0
    for et in graph.edge_types:
        if et == BUYS:
            edges[BUYS], pairs_merged = _merge_buys(graph, user_map, item_map, len(item_ids), u, i,
                                                    buy_columns(p, price))
            edges[REV_BUYS] = {"edge_index": edges[BUYS]["edge_index"][::-1]}
        elif et == FRIEND:
            edges[FRIEND], ties, dup = _merge_ties(graph, user_map, len(user_ids), uindex, friends)
            if dup.any():
                rejects["friendships"] = _reject_rows(
                    friends, dup, sources.get("friendships", "friendships"), "friend_id", friends["friend_id"],
                    "friendships must be new ties. Got a tie already in the work directory (either direction)")
                friends = friends[~dup]
        elif et == IN_CAT:
            cat_ids, cat_map, cat_index = _merge_categories(graph, item_map, len(item_ids), iindex, all_items)
            nodes["category"] = len(cat_ids)
            edges[IN_CAT] = {"edge_index": cat_index}
            edges[REV_IN] = {"edge_index": cat_index[::-1]}
    if FRIEND not in graph.edge_types:
        ties = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if IN_CAT not in graph.edge_types:
        cat_ids, cat_map = graph.category_ids, None
    merged = ProfileGraph(nodes=nodes, edges={et: edges[et] for et in graph.edge_types}, user_ids=user_ids,
                          item_ids=item_ids, category_ids=cat_ids)

    tables["purchases"] = p.drop(columns=[ROW])  # the batch's rows: appended as a part of the saved table
    if friends is not None and len(friends):
        tables["friendships"] = friends.drop(columns=[ROW])
    if items_b is not None and len(items_b):
        tables["items"] = all_items
    labelled = np.zeros(0, np.int64)
    if users_b is not None and len(users_b):
        tables["users"] = _merge_users(tables.get("users"), users_b.drop(columns=[ROW]))
        labelled = _lookup(user_ids, uindex, users_b["user_id"])
    return Merged(graph=merged, user_map=user_map, item_map=item_map, new_users=new_users, new_items=new_items,
                  bought=np.unique(u), ties=ties, labelled=np.unique(labelled), tables=tables,
                  rejects={k: v for k, v in rejects.items() if len(v)}, cat_map=cat_map, pairs_merged=pairs_merged)


def _merge_buys(graph, user_map, item_map, n_items, u, i, columns) -> dict:
    ei, attrs = graph.edge(BUYS), graph.edge(BUYS, "edge_attr")
    okey = user_map[ei[0]] * np.int64(n_items) + item_map[ei[1]]  # monotone maps: still sorted
    bu, bi, battrs = aggregate_pairs(u, i, n_items, columns, BUY_REDUCERS)
    bkey = bu * np.int64(n_items) + bi
    pos = np.searchsorted(okey, bkey)
    hit = (pos < len(okey)) & (okey[np.minimum(pos, max(len(okey) - 1, 0))] == bkey) if len(okey) else \
        np.zeros(len(bkey), bool)
    attrs = np.array(attrs, dtype=np.float64)  # a copy: the saved one is memory-mapped
    if hit.any():
        at = pos[hit]
        for j, name in enumerate(BUY_ATTRS):
            if BUY_REDUCERS[name] == "max":
                attrs[at, j] = np.fmax(attrs[at, j], battrs[hit, j])  # NaN only where both times are unknown
            else:
                attrs[at, j] = attrs[at, j] + battrs[hit, j]
    miss = ~hit
    key = np.insert(okey, pos[miss], bkey[miss])
    attrs = np.insert(attrs, pos[miss], battrs[miss], axis=0)
    return {"edge_index": np.stack([key // n_items, key % n_items]), "edge_attr": attrs}, int(hit.sum())


def _merge_ties(graph, user_map, n_users, uindex, friends):
    ei, w = graph.edge(FRIEND), graph.edge(FRIEND, "edge_weight")
    n = np.int64(n_users)
    okey = user_map[ei[0]] * n + user_map[ei[1]]
    if friends is None or not len(friends):
        return ({"edge_index": np.stack([okey // n, okey % n]), "edge_weight": np.asarray(w)},
                (np.zeros(0, np.int64), np.zeros(0, np.int64)), np.zeros(0, bool))
    a = _lookup(None, uindex, friends["user_id"])
    b = _lookup(None, uindex, friends["friend_id"])
    k = a * n + b
    pos = np.searchsorted(okey, k)
    dup = (pos < len(okey)) & (okey[np.minimum(pos, max(len(okey) - 1, 0))] == k) if len(okey) else \
        np.zeros(len(k), bool)
    a, b = a[~dup], b[~dup]
    bw = friends["weight"].to_numpy(np.float32)[~dup]
    nkey = np.concatenate([a * n + b, b * n + a])
    order = np.argsort(nkey, kind="stable")
    nkey, nw = nkey[order], np.concatenate([bw, bw])[order]
    at = np.searchsorted(okey, nkey)
    key = np.insert(okey, at, nkey)
    weight = np.insert(np.asarray(w, dtype=np.float32), at, nw)
    return {"edge_index": np.stack([key // n, key % n]), "edge_weight": weight}, (a, b), dup


def _merge_categories(graph, item_map, n_items, iindex, all_items):
    cei = graph.edge(IN_CAT)
    old_cat = np.zeros(graph.num_nodes("item"), dtype=np.int64)
    old_cat[cei[0]] = cei[1]
    item_cat = np.full(n_items, -1, dtype=np.int64)
    item_cat[item_map] = old_cat
    new_names = np.full(n_items, UNKNOWN_CATEGORY, dtype=object)
    if all_items is not None and "category" in all_items:
        at = _lookup(None, iindex, all_items["item_id"])
        new_names[at] = all_items["category"].astype(str).to_numpy(dtype=object)
    fresh = item_cat < 0
    cat_ids, cat_map, _ = insert_ids(graph.category_ids, new_names[fresh])
    item_cat[item_map] = cat_map[old_cat]
    item_cat[fresh] = pd.Index(cat_ids).get_indexer(pd.Index(new_names[fresh].astype(str)))
    return cat_ids, cat_map, np.stack([np.arange(n_items, dtype=np.int64), item_cat])


def _check_items(saved: pd.DataFrame | None, items: pd.DataFrame, source: str):
    """Item rows of known items must repeat what the work directory holds (category, price): a changed
    category or price would silently move every buyer's features; such rows are rejected. Repeats are dropped
    (kept, with nothing to change)."""
    if saved is None or not len(items):
        return items, pd.DataFrame(columns=REJECT_COLUMNS)
    at = pd.Index(saved["item_id"].astype(str)).get_indexer(items["item_id"].astype(str))
    known = at >= 0
    changed = np.zeros(len(items), bool)
    for col in ("category", "price"):
        if col in items and col in saved:
            new, old = items[col].to_numpy(dtype=object), saved[col].to_numpy(dtype=object)[np.maximum(at, 0)]
            same = np.array([(pd.isna(x) and pd.isna(y)) or x == y for x, y in zip(new[known], old[known])], bool)
            bad = np.zeros(len(items), bool)
            bad[np.flatnonzero(known)[~same]] = True
            changed |= bad
    rej = _reject_rows(items, changed, source, "item_id", items["item_id"],
                       "item_id must be a new item or repeat the known item's category and price. Got a known "
                       "item with another category or price (fixed until 'graphprof build-graph')")
    return items[~known], rej


def _merge_users(saved: pd.DataFrame | None, users: pd.DataFrame) -> pd.DataFrame:
    """The saved users table with the batch's rows: a known user's non-empty values set or change theirs (an
    empty value keeps the known one); new users and new columns are added."""
    if saved is None:
        return users.reset_index(drop=True)
    at = pd.Index(saved["user_id"].astype(str).to_numpy(dtype=object)).get_indexer(
        users["user_id"].astype(str).to_numpy(dtype=object))  # hashes of object strings: no per-row Arrow scalars
    known = at >= 0
    out = saved.copy()
    for col in users.columns:
        if col == "user_id":
            continue
        if col not in out:
            out[col] = pd.Series(pd.NA, index=out.index, dtype="string")
        vals = users[col].to_numpy(dtype=object)
        given = known & ~pd.isna(vals)
        if given.any():
            column = out[col].to_numpy(dtype=object)
            column[at[given]] = vals[given]
            out[col] = pd.Series(column, index=out.index).astype(out[col].dtype)
    added = users[~known].reindex(columns=out.columns)
    return pd.concat([out, added], ignore_index=True)
