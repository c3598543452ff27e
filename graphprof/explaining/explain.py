"""``graphprof explain USER_ID``: why each target's picked model gave this user their profile.

``lr`` is explained exactly (:mod:`graphprof.explaining.linear`: contributions to the predicted class's logit,
which with the constant sum to it); ``sign`` by integrated gradients (:mod:`graphprof.explaining.integrated`:
contributions to the calibrated probability of the predicted class, which sum to its distance from the
baseline user's). ``sage`` and ``gat`` are not explained: the message says so and how to get a model that is.
Reads only; writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphprof import workdir
from graphprof.errors import ConfigError

METHODS = {"lr": "exact: coefficient × value of every term of the logistic regression (logit)",
           "sign": "integrated gradients (Captum), from the average training user with no items and no friends "
                   "(probability)"}


@dataclass
class ExplainResult:
    """Per target: the model, the prediction, the method, the unit, and the contributions (largest first)."""

    user_id: str
    targets: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"user_id": self.user_id, "targets": self.targets}

    def summary_lines(self) -> list[str]:
        lines = [f"user {self.user_id}"]
        for name, t in self.targets.items():
            lines.append(f"{name}: {t['predicted']} (p = {t['probability']:.3f}) by {t['model']}; "
                         f"{t['method']}")
            lines.append(f"  {t['unit']}: {t['explained']}")
            for c in t["contributions"]:
                value = "" if c["value"] is None else f" = {c['value']:.4g}"
                lines.append(f"  {c['contribution']:+.4f}  {c['share']:5.1%}  {c['kind']:<8} {c['name']}{value}")
            if t["rest"]["count"]:
                lines.append(f"  {t['rest']['contribution']:+.4f}  {t['rest']['share']:5.1%}  "
                             f"{t['rest']['count']} smaller terms")
        return lines


def explain(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, user_id: str = "", target: str | None = None,
            top: int = 10) -> ExplainResult:
    """Explain the profile of ``user_id`` (a user of the graph) for ``target`` (default: every trained target)
    by its picked model; ``top`` contributions each, largest in size first.

    Raises:
        ArtifactError: no graph or no trained model (run ``build-graph`` / ``train`` first).
        ConfigError: an unknown user or target, ``top`` < 1, or a picked model that cannot be explained.
    """
    from graphprof.features import load_features
    from graphprof.graph import load_graph
    from graphprof.models import ModelInput, get_model
    from graphprof.prediction.predict import picked_model, trained_targets

    root = Path(workdir_path)
    if top < 1:
        raise ConfigError(f"--top must be >= 1. Got {top} instead")
    workdir.require_built(root)
    trained = trained_targets(root)
    if not trained:
        from graphprof.errors import ArtifactError

        raise ArtifactError(f"{root}/: no trained model; run 'graphprof train' first")
    if target is not None and target not in trained:
        raise ConfigError(f"--target must be a trained target ({', '.join(trained)}). Got {target!r} instead")
    graph = load_graph(root)
    where = np.flatnonzero(graph.user_ids.astype(str) == str(user_id))
    if not len(where):
        raise ConfigError(f"USER_ID must be a user of the graph ({len(graph.user_ids):,} users). Got {user_id!r} "
                          "instead (a user the graph has never seen: 'graphprof predict' profiles them)")
    u = int(where[0])
    inputs = ModelInput(graph=graph, features=load_features(root))
    result = ExplainResult(user_id=str(user_id))
    for name in [target] if target else trained:
        picked = picked_model(root, name)
        if picked not in METHODS:
            raise ConfigError(f"{name}: the picked model is {picked}, which explain does not support (it explains "
                              f"{' and '.join(METHODS)}); train {name} with --models lr,sign to get one that is")
        config = workdir.read_json(workdir.model_file(root, name, picked, workdir.MODEL_CONFIG), missing="")
        model = get_model(picked).load(workdir.run_dir(root, name, picked, config["predictions_from_seed"]))
        result.targets[name] = _explain_one(model, inputs, u, top)
    return result


def _explain_one(model, inputs, u: int, top: int) -> dict:
    proba = model.proba(inputs, rows=np.array([u]))[0]
    predicted = int(proba.argmax())
    feature_names = list(inputs.features.frame.columns)
    x = inputs.features.frame.to_numpy(np.float64)[u]
    item_ids = inputs.graph.item_ids
    counts = inputs.graph.purchase_matrix("count").tocsr()[u]
    bought = dict(zip(counts.indices.tolist(), counts.data.tolist()))
    terms = []
    if model.name == "lr":
        from graphprof.explaining.linear import logit, lr_contributions

        bag = model._bag_rows(inputs, np.array([u]))
        feats, items, constant = lr_contributions(model, x, bag, predicted)
        terms += [("feature", f, float(x[j]), float(c)) for j, (f, c) in enumerate(zip(feature_names, feats))]
        if bag is not None:
            terms += [("item", str(item_ids[i]), float(bought.get(int(i), 0)), float(c))
                      for i, c in zip(bag.indices, items)]
        total = logit(model, x, bag, predicted)
        unit = "logit of the predicted class (before the temperature)"
        explained = (f"logit {total:+.4f} = {constant:+.4f} (intercept and centring) + the terms below "
                     f"(exact; they sum to {total - constant:+.4f})")
        extra = {"logit": total, "constant": constant}
    else:
        from graphprof.explaining.integrated import sign_attributions

        a = sign_attributions(model, inputs, u, predicted)
        terms += [("feature", f, float(x[j]), float(c)) for j, (f, c) in enumerate(zip(feature_names, a["features"]))]
        terms += [("item", str(item_ids[i]), float(bought.get(int(i), 0)), float(c)) for i, c in zip(*a["items"])]
        split = a["friends"] is not None
        if split:
            terms += [("friend", str(inputs.graph.user_ids[j]), None, float(c)) for j, c in zip(*a["friends"])]
        labels = {"social_1": "friends (1 hop)", "social_2": "friends of friends (2 hops)",
                  "copurchase": "co-purchasers (users who bought the same items)"}
        terms += [("group", labels.get(b, b), None, float(c)) for b, c in a["blocks"].items()
                  if not (split and b == "social_1")]
        total = a["p"] - a["p_baseline"]
        unit = "probability of the predicted class"
        explained = (f"p {a['p']:.4f} = {a['p_baseline']:.4f} (the baseline user) + the terms below (they sum to "
                     f"{sum(t[3] for t in terms):+.4f}; integral error {a['delta']:.1e})")
        extra = {"p_baseline": a["p_baseline"], "delta": a["delta"]}
    size = sum(abs(t[3]) for t in terms) or 1.0
    ranked = sorted(terms, key=lambda t: -abs(t[3]))
    shown, rest = ranked[:top], ranked[top:]
    return {"model": model.name, "predicted": str(model.classes_[predicted]), "probability": float(proba[predicted]),
            "method": METHODS[model.name], "unit": unit, "explained": explained, **extra,
            "contributions": [{"kind": k, "name": n, "value": v, "contribution": c, "share": abs(c) / size}
                              for k, n, v, c in shown],
            "rest": {"count": len(rest), "contribution": float(sum(t[3] for t in rest)),
                     "share": float(sum(abs(t[3]) for t in rest) / size)}}
