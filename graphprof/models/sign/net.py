"""``sign``'s network (:class:`SIGNNet`): one linear layer per precomputed block, concatenated, then an MLP head.
The aggregates it reads are :mod:`graphprof.models.sign.blocks`; the model that fits it, :mod:`graphprof.models.sign`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SIGNNet(nn.Module):
    """One linear layer per block (dense part: ``nn.Linear``; sparse bag of items: ``nn.EmbeddingBag``, which is a
    linear layer on the sparse bag), ReLU and dropout, the blocks' outputs concatenated, then a two-layer head;
    with ``wide``, each bag also has a linear term straight to the logits (wide & deep).

    Args:
        dense_dims: input width of each block's dense part. sparse: whether each block has a bag of items.
        n_items: columns of the bags. hidden: width of every block and of the head. out: classes.
        dropout: on the block outputs and in the head. item_dropout: share of a bag's entries dropped in training.

    Shapes: ``dense[b]`` ``[batch, dense_dims[b]]``; ``bags[b]`` ``(indices [nnz], offsets [batch], weights
    [nnz])`` or ``None``; returns logits ``[batch, out]`` and block outputs ``[batch, hidden * n_blocks]``.
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
        self.head = nn.Sequential(nn.Linear(hidden * len(dense_dims), hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, out))

    def blocks(self, dense: list[torch.Tensor], bags: list[tuple | None]) -> torch.Tensor:
        """The concatenated block outputs ``[batch, hidden * n_blocks]``."""
        outs = []
        for b, (lin, x) in enumerate(zip(self.dense, dense)):
            h = lin(x)
            if bags[b] is not None:
                idx, offsets, weights = bags[b]
                weights = F.dropout(weights, self.item_dropout, self.training)
                h = h + self.bags[str(b)](idx, offsets, per_sample_weights=weights)
            outs.append(F.dropout(F.relu(h), self.dropout, self.training))
        return torch.cat(outs, dim=1)

    def forward(self, dense: list[torch.Tensor], bags: list[tuple | None]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.blocks(dense, bags)
        logits = self.head(emb)
        for b, lin in self.wide.items():
            idx, offsets, weights = bags[int(b)]
            logits = logits + lin(idx, offsets, per_sample_weights=weights)
        return logits, emb
