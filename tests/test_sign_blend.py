"""``sign``'s blend with the baseline (graphprof/models/blend.py): the weight is chosen on validation only,
the blended probabilities are exactly ``w * net + (1 - w) * lr``, and they survive save / load and row scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_small import split_shop

from graphprof.models import blend
from graphprof.models.baseline import LogisticBaseline
from graphprof.models.calibration import log_loss
from graphprof.models.sign.model import SIGN
from graphprof.training import evaluate

FAST = {"epochs": 5, "hidden_grid": [16], "dropout_grid": [0.3]}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    inputs, target, parts = split_shop(tmp_path_factory.mktemp("blend_shop"), "gender")
    model = SIGN(seed=0, **FAST).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    return inputs, target, parts, model


def test_blend_is_the_weighted_mean_of_the_net_and_an_lr_fitted_on_the_same_users(shop):
    inputs, target, parts, model = shop
    w = model.blend_["weight"]
    assert w in blend.WEIGHTS and w > 0
    net = torch.softmax(model._forward(inputs, model.LOGITS).double(), dim=1).numpy()
    lr = LogisticBaseline(seed=0).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert np.allclose(model.proba(inputs), w * net + (1 - w) * lr.proba(inputs), atol=1e-12)
    assert model.blend_["lr_C"] == lr.c_


def test_weight_is_the_lowest_validation_log_loss_and_ties_keep_the_net():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.where(y[:, None] == np.arange(2), 0.8, 0.2)   # right 80% of the way
    noise = rng.dirichlet([1, 1], size=400)                   # no information
    w, losses = blend.choose_weight(y, good, noise)
    assert w == 1.0 and set(losses) == {str(x) for x in blend.WEIGHTS}
    w, losses = blend.choose_weight(y, noise, good)           # the other way round: as little net as allowed
    assert w == min(blend.WEIGHTS)
    assert losses[str(w)] == min(losses.values())
    assert blend.choose_weight(y, good, good)[0] == 1.0       # a tie: the net
    # the loss is measured after the blend's own best temperature: never worse than the raw blend's
    p = blend.mix(0.5, good, noise)
    assert losses["0.5"] <= log_loss(y, p) + 1e-12


def test_saved_blend_loads_and_scores_rows_as_the_whole_graph(shop, tmp_path):
    inputs, _, _, model = shop
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "model.json").read_text())["config"]
    assert config["blend"]["weight"] == model.blend_["weight"]
    assert set(config["blend"]["val_log_loss"]) == {str(x) for x in blend.WEIGHTS}
    loaded = SIGN.load(tmp_path / "m")
    assert np.array_equal(loaded.proba(inputs), model.proba(inputs))
    rows = np.array([5, 0, 17, 299])
    assert np.allclose(loaded.proba(inputs, rows), model.proba(inputs)[rows], atol=1e-12)


def test_no_blend_when_asked_or_on_the_large_route(shop, monkeypatch, tmp_path):
    from graphprof.models.sign import model as sign

    inputs, target, parts, _ = shop
    plain = SIGN(seed=0, blend=False, **FAST).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert plain.blend_ is None
    assert np.array_equal(plain.proba(inputs), torch.softmax(plain._forward(inputs, plain.LOGITS).double(), dim=1).numpy())
    plain.save(tmp_path / "plain")
    assert "blend" not in json.loads((tmp_path / "plain" / "model.json").read_text())["config"]
    assert SIGN.load(tmp_path / "plain").blend_ is None
    monkeypatch.setattr(sign, "LARGE_TRAIN_USERS", 10)
    large = SIGN(seed=0, **FAST).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert large.route_ == "large" and large.blend_ is None


def test_the_blend_reuses_train_s_lr_of_the_same_split_and_gives_the_same_numbers(shop):
    inputs, target, parts, _ = shop
    blend._RECENT.clear()
    alone = SIGN(seed=1, **FAST).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    lr = LogisticBaseline(seed=1).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    lr.calibrate(inputs, target.y, parts["val"])  # as train does: the blend reads its own, uncalibrated copy
    assert lr.temperature != 1.0
    after = SIGN(seed=1, **FAST).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert after.lr_.temperature == 1.0 and after.lr_.c_ == lr.c_
    assert all(np.array_equal(after.lr_.arrays_[k], lr.arrays_[k]) for k in lr.arrays_)
    assert np.array_equal(after.proba(inputs), alone.proba(inputs))
    # another split, other labels or another seed: fitted afresh
    other = evaluate.split(target, seed=5)
    assert blend.fitted_baseline(inputs, 1, target.classes, target.y, other["train"], other["val"]) is None
    assert blend.fitted_baseline(inputs, 2, target.classes, target.y, parts["train"], parts["val"]) is None
    flipped = np.where(target.y >= 0, 1 - target.y, target.y)
    assert blend.fitted_baseline(inputs, 1, target.classes, flipped, parts["train"], parts["val"]) is None
    again = blend.fitted_baseline(inputs, 1, target.classes, target.y, parts["train"], parts["val"])
    assert again is not lr and np.array_equal(again.arrays_["coef"], lr.arrays_["coef"])


def test_sage_blends_the_same_way_from_its_best_epoch_s_validation_logits(shop, tmp_path):
    from graphprof.models.gnn import HeteroSAGE

    inputs, target, parts, _ = shop
    model = HeteroSAGE(seed=0, epochs=5).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    w = model.blend_["weight"]
    net = torch.softmax(model._forward(inputs)[0].double(), dim=1).numpy()
    lr = LogisticBaseline(seed=0).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    assert np.allclose(model.proba(inputs), w * net + (1 - w) * lr.proba(inputs), atol=1e-12)
    # the weight chosen from the kept epoch's validation logits is the one the saved net's own give
    again, _ = blend.choose_weight(target.y[parts["val"]], net[parts["val"]], lr.proba(inputs, parts["val"]))
    assert again == w
    model.save(tmp_path / "sage")
    assert np.array_equal(HeteroSAGE.load(tmp_path / "sage").proba(inputs), model.proba(inputs))
