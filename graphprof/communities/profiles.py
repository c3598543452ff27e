"""Community profiles: what sets each community apart (size, top categories and items, spend and frequency,
attribute mix), each share with its lift over the whole population. Used by :mod:`graphprof.communities`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof.errors import ConfigError
from graphprof.features import UserFeatures
from graphprof.graph import IN_CAT, ProfileGraph

if TYPE_CHECKING:
    from graphprof.communities.detect import Communities

DEFAULT_MIN_SIZE = 10              # = evaluate.MIN_CLASS_SIZE: smaller communities are pooled in profiles
MAX_PROFILE_VALUES = 20            # users-table columns with more distinct values are not profiled
TOP_CATEGORIES = 3
TOP_ITEMS = 5
MIN_SUPPORT = 5                    # an attribute value needs this many members to be called "distinctive"


def _top_per_row(row: np.ndarray, col: np.ndarray, val: np.ndarray, k: int):
    """Keep each row's ``k`` largest (positive) values; ties keep the input order.

    One stable argsort of ``row + 0.5 * (1 - val / max)`` (row first, then decreasing value), cheaper than a
    lexsort on many products; values closer than ~1e-9 of the largest count as ties.
    """
    if len(row) == 0:
        return row, col, val
    order = np.argsort(row + 0.5 * (1.0 - val / val.max()), kind="stable")
    ranked = row[order]
    first = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    start = np.repeat(first, np.diff(np.r_[first, len(ranked)]))
    keep = order[np.arange(len(ranked)) - start < k]
    return row[keep], col[keep], val[keep]


def _attribute_columns(users: pd.DataFrame | None) -> list[str]:
    if users is None:
        return []
    return [c for c in users.columns if c not in ("user_id", "__row__")
            and 2 <= users[c].dropna().nunique() <= MAX_PROFILE_VALUES]


def _tops(mat: sp.csr_matrix, names: np.ndarray, k: int) -> tuple[pd.DataFrame, pd.Series]:
    """Per group (row), the ``k`` columns with the largest share, with lift, as a long frame, and the
    ``"name 41% x2.10, ..."`` text per group."""
    mat = sp.csr_matrix(mat)
    totals = np.asarray(mat.sum(axis=1)).ravel()
    col_share = np.asarray(mat.sum(axis=0)).ravel() / max(mat.sum(), 1e-300)
    coo = mat.tocoo()
    ok = coo.data > 0
    row, col, val = _top_per_row(coo.row[ok], coo.col[ok], coo.data[ok], k)
    if len(row) == 0:
        return pd.DataFrame(columns=["group", "name", "share", "lift", "text"]), pd.Series(dtype=object)
    share = val / totals[row]
    long = pd.DataFrame({"group": row, "name": names[col].astype(str), "share": share,
                         "lift": share / col_share[col]})
    long["text"] = long["name"] + " " + _pct(long["share"]) + " x" + long["lift"].map("{:.2f}".format)
    return long, long.groupby("group")["text"].agg(", ".join)


def _pct(share: pd.Series) -> pd.Series:
    return (100 * share).round().astype(np.int64).astype(str) + "%"


def profile_communities(graph: ProfileGraph, features: UserFeatures | None, communities: Communities,
                        users: pd.DataFrame | None = None, min_size: int = DEFAULT_MIN_SIZE) -> pd.DataFrame:
    """One row per community of ``min_size``+ users, plus one row (``community = -1``) pooling all smaller
    ones (singletons included), if any. Rows in label order (largest first), the pooled row last.

    Shares are the community's; ``lift`` = share in the community / share in the whole population (1 = no
    different from everyone; 2 = twice as common). Attribute shares count labelled members only.

    **Columns:**
        community (int64; -1 = the pooled small communities), n_communities (communities in the row: 1, or
        how many were pooled), size (users), share (of all users);
        purchases_median / _mean / _p90 (purchase rows per user, users without purchases count 0),
        monetary_median / _mean / _p90 (spend per user);
        social_degree_mean, clustering_mean (from ``features``, when given);
        top_categories (text: up to 3 categories by share of the community's purchased quantity, each
        ``"<category> <share>% x<lift>"``, joined by ``", "``; empty without categories), top_items (the same
        for the 5 top items);
        distinctive (text: the attribute value or top category with the highest lift, attribute values
        needing 5+ members; e.g. ``"gender=f 88% x1.61"``);
        then, for each users-table column with 2..20 values: ``labelled_<col>`` (members with a known value),
        and for each value ``share_<col>=<value>`` and ``lift_<col>=<value>`` (NaN without labelled members).

    Raises:
        ConfigError: ``communities`` does not cover exactly the graph's users, or ``min_size`` < 1.
    """
    if int(min_size) != min_size or min_size < 1:
        raise ConfigError(f"min_size must be an integer >= 1. Got {min_size!r} instead")
    n = graph.num_users
    group, out = _groups(graph, communities, min_size)
    n_groups = len(out)
    onehot = sp.csr_matrix((np.ones(n), (group, np.arange(n))), shape=(n_groups, n))
    _add_activity(out, graph, features, group)
    candidates = _add_tops(out, graph, onehot)  # (group, text, lift) for "distinctive"
    attr_cols = {}
    if users is not None:
        attr_cols = _attribute_shares(graph, users, group, n_groups, candidates)
    out["distinctive"] = ""
    if candidates:
        cand = pd.concat(candidates, ignore_index=True).sort_values(["group", "lift"], ascending=[True, False],
                                                                     kind="stable")
        best = cand.drop_duplicates("group")
        out.loc[best["group"].to_numpy(), "distinctive"] = best["text"].to_numpy()
    if attr_cols:
        out = pd.concat([out, pd.DataFrame(attr_cols)], axis=1)
    return out


def _groups(graph: ProfileGraph, communities: Communities, min_size: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Each user's profile row (the communities of ``min_size``+ users in label order, then the pooled row)
    and the frame of those rows with community, n_communities, size and share."""
    n = graph.num_users
    idx = graph.user_index(communities.user_ids)
    if len(idx) != n or (idx < 0).any() or len(np.unique(idx)) != n:
        raise ConfigError(f"communities must label every user of the graph once ({n} users). "
                          f"Got {len(idx)} labels, {int((idx < 0).sum())} of unknown users instead")
    labels = np.empty(n, dtype=np.int64)
    labels[idx] = communities.labels
    sizes = np.bincount(labels)
    big = sizes >= min_size
    n_big = int(big.sum())
    group_of = np.where(big, np.cumsum(big) - 1, n_big)
    group = group_of[labels]
    n_groups = n_big + int((group == n_big).any())

    out = pd.DataFrame({"community": np.r_[np.flatnonzero(big), [-1] * (n_groups - n_big)].astype(np.int64)})
    n_pooled = int(((sizes > 0) & ~big).sum())
    out["n_communities"] = np.r_[np.ones(n_big, np.int64), np.full(n_groups - n_big, n_pooled, np.int64)]
    out["size"] = np.bincount(group, minlength=n_groups).astype(np.int64)
    out["share"] = out["size"] / n
    return group, out


def _add_activity(out: pd.DataFrame, graph: ProfileGraph, features: UserFeatures | None,
                  group: np.ndarray) -> None:
    """Add the purchases / monetary median, mean and p90 columns, and the social means when ``features``
    has them."""
    n = graph.num_users
    per_user = pd.DataFrame({"group": group,
                             "purchases": np.asarray(graph.purchase_matrix("count").sum(axis=1)).ravel(),
                             "monetary": np.asarray(graph.purchase_matrix("spend").sum(axis=1)).ravel()})
    if features is not None:
        fidx = graph.user_index(features.user_ids)
        for col in ("social_degree", "clustering"):
            if col in features.frame:
                values = np.full(n, np.nan)
                values[fidx[fidx >= 0]] = features.frame[col].to_numpy(np.float64)[fidx >= 0]
                per_user[col] = values
    grouped = per_user.groupby("group")
    for col in ("purchases", "monetary"):
        stats = grouped[col].agg(["median", "mean"]).join(grouped[col].quantile(0.9).rename("p90"))
        for stat in ("median", "mean", "p90"):
            out[f"{col}_{stat}"] = stats[stat].to_numpy(np.float64)
    for col in ("social_degree", "clustering"):
        if col in per_user:
            out[f"{col}_mean"] = grouped[col].mean().to_numpy(np.float64)


def _add_tops(out: pd.DataFrame, graph: ProfileGraph, onehot: sp.csr_matrix) -> list[pd.DataFrame]:
    """Add the top_categories and top_items columns; return the top categories as "distinctive" candidates."""
    qty = graph.purchase_matrix("quantity")
    candidates = []
    out["top_categories"] = ""
    if IN_CAT in graph.edge_types and len(graph.category_ids):
        cei = graph.edge(IN_CAT)
        to_cat = sp.csr_matrix((np.ones(cei.shape[1]), (cei[0], cei[1])),
                               shape=(len(graph.item_ids), len(graph.category_ids)))
        long, text = _tops(onehot @ qty @ to_cat, graph.category_ids, TOP_CATEGORIES)
        out.loc[text.index, "top_categories"] = text.to_numpy()
        candidates.append(pd.DataFrame({"group": long["group"], "lift": long["lift"],
                                        "text": "category " + long["text"]}))
    out["top_items"] = ""
    _, text = _tops(onehot @ qty, graph.item_ids, TOP_ITEMS)
    out.loc[text.index, "top_items"] = text.to_numpy()
    return candidates


def _attribute_shares(graph: ProfileGraph, users: pd.DataFrame, group: np.ndarray, n_groups: int,
                      candidates: list[pd.DataFrame]) -> dict[str, np.ndarray]:
    """The labelled_ / share_ / lift_ columns of each profiled users-table column; appends the attribute
    values with ``MIN_SUPPORT``+ members to ``candidates``."""
    n = graph.num_users
    attr_cols = {}
    uidx = graph.user_index(users["user_id"].astype(str).to_numpy())
    for col in _attribute_columns(users):
        values = pd.Series(np.full(n, None, dtype=object))
        known = uidx >= 0
        values.iloc[uidx[known]] = users[col].astype("string").to_numpy(dtype=object)[known]
        values = values.where(values.notna(), None)
        levels = sorted(v for v in values.dropna().unique())
        code = values.map({v: j for j, v in enumerate(levels)}).fillna(-1).to_numpy(np.int64)
        lab = code >= 0
        counts = np.zeros((n_groups, len(levels)))
        np.add.at(counts, (group[lab], code[lab]), 1.0)
        labelled = counts.sum(axis=1)
        share = np.divide(counts, labelled[:, None], out=np.full_like(counts, np.nan),
                          where=labelled[:, None] > 0)
        pop = counts.sum(axis=0) / counts.sum()
        attr_cols[f"labelled_{col}"] = labelled.astype(np.int64)
        for j, v in enumerate(levels):
            attr_cols[f"share_{col}={v}"] = share[:, j]
            attr_cols[f"lift_{col}={v}"] = share[:, j] / pop[j]
        g_idx, v_idx = np.nonzero(counts >= MIN_SUPPORT)
        if len(g_idx):
            lift = pd.Series(share[g_idx, v_idx] / pop[v_idx])
            candidates.append(pd.DataFrame({
                "group": g_idx, "lift": lift,
                "text": f"{col}=" + pd.Series(np.asarray(levels, dtype=object)[v_idx], dtype=str) + " "
                + _pct(pd.Series(share[g_idx, v_idx])) + " x" + lift.map("{:.2f}".format)}))
    return attr_cols
