"""The ``update`` stage: a batch of new rows applied to a built (and trained) work directory, without a rebuild.

Steps: read and validate the batch exactly as ``build-graph`` does (same rules, rejects written to
``rejects/updates/<n>/<table>.csv``); refuse a batch whose files were applied before (by their sha256); merge it
into the graph and tables (:mod:`graphprof.updating.merge`); recompute the touched users' feature rows in the saved
feature space (:mod:`graphprof.updating.refeature`); re-score each saved model's affected users and give new users
their communities (:mod:`graphprof.updating.rescore`); measure the drift since training
(:mod:`graphprof.updating.drift`). Every file is written to ``.partial-update/`` and applied whole
(:mod:`graphprof.workdir.commit`): a batch cut off before its commit leaves the work directory as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ConfigError
from graphprof.graph import BUYS, IN_CAT
from graphprof.runtime import progress

log = logging.getLogger("graphprof")
STAGES = ("read", "validate", "merge", "features", "models", "write")
UPDATES = "updates"  # manifest key: the journal, one entry per applied batch
APPENDED = ("purchases", "friendships")  # tables an update appends a part to (users and items are merged)


@dataclass
class UpdateResult:
    """What one ``update`` did (the journal entry of the batch, and where its rejects went)."""

    workdir: Path
    entry: dict
    drift: dict = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        e = self.entry
        lines = [f"update {e['batch']} applied to {self.workdir}/ in {e['seconds']['total']:.1f} s"]
        for name, acc in e["rows"].items():
            where = f", see {acc['rejects']}" if acc["rejected"] else ""
            lines.append(f"{name}: read {acc['read']} = kept {acc['kept']} + rejected {acc['rejected']}{where}")
        c = e["counts"]
        lines.append(f"graph: +{c['new_users']} users, +{c['new_items']} items, +{c['new_ties']} ties; purchases "
                     f"merged into {c['purchase_edges_merged']} existing (user, item) edges and "
                     f"{c['purchase_edges_added']} new ones")
        lines.append(f"features recomputed for {c['touched_users']} users (PageRank: saved users keep theirs, "
                     "new users get a local estimate; a retrain or rebuild recomputes it)")
        for key, n in e["rescored"].items():
            lines.append(f"  {key}: re-scored {n} users")
        for method, n in e["communities"].items():
            lines.append(f"  communities ({method}): {n} new users assigned by their friends' communities")
        if e.get("embeddings"):
            lines.append(f"  embeddings: {e['embeddings']}")
        d = self.drift
        if d:
            parts = ", ".join(f"{g} {v['psi']:.3f}" for g, v in d["groups"].items())
            lines.append(f"drift since training (PSI per feature group): {parts}; users added "
                         f"{d['users_added_share']:.1%}")
            lines.append("retrain advised: " + "; ".join(d["reasons"]) if d["retrain_advised"]
                         else "no retrain needed yet (every group's PSI <= 0.2, users added < 10%)")
        return lines

    def to_json(self) -> dict:
        return {"workdir": str(self.workdir), **self.entry, "drift": self.drift}


def batch_id(hashes: dict[str, str]) -> str:
    """One batch's identity: the sha256 of its tables' names and contents."""
    return hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()


def update(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, data: str | Path | None = None, *,
           purchases=None, friendships=None, users=None, items=None, key_file=None) -> UpdateResult:
    """Apply the new rows in ``data`` (generic schema: purchases, optionally friendships, users, items) to the
    work directory; see the module docstring. ``key_file``: the pseudonymisation key, where the exported
    embeddings are pseudonymised (default: the environment, as for ``export-embeddings``).

    Raises:
        ArtifactError: no graph. InputError: a bad batch file. ConfigError: no batch given, or a batch applied
        before.
    """
    from graphprof.graph.build import read_inputs
    from graphprof.ingest.schema import validate_tables

    root = Path(workdir_path)
    if data is None and purchases is None:
        raise ConfigError("update needs the new rows: --data DIR (or --purchases FILE ...). Got neither")
    workdir.require_built(root)
    t_start = time.perf_counter()
    seconds = {}
    with progress.stages("update", STAGES) as stage, workdir.locked(root, "update"):
        workdir.recover_update(root, locked=True)
        manifest = workdir.load_manifest(root)
        stage("read")
        t0 = time.perf_counter()
        raw = read_inputs(data, purchases, friendships, users, items).tables
        files = {name: {"path": str(Path(t.path).resolve()), "bytes": Path(t.path).stat().st_size,
                        "sha256": workdir.sha256_file(Path(t.path))} for name, t in raw.items()}
        bid = batch_id({k: v["sha256"] for k, v in files.items()})
        for past in manifest.get(UPDATES, []):
            if past.get("batch_id") == bid:
                raise ConfigError(f"{data or purchases}: must be a batch not applied before. Got the same files "
                                  f"(sha256) as update {past['batch']} applied at {past['time']}; nothing changed")
        stage("validate")
        validated = validate_tables(raw)
        sources = {name: str(t.path) for name, t in raw.items()}
        del raw
        seconds["read_validate"] = time.perf_counter() - t0
        n = len(manifest.get(UPDATES, [])) + 1
        staging = workdir.Staging(root)
        try:
            entry, drift_doc = _apply(root, staging, validated, sources, n, stage, seconds, manifest, key_file)
            entry.update({"batch": n, "batch_id": bid, "files": files, "graph_id_before": manifest.get("graph_id"),
                          "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            seconds["total"] = time.perf_counter() - t_start
            entry["seconds"] = seconds
            journal = manifest.get(UPDATES, []) + [entry]
            manifest_new = dict(manifest)
            manifest_new[UPDATES] = journal
            manifest_new["graph_id"] = entry["graph_id"]
            manifest_new.setdefault("stages", {})["update"] = {"seconds": seconds["total"], "batch": n}
            workdir.write_json(staging.path(workdir.MANIFEST), manifest_new)
            staging.commit()
        except BaseException:
            staging.abandon()
            raise
    return UpdateResult(workdir=root, entry=entry, drift=drift_doc)


def _apply(root: Path, staging, validated, sources: dict, n: int, stage, seconds: dict, manifest: dict,
           key_file=None):
    from graphprof.features import load_features, save_features
    from graphprof.features.users import _item_table, item_category_matrix
    from graphprof.graph import load_graph, save_graph
    from graphprof.graph.build import load_tables
    from graphprof.models import ModelInput
    from graphprof.updating import drift, merge, refeature, rescore
    from graphprof.updating.embeddings import update_embeddings

    stage("merge")
    t0 = time.perf_counter()
    graph = load_graph(root)
    saved_tables = {t: load_tables(root, t) for t in ("users", "items")}  # the others are appended to
    m = merge.merge(graph, saved_tables, validated.tables, sources)
    g = m.graph
    seconds["merge"] = time.perf_counter() - t0

    stage("features")
    t0 = time.perf_counter()
    feats = load_features(root)
    columns = list(feats.frame.columns)
    saved = feats.frame.to_numpy(np.float64)
    ref = drift.load_reference(root)
    if ref is None:  # no train wrote one: the features before this batch
        ref = drift.write_reference(root, saved, columns, into=staging.folder)
    state = _pad_state(feats.state, m, len(g.item_ids), len(g.category_ids))
    full = np.empty((g.num_users, len(columns)))
    full[m.user_map] = saved
    view = refeature._View(g)
    touched = refeature.touched_users(g, m.bought, m.ties, m.new_users, view)
    pr = np.zeros(g.num_users)
    pr[m.user_map] = saved[:, columns.index("pagerank")]
    new_mask = np.zeros(g.num_users, bool)
    new_mask[m.new_users] = True
    full[touched] = refeature.feature_rows(g, state, columns, touched, pr, new_mask[touched], view)
    feats.user_ids, feats.item_ids = g.user_ids, g.item_ids
    feats.frame = pd.DataFrame(full, columns=columns, copy=False)
    attrs = {k: g.purchase_matrix(k, copy_structure=False) for k in ("count", "quantity", "spend", "priced_quantity")}
    item_cat = (item_category_matrix(g, len(g.item_ids), len(g.category_ids)).indices.astype(np.int64)
                if IN_CAT in g.edge_types and len(g.category_ids) else None)
    comps = state.get("item_svd_components")
    feats.items = _item_table(g, attrs, item_cat, comps.T if comps is not None else None)
    feats.state = state
    seconds["features"] = time.perf_counter() - t0

    stage("models")
    t0 = time.perf_counter()
    save_graph(g, staging.folder)  # first: its hash names the graph the re-scored artifacts belong to
    graph_id = workdir.sha256_file(staging.folder / workdir.GRAPH_TENSORS)
    users_table = m.tables.get("users")
    inputs = ModelInput(graph=g, features=feats)
    rescored = rescore.rescore_models(root, staging, inputs, m, touched, users_table, manifest)
    communities = rescore.assign_communities(root, staging, g, m, view, graph_id)
    embedded = update_embeddings(root, staging, inputs, m, touched, graph_id, n, manifest, key_file)
    seconds["models"] = time.perf_counter() - t0

    stage("write")
    t0 = time.perf_counter()
    seed = workdir.read_json(root / workdir.FEATURES_META, missing="run 'graphprof build-graph'")["seed"]
    save_features(feats, staging.folder, seed)
    for name, table in m.tables.items():
        if table is None or not (name in validated.tables or name == "items" and len(m.new_items)):
            continue
        table = table.astype({c: "string" for c in table.columns if pd.api.types.is_string_dtype(table[c])})
        if name in APPENDED:
            if len(table):
                workdir.write_parquet(workdir.table_part_path(staging.folder, name, n), table)
        else:
            workdir.write_parquet(workdir.table_path(staging.folder, name), table)
    if len(m.new_items):  # which items the models fitted before this batch do not know (rescore.fitted_items)
        workdir.write_parquet(workdir.table_part_path(staging.folder, "new_items", n),
                              pd.DataFrame({"item_id": pd.Series(g.item_ids[m.new_items], dtype="string")}))
    rows = {}
    for name, acc in validated.accounting.items():
        acc = dict(acc)
        extra = m.rejects.get(name)
        rej = validated.rejects.get(name)
        if extra is not None:
            acc["kept"] -= len(extra)
            acc["rejected"] += len(extra)
            rej = extra if rej is None or not len(rej) else pd.concat([rej, extra], ignore_index=True)
        rel = Path(workdir.REJECTS_DIR) / UPDATES / str(n) / f"{name}.csv"
        if acc["rejected"]:
            workdir.write_csv(staging.path(rel), rej)
            acc["rejects"] = str(root / rel)
        rows[name] = acc
    # label-free arrays, resumable fits and a killed train's working files, all of the old graph
    for rel in (workdir.CACHE_DIR, workdir.PARTIAL_TRAIN, workdir.SCRATCH_DIR):
        if (root / rel).exists():
            staging.delete(rel)
    seconds["write"] = time.perf_counter() - t0
    drift_doc = drift.psi(ref, full, columns, feats.groups)
    counts = {"new_users": int(len(m.new_users)), "new_items": int(len(m.new_items)),
              "new_ties": int(len(m.ties[0])), "touched_users": int(len(touched)),
              "purchase_edges_added": int(g.edge(BUYS).shape[1] - graph.edge(BUYS).shape[1]),
              "purchase_edges_merged": m.pairs_merged,
              "labels_set": int(len(m.labelled))}
    entry = {"rows": rows, "counts": counts, "rescored": rescored, "communities": communities,
             "embeddings": embedded,
             "graph_id": graph_id, "drift": {"groups": {k: v["psi"] for k, v in drift_doc["groups"].items()},
                                             "users_added_share": drift_doc["users_added_share"],
                                             "retrain_advised": drift_doc["retrain_advised"]}}
    log.info("update %d: %d touched users, %d new users", n, counts["touched_users"], counts["new_users"])
    return entry, drift_doc


def _pad_state(state: dict, m, n_items: int, n_cat: int) -> dict:
    """The fitted state on the merged graph's items and categories: the SVD components get a zero column for
    each new item (category), which the fitted space does not know; every known column moves to its new index."""
    state = dict(state)
    comps = state.get("item_svd_components")
    if comps is not None and comps.shape[1] != n_items:
        out = np.zeros((comps.shape[0], n_items))
        out[:, m.item_map] = comps
        state["item_svd_components"] = out
    comps = state.get("cat_svd_components")
    if comps is not None and m.cat_map is not None and comps.shape[1] != n_cat:
        out = np.zeros((comps.shape[0], n_cat))
        out[:, m.cat_map] = comps
        state["cat_svd_components"] = out
    return state
