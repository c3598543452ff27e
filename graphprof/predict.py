"""``predict``: profiles for users the models never saw, from the saved models, without retraining.

The new users' purchases and friendships (generic schema) are validated like any input, then joined to the
saved graph: a row is used when it concerns a new user and points at known items (and at known or other new
users). The extended graph gets features in the *same* space as the training graph (the fitted SVD components,
category columns and recency reference are reused, see :func:`graphprof.features.build_features`), and each
target's picked model (best validation macro-F1 in ``train``) scores the new users. Rows that cannot be used
are counted and reported: purchases of unknown items, rows about users already in the graph (their profile is
in ``models/<target>/<model>/predictions.parquet``).

The inductive difference: a new user's graph statistics (PageRank, clustering) and the neighbourhood the GNN
reads are those of the extended graph, and the models were fitted without them, so predictions can differ a
little from those the user would have got had they been in the training graph without labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.features import build_features, load_features
from graphprof.graph import FRIEND, build_graph, load_graph
from graphprof.schema import ValidatedTables, validate_tables

log = logging.getLogger("graphprof")


@dataclass
class PredictResult:
    """Counts of what was used, the output file, and the new users' profiles (``frame``).

    ``frame`` columns: ``user_id``; per target ``<target>`` (predicted class), ``<target>_model``,
    ``<target>_proba_<class>``; ``community`` (the most common community among known friends, -1 if none)
    where communities were detected and no community model was trained.
    """

    frame: pd.DataFrame
    counts: dict
    out: Path
    targets: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        c = self.counts
        lines = [f"predicted {c['new_users']} new users -> {self.out}",
                 f"used {c['purchases_used']} purchases and {c['ties_used']} ties; ignored: "
                 f"{c['purchases_unknown_item']} purchases of {c['unknown_items']} unknown items, "
                 f"{c['purchases_known_user']} purchases and {c['ties_known_users']} ties of users already in "
                 f"the graph; {c['rejected_rows']} rows rejected by validation"]
        for target, info in self.targets.items():
            mix = ", ".join(f"{k} {v}" for k, v in info["predicted"].items())
            acc = f"; accuracy vs the given labels {self.accuracy[target]['accuracy']:.3f} " \
                  f"({self.accuracy[target]['n']} users)" if target in self.accuracy else ""
            lines.append(f"  {target} ({info['model']}): {mix}{acc}")
        return lines

    def to_json(self) -> dict:
        return {"out": str(self.out), "counts": self.counts, "targets": self.targets, "accuracy": self.accuracy,
                "seconds": self.seconds}


def picked_model(root: Path, target: str) -> str:
    """The model ``train`` picked for ``target``: best mean validation macro-F1 (ties: ``lr`` first)."""
    scores = {}
    for metrics in sorted((root / workdir.MODELS_DIR / target).glob("*/metrics.json")):
        m = workdir.read_json(metrics, missing="run 'graphprof train'")
        scores[metrics.parent.name] = m["val_macro_f1"]["mean"] or 0.0
    if not scores:
        raise ArtifactError(f"{root / workdir.MODELS_DIR / target}/: no trained model; run 'graphprof train' first")
    return max(sorted(scores), key=lambda name: (scores[name], name == "lr"))


def trained_targets(root: Path) -> list[str]:
    models = root / workdir.MODELS_DIR
    return sorted({p.parent.parent.name for p in models.glob("*/*/metrics.json")}) if models.exists() else []


def _join(root: Path, graph, new: ValidatedTables) -> tuple[ValidatedTables, np.ndarray, dict]:
    """Old tables + the usable new rows; the new user ids; counts of what was ignored."""
    from graphprof.build import load_tables

    known_u = pd.Index(graph.user_ids)
    known_i = pd.Index(graph.item_ids)
    p = new.tables["purchases"]
    p_known_user = known_u.get_indexer(p["user_id"]) >= 0
    p_known_item = known_i.get_indexer(p["item_id"]) >= 0
    use_p = ~p_known_user & p_known_item
    f = new.tables.get("friendships")
    if f is not None:
        a_known = known_u.get_indexer(f["user_id"]) >= 0
        b_known = known_u.get_indexer(f["friend_id"]) >= 0
        use_f = ~(a_known & b_known)
        f_used = f[use_f]
    else:
        use_f, f_used = np.zeros(0, bool), None
    new_ids = set(p.loc[use_p, "user_id"])
    if f_used is not None:
        new_ids |= set(f_used["user_id"]) | set(f_used["friend_id"])
    if "users" in new.tables:
        new_ids |= set(new.tables["users"]["user_id"])
    new_ids = np.array(sorted(i for i in new_ids if known_u.get_indexer([i])[0] < 0), dtype=object)
    counts = {"new_users": int(len(new_ids)), "purchases_used": int(use_p.sum()), "ties_used": int(use_f.sum()),
              "purchases_unknown_item": int((~p_known_item & ~p_known_user).sum()),
              "unknown_items": int(p.loc[~p_known_item, "item_id"].nunique()),
              "purchases_known_user": int(p_known_user.sum()),
              "ties_known_users": int((~use_f).sum()) if f is not None else 0,
              "rejected_rows": int(sum(a["rejected"] for a in new.accounting.values()))}
    tables = {"purchases": pd.concat([load_tables(root, "purchases"), p[use_p]], ignore_index=True)}
    old_f = load_tables(root, "friendships")
    parts = [t for t in (old_f, f_used) if t is not None]
    if parts:
        tables["friendships"] = pd.concat(parts, ignore_index=True)
    old_users = load_tables(root, "users")
    tables["users"] = pd.concat([old_users[["user_id"]] if old_users is not None else None,
                                 pd.DataFrame({"user_id": new_ids})], ignore_index=True)
    items = load_tables(root, "items")
    if items is not None:
        tables["items"] = items
    return ValidatedTables(tables=tables, rejects={}, accounting={}), new_ids, counts


def _friend_community(root: Path, graph, new_index: np.ndarray) -> np.ndarray | None:
    """Most common community among each new user's known friends (-1: no known friend)."""
    import scipy.sparse as sp

    paths = sorted((root / workdir.COMMUNITIES_DIR).glob("*/assignments.parquet")) \
        if hasattr(workdir, "COMMUNITIES_DIR") else []
    leiden = [p for p in paths if p.parent.name == "leiden"]
    path = (leiden or paths or [None])[0]
    if path is None or FRIEND not in graph.data.edge_types:
        return None
    assign = workdir.read_parquet(path, missing="run 'graphprof communities'")
    label = np.full(graph.num_users, -1, dtype=np.int64)
    idx = graph.user_index(assign["user_id"].astype(str).to_numpy())
    label[idx[idx >= 0]] = assign["community"].to_numpy(np.int64)[idx >= 0]
    ei = graph.data[FRIEND].edge_index.numpy()
    ok = label[ei[1]] >= 0
    n_comm = int(label.max()) + 1
    if n_comm <= 0:
        return np.full(len(new_index), -1)
    votes = sp.csr_matrix((np.ones(ok.sum()), (ei[0][ok], label[ei[1][ok]])), shape=(graph.num_users, n_comm))
    v = votes[new_index].toarray()
    return np.where(v.sum(axis=1) > 0, v.argmax(axis=1), -1)


def predict(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, data: str | Path | None = None, *,
            purchases=None, friendships=None, users=None, out: str | Path | None = None) -> PredictResult:
    """Profile the new users in ``data`` (generic schema: purchases, optional friendships and users) with
    every trained target's picked model; write ``out`` (default ``work/predictions/new_users.parquet``).

    A users table, if given, only names users; where it has a target column, the predictions are also scored
    against it (``accuracy``), which is how held-out users are checked.

    Raises:
        ArtifactError: no graph or no trained model. InputError: unreadable input.
    """
    from graphprof.build import read_inputs
    from graphprof.models import ModelInput, get_model

    root = Path(workdir_path)
    workdir.require_built(root)
    targets = trained_targets(root)
    if not targets:
        raise ArtifactError(f"{root}/: no trained model found; run 'graphprof train' first")
    if data is None and purchases is None:
        from graphprof.errors import ConfigError

        raise ConfigError("predict needs the new users' data: --data DIR (or --purchases FILE ...). Got neither")
    t0 = time.perf_counter()
    new = validate_tables(read_inputs(data, purchases, friendships, users).tables)
    out = Path(out) if out is not None else root / workdir.PREDICTIONS_NEW
    with workdir.locked(root, "predict"):
        graph = load_graph(root)
        saved = load_features(root)
        joined, new_ids, counts = _join(root, graph, new)
        ext = build_graph(joined)
        feats = build_features(ext, seed=workdir.read_json(root / workdir.FEATURES_META, missing="")["seed"],
                               state=saved.state)
        if list(feats.frame.columns) != list(saved.frame.columns) or list(ext.item_ids) != list(saved.item_ids):
            raise ArtifactError(f"{root}/features: the saved feature state must match the graph. Got other "
                                "columns or items; re-run 'graphprof build-graph' and 'graphprof train'")
        feats.items = saved.items  # the items the models saw, exactly
        inputs = ModelInput(graph=ext, features=feats)
        rows = ext.user_index(new_ids)
        frame = pd.DataFrame({"user_id": pd.Series(new_ids, dtype="string")})
        info, accuracy = {}, {}
        given = new.tables.get("users")
        for target in targets:
            name = picked_model(root, target)
            config = workdir.read_json(workdir.model_dir(root, target, name) / "config.json", missing="")
            model = get_model(name).load(workdir.run_dir(root, target, name, config["predictions_from_seed"]))
            proba = model.predict_proba(inputs).to_numpy()[rows] if len(rows) else np.zeros((0, len(model.classes_)))
            classes = np.array(model.classes_, dtype=object)
            frame[target] = pd.Series(classes[proba.argmax(axis=1)] if len(rows) else [], dtype="string")
            frame[f"{target}_model"] = name
            for j, c in enumerate(model.classes_):
                frame[f"{target}_proba_{c}"] = proba[:, j]
            info[target] = {"model": name, "predicted": frame[target].value_counts().sort_index().to_dict()}
            if given is not None and target in given:
                truth = frame[["user_id"]].merge(given[["user_id", target]].astype({"user_id": "string"}),
                                                 on="user_id", how="left")[target]
                ok = truth.notna().to_numpy() & truth.isin(model.classes_).to_numpy()
                if ok.any():
                    accuracy[target] = {"accuracy": float((frame[target].to_numpy()[ok] == truth.to_numpy()[ok]).mean()),
                                        "n": int(ok.sum())}
        if "community" not in targets:
            comm = _friend_community(root, ext, rows)
            if comm is not None:
                frame["community"] = comm
        workdir.write_parquet(out, frame)
    return PredictResult(frame=frame, counts=counts, out=out, targets=info, accuracy=accuracy,
                         seconds=time.perf_counter() - t0)
