"""The training primitives every torch model here shares, chosen for CPU speed.

- :func:`adam`: ``torch.optim.Adam`` with its fused CPU kernel (one vectorised pass over each parameter). The
  single-tensor loop that is torch's CPU default spent most of a ``sign`` step on its ``[n_items, hidden]`` item
  tables.
- :func:`dropout`: inverted dropout from 16 random bits an entry, faster on CPU than
  ``F.dropout``'s Bernoulli sampling, drawn from torch's global
  generator like it (so ``torch.manual_seed`` fixes it).
"""

from __future__ import annotations

import torch


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam (L2 ``weight_decay`` as ``torch.optim.Adam``'s), fused."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each entry of ``x`` with probability ``p`` and scale the rest by the inverse of the keep rate in
    training; ``x`` itself otherwise.

    Each entry's draw is 16 random bits (four entries per 64-bit draw of torch's global generator, cheaper on
    CPU than a float draw each), so ``p`` is taken to the nearest multiple of 1/65536."""
    if not training or p <= 0.0:
        return x
    cut = round(p * 65536)
    if cut >= 65536:
        return torch.zeros_like(x)
    if cut == 0:
        return x
    n = x.numel()
    bits = torch.randint(-2**63, 2**63 - 1, (-(-n // 4),), dtype=torch.int64).view(torch.int16)[:n]
    keep = (bits >= cut - 32768).view(x.shape).to(x.dtype)
    return x * keep.mul_(65536 / (65536 - cut))


class Dropout(torch.nn.Module):
    """:func:`dropout` as a module (for ``nn.Sequential``); no parameters, so saved weights do not change."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
