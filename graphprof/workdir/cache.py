"""Label-free arrays cached per graph: what a model computes from the graph alone, with no label and no split
(``sign``'s bag of items and its social hops), is computed once per work directory and graph, written under
``cache/<graph id>/<key>/`` and memory-mapped by every later fit: the other seeds, the other targets and later
``train`` runs.

An entry is a folder of ``.npy`` files with ``done.json`` written last, moved into place whole (a crash leaves
no half entry). Loads map the files copy-on-write (nothing is read until used) with ``allow_pickle=False``; a
damaged entry is computed again. The graph id keys the folder, so an entry never serves another graph;
``build-graph`` removes ``cache/`` with everything else derived from the previous graph, and ``forget``
deletes it (it holds the erased users' rows). A hit returns the very arrays a miss writes, so a run with the
cache gives the numbers of a run without it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphprof.workdir.paths import CACHE_DIR

log = logging.getLogger("graphprof")

DONE = "done.json"


class LabelFreeCache:
    """The cache of one work directory and graph (see the module docstring).

    Attributes:
        folder: ``cache/<graph id>/``. hits, misses: entries served from disk and computed, in this process.
    """

    def __init__(self, root: str | Path, graph_id: str):
        self.folder = Path(root) / CACHE_DIR / str(graph_id)[:16]
        self.hits = self.misses = 0

    def arrays(self, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The arrays cached as ``key`` (a name made by graphprof, not by the data), computed and written on a
        miss; either way read back from the entry's files."""
        entry = self.folder / key
        found = self._load(entry)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        self._write(entry, compute())
        found = self._load(entry)
        if found is None:  # an invariant: the entry was just written
            raise OSError(f"{entry}: the cache entry just written cannot be read back")
        return found

    def csr(self, key: str, compute: Callable):
        """A ``scipy.sparse.csr_matrix`` cached as ``key`` (``compute`` returns one)."""
        import scipy.sparse as sp

        def parts() -> dict[str, np.ndarray]:
            m = compute().tocsr()
            return {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": np.array(m.shape, np.int64)}

        a = self.arrays(key, parts)
        return sp.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=tuple(int(d) for d in a["shape"]))

    @staticmethod
    def _load(entry: Path) -> dict[str, np.ndarray] | None:
        try:
            names = json.loads((entry / DONE).read_text(encoding="utf-8"))["arrays"]
            return {n: np.load(entry / f"{n}.npy", mmap_mode="c", allow_pickle=False) for n in names}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # damaged: compute it again
            log.debug("cache entry %s unreadable (%s); computing it again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def _write(self, entry: Path, arrays: dict[str, np.ndarray]) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            for name, a in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as fh:
                    np.save(fh, np.ascontiguousarray(a), allow_pickle=False)
            (tmp / DONE).write_text(json.dumps({"arrays": list(arrays)}), encoding="utf-8")
            try:
                os.replace(tmp, entry)
            except OSError:  # another process (a data-parallel rank) wrote it first: keep that one
                if not (entry / DONE).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
