"""``sage``'s and ``gat``'s width and depth chosen on validation (graphprof/models/search.py): the winner of the
successive-halving search is the model its grid point trains alone, the choice is saved, and a model saved
before the search loads as its one point."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_small import split_shop

from graphprof.models.gnn import HeteroGAT, HeteroSAGE

GRID = {"hidden": [8, 16], "layers": [1, 2], "epochs": 10, "patience": 4, "blend": False}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return split_shop(tmp_path_factory.mktemp("gnn_search"), "gender")


@pytest.mark.parametrize("route", [{}, {"batch_size": 64}], ids=["full", "minibatch"])
def test_the_winner_is_the_model_its_point_trains_alone(shop, route):
    inputs, target, parts = shop
    searched = HeteroSAGE(seed=3, **GRID, **route).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    c = searched.choice_
    assert [(g["hidden"], g["layers"]) for g in c["grid"]] == [(8, 1), (16, 1), (8, 2), (16, 2)]
    assert (c["hidden"], c["layers"]) == (searched.hidden_, searched.layers_)
    # a best only rises and every round keeps the best: no pruned point scored above the winner
    assert c["val_macro_f1"] == max(g["val_macro_f1"] for g in c["grid"])
    assert sum(g["epochs"] < len(searched.history_) for g in c["grid"]) >= 2  # the search pruned someone
    alone = HeteroSAGE(seed=3, **{**GRID, "hidden": searched.hidden_, "layers": searched.layers_}, **route)
    alone.fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert np.array_equal(alone.proba(inputs), searched.proba(inputs))
    assert alone.history_ == searched.history_
    emb = searched.embed(inputs)
    assert emb.shape == (inputs.graph.num_users, searched.hidden_ * (searched.layers_ + 1))
    if route:
        assert searched.fanout_ == [25, 15][:searched.layers_]


def test_the_choice_is_saved_and_a_model_saved_without_it_loads_as_its_one_point(shop, tmp_path):
    inputs, target, parts = shop
    model = HeteroGAT(seed=0, **GRID).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    model.save(tmp_path / "gat")
    meta = json.loads((tmp_path / "gat" / "model.json").read_text())
    assert meta["config"]["choice"]["search"]["method"] == "successive halving"
    assert (meta["config"]["hidden"], meta["config"]["layers"]) == (model.hidden_, model.layers_)
    assert np.array_equal(HeteroGAT.load(tmp_path / "gat").proba(inputs), model.proba(inputs))
    # a model.json from before the search: int parameters, no chosen point in its config
    for key in ("hidden", "layers", "choice"):
        meta["config"].pop(key)
    meta["params"].update(hidden=model.hidden_, layers=model.layers_)
    (tmp_path / "gat" / "model.json").write_text(json.dumps(meta))
    assert np.array_equal(HeteroGAT.load(tmp_path / "gat").proba(inputs), model.proba(inputs))
