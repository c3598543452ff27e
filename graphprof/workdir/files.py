"""Atomic writes and safe loads: every artifact is written to a temporary file beside it and moved into place
with ``os.replace`` (a crash never leaves a half-written file); loads never unpickle (Parquet, JSON, safetensors,
``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphprof.errors import ArtifactError
from graphprof.workdir.paths import BUILD_DIRS, MODELS_DIR


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
    asides = [Path(root) / f".old-{name}" for name in BUILD_DIRS]
    models = Path(root) / MODELS_DIR
    if models.exists():
        asides += list(models.glob("*/.old-*"))
    for aside in asides:
        if not aside.exists():
            continue
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
    # page by page, which slows the write for a file no smaller
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


def read_parquet(path: Path, *, missing: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The Parquet file ``path`` (``columns``: those of them it has, only)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: not found; {missing}")
    try:
        if columns is not None:
            import pyarrow.parquet as pq

            have = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in have]
        return pd.read_parquet(path, columns=columns)
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
    every array, where ``predict`` reads only a few rows of the graph). The header is checked: known dtypes
    only, each array's bytes matching its shape and inside the file."""
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
