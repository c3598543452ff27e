"""Where every artifact of the work directory lives: its folders and file names, and the helpers that join them.

No other module spells an artifact's file name; each stage asks here for the path it writes or reads.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

SCHEMA_VERSION = 1
DEFAULT_WORKDIR = "work"

MANIFEST = "manifest.json"
LOCK = ".lock"
TABLES_DIR = "tables"
IDS_DIR = "tables/ids"
REJECTS_DIR = "rejects"
GRAPH_DIR = "graph"
GRAPH_TENSORS = "graph/tensors.safetensors"
GRAPH_META = "graph/meta.json"
FEATURES_USERS = "features/users.parquet"
FEATURES_ITEMS = "features/items.parquet"
FEATURES_META = "features/meta.json"
FEATURES_STATE = "features/state.safetensors"
MODELS_DIR = "models"
PARTIAL_BUILD = ".partial-build"  # a build in progress; its folders replace the previous build's only when done
FEATURES_DIR = "features"
#: the folders one build writes, all replaced together when it is done
BUILD_DIRS = (TABLES_DIR, REJECTS_DIR, GRAPH_DIR, FEATURES_DIR)
PARTIAL_UPDATE = ".partial-update"  # an update being written; applied whole once its COMMIT.json is there
PARTIAL_TRAIN = ".partial-train"  # an unfinished train run; models/ is replaced only when it is done
SCRATCH_DIR = ".scratch"            # memory-mapped working files of a running train (sign's blocks); removed after
CACHE_DIR = "cache"                # cache/<graph id>/<key>/: label-free arrays the models reuse (workdir.cache)
COMMUNITIES_DIR = "communities"             # communities/<method>/{assignments,profiles}.parquet + summary.json
COMMUNITY_ASSIGNMENTS = "assignments.parquet"
COMMUNITY_PROFILES = "profiles.parquet"
COMMUNITY_SUMMARY = "summary.json"          # written last: its presence means the method's run is complete
LIGHTGCN_DIR = "models/_lightgcn"   # the label-free embedding model (not a target)
EMBEDDINGS_DIR = "embeddings"
PREDICTIONS_NEW = "predictions/new_users.parquet"
REPORT = "report.html"                      # graphprof report: one self-contained HTML file

MODEL_CONFIG = "config.json"                # models/<target>/<model>/config.json, as graphprof.train writes it
MODEL_PREDICTIONS = "predictions.parquet"   # models/<target>/<model>/predictions.parquet (one row per user)
MODEL_WEIGHTS = "weights.safetensors"       # a model folder's arrays (models/.../seed_<s>/, models/_lightgcn/)
MODEL_META = "model.json"                   # a model folder's JSON beside its weights
EMBEDDINGS_META = "meta.json"               # embeddings/meta.json, written last by export-embeddings
ERASURES = "erasures"                       # manifest key: one entry per 'graphprof forget' (counts, never ids)
NEEDS_RETRAINING = "needs_retraining"       # manifest key (list of target/model) and config.json flag

MODEL_METRICS = "metrics.json"              # models/<target>/<model>/metrics.json: per seed, mean and std
MODEL_TIMINGS = "timings.json"              # models/<target>/<model>/timings.json: fit seconds (apart from metrics)
RUN_SETTINGS = "run.json"                   # .partial-train/<target>/run.json: the settings a resume must match
RUN_RESULT = "result.json"                  # a finished (model, seed) checkpoint, written last


def model_file(root: Path, target: str, model: str, name: str) -> Path:
    """``models/<target>/<model>/<name>`` (``name``: :data:`MODEL_CONFIG`, :data:`MODEL_METRICS`, ...)."""
    return model_dir(root, target, model) / name


def embedding_files(folder: Path, kind: str) -> dict[str, Path]:
    """The files of one export of ``kind`` ("user" or "item") in ``folder`` (``embeddings/`` by default):
    ``parquet`` (id + vector columns), ``npy`` (the matrix) and ``ids`` (the ids in the matrix's order)."""
    folder = Path(folder)
    return {"parquet": folder / f"{kind}s.parquet", "npy": folder / f"{kind}s.npy", "ids": folder / f"{kind}s_ids.csv"}


def export_sidecars(out: Path) -> dict[str, Path]:
    """The files written beside an export to ``--out FILE``: ``items`` (item vectors beside a Parquet file),
    ``ids`` and ``meta`` (beside a ``.npy`` file)."""
    out = Path(out)
    stem = out.with_suffix("")
    return {"items": Path(f"{stem}_items.parquet"), "ids": Path(f"{stem}_ids.csv"), "meta": Path(f"{stem}_meta.json")}


def table_path(root: Path, table: str) -> Path:
    return Path(root) / TABLES_DIR / f"{table}.parquet"


def table_part_path(root: Path, table: str, batch: int) -> Path:
    """``tables/updates/<batch>/<table>.parquet``: the rows an update appended to an append-only table
    (purchases, friendships); the table is the main file followed by its parts in batch order."""
    return Path(root) / TABLES_DIR / "updates" / str(batch) / f"{table}.parquet"


def table_parts(root: Path, table: str) -> list[Path]:
    """The parts of ``table`` (:func:`table_part_path`), in batch order."""
    folder = Path(root) / TABLES_DIR / "updates"
    if not folder.is_dir():
        return []
    parts = [p for p in folder.glob(f"*/{table}.parquet") if p.parent.name.isdigit()]
    return sorted(parts, key=lambda p: int(p.parent.name))


def ids_path(root: Path, kind: str) -> Path:
    return Path(root) / IDS_DIR / f"{kind}.parquet"


def rejects_path(root: Path, table: str) -> Path:
    return Path(root) / REJECTS_DIR / f"{table}.csv"


#: a name taken from the data (a users-table column) is its own folder name only if it looks like this
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: names Windows keeps for devices, with or without an extension
_DEVICE_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def folder_name(name: str) -> str:
    """The folder a name from the data (a target column) is written under: the name itself where it is plain
    (letters, digits, ``_ . -``, not starting with a dot or ``_``, at most 64 characters, not ending in a dot, not
    a reserved device name), else a slug of its plain characters and a hash of the whole name
    (``<slug>-<12 hex>``). So no name -- ``..``, ``/``, ``\\``, NUL, 300 characters, ``CON`` -- forms a path
    outside its folder, and two names never share one. The real name is kept in the folder's ``config.json``."""
    if (_PLAIN_NAME.fullmatch(name) and not name.endswith(".")
            and name.split(".")[0].lower() not in _DEVICE_NAMES):
        return name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_.-")[:40] or "target"
    if slug.split(".")[0].lower() in _DEVICE_NAMES:
        slug = f"t_{slug}"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def model_dir(root: Path, target: str, model: str) -> Path:
    """``models/<target's folder>/<model>/`` (:func:`folder_name`; model names come from the registry)."""
    return Path(root) / MODELS_DIR / folder_name(target) / model


def target_name(target_folder: Path) -> str:
    """The real target name of a ``models/<folder>/`` (the ``target`` its models' ``config.json`` records; the
    folder name where none does)."""
    import json

    for config in sorted(Path(target_folder).glob(f"*/{MODEL_CONFIG}")):
        try:
            found = json.loads(config.read_text(encoding="utf-8")).get("target")
        except (OSError, ValueError):
            continue
        if isinstance(found, str):
            return found
    return Path(target_folder).name


def seed_dir(folder: Path, seed: int) -> Path:
    """A model folder's ``seed_<seed>/`` (its weights for that seed)."""
    return Path(folder) / f"seed_{seed}"


def run_dir(root: Path, target: str, model: str, seed: int) -> Path:
    return seed_dir(model_dir(root, target, model), seed)


def communities_dir(root: Path, method: str) -> Path:
    return Path(root) / COMMUNITIES_DIR / method


def community_methods(root: Path) -> list[str]:
    """Methods with a complete run under ``communities/`` (a ``summary.json``), sorted by name."""
    base = Path(root) / COMMUNITIES_DIR
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if (d / COMMUNITY_SUMMARY).is_file())



def model_dirs(root: Path, marker: str = MODEL_CONFIG) -> list[Path]:
    """``models/<target>/<model>/`` folders of trained classifiers that hold ``marker``, sorted (not
    ``_lightgcn``, not the ``.old-*`` folders a cut-off replacement leaves)."""
    return sorted(c.parent for c in (Path(root) / MODELS_DIR).glob(f"*/*/{marker}")
                  if not c.parent.parent.name.startswith((".", "_")) and not c.parent.name.startswith("."))


def community_assignment_files(root: Path) -> list[Path]:
    """Every ``communities/<method>/assignments.parquet`` present, sorted by method."""
    return sorted((Path(root) / COMMUNITIES_DIR).glob(f"*/{COMMUNITY_ASSIGNMENTS}"))
