"""Targets, seeded stratified splits, and honest metrics (accuracy, macro-F1, AUC) summarised over seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from graphprof.errors import ConfigError

MIN_CLASS_SIZE = 10   # a class needs this many labelled users to appear in train, validation and test
MIN_LABELS = 30       # a column needs this many labelled users to be a default target
MAX_CLASSES = 50      # more distinct values than this is not a categorical column
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece", "brier")


@dataclass
class Target:
    """Labels of one target column, in graph user order.

    Attributes:
        name: the column.
        y: int array ``[num_users]``: class index, or -1 for unknown or dropped labels.
        classes: class names; ``y == j`` means ``classes[j]``.
        dropped: classes too small to split -> how many users had them.
    """

    name: str
    y: np.ndarray
    classes: list[str]
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.y >= 0)

    def majority_rate(self) -> float:
        counts = np.bincount(self.y[self.y >= 0], minlength=len(self.classes))
        return float(counts.max() / max(counts.sum(), 1))


def candidate_targets(users: pd.DataFrame | None) -> list[str]:
    """Columns of the users table usable as default targets: categorical (2..50 values) with enough labels
    in at least two classes of :data:`MIN_CLASS_SIZE`."""
    if users is None:
        return []
    from graphprof.ingest.schema import is_pii_column

    out = []
    for col in users.columns:
        if col in ("user_id", "__row__") or is_pii_column(col):  # kept personal data is never a default target
            continue
        counts = users[col].dropna().value_counts()
        if 2 <= len(counts) <= MAX_CLASSES and counts.sum() >= MIN_LABELS and (counts >= MIN_CLASS_SIZE).sum() >= 2:
            out.append(col)
    return out


def make_target(users: pd.DataFrame | None, user_ids: np.ndarray, name: str,
                min_class_size: int = MIN_CLASS_SIZE) -> Target:
    """Labels of column ``name`` aligned to ``user_ids``; classes with fewer than ``min_class_size`` labelled
    users are dropped (reported in ``Target.dropped``).

    Raises:
        ConfigError: the column does not exist, has too many values, or fewer than two usable classes.
    """
    cols = [c for c in (users.columns if users is not None else []) if c not in ("user_id", "__row__")]
    if users is None or name not in cols:
        raise ConfigError(f"--target must be a column of the users table ({', '.join(cols) or 'no users table'}). "
                          f"Got {name!r} instead")
    labels = users.set_index("user_id")[name].dropna().astype(str)
    counts = labels.value_counts()
    if len(counts) > MAX_CLASSES:
        raise ConfigError(f"--target {name}: must be categorical (at most {MAX_CLASSES} values). "
                          f"Got {len(counts)} distinct values instead")
    keep = sorted(counts[counts >= min_class_size].index)
    dropped = {str(c): int(n) for c, n in counts[counts < min_class_size].items()}
    if len(keep) < 2:
        raise ConfigError(f"--target {name}: needs at least two classes with {min_class_size}+ labelled users. "
                          f"Got { {str(k): int(v) for k, v in counts.items()} } instead")
    y = _aligned_codes(labels, {c: j for j, c in enumerate(keep)}, user_ids)
    return Target(name=name, y=y, classes=keep, dropped=dropped)


def ranked_target(name: str, labels: pd.Series, user_ids: np.ndarray, min_class_size: int = MIN_CLASS_SIZE,
                  max_classes: int = MAX_CLASSES) -> Target:
    """Labels that may have many classes (detected communities: ``labels`` indexed by user id, integer
    community numbers). Unlike :func:`make_target`, too many classes is not an error: the largest
    ``max_classes`` classes with ``min_class_size``+ users are kept (ties: lower label first) and every other
    class is dropped and reported in ``Target.dropped``. Kept classes are ordered by label.

    Raises:
        ConfigError: fewer than two classes of ``min_class_size``+ users.
    """
    labels = labels.dropna()
    counts = labels.value_counts()
    ranked = sorted(counts.index, key=lambda c: (-counts[c], c))
    keep = sorted(c for c in ranked[:max_classes] if counts[c] >= min_class_size)
    kept = set(keep)
    dropped = {str(c): int(counts[c]) for c in ranked if c not in kept}
    if len(keep) < 2:
        top = {str(c): int(counts[c]) for c in ranked[:5]}
        raise ConfigError(f"--target {name}: needs at least two classes with {min_class_size}+ users. "
                          f"Got {len(counts)} classes, the largest {top}, instead")
    y = _aligned_codes(labels.rename(index=str), {c: j for j, c in enumerate(keep)}, user_ids)
    return Target(name=name, y=y, classes=[str(c) for c in keep], dropped=dropped)


def _aligned_codes(labels: pd.Series, code: dict, user_ids: np.ndarray) -> np.ndarray:
    """The class index of each of ``user_ids`` from ``labels`` (indexed by user id) and ``code`` (label ->
    class index); -1 where a user has no label or its class is not kept. Looked up by position (one hash of the
    labelled ids): mapping an object Series of every user costs GiBs at millions of users."""
    per_label = labels.map(code).fillna(-1).to_numpy(np.int64)
    at = labels.index.get_indexer(pd.Index(np.asarray(user_ids, dtype=object)))
    return np.where(at >= 0, per_label[at], -1).astype(np.int64)


def split(target: Target, seed: int, val: float = 0.2, test: float = 0.2) -> dict[str, np.ndarray]:
    """Seeded stratified split of the labelled users into ``train`` / ``val`` / ``test`` (indices into the
    graph's users). The same seed gives the same split for every model."""
    idx = target.labelled
    y = target.y[idx]
    # whole numbers of users (as scikit-learn rounds a fraction: up), so val / (1 - test) float error cannot
    # add a user to validation
    n_test = math.ceil(test * len(idx) - 1e-9)
    n_val = math.ceil(val * len(idx) - 1e-9)
    from sklearn.model_selection import train_test_split  # here: predict reads this module, never splits

    rest, test_idx = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    y_rest = target.y[rest]
    train_idx, val_idx = train_test_split(rest, test_size=n_val, stratify=y_rest, random_state=seed)
    return {"train": np.sort(train_idx), "val": np.sort(val_idx), "test": np.sort(test_idx)}


def scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (the mean of the per-class recalls), macro-F1, AUC (one-vs-rest, macro, for
    more than two classes), expected calibration error (top class, :data:`~graphprof.models.calibration.ECE_BINS`
    bins) and Brier score of probabilities ``proba`` [n, n_classes] against class indices ``y_true`` [n]."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

    from graphprof.models.calibration import brier, ece

    n_classes = proba.shape[1]
    labels = np.arange(n_classes)
    pred = proba.argmax(axis=1)
    present = np.unique(y_true)  # balanced accuracy: the recalls of the classes the users have
    out = {"accuracy": float(accuracy_score(y_true, pred)),
           "balanced_accuracy": float(recall_score(y_true, pred, labels=present, average="macro", zero_division=0)),
           "macro_f1": float(f1_score(y_true, pred, average="macro", labels=labels, zero_division=0)),
           "ece": ece(y_true, proba), "brier": brier(y_true, proba)}
    try:
        if n_classes == 2:
            out["auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            out["auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                                             labels=np.arange(n_classes)))
    except ValueError:  # a class absent from y_true: AUC is undefined, say so rather than invent one
        out["auc"] = float("nan")
    return out


def summarize(per_seed: list[dict[str, float]]) -> dict[str, dict]:
    """``{metric: {"mean", "std", "values"}}`` over seeds (population std; NaN-aware)."""
    out = {}
    for m in METRICS:
        vals = np.array([r.get(m, float("nan")) for r in per_seed], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[m] = {"mean": float(finite.mean()) if len(finite) else None,
                  "std": float(finite.std()) if len(finite) else None,
                  "values": [None if not np.isfinite(v) else float(v) for v in vals]}
    return out


def pick_model(val_macro_f1: dict[str, dict | None], baseline: str = "lr") -> str:
    """The model to use for a target, from validation only: the best mean validation macro-F1 (ties: the
    baseline, then by name) among the baseline and the models that beat the baseline's validation macro-F1 by
    more than the seeds' spread (the larger of the two stds): where the graph does not clearly help on
    validation, the baseline stays. ``val_macro_f1[name]`` is ``{"mean", "std"}`` (a missing mean counts as 0, a
    missing std as 0, so with one seed any strict improvement counts)."""
    if not val_macro_f1:
        raise ValueError("pick_model needs at least one model")  # an invariant: callers check
    mean = {m: (v or {}).get("mean") or 0.0 for m, v in val_macro_f1.items()}
    std = {m: (v or {}).get("std") or 0.0 for m, v in val_macro_f1.items()}
    names = sorted(mean)
    if baseline in mean:  # candidates: the baseline and the models that beat it beyond the spread
        names = [m for m in names if m == baseline or mean[m] - mean[baseline] > max(std[m], std[baseline])]
    return max(names, key=lambda m: (mean[m], m == baseline))
