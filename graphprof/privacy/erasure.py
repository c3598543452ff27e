"""The erasure plan of :func:`graphprof.forget.forget`: read every artifact of the work directory, compute the
erased versions in memory, then write them file by file atomically (so a bad key or a damaged file stops the run
before anything changed). What happens to each artifact is the table in :mod:`graphprof.forget`'s docstring.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError

log = logging.getLogger("graphprof")

#: Tables whose rows name users, and the columns that do.
USER_COLUMNS = {"purchases": ("user_id",), "friendships": ("user_id", "friend_id"), "users": ("user_id",)}
_EMB_FILES = ("{kind}s.parquet", "{kind}s.npy", "{kind}s_ids.csv")  # as graphprof.embeddings writes them
_REASON = ("fitted with users erased since by 'graphprof forget'; the predictions of the remaining users are "
           "kept, but run 'graphprof train' to retrain without the erased users")
_LIGHTGCN_REASON = ("fitted with users erased since by 'graphprof forget' (their rows are gone); the next "
                    "'graphprof export-embeddings' fits it again on the current graph")


def _reject_hits(values: pd.Series, ids: set[str]) -> np.ndarray:
    """Reject rows whose ``value`` is an erased id, or one end of a tie (``"a,b"``): exact matches of the whole
    value or of one comma-separated part, never substrings (``C0012`` does not match ``C00123``)."""
    v = values.fillna("").astype(str)
    hit = v.isin(ids).to_numpy().copy()  # pandas may hand out a read-only view
    has_comma = v.str.contains(",", regex=False).to_numpy()
    if has_comma.any():
        parts = v[has_comma].str.split(",").explode()
        found = parts.isin(ids).groupby(level=0).any()
        hit[np.flatnonzero(has_comma)] |= found.reindex(v.index[has_comma]).to_numpy(bool)
        for id_ in (i for i in ids if "," in i):  # ids with a comma themselves: as one end of "a,b"
            hit |= (v.str.startswith(id_ + ",") | v.str.endswith("," + id_)).to_numpy()
    return hit


class ErasurePlan:
    """Reads every artifact, computes the erased versions in memory, then writes them (so a bad key or a
    damaged file stops the run before anything changed)."""

    def __init__(self, root: Path, manifest: dict, ids: set[str], key_file):
        self.root, self.manifest, self.ids, self.key_file = root, manifest, ids, key_file
        self.known: set[str] = set()
        self.rows_removed: dict[str, int] = {}
        self.artifacts: dict[str, str] = {}
        self.notes: list[str] = []
        self.needs_retraining: list[str] = []
        self.writes: list = []          # (relative path, action, callable) in write order
        self.users_removed = self.orphaned = 0
        self.graph_info: dict = {}
        self.new_graph_id = manifest.get("graph_id")

    # ----------------------------------------------------------------------------------------- read
    def _rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def _hit(self, ids: pd.Series) -> np.ndarray:
        s = ids.astype(str)
        mask = s.isin(self.ids).to_numpy()
        self.known.update(s[mask])
        return mask

    def read(self) -> None:
        from graphprof.graph import load_graph
        from graphprof.graph.build import load_tables
        from graphprof.ingest.io import TABLES

        root = self.root
        self.old_graph = load_graph(root)
        self.known.update(set(self.old_graph.user_ids) & self.ids)
        self.tables = {t: load_tables(root, t) for t in TABLES}
        self.table_hits = {}
        for t, cols in USER_COLUMNS.items():
            df = self.tables.get(t)
            if df is not None:
                self.table_hits[t] = np.logical_or.reduce([self._hit(df[c]) for c in cols])
        self.rejects = {}
        rej_dir = root / workdir.REJECTS_DIR
        for path in sorted(rej_dir.glob("*.csv")) if rej_dir.is_dir() else []:
            try:
                df = pd.read_csv(path, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise ArtifactError(f"{path}: must be a readable CSV. Got: {exc}; re-run 'graphprof build-graph'") \
                    from exc
            if "value" in df and len(df):
                hit = _reject_hits(df["value"], self.ids)
                self.known.update(set(df["value"][hit]) & self.ids)
                if hit.any():
                    parts = df["value"][hit].str.split(",").explode()
                    self.known.update(set(parts) & self.ids)
                    self.rejects[path] = (df, hit)
        # derived artifacts that name users in their own ids
        self.new_users = None
        p = root / workdir.PREDICTIONS_NEW
        if p.exists():
            df = workdir.read_parquet(p, missing="run 'graphprof predict' again")
            self.new_users = (p, df, self._hit(df["user_id"]))
        self.model_dirs = _model_dirs(root)
        self.predictions = {}
        for d in self.model_dirs:
            p = d / workdir.MODEL_PREDICTIONS
            if p.exists():
                df = workdir.read_parquet(p, missing="run 'graphprof train' again")
                self.predictions[p] = (df, self._hit(df["user_id"]))
        self.assignments = {}
        for method in workdir.community_methods(root):
            p = workdir.communities_dir(root, method) / workdir.COMMUNITY_ASSIGNMENTS
            df = workdir.read_parquet(p, missing=f"run 'graphprof communities --method {method}' again")
            self.assignments[method] = (df, self._hit(df["user_id"]))
        self._read_embeddings()

    def _read_embeddings(self) -> None:
        from graphprof.embeddings.export import KEY_ENV, load_embeddings, load_key, pseudonymize_ids

        self.emb = self.emb_items = None
        self.key = None
        d = self.root / workdir.EMBEDDINGS_DIR
        if not (d / workdir.EMBEDDINGS_META).exists():
            return
        self.emb = load_embeddings(self.root, "user")
        self.emb_items = load_embeddings(self.root, "item")
        if not self.emb.meta.get("pseudonymized"):
            self._hit(pd.Series(self.emb.ids))
            return
        if self.key_file is None and not os.environ.get(KEY_ENV):
            return  # cannot be matched: deleted in compute()
        self.key = load_key(self.key_file, self.root)
        ours = set(pseudonymize_ids(self.old_graph.user_ids, self.key))
        if len(self.emb.ids) and not ours & set(self.emb.ids):
            raise ConfigError(f"{self.root / workdir.EMBEDDINGS_DIR}: the pseudonymisation key must be the one the "
                              "export used. Got a key that matches none of its ids; pass the right --key-file (or "
                              "none, to delete the pseudonymised export)")
        asked = sorted(self.ids)
        self.known.update(u for u, h in zip(asked, pseudonymize_ids(asked, self.key)) if h in set(self.emb.ids))

    # -------------------------------------------------------------------------------------- compute
    def compute(self) -> None:
        from graphprof.graph import describe

        erase = self.known
        for t, hit in self.table_hits.items():
            if hit.any():
                df = self.tables[t][~hit].reset_index(drop=True)
                self.tables[t] = df
                path = workdir.table_path(self.root, t)
                self._write(path, "filtered", lambda p=path, df=df: workdir.write_parquet(p, df), int(hit.sum()))
        for path, (df, hit) in self.rejects.items():
            kept = df[~hit]
            self._write(path, "filtered", lambda p=path, k=kept: workdir.write_csv(p, k), int(hit.sum()))
        if self.new_users is not None and self.new_users[2].any():
            path, df, hit = self.new_users
            kept = df[~hit].reset_index(drop=True)
            self._write(path, "filtered", lambda p=path, k=kept: workdir.write_parquet(p, k), int(hit.sum()))

        in_tables = any(h.any() for h in self.table_hits.values())
        self.erased_in_graph = len(erase & set(self.old_graph.user_ids))
        self.new_graph, self.features = self.old_graph, None
        self.keep_users = set(self.old_graph.user_ids)
        if erase & self.keep_users or in_tables:
            self._compute_graph()
            self.graph_info = describe(self.new_graph)
        # models, communities and LightGCN were fitted on the graph: only a graph user's erasure touches them (an
        # id found only in the rejects or in new_users never reached them); derived rows left by an interrupted
        # run are found too
        derived = any(h.any() for _, h in self.predictions.values()) or \
            any(h.any() for _, h in self.assignments.values())
        if self.users_removed or derived:
            self._compute_models()
            self._compute_communities()
            self._compute_lightgcn()
            partial = self.root / workdir.PARTIAL_TRAIN
            if partial.exists():
                self._delete(partial, "an interrupted 'graphprof train' fitted with the erased users")
        self._compute_embeddings()
        report = self.root / workdir.REPORT
        if report.exists():
            self._delete(report, None)
            self.notes.append(f"{workdir.REPORT} was deleted (its plots and tables may show erased users); run "
                              "'graphprof report' to write it again")
        inputs = [i.get("path") for i in (self.manifest.get("inputs") or {}).values() if i.get("path")]
        if inputs:
            self.notes.append("the input files outside the work directory still hold these users: remove them "
                              f"there too ({', '.join(inputs)}); copies written with --out are not touched either")

    def _write(self, path: Path, action: str, fn, rows: int | None = None) -> None:
        rel = self._rel(path)
        self.writes.append((rel, action, fn))
        self.artifacts[rel] = action
        if rows is not None:
            self.rows_removed[rel] = self.rows_removed.get(rel, 0) + rows

    def _delete(self, path: Path, why: str | None) -> None:
        def fn(p=path):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

        self._write(path, "deleted", fn)
        if why:
            self.notes.append(f"deleted {self._rel(path)}: {why}")

    def _compute_graph(self) -> None:
        from graphprof.features import build_features, load_features, save_features
        from graphprof.graph import build_graph, save_graph
        from graphprof.ingest.schema import UNKNOWN_CATEGORY, ValidatedTables

        old = self.old_graph
        tables = {t: df for t, df in self.tables.items() if df is not None}
        if tables["purchases"].empty:
            raise ConfigError("forget: the work directory must keep at least one purchase. Got every purchase "
                              "made by the users to erase; run 'graphprof build-graph' on inputs without them")
        # the item set must not change (the features' SVD components and the models are per item): items known
        # only from the erased users' purchases stay, as items of the unknown category
        items = tables.get("items")
        known_items = set(items["item_id"].astype(str)) if items is not None else set()
        orphan_items = [i for i in old.item_ids if i not in known_items]
        bought = set(tables["purchases"]["item_id"].astype(str))
        lost = [i for i in orphan_items if i not in bought]
        if lost:
            extra = pd.DataFrame({"item_id": pd.Series(lost, dtype="string")})
            if items is not None and "category" in items:
                extra["category"] = pd.Series([UNKNOWN_CATEGORY] * len(lost), dtype="string")
            if items is not None and "price" in items:
                extra["price"] = np.nan
            items = extra if items is None else pd.concat([items, extra], ignore_index=True)
            tables["items"] = self.tables["items"] = items
            path = workdir.table_path(self.root, "items")
            self._write(path, "extended", lambda p=path, df=items: workdir.write_parquet(p, df))
            self.notes.append(f"{len(lost)} items were known only from the erased users' purchases: they stay in "
                              f"{self._rel(path)} (category '{UNKNOWN_CATEGORY}', no price) so the item space of "
                              "the features and models does not change")
        graph = build_graph(ValidatedTables(tables=tables, rejects={}, accounting={}))
        if list(graph.item_ids) != list(old.item_ids) or list(graph.category_ids) != list(old.category_ids):
            raise ArtifactError(f"{self.root}/: the items of the tables must match the graph's. Got other items; "
                                "re-run 'graphprof build-graph'")
        saved = load_features(self.root)
        seed = workdir.read_json(self.root / workdir.FEATURES_META, missing="run 'graphprof build-graph'")["seed"]
        feats = build_features(graph, seed=seed, state=saved.state)
        if list(feats.frame.columns) != list(saved.frame.columns):
            raise ArtifactError(f"{self.root}/features: the saved feature state must match the graph. Got other "
                                "columns; re-run 'graphprof build-graph'")
        feats.state = saved.state  # the space the models were trained in, exactly (not re-fitted maxima)
        self.new_graph, self.features = graph, feats
        self.keep_users = set(graph.user_ids)
        self.removed_users = [u for u in old.user_ids if u not in self.keep_users]
        self.users_removed = len(self.removed_users)
        self.orphaned = len([u for u in self.removed_users if u not in self.known])

        def write_graph():
            save_graph(graph, self.root)
            self.new_graph_id = workdir.sha256_file(self.root / workdir.GRAPH_TENSORS)

        self._write(self.root / workdir.GRAPH_META, "rebuilt", write_graph)
        for rel in (workdir.GRAPH_TENSORS, workdir.IDS_DIR):
            self.artifacts[rel] = "rebuilt"
        self._write(self.root / workdir.FEATURES_USERS, "recomputed", lambda: save_features(feats, self.root, seed))
        self.artifacts[workdir.FEATURES_ITEMS] = "recomputed"

    def _gone(self, ids: pd.Series) -> np.ndarray:
        """Rows of users no longer in the graph (erased, or known only through a tie to an erased user)."""
        s = ids.astype(str)
        return (s.isin(self.ids) | ~s.isin(self.keep_users)).to_numpy()

    def _compute_models(self) -> None:
        stamp = _now()
        for path, (df, _) in self.predictions.items():
            gone = self._gone(df["user_id"])
            kept = df[~gone].reset_index(drop=True)
            self._write(path, "filtered", lambda p=path, k=kept: workdir.write_parquet(p, k), int(gone.sum()))
        for d in self.model_dirs:
            cpath = d / workdir.MODEL_CONFIG
            config = workdir.read_json(cpath, missing="run 'graphprof train' again")
            config.update({workdir.NEEDS_RETRAINING: True, "needs_retraining_reason": _REASON,
                           "erased_since_training": int(config.get("erased_since_training", 0)) + self.erased_in_graph,
                           "last_erasure": stamp})
            self._write(cpath, "marked", lambda p=cpath, c=config: workdir.write_json(p, c))

    def _compute_communities(self) -> None:
        from graphprof.communities.detect import (
            DEFAULT_COPURCHASE_NEIGHBORS,
            DEFAULT_COPURCHASE_WEIGHT,
            Communities,
            community_adjacency,
            modularity,
            profile_communities,
        )

        graph = self.new_graph
        for method, (df, _) in self.assignments.items():
            out = workdir.communities_dir(self.root, method)
            summary = workdir.read_json(out / workdir.COMMUNITY_SUMMARY, missing="run 'graphprof communities'")
            gone = self._gone(df["user_id"])
            kept = df[~gone].reset_index(drop=True)
            ids = kept["user_id"].astype(str).to_numpy(dtype=object)
            current = summary.get("graph_id") in (None, self.manifest.get("graph_id"))
            if not current or list(ids) != list(graph.user_ids):
                self._delete(out, "communities of an earlier graph (cannot be matched to the new one); run "
                                  f"'graphprof communities --method {method}' again")
                continue
            labels = kept["community"].to_numpy(np.int64)  # not renumbered: models trained on them still apply
            params = summary.get("params", {})
            adj = community_adjacency(graph, params.get("on", "social"),
                                      params.get("copurchase_weight", DEFAULT_COPURCHASE_WEIGHT),
                                      params.get("copurchase_neighbors", DEFAULT_COPURCHASE_NEIGHBORS))
            q = modularity(adj, labels)
            comms = Communities(user_ids=ids, labels=labels, modularity=q, method=method, params=params,
                                seconds=0.0)
            if self.features is None:
                from graphprof.features import load_features

                self.features = load_features(self.root)
            profiles = profile_communities(graph, self.features, comms, self.tables.get("users"))
            sizes = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
            summary.update({"modularity": None if not np.isfinite(q) else float(q),
                            "n_communities": int((sizes > 0).sum()), "n_singletons": int((sizes == 1).sum()),
                            "sizes": [int(x) for x in sizes[sizes > 1]], "n_users": int(len(ids)),
                            "n_edges": int(sp.triu(adj, k=1).nnz), "graph_id": None,  # set when the graph is written
                            "needs_rerun": True,
                            "needs_rerun_reason": "detected with users erased since by 'graphprof forget' (their "
                                                  "rows are gone; labels are not renumbered); run 'graphprof "
                                                  f"communities --method {method}' to detect them again"})
            apath, ppath, spath = (out / workdir.COMMUNITY_ASSIGNMENTS, out / workdir.COMMUNITY_PROFILES,
                                   out / workdir.COMMUNITY_SUMMARY)
            self._write(apath, "filtered", lambda p=apath, k=kept: workdir.write_parquet(p, k), int(gone.sum()))
            self._write(ppath, "recomputed", lambda p=ppath, f=profiles: workdir.write_parquet(p, f))
            self._write(spath, "recomputed",
                        lambda p=spath, s=summary: workdir.write_json(p, {**s, "graph_id": self.new_graph_id}))
            self.notes.append(f"{self._rel(out)}: the erased users' rows are gone and the profiles recomputed, but "
                              "the partition was found with them (labels kept, so community models still apply); "
                              f"run 'graphprof communities --method {method}' to detect it again")

    def _compute_lightgcn(self) -> None:
        import torch

        d = self.root / workdir.LIGHTGCN_DIR
        if not (d / workdir.MODEL_META).exists():
            return
        meta = workdir.read_json(d / workdir.MODEL_META, missing="run 'graphprof export-embeddings'")
        arrays = workdir.read_safetensors(d / workdir.MODEL_WEIGHTS, missing="run 'graphprof export-embeddings'")
        info = meta.setdefault("info", {})
        rows_of = info.get("rows_graph_id", info.get("graph_id"))
        users = arrays["users"]
        if rows_of != self.manifest.get("graph_id") or users.shape[0] != len(self.old_graph.user_ids):
            self._delete(d, "a LightGCN of an earlier graph (its rows cannot be matched); the next "
                            "'graphprof export-embeddings' fits a new one")
            return
        keep = torch.from_numpy(np.isin(self.old_graph.user_ids.astype(str), list(self.keep_users)))
        arrays["users"] = users[keep].contiguous()
        # graph_id stays the graph it was fitted on, so export-embeddings refits rather than reuses it
        info.update({"rows_graph_id": None, workdir.NEEDS_RETRAINING: True, "needs_retraining_reason": _LIGHTGCN_REASON,
                     "erased_since_training": int(info.get("erased_since_training", 0)) + self.erased_in_graph})

        def write():
            info["rows_graph_id"] = self.new_graph_id
            workdir.write_safetensors(d / workdir.MODEL_WEIGHTS, arrays)
            workdir.write_json(d / workdir.MODEL_META, meta)

        self._write(d, "filtered", write, int((~keep).sum().item()))

    def _compute_embeddings(self) -> None:
        from graphprof.embeddings.export import Embeddings, pseudonymize_ids

        if self.emb is None:
            return
        d = self.root / workdir.EMBEDDINGS_DIR
        pseudo = bool(self.emb.meta.get("pseudonymized"))
        if pseudo and self.key is None:
            self._delete(d, "a pseudonymised export cannot be matched to user ids without its key (pass --key-file "
                            "or set GRAPHPROF_PSEUDONYM_KEY to filter it instead); run 'graphprof export-embeddings "
                            "--pseudonymize' again")
            return
        keep_ids = self.keep_users
        ids = pd.Series(self.emb.ids, dtype=object).astype(str)
        if pseudo:
            gone_ids = sorted(self.known | (set(self.old_graph.user_ids) - keep_ids))
            gone = ids.isin(set(pseudonymize_ids(gone_ids, self.key))).to_numpy()
            expected = pseudonymize_ids(self.new_graph.user_ids, self.key)
        else:
            gone = (ids.isin(self.ids) | (ids.isin(set(self.old_graph.user_ids)) & ~ids.isin(keep_ids))).to_numpy()
            expected = self.new_graph.user_ids
        if not gone.any():
            return
        meta = dict(self.emb.meta)
        current = meta.get("graph_id") == self.manifest.get("graph_id")
        kept_ids = self.emb.ids[~gone]
        aligned = current and list(kept_ids) == list(expected)
        meta.update({"num_users": int(len(kept_ids)), workdir.NEEDS_RETRAINING: True,
                     "needs_retraining_reason": "computed with users erased since by 'graphprof forget' (their rows "
                                                "are gone); run 'graphprof export-embeddings' again"})
        users = Embeddings(kept_ids, np.ascontiguousarray(self.emb.vectors[~gone]), meta)
        items = self.emb_items

        def write():
            if aligned:  # rows still in graph order: the export matches the new graph
                meta["graph_id"] = self.new_graph_id
            _write_embeddings(d, users, items)

        self._write(d / "users.parquet", "filtered", write, int(gone.sum()))
        for name in ("users.npy", "users_ids.csv", workdir.EMBEDDINGS_META):
            self.artifacts[f"{workdir.EMBEDDINGS_DIR}/{name}"] = "filtered"

    # ---------------------------------------------------------------------------------------- write
    def write(self) -> None:
        """The report first, then the graph and features (whose new ``graph_id`` the others record), then the
        derived artifacts, the tables and rejects last and the manifest at the very end: an interrupted run leaves
        the ids in the tables, so running ``forget`` again with the same ids finds them and finishes the job."""

        def rank(rel: str) -> int:
            if rel == workdir.REPORT:
                return 0
            if rel.startswith((workdir.GRAPH_DIR + "/", str(Path(workdir.FEATURES_META).parent) + "/")):
                return 1
            if rel.startswith((workdir.TABLES_DIR + "/", workdir.REJECTS_DIR + "/")):
                return 3
            return 2

        for rel, action, fn in sorted(self.writes, key=lambda w: rank(w[0])):
            log.debug("forget: %s %s", action, rel)
            fn()
        self._mark_manifest()

    def _mark_manifest(self) -> None:
        root = self.root
        marked = []
        for d in _model_dirs(root):
            c = workdir.load_json_if_any(d / workdir.MODEL_CONFIG)
            if c and c.get(workdir.NEEDS_RETRAINING):
                marked.append(f"{d.parent.name}/{d.name}")
        lg = workdir.load_json_if_any(root / workdir.LIGHTGCN_DIR / workdir.MODEL_META)
        if lg and lg.get("info", {}).get(workdir.NEEDS_RETRAINING):
            marked.append(Path(workdir.LIGHTGCN_DIR).name)
        self.needs_retraining = marked
        manifest = workdir.load_manifest(root)
        rows = manifest.get("rows") or {}
        for table in rows:
            kept = self.rows_removed.get(self._rel(workdir.table_path(root, table)), 0)
            rejected = self.rows_removed.get(self._rel(workdir.rejects_path(root, table)), 0)
            if kept or rejected:
                acc = rows[table]  # read = kept + rejected + erased
                acc["kept"] = int(acc.get("kept", 0)) - kept
                acc["rejected"] = int(acc.get("rejected", 0)) - rejected
                acc["erased"] = int(acc.get("erased", 0)) + kept + rejected
        entry = {"time": _now(), "count": len(self.known), "unknown": len(self.ids - self.known),
                 "users_removed_from_graph": self.users_removed, "orphaned": self.orphaned,
                 "rows_removed": dict(self.rows_removed), "artifacts": dict(self.artifacts),
                 "graph_id_before": self.manifest.get("graph_id"), "graph_id_after": self.new_graph_id,
                 # the inputs still hold the erased users: a rebuild from these very files would bring them back
                 "inputs_sha256": {n: i.get("sha256") for n, i in (manifest.get("inputs") or {}).items()}}
        erasures = list(manifest.get(workdir.ERASURES) or []) + [entry]
        sections = {workdir.ERASURES: erasures, workdir.NEEDS_RETRAINING: marked, "graph_id": self.new_graph_id}
        if rows:
            sections["rows"] = rows
        workdir.update_manifest(root, **sections)


def _write_embeddings(d: Path, users, items) -> None:
    """users.parquet (with the metadata under the schema key ``graphprof``), users.npy, users_ids.csv, the items'
    Parquet again (its metadata is the same meta), then meta.json last, as ``export-embeddings`` writes them."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(path: Path, frame: pd.DataFrame, meta: dict) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"graphprof": json.dumps(meta).encode()})
        workdir.atomic_write(path, lambda p: pq.write_table(table, p))

    def npy(path: Path, vectors: np.ndarray) -> None:
        def _w(p: Path) -> None:
            with open(p, "wb") as fh:
                np.save(fh, vectors, allow_pickle=False)

        workdir.atomic_write(path, _w)

    for kind, emb in (("user", users), ("item", items)):
        if emb is None:
            continue
        emb.meta = users.meta
        names = [d / f.format(kind=kind) for f in _EMB_FILES]
        parquet(names[0], emb.to_frame(f"{kind}_id"), users.meta)
        if kind == "user":
            npy(names[1], emb.vectors)
            workdir.write_csv(names[2], pd.DataFrame({"user_id": emb.ids}))
    workdir.write_json(d / workdir.EMBEDDINGS_META, users.meta)


def _model_dirs(root: Path) -> list[Path]:
    """``models/<target>/<model>/`` folders of trained classifiers (not ``_lightgcn``, not ``.old-*`` leftovers)."""
    return sorted(c.parent for c in (Path(root) / workdir.MODELS_DIR).glob(f"*/*/{workdir.MODEL_CONFIG}")
                  if not c.parent.parent.name.startswith((".", "_")) and not c.parent.name.startswith("."))


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
