"""``sign``'s network (:class:`SIGNNet`): one linear layer per precomputed block, concatenated, then an MLP head.
The aggregates it reads are :mod:`graphprof.models.sign.blocks`; the model that fits it, :mod:`graphprof.models.sign`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from graphprof.models.ops import Dropout, dropout


class Bag(NamedTuple):
    """A batch's rows of a sparse bag of items, as ``EmbeddingBag`` reads them (``indices``, ``offsets``,
    ``weights``), and, for training, its transpose's structure: ``t_indptr`` ``[n_items + 1]`` and ``t_rows``
    (the batch rows of each item's entries) with ``t_order`` (where each transposed entry sits in ``weights``),
    and ``t_items``, the items the batch holds (ascending)."""

    indices: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    t_indptr: torch.Tensor | None = None
    t_rows: torch.Tensor | None = None
    t_order: torch.Tensor | None = None
    t_items: torch.Tensor | None = None


def make_bag(sub: sp.csr_matrix, transpose: bool) -> Bag:
    """``sub`` (a batch's rows ``[batch, n_items]``) as a :class:`Bag`; with ``transpose``, its transpose's
    structure too (scipy's linear-time CSR -> CSC conversion of the entries' positions)."""
    indices = torch.from_numpy(sub.indices.astype(np.int64))
    offsets = torch.from_numpy(sub.indptr[:-1].astype(np.int64))
    weights = torch.from_numpy(sub.data.astype(np.float32))
    if not transpose:
        return Bag(indices, offsets, weights)
    pos = sp.csr_matrix((np.arange(sub.nnz, dtype=np.int64), sub.indices, sub.indptr), shape=sub.shape).tocsc()
    items = np.flatnonzero(np.diff(pos.indptr))
    return Bag(indices, offsets, weights, torch.from_numpy(pos.indptr.astype(np.int64)),
               torch.from_numpy(pos.indices.astype(np.int64)), torch.from_numpy(pos.data), torch.from_numpy(items))


class _BagSum(torch.autograd.Function):
    """``EmbeddingBag``'s weighted sum (``out[r] = sum_j weights[j] * table[indices[j]]`` over row ``r``'s entries),
    with the table's gradient as the product ``Sᵀ @ grad`` (``S`` the batch's bag, its transpose built once per
    batch) on the batch's items' rows only: a row-sparse gradient (a sparse COO tensor with dense rows, as
    ``nn.EmbeddingBag(sparse=True)`` gives). ``EmbeddingBag``'s own dense backward sorts every index on every
    call; a dense ``[n_items, columns]`` gradient made each step is most of a step at millions of items."""

    @staticmethod
    def forward(ctx, table, bag: Bag, weights):
        ctx.save_for_backward(weights)
        ctx.bag, ctx.rows, ctx.shape = bag, len(bag.offsets), table.shape
        return F.embedding_bag(bag.indices, table, bag.offsets, mode="sum", per_sample_weights=weights)

    @staticmethod
    def backward(ctx, grad):
        (weights,) = ctx.saved_tensors
        bag = ctx.bag
        # row i of the gradient: the sum over item i's entries of weight * grad[batch row], as one
        # embedding_bag over the transpose's non-empty rows (a shorter pointer over the same entries)
        offsets = bag.t_indptr[bag.t_items]
        rows = F.embedding_bag(bag.t_rows, grad.contiguous(), offsets, mode="sum",
                               per_sample_weights=weights[bag.t_order])
        rows = torch.sparse_coo_tensor(bag.t_items[None], rows, size=ctx.shape, is_coalesced=True,
                                       check_invariants=False)  # built from the transpose: sorted, unique
        return rows, None, None


def bag_sum(table: torch.Tensor, bag: Bag, weights: torch.Tensor) -> torch.Tensor:
    """The bag's rows times ``table`` ``[batch, table columns]``, ``weights`` standing for ``bag.weights``."""
    if bag.t_indptr is None or not torch.is_grad_enabled():
        return F.embedding_bag(bag.indices, table, bag.offsets, mode="sum", per_sample_weights=weights)
    return _BagSum.apply(table, bag, weights)


class SIGNNet(nn.Module):
    """One linear layer per block (dense part: ``nn.Linear``; sparse bag of items: ``nn.EmbeddingBag``, which is a
    linear layer on the sparse bag), ReLU and dropout, the blocks' outputs concatenated, then a two-layer head;
    with ``wide``, each bag also has a linear term straight to the logits (wide & deep).

    Args:
        dense_dims: input width of each block's dense part. sparse: whether each block has a bag of items.
        n_items: columns of the bags. hidden: width of every block and of the head. out: classes.
        dropout: on the block outputs and in the head. item_dropout: share of a bag's entries dropped in training.

    Shapes: ``dense[b]`` ``[batch, dense_dims[b]]``; ``bags[b]`` a :class:`Bag` or ``None``; returns logits ``[batch, out]`` and block outputs ``[batch, hidden * n_blocks]``.
    """

    def __init__(self, dense_dims: list[int], sparse: list[bool], n_items: int, hidden: int, out: int,
                 dropout: float, item_dropout: float = 0.0, wide: bool = True):
        super().__init__()
        self.dropout = dropout
        self.item_dropout = item_dropout
        self.dense = nn.ModuleList([nn.Linear(d, hidden) for d in dense_dims])
        has_bag = [str(b) for b, has in enumerate(sparse) if has]
        self.bags = nn.ModuleDict({b: nn.EmbeddingBag(n_items, hidden, mode="sum") for b in has_bag})
        for bag in self.bags.values():  # a bag's row has unit L2 norm: its term has variance 1/3, order one
            nn.init.normal_(bag.weight, std=1.0 / np.sqrt(3.0))
        wide_bags = has_bag if wide else []
        self.wide = nn.ModuleDict({b: nn.EmbeddingBag(n_items, out, mode="sum") for b in wide_bags})
        for bag in self.wide.values():  # starts as no item preference at all
            nn.init.zeros_(bag.weight)
        self.head = nn.Sequential(nn.Linear(hidden * len(dense_dims), hidden), nn.ReLU(), Dropout(dropout),
                                  nn.Linear(hidden, out))

    def hold_item_grads(self) -> None:
        """Give each item table a zeroed gradient buffer. A table's gradient in training holds the batch's items'
        rows only (:class:`_BagSum`), which autograd adds into the held buffer in place: the same gradient as a
        dense one, without a fresh ``[n_items, columns]`` matrix each step (at millions of items, allocating and
        filling one costs most of a step). The optimiser must then zero the gradients, not drop them."""
        for m in (*self.bags.values(), *self.wide.values()):
            m.weight.grad = torch.zeros_like(m.weight)

    def blocks(self, dense: list[torch.Tensor], bags: list[tuple | None]) -> torch.Tensor:
        """The concatenated block outputs ``[batch, hidden * n_blocks]``."""
        outs = []
        for b, (lin, x) in enumerate(zip(self.dense, dense)):
            h = lin(x)
            bag = bags[b]
            if bag is not None:
                weights = dropout(bag.weights, self.item_dropout, self.training)
                h = h + bag_sum(self.bags[str(b)].weight, bag, weights)
            outs.append(dropout(F.relu(h), self.dropout, self.training))
        return torch.cat(outs, dim=1)

    def forward(self, dense: list[torch.Tensor], bags: list[tuple | None]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.blocks(dense, bags)
        logits = self.head(emb)
        for b, lin in self.wide.items():
            bag = bags[int(b)]
            logits = logits + bag_sum(lin.weight, bag, bag.weights)
        return logits, emb
