"""The manifest (what built the work directory, from which inputs, and each stage's record), the checks every
command after ``build-graph`` makes on it, and the lock that keeps two runs from writing one work directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphprof.errors import ArtifactError, LockError
from graphprof.workdir.commit import recover as recover_update
from graphprof.workdir.files import read_json, recover_dirs, write_json
from graphprof.workdir.paths import GRAPH_META, LOCK, MANIFEST, SCHEMA_VERSION


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
    recover_update(root)  # an update cut off: finished if it committed, else dropped
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
