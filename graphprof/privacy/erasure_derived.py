"""What ``forget`` does to the artifacts derived from the graph: the models' predictions and configs, the
communities, the LightGCN and the exported embeddings. A mixin of :class:`~graphprof.privacy.erasure.ErasurePlan`:
each ``_compute_*`` reads what it needs, filters the erased users' rows in memory and queues the write, through
the owning module's own writer where it has one.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof import workdir
from graphprof.errors import ConfigError
from graphprof.privacy.pseudonymize import KEY_ENV, load_key, pseudonymize_ids

_REASON = ("fitted with users erased since by 'graphprof forget'; the predictions of the remaining users are "
           "kept, but run 'graphprof train' to retrain without the erased users")
_LIGHTGCN_REASON = ("fitted with users erased since by 'graphprof forget' (their rows are gone); the next "
                    "'graphprof export-embeddings' fits it again on the current graph")


def now() -> str:
    """The current UTC time to the second, ISO-8601 with ``Z``."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class DerivedErasure:
    """The derived artifacts' part of the erasure plan (see the module docstring)."""

    def _read_embeddings(self) -> None:
        from graphprof.embeddings.export import load_embeddings

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

    def _gone(self, ids: pd.Series) -> np.ndarray:
        """Rows of users absent from the new graph (erased, or known only through a tie to an erased user)."""
        s = ids.astype(str)
        return (s.isin(self.ids) | ~s.isin(self.keep_users)).to_numpy()

    def _compute_models(self) -> None:
        stamp = now()
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
        )
        from graphprof.communities.profiles import profile_communities

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
        from graphprof.models.lightgcn import LightGCN

        d = self.root / workdir.LIGHTGCN_DIR
        if not (d / workdir.MODEL_META).exists():
            return
        model = LightGCN.load(d)
        info = model.info
        rows_of = info.get("rows_graph_id", info.get("graph_id"))
        if rows_of != self.manifest.get("graph_id") or model.users.shape[0] != len(self.old_graph.user_ids):
            self._delete(d, "a LightGCN of an earlier graph (its rows cannot be matched); the next "
                            "'graphprof export-embeddings' fits a new one")
            return
        keep = np.isin(self.old_graph.user_ids.astype(str), list(self.keep_users))
        model.users = np.ascontiguousarray(model.users[keep])
        # graph_id stays the graph it was fitted on, so export-embeddings refits rather than reuses it
        info.update({"rows_graph_id": None, workdir.NEEDS_RETRAINING: True, "needs_retraining_reason": _LIGHTGCN_REASON,
                     "erased_since_training": int(info.get("erased_since_training", 0)) + self.erased_in_graph})

        def write():
            info["rows_graph_id"] = self.new_graph_id
            model.save(d)

        self._write(d, "filtered", write, int((~keep).sum()))

    def _compute_embeddings(self) -> None:
        from graphprof.embeddings.export import Embeddings, write_export_dir

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
        if items is not None:
            items.meta = meta

        def write():
            if aligned:  # rows still in graph order: the export matches the new graph
                meta["graph_id"] = self.new_graph_id
            write_export_dir(self.root, users, items)

        files = workdir.embedding_files(d, "user")
        self._write(files["parquet"], "filtered", write, int(gone.sum()))
        for path in (files["npy"], files["ids"], d / workdir.EMBEDDINGS_META):
            self.artifacts[self._rel(path)] = "filtered"
