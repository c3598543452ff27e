"""The CPU training kernels (models/ops.py, sign's bag product): the same computation as torch's own, seeded."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from graphprof.models.ops import adam, dropout
from graphprof.models.sign.net import bag_sum, make_bag


def test_bag_sum_gradient_is_embedding_bags():
    bag_rows = sp.random(40, 300, density=0.05, format="csr", random_state=1, dtype=np.float64)
    bag_rows[3] = 0  # an empty row
    bag_rows.eliminate_zeros()
    bag = make_bag(bag_rows, transpose=True)
    weights = dropout(bag.weights, 0.3, training=True)
    table = torch.randn(300, 7, requires_grad=True)
    reference = table.detach().clone().requires_grad_()
    grad = torch.randn(40, 7)
    bag_sum(table, bag, weights).backward(grad)
    F.embedding_bag(bag.indices, reference, bag.offsets, mode="sum", per_sample_weights=weights).backward(grad)
    # row-sparse: the batch's items' rows only
    assert table.grad.is_sparse
    assert set(table.grad.coalesce().indices()[0].tolist()) == set(bag_rows.indices.tolist())
    torch.testing.assert_close(table.grad.to_dense(), reference.grad, atol=1e-5, rtol=1e-5)
    # into a held buffer (SIGNNet.hold_item_grads): added in place, dense
    held = torch.full_like(table, 0.5)
    table.grad = held
    bag_sum(table, bag, weights).backward(grad)
    assert table.grad is held and not held.is_sparse
    torch.testing.assert_close(held, reference.grad + 0.5, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference needs no transpose
        torch.testing.assert_close(bag_sum(table, make_bag(bag_rows, transpose=False), bag.weights),
                                   F.embedding_bag(bag.indices, table, bag.offsets, mode="sum",
                                                   per_sample_weights=bag.weights))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_keeps_the_expected_share_and_scales_it(p):
    torch.manual_seed(0)
    out = dropout(torch.ones(400_001), p, training=True)
    kept = out != 0
    assert abs(float(kept.float().mean()) - (1 - p)) < 0.005
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)), rtol=1e-4)


def test_dropout_is_seeded_and_off_in_eval():
    x = torch.randn(33, 5)
    torch.manual_seed(3)
    a = dropout(x, 0.5, training=True)
    torch.manual_seed(3)
    b = dropout(x, 0.5, training=True)
    assert torch.equal(a, b) and a.shape == x.shape
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_fused_adam_matches_the_default_loop():
    torch.manual_seed(0)
    start = [torch.randn(50, 4), torch.randn(4)]
    results = []
    for make in (lambda ps: adam(ps, lr=0.01, weight_decay=1e-4),
                 lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-4, foreach=False)):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = make(params)
        for step in range(5):
            for i, prm in enumerate(params):
                prm.grad = torch.sin(prm.detach() * (step + i + 1))
            opt.step()
        results.append(params)
    for fused, plain in zip(*results):
        torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-5)
