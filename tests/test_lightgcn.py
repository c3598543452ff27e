"""graphprof.lightgcn: the label-free social LightGCN behind ``export-embeddings``.

Shapes, determinism, save/load and hand-checked helpers (hold-out, recall@k, normalised adjacency); never
accuracy (that lives in benchmarks/).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_small import build_shop
from helpers import tiny_graph
from torch_geometric.data import HeteroData

from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import BUYS, FRIEND, ProfileGraph, load_graph
from graphprof.models.lightgcn import (
    LightGCN,
    LightGCNConfig,
    _holdout,
    _norm_adjacency,
    _propagate,
    fit_lightgcn,
    recall_at_k,
)

DIM = 8


def small_config(**changes) -> LightGCNConfig:
    """Few epochs and a small dim: a fit on 300 users stays quick."""
    base = {"dim": DIM, "layers": 2, "epochs": 4, "eval_every": 2, "batch_size": 512}
    return LightGCNConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> ProfileGraph:
    return load_graph(build_shop(tmp_path_factory.mktemp("lightgcn_shop"), n_users=300))


@pytest.fixture(scope="module")
def fitted(graph) -> LightGCN:
    return fit_lightgcn(graph, small_config(), seed=0)


def _users_with_two_items(graph: ProfileGraph) -> int:
    buys = graph.data[BUYS].edge_index.numpy()
    per_user = np.bincount(buys[0], minlength=graph.num_users)
    return int((per_user >= 2).sum())


# ---------------------------------------------------------------------------------------- fit: shapes
def test_fit_shapes_dtype_and_finiteness(graph, fitted):
    assert fitted.users.shape == (graph.num_users, DIM)
    assert fitted.items.shape == (len(graph.item_ids), DIM)
    for arr in (fitted.users, fitted.items):
        assert arr.dtype == np.float32
        assert arr.flags["C_CONTIGUOUS"]
        assert np.isfinite(arr).all()
        assert np.abs(arr).sum() > 0  # not all zeros
    assert fitted.seed == 0
    assert fitted.config == small_config()


def test_fit_info_records_the_validation_run(graph, fitted):
    info = fitted.info
    assert info["num_val_users"] == _users_with_two_items(graph)
    assert info["num_val_users"] > 0
    # eval_every=2, epochs=4: evaluations at epochs 2 and 4 (patience 3 cannot stop it earlier)
    assert [h["epoch"] for h in info["history"]] == [2, 4]
    assert info["best_epoch"] in (2, 4)
    best = [h for h in info["history"] if h["epoch"] == info["best_epoch"]][0]
    assert info["val_recall@20"] == best["val_recall@20"]
    assert info["val_recall@20"] == max(h["val_recall@20"] for h in info["history"])
    for h in info["history"]:
        assert 0.0 <= h["val_recall@20"] <= 1.0
        assert np.isfinite(h["loss"]) and h["loss"] > 0


def test_last_evaluation_happens_at_the_final_epoch_even_off_schedule(graph):
    model = fit_lightgcn(graph, small_config(epochs=3, eval_every=2), seed=0)
    assert [h["epoch"] for h in model.info["history"]] == [2, 3]


def test_patience_stops_early(graph):
    # patience 1 with an evaluation every epoch: training stops at the first evaluation that is not better than
    # the best so far (here well before epoch 30), and the best epoch is the one before it
    model = fit_lightgcn(graph, small_config(epochs=30, eval_every=1, patience=1, lr=0.5), seed=0)
    history = model.info["history"]
    epochs = [h["epoch"] for h in history]
    recalls = [h["val_recall@20"] for h in history]
    assert epochs == list(range(1, len(epochs) + 1))
    assert len(epochs) < 30
    assert all(a < b for a, b in zip(recalls[:-2], recalls[1:-1]))  # improving until the last one
    assert recalls[-1] <= recalls[-2]
    assert model.info["best_epoch"] == epochs[-2]
    assert model.info["val_recall@20"] == recalls[-2]
    # the vectors kept are those of the best epoch, not the last: the same run cut at the best epoch gives them
    cut = fit_lightgcn(graph, small_config(epochs=model.info["best_epoch"], eval_every=1, patience=1, lr=0.5),
                       seed=0)
    assert np.array_equal(cut.users, model.users)
    assert np.array_equal(cut.items, model.items)


# ----------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_arrays(graph, fitted):
    again = fit_lightgcn(graph, small_config(), seed=0)
    assert np.array_equal(again.users, fitted.users)
    assert np.array_equal(again.items, fitted.items)
    assert again.info["history"] == fitted.info["history"]


def test_different_seed_gives_different_arrays(graph, fitted):
    other = fit_lightgcn(graph, small_config(), seed=1)
    assert other.seed == 1
    assert other.users.shape == fitted.users.shape
    assert not np.allclose(other.users, fitted.users)
    assert not np.allclose(other.items, fitted.items)


def test_social_weight_changes_the_embeddings_when_there_are_friends(graph, fitted):
    assert FRIEND in graph.data.edge_types
    no_social = fit_lightgcn(graph, small_config(social_weight=0.0), seed=0)
    assert not np.allclose(no_social.users, fitted.users)


# ---------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path, fitted):
    path = tmp_path / "lgcn"
    fitted.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "weights.safetensors"]
    meta = json.loads((path / "model.json").read_text())
    assert meta["model"] == "lightgcn" and meta["seed"] == 0
    assert meta["config"] == small_config().__dict__
    loaded = LightGCN.load(path)
    assert np.array_equal(loaded.users, fitted.users)
    assert np.array_equal(loaded.items, fitted.items)
    assert loaded.users.dtype == np.float32 and loaded.items.dtype == np.float32
    assert loaded.config == fitted.config
    assert loaded.seed == fitted.seed
    assert loaded.info["best_epoch"] == fitted.info["best_epoch"]
    assert loaded.info["history"] == fitted.info["history"]


def test_load_rejects_another_model(tmp_path, fitted):
    path = tmp_path / "lgcn"
    fitted.save(path)
    meta = json.loads((path / "model.json").read_text())
    meta["model"] = "sage"
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"model\.json: model must be 'lightgcn'\. Got 'sage' instead"):
        LightGCN.load(path)


def test_load_missing_says_how_to_train_it(tmp_path):
    with pytest.raises(ArtifactError, match=r"not found; run 'graphprof export-embeddings --model lightgcn'"):
        LightGCN.load(tmp_path / "nothing")


# -------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("change", [{"dim": 0}, {"epochs": 0}, {"batch_size": 0}, {"layers": -1}])
def test_bad_config_is_a_config_error(graph, change):
    with pytest.raises(ConfigError, match=r"lightgcn: dim, epochs and batch_size must be >= 1 and layers >= 0\. "
                                          r"Got LightGCNConfig\(.*\) instead"):
        fit_lightgcn(graph, small_config(**change))


def test_graph_without_purchases_is_a_config_error():
    data = HeteroData()
    data["user"].num_nodes = 2
    data["item"].num_nodes = 1
    data[BUYS].edge_index = torch.zeros((2, 0), dtype=torch.long)
    graph = ProfileGraph(data=data, user_ids=np.array(["u1", "u2"], dtype=object),
                         item_ids=np.array(["i"], dtype=object), category_ids=np.array([], dtype=object))
    with pytest.raises(ConfigError, match=r"lightgcn: the graph must have purchases to learn from\. Got none"):
        fit_lightgcn(graph, small_config())


# ---------------------------------------------------------------------------------- without friendships
def test_graph_without_friendships_works(tmp_path):
    g = tiny_graph(tmp_path, friendships=None)
    assert FRIEND not in g.data.edge_types
    model = fit_lightgcn(g, small_config(), seed=0)
    assert model.users.shape == (g.num_users, DIM)
    assert model.items.shape == (len(g.item_ids), DIM)
    assert np.isfinite(model.users).all() and np.isfinite(model.items).all()
    # without friendships the social weight has nothing to act on
    other = fit_lightgcn(g, small_config(social_weight=0.0), seed=0)
    assert np.array_equal(other.users, model.users)
    assert np.array_equal(other.items, model.items)


def test_users_only_in_friendships_get_vectors(tmp_path):
    # users 3 and 4 of the tiny shop buy nothing: they still get a row (friends shape their vector)
    g = tiny_graph(tmp_path)
    model = fit_lightgcn(g, small_config(), seed=0)
    assert list(g.user_ids) == ["1", "2", "3", "4"]
    assert model.users.shape == (4, DIM)
    assert np.isfinite(model.users).all()


# ------------------------------------------------------------------------------------------- _holdout
def _hand_buys() -> np.ndarray:
    # user 0 buys items 0, 1, 2; user 1 buys item 3 only; user 2 buys items 0 and 4; user 3 buys nothing.
    # columns deliberately not grouped by user
    return np.array([[2, 0, 1, 0, 2, 0],
                     [0, 0, 3, 1, 4, 2]])


@pytest.mark.parametrize("seed", range(5))
def test_holdout_one_edge_per_user_with_two_or_more_items(seed):
    buys = _hand_buys()
    mask, val = _holdout(buys, 4, np.random.default_rng(seed))
    assert mask.dtype == bool and mask.shape == (buys.shape[1],)
    assert sorted(buys[0, val].tolist()) == [0, 2]  # one for user 0, one for user 2, none for users 1 and 3
    assert len(set(val.tolist())) == 2
    assert np.array_equal(np.flatnonzero(~mask), np.sort(val))
    assert mask.sum() == buys.shape[1] - 2
    # user 1's only edge stays in training
    assert mask[np.flatnonzero(buys[0] == 1)].all()


def test_holdout_is_seeded_and_random_over_the_user_edges():
    buys = _hand_buys()
    a = _holdout(buys, 4, np.random.default_rng(7))
    b = _holdout(buys, 4, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    picked_for_user0 = set()
    for seed in range(40):
        _, val = _holdout(buys, 4, np.random.default_rng(seed))
        picked_for_user0 |= {int(buys[1, v]) for v in val if buys[0, v] == 0}
    assert picked_for_user0 == {0, 1, 2}


def test_holdout_with_only_single_item_users_picks_nothing():
    buys = np.array([[0, 1, 2], [0, 0, 1]])
    mask, val = _holdout(buys, 3, np.random.default_rng(0))
    assert len(val) == 0
    assert mask.all()


# ------------------------------------------------------------------------------------------ recall@k
# users: u0 = (1, 0), u1 = (0, 1); items: i0 = (1, 0), i1 = (0.5, 0.5), i2 = (0, 1)
# scores: u0 -> [1, 0.5, 0], u1 -> [0, 0.5, 1]
HAND_USERS = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
HAND_ITEMS = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=np.float32)
SEEN_U0_I0 = np.array([[0], [0]])  # u0 has bought i0


def test_recall_excludes_seen_items():
    truth = np.array([1, 0])  # u0's held-out item is i1, u1's is i0
    # k=1: u0's i0 is excluded, so i1 tops u0's list (hit); u1's top is i2 (miss)
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, truth, k=1) == 0.5
    # without the exclusion i0 would top u0's list: no hit at all
    assert recall_at_k(HAND_USERS, HAND_ITEMS, np.zeros((2, 0), dtype=np.int64), truth, k=1) == 0.0


def test_recall_exact_values_by_k():
    truth = np.array([2, 0])  # u0 -> i2 (its worst unseen), u1 -> i0 (its worst)
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, truth, k=1) == 0.0
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, truth, k=2) == 0.5  # u0: {i1, i2}; u1: {i2, i1}
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, truth, k=3) == 1.0
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, truth, k=20) == 1.0


def test_recall_only_counts_users_with_a_held_out_item():
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, np.array([1, -1]), k=1) == 1.0
    assert recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, np.array([-1, 0]), k=1) == 0.0
    assert np.isnan(recall_at_k(HAND_USERS, HAND_ITEMS, SEEN_U0_I0, np.array([-1, -1]), k=1))


def test_recall_batches_give_the_same_value():
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(50, 4)), rng.normal(size=(30, 4))
    seen = np.stack([rng.integers(0, 50, 80), rng.integers(0, 30, 80)])
    truth = np.where(rng.random(50) < 0.8, rng.integers(0, 30, 50), -1)
    full = recall_at_k(users, items, seen, truth, k=5)
    assert recall_at_k(users, items, seen, truth, k=5, batch=7) == full
    assert recall_at_k(users, items, seen, truth, k=5, batch=1) == full
    # brute force
    hits, n = 0, 0
    for u in range(50):
        if truth[u] < 0:
            continue
        s = users[u] @ items.T
        s[seen[1][seen[0] == u]] = -np.inf
        hits += truth[u] in np.argsort(-s, kind="stable")[:5]
        n += 1
    assert full == hits / n


# ------------------------------------------------------------------------------ adjacency / propagation
def test_norm_adjacency_hand_checked():
    # 1 user, 2 items: u0-i0, u0-i1; no friends. deg(u0)=2, deg(i0)=deg(i1)=1 -> entries 1/sqrt(2)
    adj = _norm_adjacency(1, 2, np.array([[0, 0], [0, 1]]), None, 1.0).to_dense().numpy()
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(adj, [[0, r, r], [r, 0, 0], [r, 0, 0]], rtol=1e-6)
    assert adj.dtype == np.float32


def test_norm_adjacency_weights_friend_edges():
    # 2 users, 1 item: u0-i0; u0-u1 friends (both directions) with weight 0.5
    buys = np.array([[0], [0]])
    friends = np.array([[0, 1], [1, 0]])
    adj = _norm_adjacency(2, 1, buys, friends, 0.5).to_dense().numpy()
    deg = np.array([1.5, 0.5, 1.0])  # u0: item + 0.5, u1: 0.5, i0: 1
    a = np.array([[0, 0.5, 1], [0.5, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(adj, a / np.sqrt(np.outer(deg, deg)), rtol=1e-6)
    # social weight 0 drops the friend edges (u1 is isolated: its row stays zero, no division by zero)
    adj0 = _norm_adjacency(2, 1, buys, friends, 0.0).to_dense().numpy()
    np.testing.assert_allclose(adj0, [[0, 0, 1], [0, 0, 0], [1, 0, 0]], rtol=1e-6)


def test_propagate_is_the_mean_of_the_layers():
    adj = _norm_adjacency(1, 2, np.array([[0, 0], [0, 1]]), None, 1.0)
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    a = adj.to_dense()
    expected = (emb + a @ emb + a @ (a @ emb)) / 3
    torch.testing.assert_close(_propagate(adj, emb, 2), expected)
    torch.testing.assert_close(_propagate(adj, emb, 0), emb)


# ------------------------------------------------------------------------------------ suspected bugs
def test_no_validation_users_reports_no_recall(tmp_path):
    g = tiny_graph(tmp_path, purchases="user_id,item_id\n1,a\n2,b\n", friendships=None)
    model = fit_lightgcn(g, small_config(), seed=0)
    assert model.info["num_val_users"] == 0
    recall = model.info["val_recall@20"]
    assert recall is None or np.isnan(recall)
