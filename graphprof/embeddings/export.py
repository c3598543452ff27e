"""User and item embeddings: the export for recommenders, its files, and loading them back.

Ids travel with their vectors (``Embeddings(ids, vectors)``). Sources, by ``model``:

* ``lightgcn`` (default): a social LightGCN trained on purchases + friendships for ranking (see
  :mod:`graphprof.models.lightgcn`); label-free, so every user gets a vector; items too.
* ``sage``: the representation the trained ``sage`` classifier of a target reads (users and items).
* ``lr``: the baseline's standardised, PCA-reduced features (users only).

Files (names in :mod:`graphprof.workdir`): ``embeddings/users.parquet`` (``user_id`` + ``e_0..e_{d-1}``),
``users.npy`` + ``users_ids.csv`` (row ``k`` of the array is the ``k``-th id), the same for items, and
``meta.json`` (model, dim, seed, target, graph_id, pseudonymized). The Parquet files carry the same metadata
under the schema key ``graphprof``. Everything loads with pandas / numpy alone.

``pseudonymize=True`` replaces user ids by keyed hashes (:mod:`graphprof.privacy.pseudonymize`); pseudonymised
embeddings remain personal data. :mod:`graphprof.embeddings.query` answers ``similar`` and ``recommend``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.privacy.pseudonymize import load_key, pseudonymize_ids
from graphprof.runtime.memory import page_out, reserve

SOURCES = ("lightgcn", "sage", "gat", "sign", "lr")
#: users per block where the vectors are computed and written a block at a time (the files are the same)
WRITE_ROWS = 262_144


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

    trained = [workdir.target_name(d.parent) for d in workdir.model_dirs(root) if d.name == model]
    if target is None:
        if not trained:
            raise ArtifactError(f"{root}/: no trained '{model}' model found; run 'graphprof train' first "
                                "(or use --model lightgcn, which needs no labels)")
        target = trained[0]
    elif target not in trained:
        raise ConfigError(f"--target must be a target with a trained '{model}' model "
                          f"({', '.join(trained) or 'none yet; run graphprof train'}). Got {target!r} instead")
    config = workdir.read_json(workdir.model_file(root, target, model, workdir.MODEL_CONFIG), missing="run 'graphprof train'")
    seed = config["predictions_from_seed"]
    fitted = get_model(model).load(workdir.run_dir(root, target, model, seed))
    features = load_features(root)
    inputs = ModelInput(graph=load_graph(root) if fitted.uses_graph else None, features=features)
    users = fitted.embed_blocks(inputs, WRITE_ROWS)  # a block of users at a time: never every user's at once
    items = fitted.embed_items(inputs).astype(np.float32) if hasattr(fitted, "embed_items") else None
    return features.user_ids, features.item_ids, users, items, target, seed


def _lightgcn(root: Path, seed: int, manifest: dict):
    from graphprof.graph import load_graph
    from graphprof.models.lightgcn import LightGCN, fit_lightgcn

    graph = load_graph(root)
    path = root / workdir.LIGHTGCN_DIR
    if (path / workdir.MODEL_META).exists():
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
        meta = {"model": model, "target": target if model != "lightgcn" else None, "dim": 0,
                "seed": used_seed, "num_users": int(len(user_ids)),
                "num_items": int(len(items)) if items is not None else 0,
                "graph_id": manifest.get("graph_id"), "pseudonymized": bool(key), **extra}
        d = root / workdir.EMBEDDINGS_DIR
        # the matrix first, written a block at a time; every other file reads it back mapped, a block at a time
        npy = workdir.atomic_write(workdir.embedding_files(d, "user")["npy"],
                                   lambda p: _write_npy_blocks(p, len(user_ids), [users] if isinstance(users, np.ndarray)
                                                               else users))
        vectors = np.load(npy, mmap_mode="r", allow_pickle=False)
        meta["dim"] = int(vectors.shape[1])
        user_emb = Embeddings(user_ids, vectors, meta)
        item_emb = (Embeddings(graph_items.astype(object), np.ascontiguousarray(items, dtype=np.float32), meta)
                    if items is not None else None)
        files = write_export_dir(root, user_emb, item_emb, npy_written=True)
        if out is not None:
            files += _write_out(Path(out), user_emb, item_emb, npy)
        workdir.update_manifest(root, stages={"export-embeddings": {"model": model, "target": meta["target"],
                                                                    "pseudonymized": bool(key)}})
    return ExportResult(meta=meta, files=[str(f) for f in files])


def _write_parquet_with_meta(path: Path, emb: Embeddings, id_column: str) -> Path:
    """``emb`` as Parquet (``id_column`` + ``e_0..``; its meta under the schema key ``graphprof``), written
    :data:`WRITE_ROWS` rows at a time (a mapped matrix is read a block at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(p: Path) -> None:
        writer = None
        try:
            for lo in range(0, max(len(emb.ids), 1), WRITE_ROWS):
                part = Embeddings(emb.ids[lo:lo + WRITE_ROWS], np.asarray(emb.vectors[lo:lo + WRITE_ROWS]))
                table = pa.Table.from_pandas(part.to_frame(id_column), preserve_index=False)
                if writer is None:
                    schema = table.schema.with_metadata({**(table.schema.metadata or {}),
                                                         b"graphprof": json.dumps(emb.meta).encode()})
                    # no dictionary for the floats
                    writer = pq.ParquetWriter(p, schema, use_dictionary=[id_column])
                writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
                page_out(emb.vectors)
        finally:
            if writer is not None:
                writer.close()

    return workdir.atomic_write(path, write)


def _write_npy_blocks(path: Path, rows: int, blocks) -> None:
    """The float32 matrix of ``rows`` rows whose consecutive row blocks ``blocks`` yields, as a ``.npy`` file
    written a block at a time."""
    out = None
    at = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if out is None:
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, block.shape[1]))
            reserve(path)  # a full disk: an error now, not a crash mid-write
        out[at:at + len(block)] = block
        at += len(block)
        out.flush()  # written: the pages can be handed back
        page_out(out)
    if out is None or at != rows:  # an invariant: the model embeds every user
        raise ValueError(f"embeddings: {rows} rows to write. Got {at} instead")
    del out


def _write_npy(path: Path, vectors: np.ndarray) -> Path:
    return workdir.atomic_write(path, lambda p: _write_npy_blocks(p, len(vectors), [vectors]))


def write_export_dir(root: Path, users: Embeddings, items: Embeddings | None, npy_written: bool = False) -> list[Path]:
    """Write ``embeddings/``: per kind the Parquet file (metadata under the schema key ``graphprof``), the
    ``.npy`` matrix and its ids; the item files are removed where ``items`` is None; ``meta.json`` last (its
    presence means a complete export). ``npy_written``: the users' ``.npy`` is in place already (``users``'
    vectors are mapped from it). ``forget`` rewrites a filtered export through this function too."""
    d = Path(root) / workdir.EMBEDDINGS_DIR
    files = []
    for kind, emb in (("user", users), ("item", items)):
        paths = workdir.embedding_files(d, kind)
        if emb is None:
            for f in paths.values():
                f.unlink(missing_ok=True)
            continue
        files.append(_write_parquet_with_meta(paths["parquet"], emb, f"{kind}_id"))
        files.append(paths["npy"] if kind == "user" and npy_written else _write_npy(paths["npy"], emb.vectors))
        files.append(workdir.write_csv(paths["ids"], pd.DataFrame({f"{kind}_id": emb.ids})))
    files.append(workdir.write_json(d / workdir.EMBEDDINGS_META, users.meta))
    return files


def _write_out(out: Path, users: Embeddings, items: Embeddings | None, npy: Path) -> list[Path]:
    """The export's copy at ``--out``; ``npy``: the users' matrix as written in ``embeddings/``."""
    sidecars = workdir.export_sidecars(out)
    files = []
    if out.suffix == ".parquet":
        files.append(_write_parquet_with_meta(out, users, "user_id"))
        if items is not None:
            files.append(_write_parquet_with_meta(sidecars["items"], items, "item_id"))
    else:
        files.append(workdir.atomic_write(out, lambda p: shutil.copyfile(npy, p)))  # the same bytes
        files.append(workdir.write_csv(sidecars["ids"], pd.DataFrame({"user_id": users.ids})))
        files.append(workdir.write_json(sidecars["meta"], users.meta))
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
    meta = workdir.read_json(d / workdir.EMBEDDINGS_META, missing=hint)
    paths = workdir.embedding_files(d, kind)
    path = paths["npy"]
    if kind == "item" and not path.exists():
        return None
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {hint}")
    vectors = np.load(path, allow_pickle=False)
    ids = pd.read_csv(paths["ids"], dtype=str, keep_default_na=False)[f"{kind}_id"].to_numpy(dtype=object)
    if len(ids) != len(vectors):
        raise ArtifactError(f"{d}: {kind} ids and vectors must line up. Got {len(ids)} ids, {len(vectors)} rows; "
                            f"{hint}")
    return Embeddings(ids, vectors, meta)
