"""How far the features moved since the models were trained: the population stability index (PSI).

The reference is the feature distribution the models were trained on: ``train`` writes it
(``features/drift_reference.json``: per feature, its decile edges and each bin's share of users, and the number
of users), and an update that finds none takes the features as they are before its batch. After a batch, each
feature's PSI is ``sum over bins (p - q) ln(p / q)`` (``q`` the reference shares, ``p`` today's; shares floored
at 1e-4), a group's PSI the mean over its features. The usual reading: below 0.1 stable, 0.1-0.2 moving, above
0.2 shifted. A retrain is advised when a group's PSI exceeds 0.2 or the users added since the reference reach
10% of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphprof import workdir

REFERENCE = "features/drift_reference.json"
BINS = 10
FLOOR = 1e-4
PSI_RETRAIN = 0.2
ADDED_RETRAIN = 0.1
SAMPLE = 200_000  # users the shares are measured on (a seeded uniform sample beyond this many)


def _sample(matrix: np.ndarray) -> np.ndarray:
    """At most :data:`SAMPLE` rows, drawn uniformly with a fixed seed: a share of a bin is measured to within
    a fraction of a percent by that many users, at a cost that does not grow with the shop."""
    if len(matrix) <= SAMPLE:
        return matrix
    return matrix[np.sort(np.random.default_rng(0).choice(len(matrix), SAMPLE, replace=False))]


def reference(matrix: np.ndarray, columns: list[str]) -> dict:
    """Per feature: inner decile edges (unique) and the share of users in each bin (on :func:`_sample`)."""
    n, matrix = len(matrix), _sample(matrix)
    feats = {}
    for j, name in enumerate(columns):
        x = matrix[:, j]
        x = x[np.isfinite(x)]
        edges = np.unique(np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1])) if len(x) else np.zeros(0)
        feats[name] = {"edges": edges.tolist(), "shares": _shares(x, edges).tolist()}
    return {"users": int(n), "features": feats}


def _shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def write_reference(root: Path, matrix: np.ndarray, columns: list[str], into: Path | None = None) -> dict:
    ref = reference(matrix, columns)
    workdir.write_json(Path(into or root) / REFERENCE, ref)
    return ref


def load_reference(root: Path) -> dict | None:
    return workdir.load_json_if_any(Path(root) / REFERENCE)


def psi(ref: dict, matrix: np.ndarray, columns: list[str], groups: dict[str, list[str]]) -> dict:
    """PSI per feature group (and the worst feature of each), the share of users added since the reference,
    and whether a retrain is advised (see the module docstring)."""
    n, matrix = len(matrix), _sample(matrix)
    per = {}
    for j, name in enumerate(columns):
        r = ref["features"].get(name)
        if r is None:
            continue
        x = matrix[:, j]
        p = np.maximum(_shares(x[np.isfinite(x)], np.asarray(r["edges"], dtype=np.float64)), FLOOR)
        q = np.maximum(np.asarray(r["shares"], dtype=np.float64), FLOOR)
        per[name] = float(np.sum((p - q) * np.log(p / q)))
    out_groups = {}
    for g, cols in groups.items():
        vals = {c: per[c] for c in cols if c in per}
        if vals:
            worst = max(vals, key=vals.get)
            out_groups[g] = {"psi": float(np.mean(list(vals.values()))), "worst_feature": worst,
                             "worst_psi": vals[worst]}
    added = (n - ref["users"]) / max(ref["users"], 1)
    reasons = [f"{g} features moved (PSI {v['psi']:.2f} > {PSI_RETRAIN})" for g, v in out_groups.items()
               if v["psi"] > PSI_RETRAIN]
    if added >= ADDED_RETRAIN:
        reasons.append(f"{added:.0%} more users than when the models were trained")
    return {"groups": out_groups, "users_added_share": float(added), "retrain_advised": bool(reasons),
            "reasons": reasons}
