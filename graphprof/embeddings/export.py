"""User and item embeddings: export for recommenders, pseudonymised ids, nearest users and recommendations.

Ids travel with their vectors (``Embeddings(ids, vectors)``). Sources, by ``model``:

* ``lightgcn`` (default): a social LightGCN trained on purchases + friendships for ranking (see
  :mod:`graphprof.lightgcn`); label-free, so every user gets a vector; items too.
* ``sage``: the representation the trained ``sage`` classifier of a target reads (users and items).
* ``lr``: the baseline's standardised, PCA-reduced features (users only).

Files (names in :mod:`graphprof.workdir`): ``embeddings/users.parquet`` (``user_id`` + ``e_0..e_{d-1}``),
``users.npy`` + ``users_ids.csv`` (row ``k`` of the array is the ``k``-th id), the same for items, and
``meta.json`` (model, dim, seed, target, graph_id, pseudonymized). The Parquet files carry the same metadata
under the schema key ``graphprof``. Everything loads with pandas / numpy alone.

Pseudonymisation replaces user ids by HMAC-SHA256(key, id) (hex). The key comes from the environment variable
:data:`KEY_ENV` or a key file readable by its owner only, kept outside the work directory; without a key,
``pseudonymize=True`` is an error, never a silent plain hash. Pseudonymised embeddings remain personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError

KEY_ENV = "GRAPHPROF_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
SOURCES = ("lightgcn", "sage", "gat", "sign", "lr")


@dataclass
class Embeddings:
    """``vectors[k]`` is the embedding of ``ids[k]``.

    Attributes:
        ids: str array ``[n]``. vectors: float32 ``[n, dim]``. meta: model, dim, seed, ... (JSON-able).
    """

    ids: np.ndarray
    vectors: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index_of(self, id_: str, shown: str | None = None) -> int:
        """Row of ``id_``; ``shown`` is the id as the user typed it (before pseudonymisation), for the error."""
        hits = np.flatnonzero(self.ids == str(id_))
        if len(hits) == 0:
            raise ConfigError(f"user id must be one of the {len(self.ids)} embedded ids. "
                              f"Got {shown if shown is not None else id_!r} instead")
        return int(hits[0])

    def to_frame(self, id_column: str) -> pd.DataFrame:
        """Columns: ``<id_column>`` (str), ``e_0`` .. ``e_{dim-1}`` (float32)."""
        frame = pd.DataFrame(self.vectors, columns=[f"e_{j}" for j in range(self.dim)])
        frame.insert(0, id_column, pd.Series(self.ids, dtype="string"))
        return frame

    def nearest(self, id_: str, k: int = 10, shown: str | None = None) -> pd.DataFrame:
        """The ``k`` nearest other ids by cosine similarity. Columns: ``rank``, ``id``, ``similarity``."""
        i = self.index_of(id_, shown)
        norms = np.linalg.norm(self.vectors, axis=1)
        norms[norms == 0] = 1.0
        sim = (self.vectors @ self.vectors[i]) / (norms * norms[i])
        sim[i] = -np.inf
        k = min(k, len(sim) - 1)
        top = np.argsort(-sim, kind="stable")[:k]
        return pd.DataFrame({"rank": np.arange(1, k + 1), "id": self.ids[top], "similarity": sim[top]})


# ------------------------------------------------------------------------------------ pseudonymisation
def load_key(key_file: str | Path | None = None, root: str | Path | None = None) -> bytes:
    """The pseudonymisation key: ``key_file`` if given, else the environment variable :data:`KEY_ENV`.

    Raises:
        ConfigError: no key, a key shorter than 16 bytes, a key file others can read, or one inside the
            work directory (a key stored beside the data it protects protects nothing).
    """
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"--key-file must be an existing file. Got {str(path)!r} instead")
        if root is not None and Path(root).resolve() in path.resolve().parents:
            raise ConfigError(f"--key-file must be kept outside the work directory. Got {path} inside {root}")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path}: a key file must be readable by its owner only (chmod 600). "
                              f"Got mode {oct(mode)} instead")
        key = path.read_bytes().strip()
    else:
        key = os.environ.get(KEY_ENV, "").encode()
        if not key:
            raise ConfigError(f"--pseudonymize needs a key: set {KEY_ENV} or pass --key-file FILE (chmod 600). "
                              "Got neither; ids are never replaced by a plain hash")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes. Got {len(key)}")
    return key


def pseudonymize_ids(ids, key: bytes) -> np.ndarray:
    """HMAC-SHA256(key, id) as 64 hex characters, for each id."""
    return np.array([hmac.new(key, str(i).encode("utf-8"), hashlib.sha256).hexdigest() for i in ids],
                    dtype=object)


# ----------------------------------------------------------------------------------------------- export
@dataclass
class ExportResult:
    """What ``export-embeddings`` wrote."""

    meta: dict
    files: list[str]

    def summary_lines(self) -> list[str]:
        m = self.meta
        lines = [f"embeddings: {m['num_users']} users" + (f", {m['num_items']} items" if m["num_items"] else "")
                 + f" x {m['dim']} dims from model '{m['model']}'"
                 + (f" (target {m['target']})" if m.get("target") else "")
                 + ("; user ids pseudonymized (HMAC-SHA256)" if m["pseudonymized"] else "")]
        lines += [f"  {f}" for f in self.files]
        return lines

    def to_json(self) -> dict:
        return {"meta": self.meta, "files": self.files}


def _sage_or_lr(root: Path, model: str, target: str | None):
    from graphprof.features import load_features
    from graphprof.graph import load_graph
    from graphprof.models import ModelInput, get_model

    models_dir = root / workdir.MODELS_DIR
    trained = sorted(p.parent.parent.name for p in models_dir.glob(f"*/{model}/config.json")) if models_dir.exists() else []
    if target is None:
        if not trained:
            raise ArtifactError(f"{root}/: no trained '{model}' model found; run 'graphprof train' first "
                                "(or use --model lightgcn, which needs no labels)")
        target = trained[0]
    elif target not in trained:
        raise ConfigError(f"--target must be a target with a trained '{model}' model "
                          f"({', '.join(trained) or 'none yet; run graphprof train'}). Got {target!r} instead")
    config = workdir.read_json(workdir.model_dir(root, target, model) / "config.json", missing="run 'graphprof train'")
    seed = config["predictions_from_seed"]
    fitted = get_model(model).load(workdir.run_dir(root, target, model, seed))
    features = load_features(root)
    inputs = ModelInput(graph=load_graph(root) if fitted.uses_graph else None, features=features)
    users = fitted.embed(inputs).astype(np.float32)
    items = fitted.embed_items(inputs).astype(np.float32) if hasattr(fitted, "embed_items") else None
    return features.user_ids, features.item_ids, users, items, target, seed


def _lightgcn(root: Path, seed: int, manifest: dict):
    from graphprof.graph import load_graph
    from graphprof.models.lightgcn import LightGCN, fit_lightgcn

    graph = load_graph(root)
    path = root / workdir.LIGHTGCN_DIR
    if (path / "model.json").exists():
        model = LightGCN.load(path)
        if model.seed == seed and model.info.get("graph_id") == manifest.get("graph_id"):
            return graph, model
    model = fit_lightgcn(graph, seed=seed)
    model.info["graph_id"] = manifest.get("graph_id")
    model.save(path)
    marked = workdir.load_manifest(root).get(workdir.NEEDS_RETRAINING)
    if marked and "_lightgcn" in marked:  # refitted without the erased users
        workdir.update_manifest(root, **{workdir.NEEDS_RETRAINING: [m for m in marked if m != "_lightgcn"]})
    return graph, model


def export_embeddings(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, model: str = "lightgcn",
                      target: str | None = None, out: str | Path | None = None, pseudonymize: bool = False,
                      key_file: str | Path | None = None, seed: int = 0) -> ExportResult:
    """Write user (and item) embeddings to ``embeddings/`` and, with ``out``, to one more file.

    Args:
        model: ``lightgcn`` (trained here if the work directory has none for this graph and seed), ``sage``,
            ``gat``, ``sign`` or ``lr`` (from ``train``; ``target`` picks whose, default the first trained target).
        out: ``FILE.parquet`` (user_id + vector columns; items beside it as ``FILE_items.parquet``) or
            ``FILE.npy`` (with ``FILE_ids.csv``).
        pseudonymize: replace user ids by keyed hashes everywhere this export writes (see :func:`load_key`).

    Raises:
        ArtifactError: no graph, or no trained model of that name. ConfigError: bad model, out or key.
    """
    root = Path(workdir_path)
    if model not in SOURCES:
        raise ConfigError(f"--model must be one of {', '.join(SOURCES)}. Got {model!r} instead")
    if out is not None and not str(out).endswith((".parquet", ".npy")):
        raise ConfigError(f"--out must end in .parquet or .npy. Got {str(out)!r} instead")
    key = load_key(key_file, root) if pseudonymize else None
    manifest = workdir.require_built(root)
    with workdir.locked(root, "export-embeddings"):
        if model == "lightgcn":
            graph, fitted = _lightgcn(root, seed, manifest)
            graph_users, graph_items = graph.user_ids, graph.item_ids
            users, items, used_seed = fitted.users, fitted.items, seed
            extra = {"val_recall@20": fitted.info.get("val_recall@20"), "best_epoch": fitted.info.get("best_epoch")}
        else:
            graph_users, graph_items, users, items, target, used_seed = _sage_or_lr(root, model, target)
            extra = {}
        user_ids = pseudonymize_ids(graph_users, key) if key else graph_users.astype(object)
        meta = {"model": model, "target": target if model != "lightgcn" else None, "dim": int(users.shape[1]),
                "seed": used_seed, "num_users": int(len(user_ids)),
                "num_items": int(len(items)) if items is not None else 0,
                "graph_id": manifest.get("graph_id"), "pseudonymized": bool(key), **extra}
        user_emb = Embeddings(user_ids, np.ascontiguousarray(users, dtype=np.float32), meta)
        item_emb = (Embeddings(graph_items.astype(object), np.ascontiguousarray(items, dtype=np.float32), meta)
                    if items is not None else None)
        files = _write_dir(root, user_emb, item_emb)
        if out is not None:
            files += _write_out(Path(out), user_emb, item_emb)
        workdir.update_manifest(root, stages={"export-embeddings": {"model": model, "target": meta["target"],
                                                                    "pseudonymized": bool(key)}})
    return ExportResult(meta=meta, files=[str(f) for f in files])


def _write_parquet_with_meta(path: Path, frame: pd.DataFrame, meta: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"graphprof": json.dumps(meta).encode()})
    ids = [str(c) for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])]  # no dictionary for floats
    return workdir.atomic_write(path, lambda p: pq.write_table(table, p, use_dictionary=ids or False))


def _write_npy(path: Path, vectors: np.ndarray) -> Path:
    def _w(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)

    return workdir.atomic_write(path, _w)


def _write_dir(root: Path, users: Embeddings, items: Embeddings | None) -> list[Path]:
    d = root / workdir.EMBEDDINGS_DIR
    files = []
    for kind, emb in (("user", users), ("item", items)):
        stale = [d / f"{kind}s.parquet", d / f"{kind}s.npy", d / f"{kind}s_ids.csv"]
        if emb is None:
            for f in stale:
                f.unlink(missing_ok=True)
            continue
        files.append(_write_parquet_with_meta(stale[0], emb.to_frame(f"{kind}_id"), emb.meta))
        files.append(_write_npy(stale[1], emb.vectors))
        files.append(workdir.write_csv(stale[2], pd.DataFrame({f"{kind}_id": emb.ids})))
    files.append(workdir.write_json(d / "meta.json", users.meta))  # last: its presence means a complete export
    return files


def _write_out(out: Path, users: Embeddings, items: Embeddings | None) -> list[Path]:
    stem = out.with_suffix("")
    files = []
    if out.suffix == ".parquet":
        files.append(_write_parquet_with_meta(out, users.to_frame("user_id"), users.meta))
        if items is not None:
            files.append(_write_parquet_with_meta(Path(f"{stem}_items.parquet"), items.to_frame("item_id"),
                                                  items.meta))
    else:
        files.append(_write_npy(out, users.vectors))
        files.append(workdir.write_csv(Path(f"{stem}_ids.csv"), pd.DataFrame({"user_id": users.ids})))
        files.append(workdir.write_json(Path(f"{stem}_meta.json"), users.meta))
    return files


# ------------------------------------------------------------------------------------------------- load
def load_embeddings(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, kind: str = "user") -> Embeddings | None:
    """Embeddings written by :func:`export_embeddings` (``kind`` = ``user`` or ``item``); ``None`` where that
    export had no item vectors.

    Raises:
        ArtifactError: nothing exported yet.
    """
    d = Path(workdir_path) / workdir.EMBEDDINGS_DIR
    hint = "run 'graphprof export-embeddings' first"
    meta = workdir.read_json(d / "meta.json", missing=hint)
    path = d / f"{kind}s.npy"
    if kind == "item" and not path.exists():
        return None
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {hint}")
    vectors = np.load(path, allow_pickle=False)
    ids = pd.read_csv(d / f"{kind}s_ids.csv", dtype=str, keep_default_na=False)[f"{kind}_id"].to_numpy(dtype=object)
    if len(ids) != len(vectors):
        raise ArtifactError(f"{d}: {kind} ids and vectors must line up. Got {len(ids)} ids, {len(vectors)} rows; "
                            f"{hint}")
    return Embeddings(ids, vectors, meta)


def _query_id(user_id: str, meta: dict, key_file, root: Path) -> str:
    """The id to look up: the user's own id, or its pseudonym when the export was pseudonymised."""
    if not meta.get("pseudonymized"):
        return str(user_id)
    return str(pseudonymize_ids([user_id], load_key(key_file, root))[0])


def _check_current(root: Path, meta: dict) -> None:
    """Refuse an export made from another graph than the one in the work directory."""
    current = workdir.load_manifest(root).get("graph_id")
    if current is not None and meta.get("graph_id") != current:
        raise ArtifactError(f"{root}/embeddings: must come from the current graph. Got an export of an older build; "
                            "run 'graphprof export-embeddings' again")


def similar(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, user_id: str = "", k: int = 10,
            key_file: str | Path | None = None) -> pd.DataFrame:
    """The ``k`` users nearest to ``user_id`` in the exported embeddings (cosine).

    Columns: ``rank``, ``user_id``, ``similarity``.
    """
    if k < 1:
        raise ConfigError(f"-k must be >= 1. Got {k} instead")
    root = Path(workdir_path)
    users = load_embeddings(root, "user")
    _check_current(root, users.meta)
    out = users.nearest(_query_id(user_id, users.meta, key_file, root), k, shown=str(user_id))
    return out.rename(columns={"id": "user_id"})


def recommend(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, user_id: str = "", k: int = 10,
              key_file: str | Path | None = None) -> pd.DataFrame:
    """The ``k`` items the user has not bought with the highest score ``<user, item>``.

    Columns: ``rank``, ``item_id``, ``score``, ``category`` (where items have one), ``popularity``.

    Raises:
        ArtifactError: nothing exported, or an export without item vectors (``lr``).
        ConfigError: unknown user id, or ``k`` < 1.
    """
    from graphprof.features import load_features
    from graphprof.graph import BUYS, load_graph

    if k < 1:
        raise ConfigError(f"-k must be >= 1. Got {k} instead")
    root = Path(workdir_path)
    users = load_embeddings(root, "user")
    items = load_embeddings(root, "item")
    if items is None:
        raise ArtifactError(f"{root}/embeddings: the export of model '{users.meta['model']}' has no item vectors; "
                            "run 'graphprof export-embeddings --model lightgcn' (or sage) first")
    _check_current(root, users.meta)
    u = users.index_of(_query_id(user_id, users.meta, key_file, root), shown=str(user_id))
    graph = load_graph(root)
    if list(graph.item_ids) != list(items.ids):
        raise ArtifactError(f"{root}/embeddings: items must match the graph. Got a stale export; "
                            "run 'graphprof export-embeddings' again")
    scores = items.vectors @ users.vectors[u]
    ei = graph.edge(BUYS)
    scores[ei[1][ei[0] == u]] = -np.inf  # graph users and embedded users share the graph's order
    k = int(min(k, np.isfinite(scores).sum()))
    top = np.argsort(-scores, kind="stable")[:k]
    out = pd.DataFrame({"rank": np.arange(1, k + 1), "item_id": items.ids[top], "score": scores[top]})
    feats = load_features(root).items
    if "category" in feats:
        out["category"] = feats["category"].to_numpy()[top]
    out["popularity"] = feats["popularity"].to_numpy()[top].astype(np.int64)
    return out
