"""The erasure plan of :func:`graphprof.privacy.forget.forget`: read every artifact of the work directory, compute the
erased versions in memory, then write them file by file atomically (so a bad key or a damaged file stops the run
before anything changed). What happens to each artifact is the table in :mod:`graphprof.privacy.forget`'s docstring.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.privacy.erasure_derived import DerivedErasure, now

log = logging.getLogger("graphprof")

#: Tables whose rows name users, and the columns that do.
USER_COLUMNS = {"purchases": ("user_id",), "friendships": ("user_id", "friend_id"), "users": ("user_id",)}


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


class ErasurePlan(DerivedErasure):
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
        self.table_rows = {t: {p: _parquet_rows(p) for p in [workdir.table_path(root, t), *workdir.table_parts(root, t)]
                               if p.exists()} for t in TABLES}
        self.table_hits = {}
        for t, cols in USER_COLUMNS.items():
            df = self.tables.get(t)
            if df is not None:
                self.table_hits[t] = np.logical_or.reduce([self._hit(df[c]) for c in cols])
        self.rejects = {}
        rej_dir = root / workdir.REJECTS_DIR
        for path in sorted(rej_dir.rglob("*.csv")) if rej_dir.is_dir() else []:  # updates/<n>/ too
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
        self.model_dirs = workdir.model_dirs(root)
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

    # -------------------------------------------------------------------------------------- compute
    def compute(self) -> None:
        from graphprof.graph import describe

        erase = self.known
        for t, hit in self.table_hits.items():
            if hit.any():
                whole = self.tables[t]
                self.tables[t] = whole[~hit].reset_index(drop=True)
                # each file of the table (the built one, then the parts updates appended) filtered on its own
                # rows; the rows removed are counted under the table's main file
                start, main = 0, workdir.table_path(self.root, t)
                for path in [main, *workdir.table_parts(self.root, t)]:
                    size = self.table_rows[t][path]
                    part_hit = hit[start:start + size]
                    if part_hit.any():
                        df = whole.iloc[start:start + size][~part_hit].reset_index(drop=True)
                        self._write(path, "filtered", lambda p=path, df=df: workdir.write_parquet(p, df))
                    start += size
                self.rows_removed[self._rel(main)] = self.rows_removed.get(self._rel(main), 0) + int(hit.sum())
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
            scratch = self.root / workdir.SCRATCH_DIR
            if scratch.exists():
                self._delete(scratch, "the working files of a killed 'graphprof train' (sign's blocks)")
            cache = self.root / workdir.CACHE_DIR
            if cache.exists():
                self._delete(cache, "label-free arrays computed with the erased users; the next 'graphprof "
                                    "train' computes them again")
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
        for d in workdir.model_dirs(root):
            c = workdir.load_json_if_any(d / workdir.MODEL_CONFIG)
            if c and c.get(workdir.NEEDS_RETRAINING):
                marked.append(f"{workdir.target_name(d.parent)}/{d.name}")
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
        entry = {"time": now(), "count": len(self.known), "unknown": len(self.ids - self.known),
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


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
