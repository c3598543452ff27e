"""The work directory: artifact names, atomic writes, the manifest, the lock and safe loads.

No other module builds artifact paths: they come from the constants and helpers here. Every file is written
to a temporary name in its own folder and then moved into place with ``os.replace``, so a crash never leaves
a half-written artifact. Loads never unpickle: Parquet, JSON, safetensors and ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphprof.errors import ArtifactError, LockError

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
PARTIAL_TRAIN = ".partial-train"  # an unfinished train run; models/ is replaced only when it is done
COMMUNITIES_DIR = "communities"             # communities/<method>/{assignments,profiles}.parquet + summary.json
COMMUNITY_ASSIGNMENTS = "assignments.parquet"
COMMUNITY_PROFILES = "profiles.parquet"
COMMUNITY_SUMMARY = "summary.json"          # written last: its presence means the method's run is complete
LIGHTGCN_DIR = "models/_lightgcn"   # the label-free embedding model (not a target)
EMBEDDINGS_DIR = "embeddings"
PREDICTIONS_NEW = "predictions/new_users.parquet"
REPORT = "report.html"                      # graphprof report: one self-contained HTML file


def table_path(root: Path, table: str) -> Path:
    return Path(root) / TABLES_DIR / f"{table}.parquet"


def ids_path(root: Path, kind: str) -> Path:
    return Path(root) / IDS_DIR / f"{kind}.parquet"


def rejects_path(root: Path, table: str) -> Path:
    return Path(root) / REJECTS_DIR / f"{table}.csv"


def model_dir(root: Path, target: str, model: str) -> Path:
    return Path(root) / MODELS_DIR / target / model


def run_dir(root: Path, target: str, model: str, seed: int) -> Path:
    return model_dir(root, target, model) / f"seed_{seed}"


def communities_dir(root: Path, method: str) -> Path:
    return Path(root) / COMMUNITIES_DIR / method


def community_methods(root: Path) -> list[str]:
    """Methods with a complete run under ``communities/`` (a ``summary.json``), sorted by name."""
    base = Path(root) / COMMUNITIES_DIR
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if (d / COMMUNITY_SUMMARY).is_file())


# --------------------------------------------------------------------------------------------- atomic writes
def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then move it into place atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _finite(obj: Any) -> Any:
    """NaN / inf -> None, so every JSON file is strict JSON (``null``) that any parser reads."""
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def replace_dir(src: Path, dst: Path) -> Path:
    """Move the finished folder ``src`` to ``dst``, replacing what was there. The old folder is first renamed
    aside (``.old-<name>``) and deleted after: a crash in between leaves either the old or the new folder
    whole, and :func:`recover_dirs` puts the old one back if the new one never arrived."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    aside = dst.with_name(f".old-{dst.name}")
    if aside.exists():
        shutil.rmtree(aside)
    if dst.exists():
        os.replace(dst, aside)
    os.replace(src, dst)
    if aside.exists():
        shutil.rmtree(aside)
    return dst


def recover_dirs(root: Path) -> None:
    """Undo a :func:`replace_dir` cut off between its two renames: restore ``.old-<name>`` where ``<name>`` is
    missing, and drop it where the new folder is in place."""
    models = Path(root) / MODELS_DIR
    if not models.exists():
        return
    for aside in models.glob("*/.old-*"):
        dst = aside.with_name(aside.name[len(".old-"):])
        if dst.exists():
            shutil.rmtree(aside)
        else:
            os.replace(aside, dst)


def load_json_if_any(path: Path) -> Any | None:
    """The JSON at ``path``, or None where it is missing or damaged (a checkpoint cut off mid-write is none)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    # dictionary encoding only where values repeat (ids, categories): on float columns it is tried and given up
    # page by page, which made writing 1M users' features ~1.7x slower for a file no smaller
    encode = [str(c) for c in df.columns if not pd.api.types.is_float_dtype(df[c])]
    return atomic_write(path, lambda p: df.to_parquet(p, index=False, use_dictionary=encode or False))


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    def _w(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, _w)


def write_safetensors(path: Path, tensors: dict) -> Path:
    """Write torch tensors or numpy arrays (the same file either way; numpy needs no torch import)."""
    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file

        contiguous = {k: np.require(v, requirements="C") for k, v in tensors.items()}  # keeps 0-d arrays 0-d
    else:
        from safetensors.torch import save_file

        contiguous = {k: v.contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(contiguous, str(p)))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------------------------- safe loads
def read_json(path: Path, *, missing: str) -> Any:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: must be valid JSON. Got a damaged file ({exc}); {missing}") from exc


def read_parquet(path: Path, *, missing: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {missing}")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ArtifactError(f"{path}: must be a readable Parquet file. Got: {exc}; {missing}") from exc


def read_npz(path: Path, *, missing: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {missing}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:  # raised for object arrays (which would need pickle) and damaged files
        raise ArtifactError(f"{path}: must hold plain numeric arrays (no pickle). Got: {exc}") from exc


def read_safetensors(path: Path, *, missing: str, numpy: bool = False) -> dict:
    """The tensors of a safetensors file: torch tensors, or with ``numpy=True`` numpy arrays mapped from the file
    (no torch import; see :func:`_map_safetensors`)."""
    from safetensors import SafetensorError

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {missing}")
    try:
        if numpy:
            return _map_safetensors(path)
        from safetensors.torch import load_file

        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: must be a safetensors file. Got: {exc!r}; {missing}") from exc


#: safetensors dtype names -> numpy (little-endian, as the format stores them)
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


def _map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file (8-byte header length, JSON header, data), mapped copy-on-write: as
    ``safetensors.torch`` does, nothing is read until used and nothing is copied (``safetensors.numpy`` copies
    every array: at 1M users 1-2 s more for ``predict``, which reads a few rows of the graph). The header is
    checked: known dtypes only, each array's bytes matching its shape and inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 <= n <= size - 8:
            raise ValueError("the header length does not fit the file")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise ValueError("the header must be a JSON object")
    data = np.memmap(path, dtype=np.uint8, mode="c") if size > 8 + n else np.zeros(0, np.uint8)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        shape = tuple(int(d) for d in info["shape"])
        start, end = (int(x) for x in info["data_offsets"])
        if min(shape, default=0) < 0 or start < 0 or end - start != math.prod(shape) * dtype.itemsize \
                or 8 + n + end > size:
            raise ValueError(f"{name}: its data offsets do not match its shape and the file")
        out[name] = data[8 + n + start:8 + n + end].view(dtype).reshape(shape)
    return out


# ----------------------------------------------------------------------------------------------- manifest
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        return {}
    return read_json(path, missing="run 'graphprof build-graph' to rebuild the work directory")


def update_manifest(root: Path, **sections: Any) -> dict:
    """Merge ``sections`` into ``manifest.json`` (written last by each stage, atomically)."""
    from graphprof import __version__

    manifest = load_manifest(root)
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["graphprof_version"] = __version__
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key].update(value)
        else:
            manifest[key] = value
    write_json(Path(root) / MANIFEST, manifest)
    return manifest


def require_built(root: Path) -> dict:
    """Return the manifest of a work directory that has a graph, or say which command to run."""
    root = Path(root)
    if not (root / GRAPH_META).exists():
        raise ArtifactError(f"{root}/: no graph found; run 'graphprof build-graph' first")
    recover_dirs(root)
    manifest = load_manifest(root)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{root}/manifest.json: schema_version must be {SCHEMA_VERSION}. Got {version!r} instead; "
            "re-run 'graphprof build-graph' with this version of graphprof"
        )
    from graphprof import __version__

    built_by = str(manifest.get("graphprof_version", ""))
    if built_by.split(".")[:2] != __version__.split(".")[:2]:
        raise ArtifactError(f"{root}/: must be built by graphprof {'.'.join(__version__.split('.')[:2])}.x. Got a work "
                            f"directory of graphprof {built_by or 'unknown'}; re-run 'graphprof build-graph'")
    check_inputs(root, manifest)
    return manifest


def check_inputs(root: Path, manifest: dict) -> None:
    """Refuse a work directory whose input files changed since ``build-graph`` (same path, other content).

    Size and modification time are compared first; the sha256 is computed only when the time moved, so an
    unchanged multi-GB input costs nothing. A moved or deleted input is fine: the work directory stands alone.
    """
    for name, info in (manifest.get("inputs") or {}).items():
        path = Path(info.get("path", ""))
        if not info.get("path") or not path.is_file():
            continue
        st = path.stat()
        if st.st_size == info.get("bytes") and st.st_mtime_ns == info.get("mtime_ns"):
            continue
        if st.st_size != info.get("bytes") or sha256_file(path) != info.get("sha256"):
            raise ArtifactError(f"{root}/: must be built from the current inputs. Got {path} ({name}) changed since "
                                "'graphprof build-graph' (other size or sha256); re-run 'graphprof build-graph'")


# ------------------------------------------------------------------------------------------------- lock
@contextlib.contextmanager
def locked(root: Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on the work directory so two runs cannot interleave their writes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()  # not ours: leave the holder's name in the file
        raise LockError(
            f"{root}/: the work directory must not be in use. Got it locked by {holder}; "
            "wait for that run to finish or use another --workdir"
        ) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} running '{command}'")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fh.close()


# --------------------------------------------------------------------------------- erasure (graphprof forget)
MODEL_CONFIG = "config.json"                # models/<target>/<model>/config.json, as graphprof.train writes it
MODEL_PREDICTIONS = "predictions.parquet"   # models/<target>/<model>/predictions.parquet (one row per user)
MODEL_WEIGHTS = "weights.safetensors"       # a model folder's arrays (models/.../seed_<s>/, models/_lightgcn/)
MODEL_META = "model.json"                   # a model folder's JSON beside its weights
EMBEDDINGS_META = "meta.json"               # embeddings/meta.json, written last by export-embeddings
ERASURES = "erasures"                       # manifest key: one entry per 'graphprof forget' (counts, never ids)
NEEDS_RETRAINING = "needs_retraining"       # manifest key (list of target/model) and config.json flag
