"""``sign``'s blocks as its training reads them, a mini-batch of users at a time.

Two sources with one interface (``batch``, ``view``, ``dims``, ``sparse``):

- :class:`HeldBlocks`: every user's blocks in memory (standardised float32 tensors and the CSR bags), for graphs
  of up to :data:`DEFAULT_BLOCK_ROWS` users (the setting: ``ModelInput.block_rows``, ``train --block-rows``).
- :class:`StoredBlocks`: past that, the blocks of the users the fit reads (training and validation) are
  computed a row block at a time (:meth:`~graphprof.models.sign.blocks.SIGNBlocks._raw_blocks_rows`) and written
  to memory-mapped files in a scratch folder (:func:`scratch_dir`); a batch reads its rows from them. The dense
  parts are kept as computed (float64) and standardised per batch, which is element for element the arithmetic
  of the held route; the bags are kept as float32, the precision the network reads them in. The mapped pages a
  fit has read are handed back to the kernel after every ``page_rows`` rows (:func:`~graphprof.runtime.memory.page_out`;
  at most :data:`RELEASE_ROWS`): rows drawn at random map several pages each, so the files' resident share stays
  bounded by the rows read since the last hand-back, whatever the files' size.

Shapes: a batch is ``xs`` (one ``[batch, dims[b]]`` float32 tensor per block) and ``bags`` (one
:class:`~graphprof.models.sign.net.Bag` or None per block).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from graphprof.models.sign.blocks import standardize
from graphprof.models.sign.net import make_bag
from graphprof.runtime import progress
from graphprof.runtime.memory import page_out, reserve, trim

#: Users per row block of ``sign``'s blocks where nothing else is set: graphs with more users write their blocks
#: to memory-mapped files a row block at a time, and score every user a row block at a time.
DEFAULT_BLOCK_ROWS = 250_000
#: Rows read from mapped files between two hand-backs of their pages (one batch of the large route): a row read
#: at random maps far more than its own bytes, as the kernel maps the page cache's neighbouring pages with it
#: (MADV_RANDOM or not; docs/performance.md), so a file's pages pile up in the resident size within a few batches.
RELEASE_ROWS = 1 << 12


def block_rows(inputs) -> int:
    """The row-block setting of ``inputs`` (``ModelInput.block_rows``), else :data:`DEFAULT_BLOCK_ROWS`."""
    return int(getattr(inputs, "block_rows", None) or DEFAULT_BLOCK_ROWS)


def new_scratch(inputs, prefix: str = "sign-blocks-") -> Path:
    """A fresh folder for memory-mapped working files (the caller removes it): inside ``ModelInput.scratch``
    where the run has a work directory (``train``: ``<workdir>/.scratch``), else in the system's temporary
    folder."""
    base = getattr(inputs, "scratch", None)
    if base is not None:
        Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@contextlib.contextmanager
def scratch_dir(inputs):
    """:func:`new_scratch`, removed on leaving."""
    path = new_scratch(inputs)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _csr_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, pos: np.ndarray,
              n_cols: int) -> sp.csr_matrix:
    """Rows ``pos`` (any order) of the CSR arrays, read from them (mapped or not) as one gather."""
    starts = indptr[pos]
    lens = indptr[pos + 1] - starts
    out = np.zeros(len(pos) + 1, dtype=np.int64)
    np.cumsum(lens, out=out[1:])
    take = np.repeat(starts - out[:-1], lens) + np.arange(out[-1])
    return sp.csr_matrix((data[take], indices[take], out), shape=(len(pos), n_cols))


class HeldBlocks:
    """Every user's blocks in memory: ``dense`` (standardised float32 tensors ``[num_users, d]``) and ``bags``
    (CSR ``[num_users, num_items]`` or None), indexed by graph row."""

    def __init__(self, dense: list[torch.Tensor], bags: list):
        self.dense, self.bags = dense, bags

    @property
    def dims(self) -> list[int]:
        return [int(d.shape[1]) for d in self.dense]

    @property
    def sparse(self) -> list[bool]:
        return [b is not None for b in self.bags]

    def view(self, keep: list[int]) -> HeldBlocks:
        return HeldBlocks([self.dense[b] for b in keep], [self.bags[b] for b in keep])

    def batch(self, rows: np.ndarray, train: bool = False):
        """The rows ``rows`` of every block (with the bags' transposes' structure for training's backward where
        ``train``)."""
        idx = torch.from_numpy(np.ascontiguousarray(rows))
        return [d[idx] for d in self.dense], [None if m is None else make_bag(m[rows], train) for m in self.bags]


class StoredBlocks:
    """The blocks of the users ``rows`` (sorted graph rows), in the folder ``path``: per block ``dense_<b>.npy``
    (``[len(rows), d]`` float64: block 0 standardised, the others raw until :attr:`stats` are set) and, where it
    has one, its bag as ``bag_<b>.indptr.npy`` (int64), ``bag_<b>.indices.bin`` (int32) and ``bag_<b>.data.bin``
    (float32). Written by :func:`write_blocks`."""

    def __init__(self, path: Path, rows: np.ndarray, dims: list[int], sparse: list[bool], n_items: int,
                 page_rows: int, blocks: list[int] | None = None):
        self.path, self.rows, self.n_items, self.page_rows = path, rows, n_items, min(page_rows, RELEASE_ROWS)
        self.blocks = list(range(len(dims))) if blocks is None else blocks
        self._dims, self._sparse = dims, sparse
        self.stats: list = [None] * len(dims)  # (mean, std) per block, set once fitted; None: as stored
        self.dense = [np.load(path / f"dense_{b}.npy", mmap_mode="r") for b in range(len(dims))]
        self.bag_arrays = [self._open_bag(b) if has else None for b, has in enumerate(sparse)]
        self._read = 0

    def _open_bag(self, b: int):
        return mapped_csr(self.path, f"bag_{b}", np.float32)

    @property
    def dims(self) -> list[int]:
        return [self._dims[b] for b in self.blocks]

    @property
    def sparse(self) -> list[bool]:
        return [self._sparse[b] for b in self.blocks]

    def view(self, keep: list[int]) -> StoredBlocks:
        view = object.__new__(StoredBlocks)
        view.__dict__.update(self.__dict__)
        view.blocks = [self.blocks[b] for b in keep]
        return view

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Where the graph rows ``rows`` sit in the files (an invariant: every one is held)."""
        pos = np.searchsorted(self.rows, rows)
        if len(rows) and (pos.max() >= len(self.rows) or not np.array_equal(self.rows[pos], rows)):
            raise ValueError("sign: a batch asks for users whose blocks were not written")
        return pos

    def raw(self, b: int, rows: np.ndarray) -> np.ndarray:
        """Block ``b``'s dense part as stored, rows ``rows`` (graph rows) ``[len(rows), d]`` float64."""
        return np.asarray(self.dense[b][self.positions(rows)])

    def batch(self, rows: np.ndarray, train: bool = False):
        """The rows ``rows`` of every block in view, as :meth:`HeldBlocks.batch` gives them."""
        pos = self.positions(rows)
        xs, bags = [], []
        for b in self.blocks:
            d = np.asarray(self.dense[b][pos])
            if self.stats[b] is not None:
                d = standardize(d, *self.stats[b])
            xs.append(torch.from_numpy(d.astype(np.float32)))
            arrays = self.bag_arrays[b]
            bags.append(None if arrays is None else make_bag(_csr_rows(*arrays, pos, self.n_items), train))
        self._read += len(rows)
        if self._read >= self.page_rows:
            self.release()
        return xs, bags

    def release(self) -> None:
        """Hand the mapped pages read so far back to the kernel (their contents stay in the files)."""
        self._read = 0
        for b in self.blocks:
            page_out(self.dense[b])
            if self.bag_arrays[b] is not None:
                page_out(self.bag_arrays[b][1])
                page_out(self.bag_arrays[b][2])


class CSRFiles:
    """A CSR matrix written a row block at a time: ``<name>.indices.bin`` (int32), ``<name>.data.bin`` (``dtype``)
    and, on :meth:`close`, ``<name>.indptr.npy`` (int64); :func:`mapped_csr` reads it back."""

    def __init__(self, path: Path, name: str, dtype):
        self.path, self.name, self.dtype = path, name, dtype
        self._indices = open(path / f"{name}.indices.bin", "wb")
        self._data = open(path / f"{name}.data.bin", "wb")
        self._indptr = [np.zeros(1, dtype=np.int64)]

    def append(self, m: sp.csr_matrix) -> None:
        m = m.tocsr()
        self._indices.write(m.indices.astype(np.int32).tobytes())
        self._data.write(m.data.astype(self.dtype).tobytes())
        self._indptr.append(self._indptr[-1][-1] + m.indptr[1:].astype(np.int64))

    def close(self) -> None:
        self._indices.close()
        self._data.close()
        np.save(self.path / f"{self.name}.indptr.npy", np.concatenate(self._indptr))


def mapped_csr(path: Path, name: str, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays ``(indptr, indices, data)`` of :class:`CSRFiles` ``name`` (indices and data mapped)."""
    indptr = np.load(path / f"{name}.indptr.npy")
    nnz = int(indptr[-1])

    def mapped(part, kind):
        if not nnz:  # an empty file cannot be mapped
            return np.zeros(0, dtype=kind)
        return np.memmap(path / f"{name}.{part}.bin", dtype=kind, mode="r", shape=(nnz,))

    return indptr, mapped("indices", np.int32), mapped("data", dtype)


def _mapped_matrix(path: Path, name: str, dtype, shape: tuple[int, int]) -> sp.csr_matrix:
    indptr, indices, data = mapped_csr(path, name, dtype)
    return sp.csr_matrix((data, indices, indptr), shape=shape)  # over the mapped arrays: no copy


#: Rows of a mapped file whose pages are handed back together while rows spread over it are read
GATHER_SPAN = 1 << 20


def gather_rows(a: np.ndarray, rows: np.ndarray, span: int | None = None) -> np.ndarray:
    """``a[rows]`` (``rows`` sorted) from a mapped array, its pages handed back every ``span`` rows of it: the
    rows of a row block's friends are spread over the whole file, and read through the mapping at once every
    page of it would be resident."""
    span = span or GATHER_SPAN
    out = np.empty((len(rows),) + a.shape[1:], dtype=a.dtype)
    at = np.searchsorted(rows, np.arange(0, a.shape[0] + span, span))
    for i in range(len(at) - 1):
        if at[i + 1] > at[i]:
            out[at[i]:at[i + 1]] = a[rows[at[i]:at[i + 1]]]
            page_out(a[i * span:(i + 1) * span])
    return out


def gather_csr_rows(m: sp.csr_matrix, rows: np.ndarray, span: int | None = None) -> sp.csr_matrix:
    """``m[rows]`` (``rows`` sorted) from a CSR matrix over mapped arrays, their pages handed back every
    ``span`` rows (as :func:`gather_rows`)."""
    span = span or GATHER_SPAN
    parts = []
    at = np.searchsorted(rows, np.arange(0, m.shape[0] + span, span))
    for i in range(len(at) - 1):
        if at[i + 1] > at[i]:
            parts.append(_csr_rows(m.indptr, m.indices, m.data, rows[at[i]:at[i + 1]], m.shape[1]))
            lo, hi = m.indptr[i * span], m.indptr[min((i + 1) * span, m.shape[0])]
            page_out(m.indices[lo:hi])
            page_out(m.data[lo:hi])
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, m.shape[1]), dtype=m.dtype)


def release_layers(layers: list | None) -> None:
    """After a row block: hand the pages of every user's mapped hops (:func:`write_layers`) back to the kernel,
    and the heap's free pages (the row block's temporaries, of other sizes in every row block, would otherwise
    pile up as free memory the next ones do not fit in)."""
    for dense, bag in layers or ():
        if dense is not None:
            page_out(dense)
        page_out(bag.indices)
        page_out(bag.data)
    trim()


def write_layers(model, inputs, shared, path: Path, per_block: int) -> list:
    """Every user's hops ``0 .. hops - 1`` of ``sign``'s social blocks, ``per_block`` users at a time, into mapped
    files under ``path``: hop 0's bag (its dense part is ``F``, None here), and each lower hop's dense part
    (float64) and bag (float64, as computed). With them a row block's last hop is one product over its rows,
    where on its own neighbourhood it would redo the lower hops of its whole ball (most users, for every row
    block). Returns ``[(dense, bag), ...]`` per hop (bags as CSR matrices over the mapped arrays)."""
    n, hops = inputs.graph.num_users, model.params["hops"]
    spans = [(lo, min(lo + per_block, n)) for lo in range(0, n, per_block)]
    layers = []
    with progress.bar(total=n * hops, desc="sign hops", unit="user", leave=False) as shown:
        bag = CSRFiles(path, "hop_0.bag", np.float64)
        for lo, hi in spans:
            bag.append(model._bag_rows(inputs, slice(lo, hi), shared.counts))
            shown.update(hi - lo)
        bag.close()
        layers.append((None, _mapped_matrix(path, "hop_0.bag", np.float64, (n, model.n_items_))))
        for k in range(1, hops):
            dense = bag = None
            for lo, hi in spans:
                hf, ht = model._hop_rows(inputs, np.arange(lo, hi), *layers[k - 1], shared.adj_rows)
                if dense is None:
                    dense = np.lib.format.open_memmap(path / f"hop_{k}.dense.npy", mode="w+", dtype=np.float64,
                                                      shape=(n, hf.shape[1]))
                    reserve(path / f"hop_{k}.dense.npy")
                    bag = CSRFiles(path, f"hop_{k}.bag", np.float64)
                dense[lo:hi] = hf
                dense.flush()
                page_out(dense)
                bag.append(ht)
                release_layers(layers)
                shown.update(hi - lo)
            bag.close()
            del dense
            layers.append((np.load(path / f"hop_{k}.dense.npy", mmap_mode="r"),
                           _mapped_matrix(path, f"hop_{k}.bag", np.float64, (n, model.n_items_))))
    return layers


def write_blocks(model, inputs, rows: np.ndarray, path: Path, per_block: int,
                 shared) -> tuple[list[str], StoredBlocks]:
    """The blocks of the users ``rows`` (sorted graph rows), computed ``per_block`` users at a time with
    ``model._raw_blocks_rows`` on ``shared`` (what they read of the whole graph) and written to ``path``. Returns
    the block names and the :class:`StoredBlocks` (dense parts raw: the caller sets :attr:`StoredBlocks.stats`)."""
    names, dense_files, bag_files = None, [], []
    with progress.bar(total=len(rows), desc="sign blocks", unit="user", leave=False) as shown:
        for lo in range(0, max(len(rows), 1), per_block):
            chunk = rows[lo:lo + per_block]
            names_c, dense, bags = model._raw_blocks_rows(inputs, chunk, shared)
            if names is None:
                names = names_c
                dense_files = [np.lib.format.open_memmap(path / f"dense_{b}.npy", mode="w+", dtype=np.float64,
                                                         shape=(len(rows), d.shape[1])) for b, d in enumerate(dense)]
                for b in range(len(dense)):
                    reserve(path / f"dense_{b}.npy")  # a full disk: an error now, not a crash mid-write
                bag_files = [None if m is None else CSRFiles(path, f"bag_{b}", np.float32) for b, m in enumerate(bags)]
            for b, d in enumerate(dense):
                dense_files[b][lo:lo + len(chunk)] = d
                dense_files[b].flush()  # written to the file, so the pages are clean and can be handed back
                page_out(dense_files[b])
            for b, m in enumerate(bags):
                if m is not None:
                    bag_files[b].append(m)
            release_layers(shared.layers)
            del dense, bags
            shown.update(len(chunk))
    for f in dense_files:
        f.flush()
    for f in bag_files:
        if f is not None:
            f.close()
    sparse = [f is not None for f in bag_files]
    dims = [int(f.shape[1]) for f in dense_files]
    del dense_files
    return names, StoredBlocks(path, rows, dims, sparse, model.n_items_, page_rows=per_block)
