"""User and item features from the graph: behaviour aggregates, a low-rank embedding of what each user
bought, and the social-graph statistics of :mod:`graphprof.features.social`.

Everything here is unsupervised and label-free, so computing it over all users leaks no test labels; the
scaling and PCA that *are* fitted belong to each model and are fitted on training users only
(:mod:`graphprof.models`). Vectorised with numpy / scipy.sparse: no Python loop over users or edges.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.features.social import _social_stats
from graphprof.graph import BUY_ATTRS, BUYS, IN_CAT, ProfileGraph

ITEM_SVD_DIM = 32
CATEGORY_SVD_DIM = 8
MAX_CATEGORY_SHARES = 20
#: The SVDs are fitted on at most this many users (a seeded sample of the rows with purchases) and then every
#: user is projected on the components: a sample of this size estimates the item-side directions as well as
#: millions of users do, while the SVD's cost grows with the rows it is fitted on.
SVD_FIT_MAX_ROWS = 50_000
SECONDS_PER_DAY = 86400.0


@dataclass
class UserFeatures:
    """One row per user, in graph order.

    Attributes:
        user_ids: the user's own ids, shape ``[num_users]``.
        frame: float64 DataFrame ``[num_users, num_features]``.
        groups: feature group -> column names (``behaviour``, ``category_mix``, ``item_svd``,
            ``category_svd``, ``graph``).
        items: item features ``[num_items, ...]`` (columns ``popularity``, ``log_popularity``, ``mean_price``,
            ``item_svd_*``), in graph order, with ``item_ids``.
        state: what was fitted (SVD components, category columns, recency reference), for
            ``build_features(new_graph, state=...)``; saved as ``features/state.safetensors`` + meta.json.
    """

    user_ids: np.ndarray
    frame: pd.DataFrame
    groups: dict[str, list[str]] = field(default_factory=dict)
    item_ids: np.ndarray | None = None
    items: pd.DataFrame | None = None
    state: dict = field(default_factory=dict)

    @property
    def matrix(self) -> np.ndarray:
        return self.frame.to_numpy(np.float64)


def _row_normalize(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay empty), scaling ``data`` in place of a diagonal product."""
    m = m.tocsr(copy=True)
    m.sum_duplicates()
    counts = np.diff(m.indptr)
    norms = np.sqrt(np.add.reduceat(m.data * m.data, m.indptr[:-1][counts > 0])) if m.nnz else np.zeros(0)
    scale = np.ones(m.shape[0])
    scale[counts > 0] = 1.0 / np.where(norms == 0, 1.0, norms)
    m.data *= np.repeat(scale, counts)
    return m


def truncated_svd(m: sp.csr_matrix, dim: int, seed: int, prefix: str, components: np.ndarray | None = None,
         projection: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Truncated SVD of the row-normalised matrix: user coordinates and the (signed) components
    ``[k, n_columns]``. With ``components`` given (a fitted state), users are projected onto them instead:
    the coordinates of a user the SVD never saw, computed exactly as for the users it was fitted on.
    ``projection``: ``components.T`` as a C-contiguous array, for a caller that projects many blocks (scipy's
    sparse-dense product copies a transposed operand on every call)."""
    x = _row_normalize(m.astype(np.float64))
    if components is None:
        rows = svd_fit_rows(x.shape[0], np.flatnonzero(np.diff(x.indptr) > 0), seed)
        components = fit_components(x if rows is None else x[rows], dim, seed, m.shape, normalized=True)
        if components is None:
            return pd.DataFrame(index=range(m.shape[0])), None
    if len(components) == 0:
        return pd.DataFrame(index=range(m.shape[0])), None
    coords = np.asarray(x @ (components.T if projection is None else projection))
    cols = [f"{prefix}_{j}" for j in range(len(components))]
    return pd.DataFrame(coords, columns=cols, copy=False), components  # coords: a new array, ours


def svd_fit_rows(n_rows: int, nonempty: np.ndarray, seed: int) -> np.ndarray | None:
    """The rows a truncated SVD of ``n_rows`` rows is fitted on: every row (None) up to ``SVD_FIT_MAX_ROWS``
    rows; else the rows with entries (``nonempty``, sorted), a seeded sample of ``SVD_FIT_MAX_ROWS`` of them
    where there are more."""
    if n_rows <= SVD_FIT_MAX_ROWS:
        return None
    if len(nonempty) > SVD_FIT_MAX_ROWS:
        return np.sort(np.random.default_rng(seed).choice(nonempty, SVD_FIT_MAX_ROWS, replace=False))
    return nonempty


def fit_components(fit_rows: sp.csr_matrix, dim: int, seed: int, shape: tuple[int, int],
                   normalized: bool = False) -> np.ndarray | None:
    """The signed SVD components ``[k, n_columns]`` of a matrix of ``shape``, fitted on its rows ``fit_rows``
    (:func:`svd_fit_rows`; row-normalised here unless ``normalized``); None where the matrix has no entry or
    too few rows or columns."""
    k = min(dim, shape[1] - 1, shape[0] - 1)
    if k < 1 or fit_rows.nnz == 0:
        return None
    if not normalized:
        fit_rows = _row_normalize(fit_rows.astype(np.float64))
    # ARPACK from scipy, started as scikit-learn's TruncatedSVD(algorithm="arpack") starts it (the same
    # components); called directly, build-graph does not import scikit-learn and skips the
    # explained-variance pass it makes
    v0 = np.random.RandomState(seed).uniform(-1, 1, min(fit_rows.shape))
    vt = svds(fit_rows, k=k, v0=v0)[2][::-1]  # largest singular value first
    # fix each component's sign (largest loading positive) so the features do not flip between versions
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return vt * signs[:, None]


def item_category_matrix(graph: ProfileGraph, n_items: int, n_cat: int) -> sp.csr_matrix:
    """One-hot ``[n_items, n_cat]`` of each item's category, from the graph's ``(item, in, category)`` edges."""
    item_cat = np.zeros(n_items, dtype=np.int64)
    cei = graph.edge(IN_CAT)
    item_cat[cei[0]] = cei[1]
    return sp.csr_matrix((np.ones(n_items), (np.arange(n_items), item_cat)), shape=(n_items, n_cat))


def build_features(graph: ProfileGraph, seed: int = 0, state: dict | None = None) -> UserFeatures:
    """Compute user and item features.

    ``state`` (``UserFeatures.state`` of an earlier build) makes this a *transform*: the SVD components, the
    category columns and the recency reference time are reused rather than fitted, so users added to the graph
    later (``graphprof predict``) get features in exactly the same space as the users the models saw.

    Columns (user frame):
        behaviour: ``n_purchases``, ``log_quantity``, ``log_monetary``, ``distinct_items``, ``log_avg_price``,
            ``recency_days`` (days before the last purchase in the data; only when timestamps exist),
            ``has_purchases``
        category_mix: ``cat_share_<category>`` quantity shares of the most common categories
        item_svd: ``item_svd_<j>``; category_svd: ``cat_svd_<j>`` (only with more than 20 categories)
        graph: ``social_degree``, ``log_social_degree``, ``pagerank``, ``clustering``
    """
    n_users = graph.num_users
    # the social statistics run in a second thread beside the purchase features (scipy's sparse products and
    # numpy's vector arithmetic release the GIL): independent results, so the numbers do not depend on it
    with ThreadPoolExecutor(max_workers=1) as pool:
        social = pool.submit(_social_stats, graph.social_adjacency(), n_users)
        f, groups, fitted, items = _purchase_features(graph, seed, state)
        for name, values in social.result().items():
            f[name] = values
    groups["graph"] = ["social_degree", "log_social_degree", "pagerank", "clustering"]
    return UserFeatures(user_ids=graph.user_ids, frame=f.astype(np.float64), groups=groups,
                        item_ids=graph.item_ids, items=items, state=fitted)


def user_max(users: np.ndarray, values: np.ndarray, n_users: int) -> np.ndarray:
    """Per user, the largest finite value of its rows (-inf where none): ``np.maximum.reduceat`` over the runs
    where ``users`` is sorted (``build_graph``'s edge order), ``np.maximum.at`` otherwise (the same numbers)."""
    out = np.full(n_users, -np.inf)
    values = np.where(np.isfinite(values), values, -np.inf)
    if len(users) and np.all(users[1:] >= users[:-1]):
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        out[users[starts]] = np.maximum.reduceat(values, starts)
    elif len(users):
        np.maximum.at(out, users, values)
    return out


def _purchase_features(graph: ProfileGraph, seed: int, state: dict | None):
    """The behaviour, category-mix and SVD columns of ``build_features`` and the item table."""
    # one shared structure: nothing below writes a matrix's indices in place (log1p, tocsc and products copy)
    attrs = {name: graph.purchase_matrix(name, copy_structure=False)
             for name in ("count", "quantity", "spend", "priced_quantity")}
    fitted: dict = {}
    f, groups, quantity = _behaviour(graph, attrs, state, fitted)
    f, item_cat = _category_mix(graph, attrs, quantity, seed, state, fitted, f, groups)

    # which items: truncated SVD of the row-normalised log-count matrix
    given = None if state is None else state.get("item_svd_components")
    item_svd, comps = truncated_svd(attrs["count"].log1p(), ITEM_SVD_DIM, seed, "item_svd", given)
    loadings = comps.T if comps is not None else None
    if comps is not None:
        fitted["item_svd_components"] = comps
    f = pd.concat([f, item_svd], axis=1)
    groups["item_svd"] = list(item_svd.columns)
    return f, groups, fitted, _item_table(graph, attrs, item_cat, loadings)


def _behaviour(graph: ProfileGraph, attrs: dict[str, sp.csr_matrix], state: dict | None,
               fitted: dict) -> tuple[pd.DataFrame, dict[str, list[str]], np.ndarray]:
    """The behaviour columns, their group, and each user's total quantity; records the recency reference in
    ``fitted``."""
    n_users = graph.num_users
    priced = np.asarray(attrs["priced_quantity"].sum(axis=1)).ravel()
    count = np.asarray(attrs["count"].sum(axis=1)).ravel()
    quantity = np.asarray(attrs["quantity"].sum(axis=1)).ravel()
    spend = np.asarray(attrs["spend"].sum(axis=1)).ravel()
    distinct = np.diff(attrs["count"].indptr).astype(np.float64)
    f = pd.DataFrame({
        "n_purchases": np.log1p(count),
        "log_quantity": np.log1p(quantity),
        "log_monetary": np.log1p(spend),
        "distinct_items": np.log1p(distinct),
        "log_avg_price": np.log1p(np.divide(spend, priced, out=np.zeros_like(spend), where=priced > 0)),
    })
    groups: dict[str, list[str]] = {"behaviour": list(f.columns)}
    ei = graph.edge(BUYS)
    last = graph.edge(BUYS, "edge_attr")[:, BUY_ATTRS.index("last_time")].astype(np.float64)
    if (state is None and np.isfinite(last).any()) or (state is not None and "ref_time" in state):
        user_last = user_max(ei[0], last, n_users)
        ok = np.isfinite(last)
        ref = float(state["ref_time"]) if state is not None else float(last[ok].max())
        fitted["ref_time"] = ref
        recency = (ref - user_last) / SECONDS_PER_DAY
        missing = ~np.isfinite(recency)
        if state is not None:
            recency[missing] = state["max_recency"]
        else:
            recency[missing] = recency[~missing].max() + 1 if (~missing).any() else 0.0
        fitted["max_recency"] = float(recency.max()) if len(recency) else 0.0
        # a purchase after the reference time (an update's events, in the saved space) is 0 days old
        f["recency_days"] = np.log1p(np.maximum(recency, 0.0))
        groups["behaviour"].append("recency_days")
    f["has_purchases"] = (count > 0).astype(np.float64)
    groups["behaviour"].append("has_purchases")
    return f, groups, quantity


def _category_mix(graph: ProfileGraph, attrs: dict[str, sp.csr_matrix], quantity: np.ndarray, seed: int,
                  state: dict | None, fitted: dict, f: pd.DataFrame,
                  groups: dict[str, list[str]]) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``f`` with the quantity shares per category (and the category SVD past ``MAX_CATEGORY_SHARES``
    categories) appended, and each item's category (None without categories); fills ``groups`` and
    ``fitted``."""
    item_cat = None
    if IN_CAT in graph.edge_types and len(graph.category_ids):
        n_cat = len(graph.category_ids)
        to_cat = item_category_matrix(graph, len(graph.item_ids), n_cat)
        item_cat = to_cat.indices.astype(np.int64)  # one category per item, rows in item order
        user_cat = (attrs["quantity"] @ to_cat).tocsr()
        if state is not None and "top_categories" in state:
            top = lookup_sorted(graph.category_ids, state["top_categories"])
        else:
            totals = np.asarray(user_cat.sum(axis=0)).ravel()
            top = np.argsort(-totals, kind="stable")[:MAX_CATEGORY_SHARES]
        fitted["top_categories"] = [str(graph.category_ids[c]) for c in top]
        shares = sp.diags(np.divide(1.0, quantity, out=np.zeros_like(quantity), where=quantity > 0)) @ user_cat
        shares = shares.toarray()[:, top] if n_cat <= 4 * MAX_CATEGORY_SHARES else shares[:, top].toarray()
        cols = [f"cat_share_{graph.category_ids[c]}" for c in top]
        f = pd.concat([f, pd.DataFrame(shares, columns=cols, copy=False)], axis=1)
        groups["category_mix"] = cols
        given = None if state is None else state.get("cat_svd_components")
        if (state is None and n_cat > MAX_CATEGORY_SHARES) or given is not None:
            cat_svd, comps = truncated_svd(user_cat, CATEGORY_SVD_DIM, seed, "cat_svd", given)
            f = pd.concat([f, cat_svd], axis=1)
            groups["category_svd"] = list(cat_svd.columns)
            if comps is not None:
                fitted["cat_svd_components"] = comps
    return f, item_cat


def _item_table(graph: ProfileGraph, attrs: dict[str, sp.csr_matrix], item_cat: np.ndarray | None,
                loadings: np.ndarray | None) -> pd.DataFrame:
    """Item features: popularity, mean price, category and the item SVD loadings."""
    n_items = len(graph.item_ids)
    buyers = np.diff(attrs["count"].tocsc().indptr).astype(np.float64)
    item_qty = np.asarray(attrs["priced_quantity"].sum(axis=0)).ravel()
    item_spend = np.asarray(attrs["spend"].sum(axis=0)).ravel()
    items = pd.DataFrame({
        "popularity": buyers,
        "log_popularity": np.log1p(buyers),
        "mean_price": np.divide(item_spend, item_qty, out=np.zeros_like(item_spend), where=item_qty > 0),
    })
    if item_cat is not None:
        items["category"] = graph.category_ids[item_cat].astype(str)
    if loadings is not None:
        items = pd.concat([items, pd.DataFrame(loadings * np.sqrt(n_items),
                                               columns=[f"item_svd_{j}" for j in range(loadings.shape[1])])],
                          axis=1)
    return items


def lookup_sorted(ids: np.ndarray, query) -> np.ndarray:
    pos = np.searchsorted(ids, np.asarray(query, dtype=object).astype(str))
    if (pos >= len(ids)).any() or (ids[np.minimum(pos, len(ids) - 1)] != np.asarray(query, dtype=str)).any():
        raise ValueError("fitted feature state names categories the graph does not have")  # an invariant
    return pos


def save_features(features: UserFeatures, root: str | Path, seed: int) -> None:
    root = Path(root)
    users = pd.concat([pd.DataFrame({"user_id": pd.Series(features.user_ids, dtype="string")}),
                       features.frame], axis=1)
    workdir.write_parquet(root / workdir.FEATURES_USERS, users)
    items = pd.concat([pd.DataFrame({"item_id": pd.Series(features.item_ids, dtype="string")}),
                       features.items], axis=1)
    workdir.write_parquet(root / workdir.FEATURES_ITEMS, items)
    save_feature_state(root, features.state, features.groups, seed, len(features.user_ids),
                       features.frame.shape[1])


def save_feature_state(root: Path, state: dict, groups: dict, seed: int, num_users: int, num_features: int) -> None:
    """``features/state.safetensors`` (the fitted arrays) and ``features/meta.json``."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}  # made contiguous by the writer
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    workdir.write_safetensors(root / workdir.FEATURES_STATE, arrays or {"empty": np.zeros(0, dtype=np.float32)})
    workdir.write_json(root / workdir.FEATURES_META, {"groups": groups, "seed": seed, "num_users": num_users,
                                                      "num_features": num_features, "state": scalars,
                                                      "state_arrays": sorted(arrays)})


def load_features(root: str | Path = workdir.DEFAULT_WORKDIR) -> UserFeatures:
    """Load ``features/users.parquet`` and ``features/items.parquet`` (written by ``build-graph``).

    The user features are read column by column into one float64 matrix that the frame wraps without a copy
    (``frame.to_numpy()`` is then that matrix): at ten million users a read through pandas' own conversion would
    hold three copies of it at once."""
    root = Path(root)
    hint = "run 'graphprof build-graph' first"
    meta = workdir.read_json(root / workdir.FEATURES_META, missing=hint)
    user_ids, frame = _read_matrix(root / workdir.FEATURES_USERS, "user_id", hint)
    if not (root / workdir.FEATURES_ITEMS).exists():  # said now, not when a model first reads it
        raise ArtifactError(f"{root / workdir.FEATURES_ITEMS}: not found; {hint}")
    state = dict(meta.get("state", {}))
    if meta.get("state_arrays"):
        arrays = workdir.read_safetensors(root / workdir.FEATURES_STATE, missing=hint, numpy=True)
        state.update({k: arrays[k] for k in meta["state_arrays"]})
    return SavedFeatures(root / workdir.FEATURES_ITEMS, user_ids=user_ids, frame=frame, groups=meta["groups"],
                         state=state)


_UNREAD = object()


class SavedFeatures(UserFeatures):
    """:func:`load_features`' result. The item features (``items``, ``item_ids``), which only ``sage`` and ``gat``
    and the export of item vectors read, are read from ``features/items.parquet`` when first asked for: at
    millions of items they are most of a GiB that ``lr`` and ``sign`` never read."""

    def __init__(self, items_path: Path, **fields):
        self._items_path = items_path
        self._items = self._item_ids = _UNREAD
        super().__init__(**fields, item_ids=_UNREAD, items=_UNREAD)

    def _read_items(self) -> None:
        items = workdir.read_parquet(self._items_path, missing="run 'graphprof build-graph' first")
        if self._item_ids is _UNREAD:
            self._item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
        if self._items is _UNREAD:
            self._items = items.drop(columns=["item_id"])

    @property
    def items(self) -> pd.DataFrame | None:
        if self._items is _UNREAD:
            self._read_items()
        return self._items

    @items.setter
    def items(self, value) -> None:
        self._items = value

    @property
    def item_ids(self) -> np.ndarray | None:
        if self._item_ids is _UNREAD:
            self._read_items()
        return self._item_ids

    @item_ids.setter
    def item_ids(self, value) -> None:
        self._item_ids = value


def _read_matrix(path: Path, id_column: str, hint: str) -> tuple[np.ndarray, pd.DataFrame]:
    """A features file as its ids (object array of str) and a float64 frame over one C-ordered matrix."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise ArtifactError(f"{path}: not found; {hint}")
    try:
        pf = pq.ParquetFile(path)
        names = [n for n in pf.schema_arrow.names if n != id_column]
        ids = pf.read(columns=[id_column]).column(0).to_numpy(zero_copy_only=False).astype(str).astype(object)
        matrix = np.empty((pf.metadata.num_rows, len(names)), dtype=np.float64)
        for j, name in enumerate(names):  # one column in memory beside the matrix
            matrix[:, j] = pf.read(columns=[name]).column(0).to_numpy(zero_copy_only=False)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ArtifactError(f"{path}: must be a readable Parquet file. Got: {exc}; {hint}") from exc
    return ids, pd.DataFrame(matrix, columns=names, copy=False)
