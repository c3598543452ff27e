"""``sign``: the SIGN-style model's own checks (the shared contract is in test_models.py).

Shapes, blocks, determinism and save / load, never accuracy (that lives in benchmarks/accuracy_sign.py).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from fixtures_small import load_inputs, split_shop

from graphprof.errors import ConfigError
from graphprof.features import UserFeatures
from graphprof.graph import BUYS, FRIEND, REV_BUYS, ProfileGraph, build
from graphprof.ingest import generate
from graphprof.models import MODELS, ModelInput
from graphprof.models.sign.model import SIGN
from graphprof.models.sign.sparse_hops import top_k_per_row
from graphprof.prediction.predict import predict
from graphprof.training import evaluate
from graphprof.training.train import train

FAST = {"epochs": 5, "hidden_grid": [16], "dropout_grid": [0.3]}
ALL_BLOCKS = ["own", "social_1", "social_2", "copurchase"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return split_shop(tmp_path_factory.mktemp("sign_shop"), "age_band")


def _fit(shop, seed=0, **kwargs) -> SIGN:
    inputs, target, parts = shop
    return SIGN(seed=seed, **{**FAST, **kwargs}).fit(inputs, target.y, parts["train"], parts["val"], target.classes)


def _without_friendships(inputs: ModelInput) -> ModelInput:
    """The same users, items and features, with every friendship removed from the graph."""
    graph = copy.copy(inputs.graph)
    graph.data = copy.deepcopy(inputs.graph.data)
    del graph.data[FRIEND]
    assert FRIEND not in graph.data.edge_types
    return ModelInput(graph=graph, features=inputs.features)


# ------------------------------------------------------------------------------------------ registry
def test_registered_as_sign():
    assert MODELS["sign"] is SIGN


# -------------------------------------------------------------------------------------- blocks, shapes
def test_every_relation_and_hop_is_its_own_block(shop):
    inputs = shop[0]
    model = _fit(shop, block_sets=["all"])
    assert model.block_names_ == ALL_BLOCKS
    n_features = inputs.features.matrix.shape[1]
    assert model.dense_dims_ == [n_features] * 4
    assert model.sparse_ == [True, True, True, False]  # co-purchase: dense only
    net = model.net_
    assert len(net.dense) == 4  # one linear layer per block
    assert sorted(net.bags) == ["0", "1", "2"] and sorted(net.wide) == ["0", "1", "2"]
    assert all(bag.weight.shape == (len(inputs.graph.item_ids), 16) for bag in net.bags.values())
    assert net.head[0].in_features == 16 * 4
    emb = model.embed(inputs)
    assert emb.shape == (inputs.graph.num_users, 16 * 4)
    proba = model.predict_proba(inputs)
    assert proba.shape == (inputs.graph.num_users, len(shop[1].classes))
    np.testing.assert_allclose(proba.to_numpy().sum(axis=1), 1.0, rtol=0, atol=1e-9)


def test_own_block_never_sees_the_neighbourhood(shop):
    """Remove every friendship: the own block's output is unchanged to the bit, the social blocks' are not."""
    inputs = shop[0]
    model = _fit(shop, block_sets=["all"])
    emb = model.embed(inputs)
    alone = model.embed(_without_friendships(inputs))
    np.testing.assert_array_equal(alone[:, :16], emb[:, :16])
    assert not np.array_equal(alone[:, 16:48], emb[:, 16:48])  # social_1, social_2
    np.testing.assert_array_equal(alone[:, 48:], emb[:, 48:])  # co-purchase: purchases only


def test_own_only_block_set_keeps_one_block(shop):
    inputs = shop[0]
    model = _fit(shop, block_sets=["own"])
    assert model.block_names_ == ["own"] and not model.social_ and not model.copurchase_
    assert model.embed(inputs).shape == (inputs.graph.num_users, 16)
    assert model.choice_["blocks"] == "own"


def test_grid_is_searched_on_validation_and_recorded(shop, tmp_path):
    model = _fit(shop, hidden_grid=[8, 16], dropout_grid=[0.0, 0.5])
    grid = model.choice_["grid"]
    assert [(g["blocks"], g["hidden"], g["dropout"]) for g in grid] == [
        (b, h, d) for b in ("all", "own") for h in (8, 16) for d in (0.0, 0.5)]
    best = max(grid, key=lambda g: g["val_macro_f1"])
    assert model.choice_["val_macro_f1"] == best["val_macro_f1"]
    assert {k: model.choice_[k] for k in ("blocks", "hidden", "dropout")} == \
        {k: best[k] for k in ("blocks", "hidden", "dropout")}
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "model.json").read_text())["config"]
    assert config["choice"]["hidden"] == model.choice_["hidden"]
    assert config["blocks"] == model.block_names_


def test_successive_halving_prunes_and_the_winner_is_its_own_fit(shop):
    """The grid is searched by successive halving: the worse half stops after each round, the winner trains to
    its early stop, and its model is exactly what fitting its grid point alone gives (each point draws from its
    own random state, however the search interleaves them)."""
    from graphprof.models.search import ROUND_EPOCHS

    inputs = shop[0]
    model = _fit(shop, hidden_grid=[8, 16], dropout_grid=[0.0, 0.5], epochs=12, patience=4)
    grid, choice = model.choice_["grid"], model.choice_
    assert model.choice_["search"] == {"method": "successive halving", "round_epochs": ROUND_EPOCHS}
    winner = next(g for g in grid if (g["blocks"], g["hidden"], g["dropout"]) ==
                  (choice["blocks"], choice["hidden"], choice["dropout"]))
    # half the grid stopped after the first round: with patience 4 no point stops by itself before 5 epochs
    assert sorted(g["epochs"] for g in grid)[:2] == [ROUND_EPOCHS, ROUND_EPOCHS]
    assert all(g["epochs"] <= winner["epochs"] for g in grid)
    assert all(g["val_macro_f1"] <= winner["val_macro_f1"] for g in grid)
    alone = _fit(shop, block_sets=[choice["blocks"]], hidden_grid=[choice["hidden"]],
                 dropout_grid=[choice["dropout"]], epochs=12, patience=4)
    assert alone.history_ == model.history_
    assert np.array_equal(alone.predict_proba(inputs).to_numpy(), model.predict_proba(inputs).to_numpy())


def test_large_graph_route_fits_one_grid_point_with_a_bigger_batch(shop, tmp_path, monkeypatch):
    from graphprof.models.sign import model as sign

    assert _fit(shop).route_ == "grid"
    monkeypatch.setattr(sign, "LARGE_TRAIN_USERS", 10)
    model = _fit(shop, hidden_grid=[8, 16], dropout_grid=[0.0, 0.5])
    assert model.route_ == "large"
    assert [(g["blocks"], g["hidden"], g["dropout"]) for g in model.choice_["grid"]] == [("all", 8, 0.0)]
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["config"]["route"] == "large"
    assert SIGN.load(tmp_path / "m").route_ == "large"


def test_unknown_block_set_is_refused(shop):
    with pytest.raises(ConfigError, match=r"block_sets must name all / own .*Got block_sets=\['friends'\]"):
        _fit(shop, block_sets=["friends"])


# ------------------------------------------------------------------------------------ determinism, I/O
def test_same_seed_same_model_other_seed_other_model(shop):
    inputs = shop[0]
    a, b, c = _fit(shop, seed=3), _fit(shop, seed=3), _fit(shop, seed=4)
    pa, pb, pc = (m.predict_proba(inputs).to_numpy() for m in (a, b, c))
    assert np.array_equal(pa, pb)
    assert a.choice_ == b.choice_ and a.history_ == b.history_
    assert not np.array_equal(pa, pc)


def test_save_load_gives_identical_probabilities(shop, tmp_path):
    inputs = shop[0]
    model = _fit(shop)
    model.save(tmp_path / "m")
    assert {p.suffix for p in (tmp_path / "m").iterdir()} == {".json", ".safetensors"}
    loaded = SIGN.load(tmp_path / "m")
    pd.testing.assert_frame_equal(model.predict_proba(inputs), loaded.predict_proba(inputs), check_exact=True)
    assert np.array_equal(model.embed(inputs), loaded.embed(inputs))
    for name in ("f_mean_", "f_std_", "idf_"):
        assert np.array_equal(getattr(model, name), getattr(loaded, name))


def test_graph_with_other_items_is_refused(shop):
    inputs = shop[0]
    model = _fit(shop)
    model.n_items_ += 1
    with pytest.raises(ValueError, match=r"must have the \d+ items the model was fitted on. Got \d+ instead"):
        model.predict_proba(inputs)


# ----------------------------------------------------------------------------------- no friendships
def test_graph_without_friendships_has_no_social_blocks(tmp_path):
    tables = generate.generate(n_users=300, seed=1)
    del tables["friendships"]
    generate.write_tables(tables, tmp_path / "data")
    build.build(tmp_path / "work", data=tmp_path / "data")
    inputs, users = load_inputs(tmp_path / "work")
    assert FRIEND not in inputs.graph.data.edge_types
    target = evaluate.make_target(users, inputs.graph.user_ids, "gender")
    parts = evaluate.split(target, seed=0)
    model = SIGN(**FAST, block_sets=["all"]).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert model.block_names_ == ["own", "copurchase"] and not model.social_
    proba = model.predict_proba(inputs).to_numpy()
    assert proba.shape == (inputs.graph.num_users, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert model.embed(inputs).shape == (inputs.graph.num_users, 32)


# ------------------------------------------------------------------------------ users it never saw
def test_predicts_on_a_graph_with_more_users(tmp_path):
    """``graphprof predict`` adds unseen users to the saved graph and asks the saved ``sign`` for every user."""
    tables = generate.generate(n_users=300, seed=0)
    users, p, f = tables["users"], tables["purchases"], tables["friendships"]
    held = users["user_id"].iloc[::10].tolist()
    in_p, in_u = p["user_id"].isin(held), users["user_id"].isin(held)
    in_f = f["user_id"].isin(held) | f["friend_id"].isin(held)
    generate.write_tables({"purchases": p[~in_p], "friendships": f[~in_f], "users": users[~in_u],
                           "items": tables["items"]}, tmp_path / "data")
    generate.write_tables({"purchases": p[in_p], "friendships": f[in_f], "users": users[in_u]}, tmp_path / "new")
    work = tmp_path / "work"
    build.build(work, data=tmp_path / "data")
    train(work, targets=["gender"], models=["sign"], seeds=1, epochs=5)
    fitted_ids = set(load_inputs(work)[0].graph.user_ids)

    out = predict(work, tmp_path / "new").frame
    new_ids = sorted(set(p.loc[in_p, "user_id"]) | set(users.loc[in_u, "user_id"]))
    assert sorted(out["user_id"]) == new_ids
    assert (out["gender_model"] == "sign").all()
    proba = out[["gender_proba_f", "gender_proba_m"]].to_numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert len(new_ids) >= 20 and not fitted_ids & set(new_ids)  # so predict had to extend the graph


def test_extended_graph_uses_the_fitted_state(shop, tmp_path):
    """On a graph with more users, the fitted (not refitted) statistics are used: a saved and a loaded model
    agree to the bit, and the known users' own blocks do not move where only new, unconnected users join."""
    inputs, target, parts = shop
    model = _fit(shop, block_sets=["all"])
    n = inputs.graph.num_users
    ext = _with_new_buyers(inputs, 25)
    proba = model.predict_proba(ext)
    assert proba.shape == (n + 25, len(target.classes))
    np.testing.assert_allclose(proba.to_numpy().sum(axis=1), 1.0, rtol=0, atol=1e-9)
    model.save(tmp_path / "m")
    pd.testing.assert_frame_equal(proba, SIGN.load(tmp_path / "m").predict_proba(ext), check_exact=True)
    # features of the first n users are unchanged in ``ext``: so is their own block
    np.testing.assert_allclose(model.embed(ext)[:n, :16], model.embed(inputs)[:, :16], rtol=0, atol=1e-6)


def _with_new_buyers(inputs: ModelInput, k: int) -> ModelInput:
    """``inputs`` plus ``k`` users (ids sorting after every known one) who each bought the first item and have
    no friends; their feature rows copy the first user's."""
    g = inputs.graph
    n = g.num_users
    data = copy.deepcopy(g.data)
    data["user"].num_nodes = n + k
    ei = data[BUYS].edge_index
    new = torch.stack([torch.arange(n, n + k), torch.zeros(k, dtype=torch.long)])
    data[BUYS].edge_index = torch.cat([ei, new], dim=1)
    data[BUYS].edge_attr = torch.cat([data[BUYS].edge_attr, data[BUYS].edge_attr[:1].repeat(k, 1)])
    data[REV_BUYS].edge_index = data[BUYS].edge_index.flip(0)
    ids = np.concatenate([g.user_ids, np.array([f"~new{j:03d}" for j in range(k)], dtype=object)])
    graph = ProfileGraph(data=data, user_ids=ids, item_ids=g.item_ids, category_ids=g.category_ids)
    f = inputs.features
    frame = pd.concat([f.frame, f.frame.iloc[[0] * k]], ignore_index=True)
    feats = UserFeatures(user_ids=ids, frame=frame, groups=f.groups, item_ids=f.item_ids, items=f.items,
                         state=f.state)
    return ModelInput(graph=graph, features=feats)


# ------------------------------------------------------------------------------------------ helpers
def test_top_k_per_row_keeps_the_largest_with_ties_to_the_lower_column():
    m = sp.csr_matrix(np.array([[0.5, 0.0, 0.9, 0.5, 0.1],
                                [0.0, 0.0, 0.0, 0.0, 0.0],
                                [0.3, 0.3, 0.0, 0.0, 0.0],
                                [0.2, 0.7, 0.7, 0.7, 0.0]]))
    got = top_k_per_row(m, 2).toarray()
    np.testing.assert_array_equal(got, [[0.5, 0.0, 0.9, 0.0, 0.0],
                                        [0.0, 0.0, 0.0, 0.0, 0.0],
                                        [0.3, 0.3, 0.0, 0.0, 0.0],
                                        [0.0, 0.7, 0.7, 0.0, 0.0]])
    assert top_k_per_row(m, 5).nnz == m.nnz


@pytest.mark.parametrize("block_nnz", [1, 50, 10**9])
@pytest.mark.parametrize("workers", [1, 3])
def test_sparse_hop_in_row_blocks_equals_the_whole_product(block_nnz, workers):
    from graphprof.models.sign.sparse_hops import sparse_hop

    rng = np.random.default_rng(5)
    adj = sp.random(120, 120, density=0.05, random_state=1, format="csr")
    m = sp.random(120, 300, density=0.04, random_state=2, format="csr")
    m.data = rng.random(m.nnz)
    want = top_k_per_row(adj @ m, 7)
    got = sparse_hop(adj, m, 7, block_nnz=block_nnz, workers=workers)
    assert got.shape == want.shape and (np.diff(got.indptr) <= 7).all()
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


def test_sparse_hop_blocks_hold_at_most_their_share_of_entries_whatever_the_weights(monkeypatch):
    """The row blocks are sized by the product's entries counted on the adjacency's structure: a row-normalised
    adjacency (weights summing to one, as sign's hops use it) must not make blocks its degree times larger."""
    from graphprof.models.bag import row_scale
    from graphprof.models.sign import sparse_hops

    rng = np.random.default_rng(3)
    adj = row_scale(sp.random(400, 400, density=0.05, random_state=4, format="csr"), "l1")
    m = sp.random(400, 500, density=0.05, random_state=6, format="csr")
    m.data = rng.random(m.nnz)
    products = []
    real = sparse_hops.top_k_per_row

    def spy(product, k):
        products.append((product.shape[0], int(np.diff(product.indptr).sum())))
        return real(product, k)

    monkeypatch.setattr(sparse_hops, "top_k_per_row", spy)
    block_nnz, workers = 2_000, 2
    want = real(adj @ m, 9)
    got = sparse_hops.sparse_hop(adj, m, 9, block_nnz=block_nnz, workers=workers)
    np.testing.assert_array_equal(got.toarray(), want.toarray())
    one_row = int((abs(adj).astype(bool).astype(float) @ np.diff(m.indptr).astype(float)).max())
    assert len(products) > 2 and sum(rows for rows, _ in products) == 400
    assert max(entries for _, entries in products) <= block_nnz // workers + one_row
