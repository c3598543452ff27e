"""What ``graphprof serve`` answers from: the current profiles, communities and embeddings of a work directory.

:class:`WorkdirStore` reads one consistent view of the artifacts (per trained target, the picked model's
``predictions.parquet``; the community assignments; the exported embeddings and each user's bought items) into
arrays indexed by user id. :class:`LiveStore` holds the current view and builds a new one when the work directory
changes (``manifest.json`` is the last file every stage writes: ``train``, ``update``, ``forget``,
``communities``, ``export-embeddings``); the swap is one assignment, so a request is answered from the old view or
the new one, never a mix, and none is dropped. An erased user is in no artifact after ``forget``, so in no view.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir

log = logging.getLogger("graphprof")


def _read(path: Path, columns=None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns, memory_map=True).to_pandas()


class WorkdirStore:
    """One view of a work directory's profiles (see the module docstring)."""

    def __init__(self, root: str | Path):
        from graphprof.prediction.predict import picked_model, trained_targets

        self.root = Path(root)
        manifest = workdir.require_built(self.root)
        self.version = manifest.get("graph_id")
        self.stamp = _stamp(self.root)
        self.targets: dict[str, dict] = {}
        ids = None
        for target in trained_targets(self.root):
            name = picked_model(self.root, target)
            config = workdir.read_json(workdir.model_file(self.root, target, name, workdir.MODEL_CONFIG),
                                       missing="run 'graphprof train'")
            pred = _read(workdir.model_file(self.root, target, name, workdir.MODEL_PREDICTIONS))
            cols = [c for c in pred.columns if c.startswith("proba_")]
            if ids is None:
                ids = pred["user_id"].astype(str).to_numpy(dtype=object)
            elif len(pred) != len(ids) or (pred["user_id"].astype(str).to_numpy(dtype=object) != ids).any():
                pred = pred.set_index(pred["user_id"].astype(str)).reindex(ids).reset_index(drop=True)
            proba = pred[cols].to_numpy(np.float64)
            self.targets[target] = {
                "model": name, "classes": [c[len("proba_"):] for c in cols],
                "scored": np.isfinite(proba).all(axis=1),  # False: a user this model has no profile of
                "predicted": pred["predicted"].astype(str).to_numpy(dtype=object),
                "proba": np.nan_to_num(proba),
                "version": {"model": name, "seed": config.get("predictions_from_seed"),
                            "trained_on_graph": (config.get("graph_id") or "")[:16],
                            "updates_since": _updates_since(manifest, config.get("graph_id"))}}
        if ids is None:
            from graphprof.features.users import load_features

            ids = load_features(self.root).user_ids
        self.ids = ids
        self.index = pd.Index(ids)
        self.community = None
        files = workdir.community_assignment_files(self.root)
        leiden = [p for p in files if p.parent.name == "leiden"]
        if leiden or files:
            path = (leiden or files)[0]
            a = _read(path, ["user_id", "community"])
            at = self.index.get_indexer(a["user_id"].astype(str).to_numpy(dtype=object))
            comm = np.full(len(ids), -1, dtype=np.int64)
            comm[at[at >= 0]] = a["community"].to_numpy(np.int64)[at >= 0]
            self.community, self.community_method = comm, path.parent.name
        self._embeddings, self._pieces = None, None
        self._lock = threading.Lock()

    @property
    def users(self) -> int:
        return len(self.ids)

    def rows(self, user_ids: list[str]) -> np.ndarray:
        return self.index.get_indexer(pd.Index(np.asarray(user_ids, dtype=object)).astype(str))

    def profiles(self, user_ids: list[str]) -> list[dict | None]:
        """Each user's profile (None where the id is not a user of the work directory)."""
        out = []
        for uid, r in zip(user_ids, self.rows(user_ids)):
            if r < 0:
                out.append(None)
                continue
            doc = {"user_id": str(uid), "targets": {}}
            for target, t in self.targets.items():
                if not t["scored"][r]:
                    continue
                doc["targets"][target] = {"class": t["predicted"][r],
                                          "probabilities": dict(zip(t["classes"], map(float, t["proba"][r]))),
                                          "version": t["version"]}
            if self.community is not None:
                doc["community"] = {"method": self.community_method, "id": int(self.community[r])}
            out.append(doc)
        return out

    def _pieces_of(self, rows: np.ndarray) -> tuple[dict[str, list[str]], list[str] | None]:
        """Per target, each of ``rows``' (known users) target JSON, and their community JSON (None where
        communities were not detected): the pieces :meth:`profiles_json` and ``publish`` join."""
        if self._pieces is None:
            self._pieces = {t: ([json.dumps(c) for c in v["classes"]], json.dumps(v["version"]),
                                [json.dumps(c) + ":" for c in v["classes"]]) for t, v in self.targets.items()}
        parts: dict[str, list[str]] = {}
        for t, v in self.targets.items():
            class_json, version, keys = self._pieces[t]
            index = {c: j for j, c in enumerate(v["classes"])}
            parts[t] = ['{"class":' + class_json[index[c]] + ',"probabilities":{'
                        + ",".join(k + repr(p) for k, p in zip(keys, ps)) + '},"version":' + version + "}"
                        for c, ps in zip(v["predicted"][rows], v["proba"][rows].tolist())]
        comm = None
        if self.community is not None:
            method = json.dumps(self.community_method)
            comm = ['{"method":' + method + ',"id":' + str(int(c)) + "}" for c in self.community[rows]]
        return parts, comm

    def fields(self, rows: np.ndarray) -> list[dict[str, str]]:
        """Per known user row, its hash for the Redis store: a JSON field per target, and ``community``."""
        parts, comm = self._pieces_of(rows)
        out = [{t: parts[t][k] for t in parts if self.targets[t]["scored"][r]} for k, r in enumerate(rows)]
        if comm is not None:
            for doc, c in zip(out, comm):
                doc["community"] = c
        return out

    def profiles_json(self, user_ids: list[str]) -> list[str | None]:
        """:meth:`profiles` as JSON text, built from per-target pieces prepared once (the hot path of the API:
        no nested dicts to build and serialise per user); the same documents, key for key."""
        rows = self.rows(user_ids)
        ok = rows >= 0
        parts, comm = self._pieces_of(rows[ok])
        names = {t: json.dumps(t) + ":" for t in parts}
        scored = {t: v["scored"][rows[ok]] for t, v in self.targets.items()}
        out: list[str | None] = []
        k = 0
        for uid, hit in zip(user_ids, ok):
            if not hit:
                out.append(None)
                continue
            targets = ",".join(names[t] + parts[t][k] for t in parts if scored[t][k])
            out.append('{"user_id":' + json.dumps(str(uid)) + ',"targets":{' + targets + "}"
                       + (',"community":' + comm[k] if comm is not None else "") + "}")
            k += 1
        return out

    # ------------------------------------------------------------------------------------------- embeddings
    def embeddings(self):
        """The exported embeddings and each user's bought items (loaded on first use), or None."""
        with self._lock:
            if self._embeddings is None:
                self._embeddings = _load_embeddings(self.root, self.version)
        return self._embeddings

    def similar(self, user_id: str, k: int) -> list[dict] | None:
        emb = self.embeddings()
        if emb is None:
            return None
        users = emb["users"]
        if users.meta.get("pseudonymized"):
            return None
        out = users.nearest(str(user_id), k)
        return [{"rank": int(r), "user_id": str(i), "similarity": float(s)}
                for r, i, s in zip(out["rank"], out["id"], out["similarity"])]

    def recommendations(self, user_id: str, k: int) -> list[dict] | None:
        emb = self.embeddings()
        if emb is None or emb["items"] is None or emb["users"].meta.get("pseudonymized"):
            return None
        users, items = emb["users"], emb["items"]
        u = users.index_of(str(user_id))
        scores = items.vectors @ users.vectors[u]
        bought = emb["bought"]
        scores[bought.indices[bought.indptr[u]:bought.indptr[u + 1]]] = -np.inf
        k = int(min(k, np.isfinite(scores).sum()))
        top = np.argsort(-scores, kind="stable")[:k]
        return [{"rank": j + 1, "item_id": str(items.ids[t]), "score": float(scores[t])} for j, t in enumerate(top)]


def _load_embeddings(root: Path, version: str | None):
    from graphprof.embeddings.export import load_embeddings
    from graphprof.graph import BUYS, load_graph

    if not (root / workdir.EMBEDDINGS_DIR / workdir.EMBEDDINGS_META).exists():
        return None
    users = load_embeddings(root, "user")
    if users.meta.get("graph_id") != version:
        return None  # an export of another graph: answered as "no embeddings" until exported again
    items = load_embeddings(root, "item")
    import scipy.sparse as sp

    graph = load_graph(root)
    ei = graph.edge(BUYS)
    bought = sp.csr_matrix((np.ones(ei.shape[1], dtype=np.int8), (ei[0], ei[1])),
                           shape=(graph.num_users, len(graph.item_ids)))
    return {"users": users, "items": items, "bought": bought}


def _updates_since(manifest: dict, graph_id: str | None) -> int:
    journal = manifest.get("updates", [])
    start = next((k for k, e in enumerate(journal) if e.get("graph_id_before") == graph_id), len(journal))
    return len(journal) - start


def _stamp(root: Path):
    try:
        st = (Path(root) / workdir.MANIFEST).stat()
        return st.st_mtime_ns, st.st_size, st.st_ino
    except FileNotFoundError:
        return None


class LiveStore:
    """The current :class:`WorkdirStore` of a work directory. A background thread checks ``manifest.json`` every
    ``check_s`` seconds and, when it changed, builds the new view beside the old one and swaps it in (one
    assignment: a request is answered from the old view or the new, and none waits for the rebuild); a failed
    rebuild keeps the previous view and is retried."""

    def __init__(self, root: str | Path, check_s: float = 1.0):
        self.root, self.check_s = Path(root), check_s
        self.current = WorkdirStore(self.root)
        self.reloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="graphprof-store", daemon=True)
        self._thread.start()

    def get(self) -> WorkdirStore:
        return self.current

    def refresh(self) -> bool:
        """Build a new view now if the work directory changed; returns whether it did."""
        if _stamp(self.root) == self.current.stamp:
            return False
        try:
            self.current = WorkdirStore(self.root)
        except Exception as exc:  # noqa: BLE001 - a stage mid-write: the next check tries again
            log.warning("serve: keeping the previous view of %s/ (%s); trying again", self.root, exc)
            return False
        self.reloads += 1
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.check_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
