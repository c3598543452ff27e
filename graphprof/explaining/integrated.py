"""``sign``'s explanation, by Captum's integrated gradients (Sundararajan et al. 2017): the attributions of the
calibrated probability of the predicted class to the user's inputs, integrated along the straight path from a
baseline -- the average training user (``F`` at its training mean) with no items bought and no friends -- to
the user. They sum to ``p(user) - p(baseline)`` up to the integral's error, which is reported (``delta``).

Inputs attributed: every raw feature of the user, every item in the user's bag, and each neighbourhood block
(friends at 1 hop, friends of friends, co-purchasers). The 1-hop block is an average of the friends' rows, so
its attribution is split between the friends exactly by each friend's term in it (``a_j F_j`` for the features,
``a_j T_j`` for each item of the bag); the 2-hop and co-purchase blocks are reported whole. Where the model
blends with ``lr`` (:mod:`graphprof.models.blend`), the blend is part of the function explained: ``lr``'s logit
is computed in torch from the same raw features and bag.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

#: steps of the integral (Captum's Gauss-Legendre rule): the reported delta is its error
N_STEPS = 64


def sign_attributions(model, inputs, u: int, predicted: int) -> dict:
    """Attributions of ``model``'s calibrated probability of class ``predicted`` for user ``u`` (graph index):
    ``{"features": [n_features], "items": (item indices, attributions), "blocks": {name: total},
    "friends": (friend indices, attributions), "p", "p_baseline", "delta"}``."""
    from captum.attr import IntegratedGradients

    from graphprof.models.bag import row_scale
    from graphprof.models.base import feature_rows
    from graphprof.models.sign.blocks import CLIP, standardize
    from graphprof.models.sign.net import Bag

    rows = np.array([u])
    raw = model._raw_blocks_rows(inputs, rows)
    names, (dense, bags) = raw[0], model._blocks(inputs, raw)
    x = feature_rows(inputs.features, rows).astype(np.float32)
    f_mean = torch.tensor(model.f_mean_, dtype=torch.float32)
    f_std = torch.tensor(model.f_std_, dtype=torch.float32)
    bag_idx = [None if b is None else torch.from_numpy(b.indices.astype(np.int64)) for b in bags]
    bag_w = [torch.from_numpy(b.data.astype(np.float32))[None, :] for b in bags if b is not None]
    with_bag = [b for b, m in enumerate(bags) if m is not None]
    rest = [d for d in dense[1:]]
    rest_base = [torch.tensor(standardize(np.zeros((1, d.shape[1])), *model.block_stats_[b]), dtype=torch.float32)
                 for b, d in enumerate(rest)]
    lr = _lr_torch(model, bags[0]) if getattr(model, "blend_", None) else None
    temperature = model.temperature
    net = model.net_.eval()

    def forward(xb, *parts):
        n = xb.shape[0]
        f = torch.clamp((xb - f_mean) / f_std, -CLIP, CLIP)
        dense_in = [f, *parts[:len(rest)]]
        weights = dict(zip(with_bag, parts[len(rest):]))
        bag_in = []
        for b, idx in enumerate(bag_idx):
            if idx is None:
                bag_in.append(None)
                continue
            k = len(idx)
            bag_in.append(Bag(idx.repeat(n), torch.arange(n) * k, weights[b].reshape(-1)))
        logits, _ = net(dense_in, bag_in)
        p = torch.softmax(logits.double(), dim=1)
        if lr is not None:
            p = model.blend_["weight"] * p + (1.0 - model.blend_["weight"]) * lr(xb, weights.get(0))
        if temperature != 1.0:
            p = torch.softmax(torch.log(p.clamp_min(1e-300)) / temperature, dim=1)
        return p[:, predicted]

    given = (torch.from_numpy(x), *rest, *bag_w)
    base = (f_mean[None, :], *rest_base, *[torch.zeros_like(w) for w in bag_w])
    attr, delta = IntegratedGradients(forward).attribute(given, baselines=base, n_steps=N_STEPS,
                                                         return_convergence_delta=True)
    with torch.no_grad():
        p, p0 = float(forward(*given)[0]), float(forward(*base)[0])
    attr = [a.detach().double().numpy()[0] for a in attr]
    out = {"features": attr[0], "items": (bags[0].indices, attr[1 + len(rest)]) if 0 in with_bag else
           (np.zeros(0, dtype=np.int64), np.zeros(0)), "blocks": {}, "friends": None, "p": p, "p_baseline": p0,
           "delta": float(delta.detach().abs().max())}
    bag_attr = dict(zip(with_bag, attr[1 + len(rest):]))
    for b, name in enumerate(names[1:], start=1):
        out["blocks"][name] = float(attr[b].sum() + (bag_attr[b].sum() if b in bag_attr else 0.0))
    if "social_1" in names:
        b = names.index("social_1")
        adj = row_scale(inputs.graph.social_adjacency()[rows] if not hasattr(inputs.graph, "adjacency_rows")
                        else inputs.graph.adjacency_rows(rows), "l1")
        friends, a = adj.indices, adj.data
        if len(friends):
            f_friends = standardize(feature_rows(inputs.features, friends), model.f_mean_, model.f_std_)
            agg = raw[1][b][0]                                        # the block before its standardisation
            per_f = np.divide(attr[b], agg, out=np.zeros_like(attr[b]), where=np.abs(agg) > 1e-12)
            share = (a[:, None] * f_friends) @ per_f                  # a_j F_j . (attribution / aggregate)
            if b in bag_attr:
                t = model._bag_rows(inputs, friends).tocsc()[:, bags[b].indices].toarray()   # [friends, kept]
                v = a @ t
                per_i = np.divide(bag_attr[b], v, out=np.zeros_like(v), where=v > 1e-12)
                share = share + (a[:, None] * t) @ per_i
            out["friends"] = (friends, share)
    return out


def _lr_torch(model, own_bag):
    """The blend's ``lr`` as a torch function of the raw features and ``sign``'s own-bag weights (the bags are
    the same TF-IDF rows where their idf agree; else each entry is rescaled to ``lr``'s)."""
    a = {k: torch.tensor(v, dtype=torch.float64) for k, v in model.lr_.arrays_.items()}
    idx = torch.from_numpy(own_bag.indices.astype(np.int64)) if own_bag is not None else None
    ratio = None
    if idx is not None and "idf" in model.lr_.arrays_:
        counts_like = sp.csr_matrix(own_bag)  # same structure; the rescaling only needs the values' ratio
        lr_row = _tfidf_like(counts_like, model.idf_, model.lr_.arrays_["idf"])
        ratio = torch.from_numpy(lr_row)

    def lr(xb, own_w):
        z = ((xb.double() - a["scale_mean"]) / a["scale_scale"] - a["pca_mean"]) @ a["pca_components"].T
        logits = z @ a["coef"].T + a["intercept"]
        if ratio is not None and own_w is not None:
            logits = logits + (own_w.double() * ratio) @ a["bag_coef"][:, idx].T
        if logits.shape[1] == 1:
            p1 = torch.sigmoid(logits[:, 0])
            return torch.stack([1.0 - p1, p1], dim=1)
        return torch.softmax(logits, dim=1)

    return lr


def _tfidf_like(row: sp.csr_matrix, idf_from: np.ndarray, idf_to: np.ndarray) -> np.ndarray:
    """Per entry of a TF-IDF row built with ``idf_from``, the factor that turns it into the row built with
    ``idf_to`` (1 where the two idf agree)."""
    cols = row.indices
    scaled = row.data * (idf_to[cols] / idf_from[cols])
    norm_from, norm_to = np.linalg.norm(row.data), np.linalg.norm(scaled)
    if norm_to == 0:
        return np.ones(len(cols))
    return (idf_to[cols] / idf_from[cols]) * (norm_from / norm_to)
