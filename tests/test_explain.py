"""``graphprof explain``: ``lr``'s contributions are exact (they and the constant sum to its logit, which gives
its probability); ``sign``'s integrated gradients sum to its probability's distance from the baseline user's;
the friends named are the user's friends; the command line gives text, JSON and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_small import build_shop, load_inputs

from graphprof import cli, workdir
from graphprof.errors import ConfigError
from graphprof.explaining.explain import explain
from graphprof.models import get_model
from graphprof.training.train import train


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    work = build_shop(tmp_path_factory.mktemp("explain"))
    train(work, targets=["gender"], models=["lr"], seeds=1)
    train(work, targets=["age_band"], models=["sign"], seeds=1, epochs=5)
    return work


def _model(work, target, name):
    return get_model(name).load(workdir.run_dir(work, target, name, 0))


def _user(work, k=3):
    inputs, _ = load_inputs(work)
    bought = np.diff(inputs.graph.purchase_matrix("count").tocsr().indptr) > 0
    friends = np.diff(inputs.graph.social_adjacency().tocsr().indptr) > 0
    return str(inputs.graph.user_ids[np.flatnonzero(bought & friends)[k]]), inputs


def test_lr_contributions_sum_to_its_logit_and_its_probability(shop):
    user, inputs = _user(shop)
    t = explain(shop, user, target="gender", top=10_000).targets["gender"]
    assert t["model"] == "lr" and t["rest"]["count"] == 0
    total = t["constant"] + sum(c["contribution"] for c in t["contributions"])
    assert total == pytest.approx(t["logit"], abs=1e-9)
    model = _model(shop, "gender", "lr")
    u = int(np.flatnonzero(inputs.graph.user_ids == user)[0])
    raw = model._proba_rows(inputs, np.array([u]))[0]      # before the temperature
    assert 1.0 / (1.0 + np.exp(-t["logit"])) == pytest.approx(raw.max(), abs=1e-9)
    assert t["predicted"] == model.classes_[int(raw.argmax())]
    kinds = {c["kind"] for c in t["contributions"]}
    assert kinds == {"feature", "item"}
    assert sum(c["share"] for c in t["contributions"]) == pytest.approx(1.0)


def test_sign_attributions_sum_to_the_distance_from_the_baseline(shop):
    user, inputs = _user(shop)
    t = explain(shop, user, target="age_band", top=10_000).targets["age_band"]
    assert t["model"] == "sign" and "integrated gradients" in t["method"]
    model = _model(shop, "age_band", "sign")
    u = int(np.flatnonzero(inputs.graph.user_ids == user)[0])
    p = model.proba(inputs, rows=np.array([u]))[0]
    assert t["probability"] == pytest.approx(p.max(), abs=1e-9)
    total = sum(c["contribution"] for c in t["contributions"])
    assert total == pytest.approx(t["probability"] - t["p_baseline"], abs=max(5 * t["delta"], 1e-3))
    friends = set(inputs.graph.user_ids[inputs.graph.social_adjacency().tocsr()[u].indices].astype(str))
    named = {c["name"] for c in t["contributions"] if c["kind"] == "friend"}
    assert named and named <= friends


def test_the_command_line_gives_text_json_and_clear_errors(shop, capsys):
    user, _ = _user(shop)
    assert cli.main(["explain", user, "--workdir", str(shop), "--top", "3"]) in (0, None)
    out = capsys.readouterr().out
    assert out.startswith(f"user {user}") and "gender:" in out and "age_band:" in out
    assert cli.main(["explain", user, "--workdir", str(shop), "--target", "gender", "--json"]) in (0, None)
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["targets"]) == ["gender"] and len(doc["targets"]["gender"]["contributions"]) == 10
    assert cli.main(["explain", "nobody", "--workdir", str(shop)]) == 2
    err = capsys.readouterr().err
    assert "USER_ID must be a user of the graph" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="--target must be a trained target"):
        explain(shop, user, target="height")


def test_a_sage_pick_is_refused_with_what_to_do(tmp_path):
    work = build_shop(tmp_path)
    train(work, targets=["age_band"], models=["sage"], seeds=1, epochs=3)
    user, _ = _user(work)
    with pytest.raises(ConfigError, match="the picked model is sage, which explain does not support"):
        explain(work, user)
