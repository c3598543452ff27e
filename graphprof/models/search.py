"""Grid search by successive halving over grid points that each train from their own random state (``sign``'s
blocks, width and dropout; ``sage``'s and ``gat``'s width and depth).

A grid point's training is an epoch iterator (:class:`GridRun`), advanced a round at a time from its own torch
random state, so the search may interleave the points in any order and each still trains exactly as it would
alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

#: epochs every surviving grid point trains in a round of the successive-halving search before the worse half
#: stops (a point that stops early by itself stops then), unless the model gives its own
ROUND_EPOCHS = 3


@dataclass
class GridRun:
    """One grid point's training: its net, its epoch iterator (``steps``), its own torch random state, and the
    best validation macro-F1 so far with its epoch and weights."""

    point: tuple
    net: torch.nn.Module
    rng: torch.Tensor
    steps: Iterator | None = None
    best_f1: float = -1.0
    best_epoch: int = -1
    best_state: dict | None = None
    history: list = field(default_factory=list)
    done: bool = False
    #: what a model keeps of the best epoch beside its weights (``sage``: its validation logits)
    best_extra: object = None

    def advance(self, epochs: int) -> None:
        """Train up to ``epochs`` more epochs from this point's own random state (nothing once done)."""
        if self.done:
            return
        torch.set_rng_state(self.rng)
        for _ in range(epochs):
            if next(self.steps, StopIteration) is StopIteration:
                self.done = True
                break
        self.rng = torch.get_rng_state()


def successive_halving(runs: list[GridRun], round_epochs: int = ROUND_EPOCHS) -> GridRun:
    """The grid searched by successive halving (Jamieson & Talwalkar 2016, as in Hyperband): every point trains
     ``round_epochs`` epochs, the better half by best validation macro-F1 so far goes on for another round,
    and so on until one is left, which trains to its early stop. A point's training is the same whether the
    search interleaves it or not (its own random state), so the winner's model is the one training it alone
    would give, and no pruned point ever scored above it (each round keeps the best, and a best only rises).
    Ties go to the earlier point of the grid."""
    alive = list(runs)
    while len(alive) > 1:
        for run in alive:
            run.advance(round_epochs)
        ranked = sorted(alive, key=lambda r: -r.best_f1)  # stable: ties keep the grid's order
        alive = sorted(ranked[:(len(alive) + 1) // 2], key=runs.index)
    winner = alive[0]
    while not winner.done:
        winner.advance(round_epochs)
    return winner
