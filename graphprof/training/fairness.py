"""The fairness audit of ``train --audit COL``: how a model's predictions on the test users differ between the
groups of a users-table column (gender, an age band) that the model never reads.

Per group: support, accuracy, selection rate, true- and false-positive rates; across groups, the
demographic-parity difference (the largest gap in selection rate) and the equalized-odds difference (the larger
of the largest gaps in true- and false-positive rate), with fairlearn's definitions and functions. A binary
target's positive class is its second class (sorted); a target of more classes is audited one class against the
rest for each class, and the class whose demographic-parity difference is the largest on average over the
seeds is shown, with both its differences (the class is named).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: a group needs this many test users in a split to be audited (smaller ones are counted apart)
MIN_GROUP = 5


def group_labels(users: pd.DataFrame | None, user_ids: np.ndarray, column: str) -> np.ndarray:
    """The audit column aligned to the graph's users, as strings (None where unknown)."""
    out = np.full(len(user_ids), None, dtype=object)
    if users is not None and column in users.columns:
        known = users[users[column].notna()]
        values = pd.Series(known[column].astype(str).to_numpy(), index=known["user_id"].astype(str).to_numpy())
        values = values[~values.index.duplicated()].reindex(pd.Index(np.asarray(user_ids).astype(str)))
        found = values.notna().to_numpy()
        out[found] = values.to_numpy(dtype=object)[found]
    return out


def audit(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, classes: list[str]) -> dict:
    """The audit of one split's test users: ``y`` and ``pred`` class indices, ``groups`` their group (None:
    unknown, left out). Returns ``{"groups": {g: {support, accuracy}}, "classes": {c: {"groups": {g:
    {selection_rate, tpr, fpr}}, "demographic_parity_difference", "equalized_odds_difference"}}, "positive",
    "unknown", "small_groups"}``: the rates one class against the rest, for the positive class of a binary
    target and for every class of a larger one."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    known = np.array([g is not None for g in groups], dtype=bool)
    sizes = pd.Series(groups[known]).value_counts()
    small = sorted(str(g) for g in sizes.index[sizes < MIN_GROUP])
    keep = known & ~np.isin(groups, small)
    y, pred, groups = y[keep], pred[keep], groups[keep].astype(str)
    names = sorted(set(groups))
    out = {"groups": {g: {"support": int((groups == g).sum()),
                          "accuracy": float((y[groups == g] == pred[groups == g]).mean())} for g in names},
           "classes": {}, "positive": classes[1] if len(classes) == 2 else None,
           "unknown": int((~known).sum()), "small_groups": small}
    if len(names) < 2:  # nothing to compare on this split
        return out
    for c in ([1] if len(classes) == 2 else range(len(classes))):
        yt, yp = (y == c).astype(int), (pred == c).astype(int)
        frame = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                     "fpr": false_positive_rate}, y_true=yt, y_pred=yp, sensitive_features=groups)
        out["classes"][classes[c]] = {
            "groups": {g: {k: float(frame.by_group.loc[g, k]) for k in ("selection_rate", "tpr", "fpr")}
                       for g in names},
            "demographic_parity_difference": float(demographic_parity_difference(yt, yp, sensitive_features=groups)),
            "equalized_odds_difference": float(equalized_odds_difference(yt, yp, sensitive_features=groups))}
    return out


def _ms(values) -> dict:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(a):
        return {"mean": None, "std": None, "values": []}
    return {"mean": float(a.mean()), "std": float(a.std()), "values": [float(v) for v in a]}


def summarize_audit(column: str, per_seed: list[dict]) -> dict:
    """Mean and std over the seeds (those with two groups or more to compare) of every group's figures and of
    the two differences. The class reported is
    a binary target's positive class, or the class whose demographic-parity difference is the largest on
    average; each difference ``beyond_spread`` where its mean exceeds its standard deviation over the seeds."""
    per_seed = [r for r in per_seed if r["classes"]] or per_seed[:1]  # splits with two groups or more to compare
    classes = list(per_seed[0]["classes"])
    mean_dp = {c: np.mean([r["classes"][c]["demographic_parity_difference"] for r in per_seed]) for c in classes}
    if not classes:
        return {"column": column, "class": None, "positive": per_seed[0]["positive"], "groups": {},
                "demographic_parity_difference": _ms([]), "equalized_odds_difference": _ms([]),
                "unknown": per_seed[0]["unknown"], "small_groups": per_seed[0]["small_groups"]}
    shown = per_seed[0]["positive"] if per_seed[0]["positive"] is not None else max(classes, key=mean_dp.get)
    groups = sorted(set().union(*(r["groups"] for r in per_seed)))
    by_group = {}
    for g in groups:
        by_group[g] = {k: _ms([r["groups"][g][k] for r in per_seed if g in r["groups"]])
                       for k in ("support", "accuracy")}
        by_group[g].update({k: _ms([r["classes"][shown]["groups"][g][k] for r in per_seed
                                    if g in r["classes"][shown]["groups"]]) for k in ("selection_rate", "tpr", "fpr")})
    diffs = {k: _ms([r["classes"][shown][k] for r in per_seed])
             for k in ("demographic_parity_difference", "equalized_odds_difference")}
    for d in diffs.values():
        d["beyond_spread"] = bool(len(d["values"]) > 1 and d["mean"] > d["std"])
    return {"column": column, "class": shown, "positive": per_seed[0]["positive"], "groups": by_group, **diffs,
            "unknown": per_seed[0]["unknown"],
            "small_groups": sorted(set().union(*(r["small_groups"] for r in per_seed)))}


def audit_lines(s: dict, model: str) -> list[str]:
    """The audit of ``model`` for the table ``train`` prints: one line per group, the differences, and a plain
    sentence where a difference exceeds the seeds' spread."""
    if s["class"] is None:
        return [f"audit by {s['column']} ({model}): fewer than two groups of {MIN_GROUP}+ test users with a known "
                f"{s['column']} on every split; nothing to compare"]
    what = (f"the positive class {s['class']}" if s["positive"] is not None else
            f"class {s['class']} against the rest (the class whose selection rate differs most)")
    lines = [f"audit by {s['column']} ({model}, test users, mean over seeds; rates of {what}):"]
    for g, m in s["groups"].items():
        rates = ", ".join(f"{label} {m[k]['mean']:.3f}" for k, label in
                          (("selection_rate", "selection rate"), ("tpr", "TPR"), ("fpr", "FPR"))
                          if m[k]["mean"] is not None)
        lines.append(f"  {g}: {m['support']['mean']:.0f} users, accuracy {m['accuracy']['mean']:.3f}, {rates}")
    dp, eo = s["demographic_parity_difference"], s["equalized_odds_difference"]
    lines.append(f"  demographic-parity difference {dp['mean']:.3f} ± {dp['std']:.3f}; equalized-odds difference "
                 f"{eo['mean']:.3f} ± {eo['std']:.3f}")
    for name, d in (("demographic-parity", dp), ("equalized-odds", eo)):
        if d["beyond_spread"]:
            lines.append(f"  the {name} difference ({d['mean']:.3f}) exceeds the seeds' spread ({d['std']:.3f}): "
                         f"the gap between the {s['column']} groups is not an accident of one split")
    if s["unknown"] or s["small_groups"]:
        lines.append(f"  left out: {s['unknown']} test users with no {s['column']}"
                     + (f"; groups under {MIN_GROUP} test users: {', '.join(s['small_groups'])}"
                        if s["small_groups"] else ""))
    return lines
