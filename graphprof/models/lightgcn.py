"""``lightgcn``: user and item embeddings for recommenders, learned from the purchase and friendship graph.

LightGCN (He et al., SIGIR 2020): every user and item starts with a free vector; a layer averages the vectors
of a node's neighbours with symmetric normalisation, and the final embedding is the mean of layers 0..L. Here the
graph holds purchases (user–item) and, with ``social_weight > 0``, friendships (user–user), so friends' tastes
shape a user's vector (a social LightGCN). Trained with the BPR loss (a bought item must score above a random
one) on mini-batches of purchase edges; one held-out purchase per user (users with 2+ items) picks the epoch
by validation recall@20. Propagation is one sparse matrix product per layer (``torch.sparse.mm``), so an
epoch costs a few sparse products, not a Python loop over edges.

Shapes: users ``[num_users, dim]`` and items ``[num_items, dim]``; ``score(u, i) = <user[u], item[i]>``.
Saved as safetensors + JSON (no pickle).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import BUYS, FRIEND, ProfileGraph
from graphprof.models.ops import adam
from graphprof.runtime import progress

log = logging.getLogger("graphprof")
MAX_STEPS = 8


@dataclass
class LightGCNConfig:
    """Hyper-parameters (stored in ``config.json`` beside the weights)."""

    dim: int = 64
    layers: int = 3
    social_weight: float = 1.0
    lr: float = 0.01
    l2: float = 1e-4
    epochs: int = 60
    batch_size: int = 4096
    eval_every: int = 5
    patience: int = 3  # evaluations without a better validation recall before stopping


@dataclass
class LightGCN:
    """A fitted LightGCN: ``users`` ``[num_users, dim]`` and ``items`` ``[num_items, dim]`` (float32)."""

    users: np.ndarray
    items: np.ndarray
    config: LightGCNConfig
    seed: int
    info: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        workdir.write_safetensors(path / workdir.MODEL_WEIGHTS, {"users": torch.from_numpy(self.users),
                                                                 "items": torch.from_numpy(self.items)})
        workdir.write_json(path / workdir.MODEL_META, {"model": "lightgcn", "seed": self.seed,
                                                 "config": self.config.__dict__, "info": self.info})

    @classmethod
    def load(cls, path: str | Path) -> LightGCN:
        path = Path(path)
        hint = "run 'graphprof export-embeddings --model lightgcn' to train it"
        meta = workdir.read_json(path / workdir.MODEL_META, missing=hint)
        if meta.get("model") != "lightgcn":
            raise ArtifactError(f"{path}/model.json: model must be 'lightgcn'. Got {meta.get('model')!r} instead")
        arrays = workdir.read_safetensors(path / workdir.MODEL_WEIGHTS, missing=hint)
        return cls(users=arrays["users"].numpy(), items=arrays["items"].numpy(),
                   config=LightGCNConfig(**meta["config"]), seed=meta["seed"], info=meta.get("info", {}))


def _norm_adjacency(n_users: int, n_items: int, buys: np.ndarray, friends: np.ndarray | None,
                    social_weight: float) -> torch.Tensor:
    """Symmetric-normalised adjacency ``D^-1/2 A D^-1/2`` over users then items, as a sparse CSR tensor."""
    import scipy.sparse as sp

    n = n_users + n_items
    rows = [buys[0], buys[1] + n_users]
    cols = [buys[1] + n_users, buys[0]]
    vals = [np.ones(buys.shape[1] * 2)]
    if friends is not None and friends.shape[1] and social_weight > 0:
        rows.append(friends[0])  # friend edges are stored in both directions already
        cols.append(friends[1])
        vals.append(np.full(friends.shape[1], social_weight))
    vals = np.concatenate([vals[0]] + vals[1:])
    a = sp.csr_matrix((vals, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    a = (sp.diags(inv) @ a @ sp.diags(inv)).tocsr().astype(np.float32)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products with a dense matrix are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(a.indptr.astype(np.int64)),
                                       torch.from_numpy(a.indices.astype(np.int64)),
                                       torch.from_numpy(a.data), size=(n, n))


class _SymmetricSpMM(torch.autograd.Function):
    """``adj @ x`` for a symmetric sparse ``adj``: the gradient is ``adj @ grad`` too. torch's own backward for a
    CSR product transposes the matrix on every call; a symmetric matrix is its own transpose, so this skips it."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


def _propagate(adj: torch.Tensor, emb: torch.Tensor, layers: int) -> torch.Tensor:
    out, h = emb, emb
    for _ in range(layers):
        h = _SymmetricSpMM.apply(adj, h)
        out = out + h
    return out / (layers + 1)


def _holdout(buys: np.ndarray, n_users: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random purchase edge per user with 2+ items goes to validation. Returns (train_mask, val_idx)."""
    order = np.lexsort((rng.random(buys.shape[1]), buys[0]))
    users_sorted = buys[0][order]
    first = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    counts = np.diff(np.r_[first, len(order)])
    val = order[first[counts >= 2]]
    mask = np.ones(buys.shape[1], dtype=bool)
    mask[val] = False
    return mask, val


def recall_at_k(users: np.ndarray, items: np.ndarray, seen: np.ndarray, truth: np.ndarray, k: int = 20,
                batch: int = 2048) -> float:
    """Mean recall@k of one held-out item per user (``truth[u]``, -1 = none), excluding ``seen`` pairs
    (``[2, E]`` user, item) from the ranking. Vectorised per batch of users."""
    import scipy.sparse as sp

    who = np.flatnonzero(truth >= 0)
    if len(who) == 0:
        return float("nan")
    seen_m = sp.csr_matrix((np.ones(seen.shape[1], dtype=np.float32), (seen[0], seen[1])),
                           shape=(len(users), len(items)))
    hits = 0
    for s in range(0, len(who), batch):
        u = who[s:s + batch]
        scores = users[u] @ items.T
        scores[seen_m[u].nonzero()] = -np.inf
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        hits += int((top == truth[u][:, None]).any(axis=1).sum())
    return hits / len(who)


def fit_lightgcn(graph: ProfileGraph, config: LightGCNConfig | None = None, seed: int = 0) -> LightGCN:
    """Train LightGCN on the graph's purchases (and friendships, weighted by ``config.social_weight``).

    Raises:
        ConfigError: the graph has no purchase edges, or a hyper-parameter is out of range.
    """
    cfg = config or LightGCNConfig()
    if cfg.dim < 1 or cfg.layers < 0 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"lightgcn: dim, epochs and batch_size must be >= 1 and layers >= 0. Got {cfg} instead")
    n_users, n_items = graph.num_users, len(graph.item_ids)
    buys = graph.edge(BUYS)
    if buys.shape[1] == 0:
        raise ConfigError("lightgcn: the graph must have purchases to learn from. Got none")
    friends = graph.edge(FRIEND) if FRIEND in graph.edge_types else None
    rng = np.random.default_rng(seed)
    train_mask, val_idx = _holdout(buys, n_users, rng)
    train_buys = buys[:, train_mask]
    truth = np.full(n_users, -1, dtype=np.int64)
    truth[buys[0, val_idx]] = buys[1, val_idx]
    adj = _norm_adjacency(n_users, n_items, train_buys, friends, cfg.social_weight)

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.Parameter(torch.randn(n_users + n_items, cfg.dim, generator=gen) * 0.1)
    opt = adam([emb], lr=cfg.lr)
    # at most MAX_STEPS propagations per epoch: each costs a full sparse product, so on CPU large batches win
    batch_size = max(cfg.batch_size, -(-train_buys.shape[1] // MAX_STEPS))
    pos_u = torch.from_numpy(train_buys[0])
    pos_i = torch.from_numpy(train_buys[1]) + n_users
    best = (-1.0, None, 0)
    bad, history, t0 = 0, [], time.perf_counter()
    with progress.bar(total=cfg.epochs, desc="lightgcn", unit="epoch", leave=False) as shown:
        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(len(pos_u), generator=gen)
            total = 0.0
            for s in range(0, len(perm), batch_size):
                b = perm[s:s + batch_size]
                u, i = pos_u[b], pos_i[b]
                j = torch.randint(0, n_items, (len(b),), generator=gen) + n_users
                out = _propagate(adj, emb, cfg.layers)
                x_ui = (out[u] * out[i]).sum(1)
                x_uj = (out[u] * out[j]).sum(1)
                reg = (emb[u].pow(2).sum() + emb[i].pow(2).sum() + emb[j].pow(2).sum()) / len(b)
                loss = -torch.nn.functional.logsigmoid(x_ui - x_uj).mean() + cfg.l2 * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            shown.update()
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                with torch.no_grad():
                    out = _propagate(adj, emb, cfg.layers).numpy()
                rec = recall_at_k(out[:n_users], out[n_users:], train_buys, truth) if len(val_idx) else float("nan")
                history.append({"epoch": epoch, "loss": total / len(perm), "val_recall@20": rec})
                shown.set_postfix({"val_recall@20": f"{rec:.4f}"}, refresh=False)
                log.info("lightgcn epoch %d: loss %.4f, val recall@20 %.4f", epoch, total / len(perm), rec)
                if not np.isfinite(rec) or rec > best[0]:
                    best, bad = (rec if np.isfinite(rec) else best[0], out.copy(), epoch), 0
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        break
    out = best[1]
    info = {"batch_size": int(batch_size), "best_epoch": best[2],
            "val_recall@20": best[0] if len(val_idx) else None, "history": history,
            "seconds": time.perf_counter() - t0, "num_val_users": int(len(val_idx))}
    return LightGCN(users=np.ascontiguousarray(out[:n_users], dtype=np.float32),
                    items=np.ascontiguousarray(out[n_users:], dtype=np.float32), config=cfg, seed=seed, info=info)
