"""graphprof.features: exact values on the tiny shop of tests/helpers.py; pagerank / clustering against networkx."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from helpers import tiny_graph

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.features import (
    MAX_CATEGORY_SHARES,
    build_features,
    clustering,
    load_features,
    pagerank,
    save_features,
)
from graphprof.graph import ProfileGraph, to_networkx

log1p = np.log1p


@pytest.fixture
def tiny(tmp_path) -> ProfileGraph:
    return tiny_graph(tmp_path / "tiny")


@pytest.fixture
def tiny_features(tiny):
    return build_features(tiny, seed=0)


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=1e-12, atol=1e-12)


def _random_graph(folder, seed: int = 0, n_users: int = 40, n_items: int = 30, n_categories: int = 25):
    """A random shop big enough for every feature group (more than 20 categories -> category SVD)."""
    rng = np.random.default_rng(seed)
    n = 300
    purchases = pd.DataFrame({
        "user_id": rng.integers(0, n_users, n), "item_id": [f"i{k}" for k in rng.integers(0, n_items, n)],
        "timestamp": rng.integers(1_700_000_000, 1_710_000_000, n), "quantity": rng.integers(1, 5, n),
        "price": rng.integers(0, 100, n) / 4,
    })
    pairs = {tuple(sorted(map(int, p))) for p in rng.integers(0, n_users, (80, 2)) if p[0] != p[1]}
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)],
                          "category": [f"c{k % n_categories}" for k in range(n_items)]})
    return tiny_graph(folder, purchases=purchases.to_csv(index=False),
                      friendships="user_id,friend_id\n" + "".join(f"{a},{b}\n" for a, b in sorted(pairs)),
                      items=items.to_csv(index=False))


# ---------------------------------------------------------------------------------------------- tiny shop


def test_columns_and_groups(tiny_features):
    f = tiny_features
    assert f.groups == {
        "behaviour": ["n_purchases", "log_quantity", "log_monetary", "distinct_items", "log_avg_price",
                      "recency_days", "has_purchases"],
        "category_mix": ["cat_share_books", "cat_share_toys"],
        "item_svd": ["item_svd_0"],  # 2 items -> 1 component
        "graph": ["social_degree", "log_social_degree", "pagerank", "clustering"],
    }
    assert list(f.frame.columns) == [c for cols in f.groups.values() for c in cols]
    assert f.user_ids.tolist() == ["1", "2", "3", "4"]
    assert (f.frame.dtypes == np.float64).all()
    assert f.matrix.shape == (4, 14)


def test_behaviour_features(tiny_features):
    f = tiny_features.frame
    # user 1: 3 purchases, 5 units, spend 2*10 + 2*10 + 5 = 45, items a and b; user 2: 1 purchase of 3 b at 4
    _close(f["n_purchases"], log1p([3, 1, 0, 0]))
    _close(f["log_quantity"], log1p([5, 3, 0, 0]))
    _close(f["log_monetary"], log1p([45, 12, 0, 0]))
    _close(f["distinct_items"], log1p([2, 1, 0, 0]))
    _close(f["log_avg_price"], log1p([45 / 5, 12 / 3, 0, 0]))
    _close(f["has_purchases"], [1, 1, 0, 0])


def test_recency_days(tiny_features):
    # the last purchase in the data is user 1's on Jan 11; user 2's last is Jan 1 (10 days before);
    # users without purchases get one day more than the oldest
    _close(tiny_features.frame["recency_days"], log1p([0, 10, 11, 11]))


def test_no_timestamps_no_recency_column(tmp_path):
    g = tiny_graph(tmp_path, purchases="user_id,item_id\n1,a\n2,b\n")
    assert "recency_days" not in build_features(g).frame.columns


def test_category_shares(tiny_features):
    f = tiny_features.frame
    # user 1: 4 units of books (a), 1 of toys (b); user 2: 3 units of toys
    _close(f["cat_share_books"], [0.8, 0.0, 0.0, 0.0])
    _close(f["cat_share_toys"], [0.2, 1.0, 0.0, 0.0])


def test_item_svd_gives_users_with_no_purchases_zero(tiny_features):
    svd = tiny_features.frame["item_svd_0"].to_numpy()
    assert svd[2] == 0.0 and svd[3] == 0.0
    assert svd[0] > 0 and svd[1] > 0


def test_social_degree_and_clustering(tiny_features):
    f = tiny_features.frame
    _close(f["social_degree"], [2, 2, 3, 1])
    _close(f["log_social_degree"], log1p([2, 2, 3, 1]))
    # 1-2-3 is a triangle; 3 also knows 4 (1 closed pair of 3); 4 has a single friend
    _close(f["clustering"], [1.0, 1.0, 1 / 3, 0.0])


def test_pagerank_on_the_tiny_graph(tiny, tiny_features):
    pr = tiny_features.frame["pagerank"].to_numpy()
    assert pr.mean() == pytest.approx(1.0, abs=1e-12)
    assert pr[0] == pytest.approx(pr[1], abs=1e-12)  # users 1 and 2 are symmetric
    assert pr[2] > pr[0] > pr[3]
    ref = nx.pagerank(to_networkx(tiny, "social"), alpha=0.85, tol=1e-14, max_iter=1000)
    np.testing.assert_allclose(pr, [4 * ref[u] for u in tiny.user_ids], rtol=1e-8)


def test_item_features(tiny_features):
    items = tiny_features.items
    assert tiny_features.item_ids.tolist() == ["a", "b"]
    assert list(items.columns) == ["popularity", "log_popularity", "mean_price", "category", "item_svd_0"]
    _close(items["popularity"], [1, 2])  # a: user 1; b: users 1 and 2
    _close(items["log_popularity"], log1p([1, 2]))
    _close(items["mean_price"], [40 / 4, (5 + 12) / (1 + 3)])
    assert items["category"].tolist() == ["books", "toys"]


def test_graph_without_friends_or_items(tmp_path):
    f = build_features(tiny_graph(tmp_path, friendships=None, items=None))
    assert "category_mix" not in f.groups
    assert not any(c.startswith("cat_share_") for c in f.frame.columns)
    assert "category" not in f.items.columns
    _close(f.frame["social_degree"], [0, 0])
    _close(f.frame["pagerank"], [1, 1])
    _close(f.frame["clustering"], [0, 0])
    _close(f.frame["log_monetary"], log1p([45, 0]))  # user 2's unpriced purchase adds no spend


def test_unknown_prices_do_not_lower_the_mean_price(tmp_path):
    f = build_features(tiny_graph(tmp_path, friendships=None, items=None))
    assert f.items["mean_price"].tolist() == [10.0, 5.0]


# ---------------------------------------------------------------------------- pagerank / clustering vs nx


def _weighted_random_graph(seed: int, directed: bool) -> nx.Graph:
    rng = np.random.default_rng(seed)
    g = nx.gnm_random_graph(30, 70, seed=seed, directed=directed)
    for u, v in g.edges:
        g[u][v]["weight"] = float(rng.uniform(0.5, 3.0))
    g.add_nodes_from([30, 31])  # isolated nodes: dangling mass is spread uniformly in both implementations
    return g


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pagerank_matches_networkx_scaled_by_n(seed, directed):
    g = _weighted_random_graph(seed, directed)
    n = g.number_of_nodes()
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, nodelist=range(n), weight="weight"))
    ours = pagerank(adj)
    ref = nx.pagerank(g, alpha=0.85, tol=1e-14, max_iter=1000, weight="weight")
    np.testing.assert_allclose(ours, [n * ref[k] for k in range(n)], rtol=1e-7)
    assert ours.mean() == pytest.approx(1.0, abs=1e-9)


def test_pagerank_alpha_is_used():
    g = _weighted_random_graph(5, directed=True)
    n = g.number_of_nodes()
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, nodelist=range(n), weight="weight"))
    ref = nx.pagerank(g, alpha=0.5, tol=1e-14, max_iter=1000, weight="weight")
    np.testing.assert_allclose(pagerank(adj, alpha=0.5), [n * ref[k] for k in range(n)], rtol=1e-7)


def test_pagerank_of_an_empty_graph():
    assert pagerank(sp.csr_matrix((0, 0))).shape == (0,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustering_matches_networkx(seed):
    g = nx.gnm_random_graph(25, 80, seed=seed)
    g.add_node(25)
    n = g.number_of_nodes()
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, nodelist=range(n), weight=None)).astype(np.float64)
    ref = nx.clustering(g)
    np.testing.assert_allclose(clustering(adj), [ref[k] for k in range(n)], rtol=1e-12)
    # weights and self loops are ignored
    weighted = adj.multiply(3.5).tocsr() + sp.eye(n, format="csr")
    np.testing.assert_allclose(clustering(weighted), [ref[k] for k in range(n)], rtol=1e-12)


@pytest.mark.parametrize("block", [1, 7, 50])
def test_clustering_in_row_blocks_matches_networkx(monkeypatch, block):
    from graphprof.features import social

    monkeypatch.setattr(social, "CLUSTERING_BLOCK", block)
    g = nx.gnp_random_graph(60, 0.15, seed=3)
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, nodelist=range(60), weight=None)).astype(np.float64)
    ref = nx.clustering(g)
    np.testing.assert_allclose(clustering(adj), [ref[k] for k in range(60)], rtol=1e-12)


# -------------------------------------------------------------------------------- bigger graph, save / load


def test_many_categories_keep_the_top_shares_and_add_a_category_svd(tmp_path):
    f = build_features(_random_graph(tmp_path))
    assert len(f.groups["category_mix"]) == MAX_CATEGORY_SHARES
    assert f.groups["category_svd"] == [f"cat_svd_{j}" for j in range(8)]
    shares = f.frame[f.groups["category_mix"]].to_numpy()
    assert (shares >= 0).all() and (shares.sum(axis=1) <= 1 + 1e-12).all()
    assert len(f.groups["item_svd"]) == 29  # min(32, items - 1, users - 1)


def test_item_svd_signs_make_the_largest_loading_positive(tmp_path):
    items = build_features(_random_graph(tmp_path)).items
    loadings = items[[c for c in items.columns if c.startswith("item_svd_")]].to_numpy()
    largest = loadings[np.abs(loadings).argmax(axis=0), np.arange(loadings.shape[1])]
    assert (largest > 0).all()


def test_same_seed_gives_an_identical_frame(tmp_path):
    g = _random_graph(tmp_path / "a")
    f1, f2 = build_features(g, seed=3), build_features(_random_graph(tmp_path / "b"), seed=3)
    pd.testing.assert_frame_equal(f1.frame, f2.frame, check_exact=True)
    pd.testing.assert_frame_equal(f1.items, f2.items, check_exact=True)
    assert f1.groups == f2.groups


def test_save_and_load_features_round_trip(tmp_path):
    f = build_features(_random_graph(tmp_path / "in"), seed=0)
    root = tmp_path / "work"
    save_features(f, root, seed=0)
    loaded = load_features(root)
    assert loaded.user_ids.tolist() == f.user_ids.tolist()
    assert loaded.item_ids.tolist() == f.item_ids.tolist()
    assert loaded.groups == f.groups
    pd.testing.assert_frame_equal(loaded.frame, f.frame, check_exact=True)
    pd.testing.assert_frame_equal(loaded.items, f.items, check_exact=True, check_dtype=False)
    meta = workdir.read_json(root / workdir.FEATURES_META, missing="")
    assert meta["seed"] == 0 and meta["num_users"] == 40 and meta["num_features"] == f.frame.shape[1]


def test_load_features_from_an_empty_folder(tmp_path):
    with pytest.raises(ArtifactError, match=r"features/meta\.json: not found; run 'graphprof build-graph' first"):
        load_features(tmp_path)


def test_svd_fitted_on_a_row_sample_beyond_the_cap_still_projects_every_user(monkeypatch):
    """Past SVD_FIT_MAX_ROWS the components come from a seeded sample of users; every user is projected, the
    result is deterministic, and it spans nearly the same subspace as the SVD of every row."""
    from graphprof.features import users as features

    rng = np.random.default_rng(0)
    low = rng.random((400, 5)) @ rng.random((5, 60))  # rank-5 structure plus sparsity
    m = sp.csr_matrix(np.where(rng.random((400, 60)) < 0.3, low, 0.0))
    full, comps_full = features.truncated_svd(m, 4, 0, "s")
    monkeypatch.setattr(features, "SVD_FIT_MAX_ROWS", 150)
    sampled, comps = features.truncated_svd(m, 4, 0, "s")
    again, comps_again = features.truncated_svd(m, 4, 0, "s")
    assert sampled.shape == full.shape == (400, 4)
    np.testing.assert_array_equal(comps, comps_again)
    np.testing.assert_array_equal(sampled.to_numpy(), again.to_numpy())
    # the leading direction agrees with the full SVD's (cosine near 1)
    cos = abs(comps[0] @ comps_full[0]) / (np.linalg.norm(comps[0]) * np.linalg.norm(comps_full[0]))
    assert cos > 0.95


def test_user_max_sorted_and_unsorted_rows_agree():
    from graphprof.features import user_max

    rng = np.random.default_rng(5)
    users = np.sort(rng.integers(0, 40, 300))
    values = np.where(rng.random(300) < 0.3, np.nan, rng.random(300))
    sorted_max = user_max(users, values, 50)
    perm = rng.permutation(300)
    assert sorted_max.tobytes() == user_max(users[perm], values[perm], 50).tobytes()
    for u in range(50):
        v = values[(users == u) & np.isfinite(values)]
        assert sorted_max[u] == (v.max() if len(v) else -np.inf)


def test_purchase_matrices_can_share_one_structure(tiny):
    shared = [tiny.purchase_matrix(a, copy_structure=False) for a in ("count", "quantity")]
    own = [tiny.purchase_matrix(a) for a in ("count", "quantity")]
    assert np.shares_memory(shared[0].indices, shared[1].indices)
    assert not np.shares_memory(own[0].indices, own[1].indices)
    for s, o in zip(shared, own):
        assert (s != o).nnz == 0 and not np.isnan(s.data).any()


def test_saved_item_features_are_read_when_first_asked_for(tmp_path, monkeypatch):
    """lr and sign never read the item features: load_features leaves them on disk until a model asks."""
    from fixtures_small import build_shop

    from graphprof import workdir as wd
    from graphprof.features import load_features

    work = build_shop(tmp_path)
    reads = []
    real = wd.read_parquet
    monkeypatch.setattr(wd, "read_parquet", lambda path, *a, **k: reads.append(str(path).rsplit("/", 1)[-1]) or real(path, *a, **k))
    feats = load_features(work)
    assert "items.parquet" not in reads
    saved = pd.read_parquet(work / wd.FEATURES_ITEMS)
    assert list(feats.item_ids) == list(saved["item_id"].astype(str))
    pd.testing.assert_frame_equal(feats.items, saved.drop(columns=["item_id"]))
    assert reads.count("items.parquet") == 1  # read once, for both
    feats.items = None  # a caller's own value stays
    assert feats.items is None and len(feats.item_ids) == len(saved)
