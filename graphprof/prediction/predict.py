"""``predict``: profiles for users the models never saw, from the saved models, without retraining.

The new users' purchases and friendships (generic schema) are validated like any input, then joined to the
saved graph: a row is used when it concerns a new user and points at known items (and at known or other new
users). Rows that cannot be used are counted and reported: purchases of unknown items, rows about users already
in the graph (their profile is in ``models/<target>/<model>/predictions.parquet``).

Incremental (:mod:`graphprof.prediction.extend`, :mod:`graphprof.prediction.extend_features`): the saved graph is extended, not
rebuilt (the new users are appended after the saved ones, their purchases and ties added as ``build_graph`` would
add them); only the new users' feature rows are computed, in the *same* space as the training graph (the fitted SVD
components, category columns and recency reference are reused); the saved users keep their saved features. Each
target's picked model (best validation macro-F1 in ``train``) scores only the new rows
(``Model.predict_proba(inputs, rows=...)``: ``lr`` reads those rows' features, ``sign`` computes its blocks on
their neighbourhoods; ``sage`` / ``gat`` run on the whole extended graph and keep the rows). So the cost grows with
the new users and their neighbourhood, not with the saved graph (apart from loading it, and ``sign``'s co-purchase
block, an item-level product over every purchase, which reads every saved user's features).

What is exact and what is estimated: every feature of a new user is what ``build_features(extended graph,
state=saved)`` gives, except PageRank, which is global: by default (``pagerank="local"``) a local estimate (the
PageRank equation solved on the new users' rows around their saved neighbours' saved scores, moved for the added
users and ties); ``pagerank="exact"`` iterates over the whole extended graph (its cost grows with every edge). Unlike a full
rebuild, the saved users' degree, clustering and PageRank are not updated for the new ties that reach them, so
models that read neighbours (``sign``, ``sage``, ``gat``) see the saved values there.

The inductive difference: a new user's graph statistics and the neighbourhood the models read are those of the
extended graph, and the models were fitted without them, so predictions can differ a little from those the user
would have got had they been in the training graph without labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import FRIEND, load_graph
from graphprof.ingest.schema import validate_tables
from graphprof.prediction import extend, extend_features

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
    timings: dict = field(default_factory=dict)

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
                "seconds": self.seconds, "timings": self.timings}


def picked_model(root: Path, target: str) -> str:
    """The model ``train`` picked for ``target`` (:func:`graphprof.training.evaluate.pick_model` on the saved validation
    macro-F1: the best, unless it does not beat ``lr`` beyond the seeds' spread)."""
    from graphprof.training.evaluate import pick_model

    scores = {}
    for d in workdir.model_dirs(root, workdir.MODEL_METRICS):
        if d.parent.name == workdir.folder_name(target):
            m = workdir.read_json(d / workdir.MODEL_METRICS, missing="run 'graphprof train'")
            scores[d.name] = m["val_macro_f1"]
    if not scores:
        raise ArtifactError(f"{root / workdir.MODELS_DIR / workdir.folder_name(target)}/: no trained model for target "
                            f"{target!r}; run 'graphprof train' first")
    return pick_model(scores)


def trained_targets(root: Path) -> list[str]:
    return sorted({workdir.target_name(d.parent) for d in workdir.model_dirs(root, workdir.MODEL_METRICS)})


def _friend_community(root: Path, graph: extend.ExtendedGraph, new_index: np.ndarray) -> np.ndarray | None:
    """Most common community among each new user's known friends (-1: no known friend); reads only the new
    users' rows of the social adjacency."""
    import scipy.sparse as sp

    paths = workdir.community_assignment_files(root)
    leiden = [p for p in paths if p.parent.name == "leiden"]
    path = (leiden or paths or [None])[0]
    if path is None or (FRIEND not in graph.base.edge_types and not len(graph.ties[0])):
        return None
    assign = workdir.read_parquet(path, missing="run 'graphprof communities'")
    label = np.full(graph.num_users, -1, dtype=np.int64)
    idx = graph.user_index(assign["user_id"].astype(str).to_numpy())
    label[idx[idx >= 0]] = assign["community"].to_numpy(np.int64)[idx >= 0]
    n_comm = int(label.max()) + 1
    if n_comm <= 0:
        return np.full(len(new_index), -1)
    rows = graph.adjacency_rows(new_index)
    who = np.repeat(np.arange(len(new_index)), np.diff(rows.indptr))
    ok = label[rows.indices] >= 0
    votes = sp.csr_matrix((np.ones(ok.sum()), (who[ok], label[rows.indices[ok]])), shape=(len(new_index), n_comm))
    v = votes.toarray()
    return np.where(v.sum(axis=1) > 0, v.argmax(axis=1), -1)


def _rows_of(keys: pd.Series, ids: pd.Series) -> np.ndarray:
    """Each of ``ids``' row in ``keys`` (validated: unique), -1 where absent: a left join's rows, hashed once."""
    return extend._index_in(extend._arrow(ids), extend._arrow(keys))


def predict(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, data: str | Path | None = None, *,
            purchases=None, friendships=None, users=None, out: str | Path | None = None,
            pagerank: str = "local") -> PredictResult:
    """Profile the new users in ``data`` (generic schema: purchases, optional friendships and users) with
    every trained target's picked model; write ``out`` (default ``work/predictions/new_users.parquet``).

    A users table, if given, only names users; where it has a target column, the predictions are also scored
    against it (``accuracy``), which is how held-out users are checked. ``pagerank``: ``"local"`` (the new users'
    PageRank estimated around the saved scores) or ``"exact"`` (power iteration over the whole extended graph).

    Raises:
        ArtifactError: no graph or no trained model. InputError: unreadable input. ConfigError: no input, or
        another ``pagerank``.
    """
    from graphprof.graph.build import read_inputs

    root = Path(workdir_path)
    workdir.require_built(root)
    targets = trained_targets(root)
    if not targets:
        raise ArtifactError(f"{root}/: no trained model found; run 'graphprof train' first")
    if data is None and purchases is None:
        raise ConfigError("predict needs the new users' data: --data DIR (or --purchases FILE ...). Got neither")
    if pagerank not in extend_features.PAGERANK_MODES:
        raise ConfigError(f"pagerank must be one of {', '.join(extend_features.PAGERANK_MODES)}. Got {pagerank!r} instead")
    t0 = time.perf_counter()
    new = validate_tables(read_inputs(data, purchases, friendships, users).tables)
    timings = {"read_validate": time.perf_counter() - t0}
    out = Path(out) if out is not None else root / workdir.PREDICTIONS_NEW
    with workdir.locked(root, "predict"):
        inputs, rows, new_ids, counts = _extended_inputs(root, new, pagerank, timings)
        frame = pd.DataFrame({"user_id": pd.Series(new_ids, dtype="string")})
        info, accuracy = {}, {}
        given, given_row = new.tables.get("users"), None
        for target in targets:
            t1 = time.perf_counter()
            info[target], classes = _score(root, target, inputs, rows, frame)
            if given is not None and target in given:
                if given_row is None:  # each new user's row in the users table (-1: none), once for every target
                    given_row = _rows_of(given["user_id"], frame["user_id"])
                hit = _accuracy(given[target], given_row, frame[target], classes)
                if hit is not None:
                    accuracy[target] = hit
            timings[f"model_{target}"] = time.perf_counter() - t1
        if "community" not in targets:
            comm = _friend_community(root, inputs.graph, rows)
            if comm is not None:
                frame["community"] = comm
        t1 = time.perf_counter()
        workdir.write_parquet(out, frame)
        timings["write"] = time.perf_counter() - t1
    return PredictResult(frame=frame, counts=counts, out=out, targets=info, accuracy=accuracy,
                         seconds=time.perf_counter() - t0, timings=timings)


def _extended_inputs(root: Path, new, pagerank: str, timings: dict):
    """The saved graph extended with the new rows, and the new users' features in the saved feature space.

    Returns:
        the models' input, the new users' rows in it, their ids, and the row counts of the join.
    """
    from graphprof.models import ModelInput

    t1 = time.perf_counter()
    graph = load_graph(root)
    meta, state, columns = extend_features.load_state(root)
    items = extend_features.saved_item_ids(root)
    if len(items) != len(graph.item_ids) or (items != graph.item_ids).any():
        raise ArtifactError(f"{root}/features: the saved feature state must match the graph. Got other "
                            "items; re-run 'graphprof build-graph' and 'graphprof train'")
    timings["load"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    rows_new = extend.join(graph, new.tables, friend_codes=new.friend_codes)
    counts = {**rows_new.counts, "rejected_rows": int(sum(a["rejected"] for a in new.accounting.values()))}
    ext = extend.extend_graph(root, graph, rows_new)
    timings["extend_graph"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    feats = extend_features.ExtendedFeatures(root, ext.user_ids, columns,
                                             extend_features.new_user_features(ext, state, columns, root,
                                                                               pagerank_mode=pagerank),
                                             meta["groups"], graph.item_ids, state)  # items: the saved ones, exactly
    timings["features"] = time.perf_counter() - t1
    rows = np.arange(ext.n_old, ext.num_users, dtype=np.int64)
    return ModelInput(graph=ext, features=feats), rows, rows_new.ids, counts


def _score(root: Path, target: str, inputs, rows: np.ndarray, frame: pd.DataFrame) -> tuple[dict, list]:
    """Score ``rows`` with ``target``'s picked model into ``frame`` (the class, the model, one probability
    column per class); return the target's summary and the model's classes."""
    from graphprof.models import get_model

    name = picked_model(root, target)
    config = workdir.read_json(workdir.model_file(root, target, name, workdir.MODEL_CONFIG), missing="")
    model = get_model(name).load(workdir.run_dir(root, target, name, config["predictions_from_seed"]))
    proba = model.proba(inputs, rows=rows) if len(rows) else \
        np.zeros((0, len(model.classes_)))
    classes = np.array(model.classes_, dtype=object)
    frame[target] = pd.Series(classes[proba.argmax(axis=1)] if len(rows) else [], dtype="string")
    frame[f"{target}_model"] = name
    for j, c in enumerate(model.classes_):
        frame[f"{target}_proba_{c}"] = proba[:, j]
    return {"model": name, "predicted": frame[target].value_counts().sort_index().to_dict()}, list(model.classes_)


def _accuracy(given: pd.Series, given_row: np.ndarray, predicted: pd.Series, classes: list) -> dict | None:
    """Accuracy of ``predicted`` against the users table's column ``given`` (``given_row``: each new user's row
    in it, -1 for none), over the users whose given label is one of the model's classes; None where none is."""
    # by label on a 0..n-1 index: -1 (not in the users table) gives a missing value, also when the table has no
    # rows
    truth = given.reset_index(drop=True).reindex(given_row).reset_index(drop=True)
    ok = truth.notna().to_numpy() & truth.isin(classes).to_numpy()
    if not ok.any():
        return None
    return {"accuracy": float((predicted.to_numpy()[ok] == truth.to_numpy()[ok]).mean()), "n": int(ok.sum())}
