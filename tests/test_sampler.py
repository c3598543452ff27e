"""The CSR neighbour sampler (PyG ``BaseSampler`` under PyG's ``NodeLoader``) and the mini-batch route of
``sage`` / ``gat``: exactness against the full-batch forward, fanout bounds, determinism, seeds first, and a
mini-batch fit on the bundled sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NodeSamplerInput

from graphprof.errors import ConfigError
from graphprof.features import load_features
from graphprof.graph import build, load_graph
from graphprof.models import ModelInput
from graphprof.models.gnn import HeteroGAT, HeteroSAGE, HeteroSAGENet, _hetero_data
from graphprof.models.sampler import CSRGraph, CSRNeighborSampler
from graphprof.training import evaluate

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The bundled sample, built: model input, the gender target and its split."""
    work = tmp_path_factory.mktemp("sampler") / "w"
    build.build(work, data=ROOT / "datasets" / "sample")
    inputs = ModelInput(graph=load_graph(work), features=load_features(work))
    target = evaluate.make_target(build.load_tables(work, "users"), inputs.graph.user_ids, "gender")
    return inputs, target, evaluate.split(target, seed=0)


@pytest.fixture(scope="module")
def data(sample):
    """The sample graph with random features per node type (the sampler and the nets only read x and edges)."""
    g = sample[0].graph.data
    gen = torch.Generator().manual_seed(0)
    x = {nt: torch.randn(g[nt].num_nodes, 3 + i, generator=gen) for i, nt in enumerate(g.node_types)}
    return _hetero_data(x, {et: g[et].edge_index for et in g.edge_types})


def _loader(data, fanout, seeds, batch_size=64, seed=0, shuffle=False):
    return NodeLoader(data, node_sampler=CSRNeighborSampler(data, fanout, seed=seed),
                      input_nodes=("user", seeds), batch_size=batch_size, shuffle=shuffle)


def _batches(data, fanout, seed, n=3):
    loader = _loader(data, fanout, torch.arange(0, 3000, 7), seed=seed)
    return [b for _, b in zip(range(n), loader)]


#: the plain net, and the tuned one (identity skips + LayerNorm): every way of running it gives the same numbers
ARCHS = {"plain": {}, "residual+norm": {"residual": True, "norm": True}}


def _net(data, conv, arch="plain"):
    torch.manual_seed(0)
    net = HeteroSAGENet({nt: data[nt].x.shape[1] for nt in data.node_types}, list(data.edge_types), hidden=16,
                        out=3, layers=2, dropout=0.3, conv=conv, **ARCHS[arch])
    if arch != "plain":  # LayerNorm starts as the identity affine map: move it, so a skipped norm would show
        with torch.no_grad():
            for p in net.norms.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    return net.eval()


# ------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("conv", ["sage", "gat"])
def test_all_neighbours_minibatch_forward_equals_full_batch(data, conv, arch):
    net = _net(data, conv, arch)
    with torch.no_grad():
        full_logits, full_emb = net(data.x_dict, data.edge_index_dict)
        seeds = torch.randperm(3000, generator=torch.Generator().manual_seed(1))[:300]
        for batch in _loader(data, [-1, -1], seeds, batch_size=100):
            n = batch["user"].batch_size
            ids = batch["user"].n_id[:n]
            logits, emb = net.forward_sampled(batch.x_dict, batch.edge_index_dict,
                                              {nt: batch[nt].num_sampled_nodes for nt in batch.node_types},
                                              {et: batch[et].num_sampled_edges for et in batch.edge_types}, n)
            torch.testing.assert_close(logits, full_logits[ids], atol=1e-5, rtol=0)
            torch.testing.assert_close(emb, full_emb[ids], atol=1e-5, rtol=0)
            untrimmed, _ = net(batch.x_dict, batch.edge_index_dict)  # the plain forward on the subgraph
            torch.testing.assert_close(untrimmed[:n], full_logits[ids], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("conv", ["sage", "gat"])
def test_layerwise_inference_equals_full_batch_for_every_node_type(data, conv, arch):
    net = _net(data, conv, arch)
    with torch.no_grad():
        full = net.node_reps(data.x_dict, data.edge_index_dict)
        chunked = net.layerwise_reps(data.x_dict, CSRGraph(data), chunk_nodes=1000, chunk_edges=2000)
    assert set(chunked) == set(full)
    for nt in full:
        torch.testing.assert_close(chunked[nt], full[nt], atol=1e-5, rtol=0)


@pytest.mark.parametrize("conv", ["sage", "gat"])
def test_node_reps_of_some_types_equal_the_whole_forward_and_skip_the_rest(data, conv):
    net = _net(data, conv)
    calls = []
    for et, module in net.convs[-1].convs.items():  # the last layer's relations that run
        module.register_forward_hook(lambda mod, args, out, et=et: calls.append(et))
    with torch.no_grad():
        full = net.node_reps(data.x_dict, data.edge_index_dict)
        calls.clear()
        users = net.node_reps(data.x_dict, data.edge_index_dict, types={"user"})
        ran = list(calls)
        h = {nt: torch.relu(net.lin_in[nt](x)) for nt, x in data.x_dict.items()}  # PyG's HeteroConv, every type
        reference = [h["user"]]
        for layer in net.convs:
            new = layer(h, data.edge_index_dict)
            h = {nt: torch.relu(new[nt]) if nt in new else v for nt, v in h.items()}
            reference.append(h["user"])
    assert set(users) == {"user"} and set(full) == set(data.node_types)
    torch.testing.assert_close(users["user"], full["user"], atol=0, rtol=0)
    torch.testing.assert_close(users["user"], torch.cat(reference, dim=1), atol=1e-6, rtol=0)
    assert ran and all(et[2] == "user" for et in ran)  # no relation into items in the last layer


def test_chunks_cover_the_nodes_within_the_bounds(data):
    graph = CSRGraph(data)
    into = [et for et in data.edge_types if et[2] == "user"]
    chunks = graph.chunks("user", into, max_nodes=500, max_edges=1500)
    assert chunks[0][0] == 0 and chunks[-1][1] == 3000
    assert all(a < b and b == c for (a, b), (c, _) in zip(chunks, chunks[1:] + [(3000, None)]))
    deg = sum(graph.rowptr[et][1:] - graph.rowptr[et][:-1] for et in into)
    for a, b in chunks:
        assert b - a <= 500 and (int(deg[a:b].sum()) <= 1500 or b == a + 1)


# ---------------------------------------------------------------------------------------------- fanout
def test_fanout_bounds_in_degree_and_every_sampled_edge_exists(data):
    fanout = [3, 2]
    graph = CSRGraph(data)
    for batch in _batches(data, fanout, seed=0):
        for et in data.edge_types:
            ei, eid = batch[et].edge_index, batch[et].e_id
            src, dst = batch[et[0]].n_id[ei[0]], batch[et[2]].n_id[ei[1]]
            assert torch.equal(data[et].edge_index[:, eid], torch.stack([src, dst]))  # real edges, right ids
            assert torch.unique(eid).numel() == eid.numel()                          # without replacement
            per_hop = torch.split(ei[1], batch[et].num_sampled_edges)
            hop_nodes = torch.split(torch.arange(batch[et[2]].num_nodes), batch[et[2]].num_sampled_nodes)
            for hop, k in enumerate(fanout):
                frontier = batch[et[2]].n_id[hop_nodes[hop]]
                got = torch.bincount(per_hop[hop] - hop_nodes[hop][:1].sum(), minlength=frontier.numel())
                deg = graph.rowptr[et][frontier + 1] - graph.rowptr[et][frontier]
                assert got.numel() == frontier.numel()            # edges go into this hop's frontier only
                assert torch.equal(got, deg.clamp(max=k))         # exactly min(deg, k) in-edges per node


def test_sampling_without_replacement_is_uniform():
    gen = torch.Generator().manual_seed(0)
    ei = torch.stack([torch.arange(10), torch.zeros(10, dtype=torch.long)])  # node 0 has 10 in-neighbours
    from torch_geometric.data import HeteroData
    d = HeteroData()
    d["user"].num_nodes = 10
    d["user", "friend", "user"].edge_index = ei
    src, pos, _ = CSRGraph(d).sample_in_edges(("user", "friend", "user"), torch.zeros(20000, dtype=torch.long), 3, gen)
    assert src.numel() == 60000
    per_row = src.view(20000, 3)
    assert (per_row[:, :-1] != per_row[:, 1:]).all()  # sorted, distinct
    freq = torch.bincount(src, minlength=10).double() / 20000
    assert torch.allclose(freq, torch.full((10,), 0.3, dtype=torch.float64), atol=0.015)


# --------------------------------------------------------------------------------- determinism / seeds
def _flat(batch) -> list[torch.Tensor]:
    return [batch[nt].n_id for nt in batch.node_types] + [batch[et].edge_index for et in batch.edge_types]


def _same(first, second) -> bool:
    return all(x.shape == y.shape and torch.equal(x, y)
               for a, b in zip(first, second) for x, y in zip(_flat(a), _flat(b)))


def test_same_seed_same_batches_other_seed_other_batches(data):
    a, b, c = (_batches(data, [5, 3], seed=s) for s in (3, 3, 4))
    assert _same(a, b)
    assert not _same(a, c)


def test_seeds_come_first_in_input_order(data):
    seeds = torch.tensor([2999, 5, 17, 1200, 4])
    batch = next(iter(_loader(data, [4, 4], seeds, batch_size=5)))
    assert batch["user"].batch_size == 5
    assert torch.equal(batch["user"].n_id[:5], seeds)
    assert torch.equal(batch["user"].input_id, torch.arange(5))
    assert batch["user"].num_sampled_nodes[0] == 5
    assert torch.unique(batch["user"].n_id).numel() == batch["user"].n_id.numel()
    torch.testing.assert_close(batch["user"].x, data["user"].x[batch["user"].n_id])


def test_sampler_refuses_bad_input(data):
    with pytest.raises(ValueError, match="fanout must be a non-empty list"):
        CSRNeighborSampler(data, [])
    sampler = CSRNeighborSampler(data, [2])
    with pytest.raises(ValueError, match="must be unique"):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([1, 1]), input_type="user"))
    with pytest.raises(ValueError, match="input_type must be one of"):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([1]), input_type="shop"))
    out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([1]), input_type="user"))  # state reset
    assert out.node["user"][0] == 1 and (sampler._local["user"] == -1).all()


# ------------------------------------------------------------------------------------------ the model
MINI = dict(batch_size=256, fanout=(10, 5), mode="minibatch", epochs=8, patience=5, hidden=32)


@pytest.fixture(scope="module")
def fitted(sample):
    inputs, target, parts = sample
    return HeteroSAGE(seed=0, **MINI).fit(inputs, target.y, parts["train"], parts["val"], target.classes)


def test_minibatch_sage_beats_the_majority_class(sample, fitted):
    inputs, target, parts = sample
    assert fitted.route_ == "minibatch"
    y_test = target.y[parts["test"]]
    majority = np.bincount(target.y[parts["train"]]).argmax()
    base = f1_score(y_test, np.full_like(y_test, majority), average="macro")
    pred = fitted.predict_proba(inputs).to_numpy()[parts["test"]].argmax(1)
    assert f1_score(y_test, pred, average="macro") > base + 0.1


def test_minibatch_model_save_load_round_trip(sample, fitted, tmp_path):
    inputs = sample[0]
    fitted.save(tmp_path / "m")
    loaded = HeteroSAGE.load(tmp_path / "m")
    assert loaded.route_ == "minibatch" and loaded.params == fitted.params
    pd.testing.assert_frame_equal(fitted.predict_proba(inputs), loaded.predict_proba(inputs), check_exact=True)
    assert np.array_equal(fitted.embed(inputs), loaded.embed(inputs))
    assert loaded.embed_items(inputs).shape == (len(inputs.graph.item_ids), 32 * 3)


def test_minibatch_gat_is_deterministic(sample):
    inputs, target, parts = sample
    kw = {**MINI, "epochs": 2}
    a, b = (HeteroGAT(seed=1, **kw).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
            for _ in range(2))
    assert np.array_equal(a.predict_proba(inputs).to_numpy(), b.predict_proba(inputs).to_numpy())


def test_route_choice_and_bad_settings(sample, monkeypatch):
    import graphprof.models.gnn as gnn

    inputs, target, parts = sample
    assert HeteroSAGE()._route(inputs) == "full"                 # a small graph, no batch size
    monkeypatch.setattr(gnn, "FULL_BATCH_MAX_WORK", gnn._work(inputs) - 1)
    assert HeteroSAGE()._route(inputs) == "minibatch"            # a whole-graph step over the budget
    assert HeteroSAGE()._batch_size(1_793) == 225 and HeteroSAGE()._batch_size(17_000) == 1024
    assert HeteroSAGE()._batch_size(100) == 32 and HeteroSAGE(batch_size=64)._batch_size(17_000) == 64
    assert HeteroSAGE()._fanout(1_793, 2) == [25, 15] and HeteroSAGE()._fanout(17_000, 2) == [15, 10]
    assert HeteroSAGE()._fanout(17_000, 1) == [15] and HeteroSAGE()._fanout(17_000, 3) == [15, 10, 10]
    assert HeteroSAGE(fanout=(5, 3))._fanout(1_793, 2) == [5, 3] and HeteroSAGE(fanout=(5, 3))._fanout(9, 1) == [5]
    monkeypatch.undo()
    assert HeteroSAGE(batch_size=64)._route(inputs) == "minibatch"
    assert HeteroSAGE(batch_size=64, mode="full")._route(inputs) == "full"
    with pytest.raises(ConfigError, match="mode must be one of auto, full, minibatch. Got 'fast' instead"):
        HeteroSAGE(mode="fast").fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    with pytest.raises(ConfigError, match=r"fanout must give one neighbour count .* \(3 layers\). Got \[25, 15\]"):
        HeteroSAGE(layers=(1, 3), fanout=(25, 15), mode="minibatch").fit(inputs, target.y, parts["train"],
                                                                       parts["val"], target.classes)
    with pytest.raises(ConfigError, match=r"layers must be a positive integer or a non-empty list of them"):
        HeteroSAGE(layers=()).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    with pytest.raises(ConfigError, match=r"hidden must be a positive integer .* Got 0 instead"):
        HeteroSAGE(hidden=0).fit(inputs, target.y, parts["train"], parts["val"], target.classes)


def test_minibatch_never_reads_labels_outside_train_and_val(sample):
    inputs, target, parts = sample
    kw = {**MINI, "epochs": 2}
    y = target.y.copy()
    unseen = np.setdiff1d(np.arange(len(y)), np.concatenate([parts["train"], parts["val"]]))
    y[unseen] = np.where(y[unseen] >= 0, 1 - y[unseen], 0)  # gender: every unseen label changes
    a, b = (HeteroSAGE(seed=0, **kw).fit(inputs, labels, parts["train"], parts["val"], target.classes)
            for labels in (target.y, y))
    assert np.array_equal(a.predict_proba(inputs).to_numpy(), b.predict_proba(inputs).to_numpy())
