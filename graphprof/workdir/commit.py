"""All-or-nothing writes of an ``update`` across many files of the work directory.

Every file an update changes is first written under ``.partial-update/`` at its relative path. Writing
``.partial-update/COMMIT.json`` (atomically: the list of those files and of what to delete) is the commit point:

* killed before it, the work directory is the previous one; the staging folder is removed by :func:`recover`;
* killed after it, :func:`recover` finishes the moves (each an ``os.replace`` of one file, the manifest last), so
  the batch is applied exactly once.

:func:`recover` runs before any command reads the work directory (:func:`graphprof.workdir.require_built`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from graphprof.workdir.files import read_json, write_json
from graphprof.workdir.paths import LOCK, PARTIAL_UPDATE

COMMIT = "COMMIT.json"
MANIFEST = "manifest.json"


class Staging:
    """The staging folder of one update: :meth:`path` gives where a work-directory file is written first."""

    def __init__(self, root: Path):
        self.root, self.folder = Path(root), Path(root) / PARTIAL_UPDATE
        self.deletes: list[str] = []
        shutil.rmtree(self.folder, ignore_errors=True)  # an uncommitted leftover: nothing of it was applied
        self.folder.mkdir(parents=True)

    def path(self, rel: str | Path) -> Path:
        out = self.folder / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def delete(self, rel: str | Path) -> None:
        """Remove ``rel`` (a file or folder of the work directory) when the update is applied."""
        self.deletes.append(str(rel))

    def commit(self) -> None:
        files = sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())
        files = [f for f in files if f != MANIFEST] + ([MANIFEST] if MANIFEST in files else [])
        write_json(self.folder / COMMIT, {"files": files, "deletes": self.deletes})
        _roll_forward(self.root)

    def abandon(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _roll_forward(root: Path) -> None:
    folder = root / PARTIAL_UPDATE
    plan = read_json(folder / COMMIT, missing="")
    for rel in plan["deletes"]:
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for rel in plan["files"]:  # the manifest last: its journal entry says the batch is applied
        src = folder / rel
        if src.exists():  # moved already by a run cut off half-way through this loop
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, root / rel)
    shutil.rmtree(folder, ignore_errors=True)


def recover(root: str | Path, locked: bool = False) -> None:
    """Finish a committed update cut off while moving its files, or drop an uncommitted one. Only while no
    process holds the work directory's lock (a running update owns its staging folder); ``locked``: the caller
    holds it."""
    folder = Path(root) / PARTIAL_UPDATE
    if not folder.exists():
        return
    if not locked:
        try:
            fh = open(Path(root) / LOCK, "a+", encoding="utf-8")
        except OSError:
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return
        try:
            recover(root, locked=True)
        finally:
            fh.close()
        return
    if (folder / COMMIT).exists():
        _roll_forward(Path(root))
    else:
        shutil.rmtree(folder, ignore_errors=True)
