"""The inductive protocol: test users' edges are invisible while fitting, and added back to predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphprof.errors import ConfigError
from graphprof.features import load_features
from graphprof.graph import BUYS, FRIEND, REV_BUYS, drop_user_edges, load_graph
from graphprof.graph.build import build
from graphprof.ingest import generate
from graphprof.models import ModelInput
from graphprof.training.train import _inductive_inputs, train


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol")
    generate.write_tables(generate.generate(n_users=300, seed=2), tmp / "data")
    build(tmp / "work", data=tmp / "data")
    return tmp / "work"


def test_drop_user_edges_keeps_nodes_and_removes_every_edge_of_those_users(work):
    g = load_graph(work)
    gone = np.array([0, 5, 17])
    out = drop_user_edges(g, gone)
    assert out.num_users == g.num_users and list(out.user_ids) == list(g.user_ids)
    gone_t = torch.from_numpy(gone)
    assert not torch.isin(out.data[BUYS].edge_index[0], gone_t).any()
    assert not torch.isin(out.data[REV_BUYS].edge_index[1], gone_t).any()
    assert not torch.isin(out.data[FRIEND].edge_index, gone_t).any()
    kept = ~torch.isin(g.data[BUYS].edge_index[0], gone_t)
    assert torch.equal(out.data[BUYS].edge_attr, g.data[BUYS].edge_attr[kept])
    kept_f = ~(torch.isin(g.data[FRIEND].edge_index, gone_t).any(0))
    assert torch.equal(out.data[FRIEND].edge_index, g.data[FRIEND].edge_index[:, kept_f])


def test_inductive_features_see_no_trace_of_the_test_users(work):
    inputs = ModelInput(graph=load_graph(work), features=load_features(work))
    test = np.arange(0, 300, 7)
    fit = _inductive_inputs(inputs, test)
    frame = fit.features.frame
    assert (frame.loc[test, "has_purchases"] == 0).all() and (frame.loc[test, "social_degree"] == 0).all()
    assert list(frame.columns) == list(inputs.features.frame.columns)  # same feature space


def test_train_inductive_records_the_protocol_and_rejects_an_unknown_one(work):
    result = train(work, targets=["gender"], models=["lr"], seeds=1, protocol="inductive")
    assert result.info["gender"]["protocol"] == "inductive"
    assert "inductive" in result.table()
    with pytest.raises(ConfigError, match=r"--protocol must be one of transductive, inductive\. Got 'x' instead"):
        train(work, targets=["gender"], models=["lr"], seeds=1, protocol="x")
