"""graphprof.workdir.cache: label-free arrays computed once per work directory and graph, memory-mapped by
every later fit; a second ``train`` reuses them, with the numbers of a run without the cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from fixtures_small import build_shop

from graphprof import workdir
from graphprof.graph import build
from graphprof.models.sign import blocks
from graphprof.privacy.forget import forget
from graphprof.training.train import train
from graphprof.workdir.cache import LabelFreeCache

SIGN_RUN = {"models": ["sign"], "targets": ["gender"], "seeds": 2, "epochs": 3}


# ------------------------------------------------------------------------------------------------ the store
def _mapped(a: np.ndarray) -> bool:
    """Whether ``a``'s memory is a file mapping (a view of an ``np.memmap`` or of its ``mmap``)."""
    import mmap

    while a is not None:
        if isinstance(a, np.memmap | mmap.mmap):
            return True
        a = getattr(a, "base", None)
    return False


def test_a_miss_computes_and_writes_a_hit_maps_the_files(tmp_path):
    cache = LabelFreeCache(tmp_path, "g" * 64)
    m = sp.random(50, 40, density=0.1, format="csr", random_state=0)
    calls = []

    def compute():
        calls.append(1)
        return m

    first = cache.csr("bag", compute)
    second = LabelFreeCache(tmp_path, "g" * 64).csr("bag", compute)
    assert len(calls) == 1 and cache.misses == 1
    assert (first != m).nnz == 0 and (second != m).nnz == 0 and second.shape == m.shape
    assert _mapped(second.data) and _mapped(second.indices)  # mapped from the files, not read into memory
    assert (tmp_path / workdir.CACHE_DIR / ("g" * 16) / "bag" / "done.json").is_file()


def test_a_damaged_entry_is_computed_again(tmp_path):
    cache = LabelFreeCache(tmp_path, "g" * 64)
    m = sp.identity(5, format="csr")
    cache.csr("bag", lambda: m)
    (cache.folder / "bag" / "data.npy").write_bytes(b"not an array")
    again = LabelFreeCache(tmp_path, "g" * 64)
    assert (again.csr("bag", lambda: m) != m).nnz == 0 and again.misses == 1


def test_another_graph_never_reads_the_entry(tmp_path):
    LabelFreeCache(tmp_path, "a" * 64).csr("bag", lambda: sp.identity(3, format="csr"))
    other = LabelFreeCache(tmp_path, "b" * 64)
    assert other.csr("bag", lambda: sp.identity(4, format="csr")).shape == (4, 4) and other.misses == 1


# ---------------------------------------------------------------------------------------------- with train
@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return build_shop(tmp_path_factory.mktemp("cache"))


def _hops_counted(monkeypatch) -> list:
    calls = []
    real = blocks.sparse_hop

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(blocks, "sparse_hop", counted)
    return calls


def _outputs(work) -> dict:
    out = {}
    for name in (workdir.MODEL_METRICS, workdir.MODEL_PREDICTIONS):
        out[name] = workdir.model_file(work, "gender", "sign", name).read_bytes()
    for s in (0, 1):
        out[f"seed_{s}"] = (workdir.run_dir(work, "gender", "sign", s) / workdir.MODEL_WEIGHTS).read_bytes()
    return out


def test_a_second_train_reuses_the_label_free_work_with_the_same_numbers(shop, tmp_path, monkeypatch):
    plain, cached = tmp_path / "plain", tmp_path / "cached"
    shutil.copytree(shop, plain)
    shutil.copytree(shop, cached)
    calls = _hops_counted(monkeypatch)

    train(plain, cache=False, **SIGN_RUN)
    without = len(calls)
    assert without > 0 and not (plain / workdir.CACHE_DIR).exists()

    calls.clear()
    train(cached, **SIGN_RUN)
    entries = sorted((cached / workdir.CACHE_DIR).glob("*/*/done.json"))
    assert entries and len(calls) < without  # the second seed (and the predictions) read the first's arrays
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cached / workdir.CACHE_DIR).rglob("*.npy")}
    assert _outputs(cached) == _outputs(plain)

    calls.clear()
    train(cached, **SIGN_RUN)  # a later run: nothing label-free computed again, every file reused as it was
    assert calls == []
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cached / workdir.CACHE_DIR).rglob("*.npy")} == stamps
    assert _outputs(cached) == _outputs(plain)


def _killed_train_leftover(work):
    """What a killed train leaves of sign's memory-mapped blocks (.scratch/)."""
    left = work / workdir.SCRATCH_DIR / "rank0" / "sign-blocks-x"
    left.mkdir(parents=True)
    (left / "dense_0.npy").write_bytes(b"blocks of every user fitted")
    return work / workdir.SCRATCH_DIR


def test_build_graph_and_forget_remove_the_cache(shop, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(shop, work)
    train(work, **SIGN_RUN)
    assert (work / workdir.CACHE_DIR).is_dir()
    scratch = _killed_train_leftover(work)
    user = build.load_tables(work, "purchases")["user_id"].iloc[0]
    forget(work, [user])
    assert not (work / workdir.CACHE_DIR).exists()  # it held the erased user's rows
    assert not scratch.exists()  # so did a killed train's blocks
    _killed_train_leftover(work)
    train(work, **SIGN_RUN)  # a train clears a killed one's working files, and leaves none of its own
    assert (work / workdir.CACHE_DIR).is_dir() and not scratch.exists()
    _killed_train_leftover(work)
    build.build(work, data=shop.parent / "data")
    assert not (work / workdir.CACHE_DIR).exists() and not scratch.exists()
