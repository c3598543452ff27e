"""``sign`` past its row-block setting: blocks written a row block at a time to memory-mapped files, trained from
them a mini-batch at a time, every user scored a row block at a time (graphprof.models.sign.store). The fit must
be the one the in-memory route makes (the same weights, history and choice); the scores the same to float
rounding."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from fixtures_small import build_shop, split_shop

from graphprof import workdir
from graphprof.cli import main
from graphprof.models.sign import blocks, store
from graphprof.models.sign.model import SIGN

FAST = {"epochs": 4, "hidden_grid": [16], "dropout_grid": [0.3]}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return split_shop(tmp_path_factory.mktemp("sign_store_shop"), "age_band")


def _fit(inputs, shop, **kwargs) -> SIGN:
    _, target, parts = shop
    return SIGN(seed=0, **{**FAST, **kwargs}).fit(inputs, target.y, parts["train"], parts["val"], target.classes)


def _in_blocks(inputs, rows: int, scratch=None):
    return dataclasses.replace(inputs, block_rows=rows, scratch=scratch)


@pytest.mark.parametrize("columns", [None, 3], ids=["every-column", "3-columns"])
def test_fit_from_files_is_the_in_memory_fit(shop, tmp_path, monkeypatch, columns):
    """``columns``: every user's standardised features read 3 columns at a time by the products over them."""
    inputs = shop[0]
    n = inputs.graph.num_users
    if columns:
        monkeypatch.setattr(blocks, "STD_BYTES", 8 * n * columns)
    written = []
    real = store.write_blocks

    def spy(model, inp, rows, path, per_block, shared):
        names, source = real(model, inp, rows, path, per_block, shared)
        written.append((len(rows), per_block, sorted(p.name for p in path.iterdir())))
        return names, source

    monkeypatch.setattr(store, "write_blocks", spy)
    held = _fit(inputs, shop)
    assert not written  # within the setting: in memory
    streamed = _fit(_in_blocks(inputs, n // 10, tmp_path / "scratch"), shop)
    (count, per_block, files), = written
    _, _, parts = shop
    assert count == len(parts["train"]) + len(parts["val"]) and per_block == n // 10 and count > 3 * per_block
    assert "dense_0.npy" in files and "bag_0.data.bin" in files and "bag_1.indices.bin" in files
    # the blocks' files are removed after the fit; every user's hops are kept for the scoring that follows
    kept = list((tmp_path / "scratch").iterdir())
    assert [p.name[:10] for p in kept] == ["sign-hops-"] and (kept[0] / "hop_1.dense.npy").exists()
    a, b = held.net_.state_dict(), streamed.net_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert held.history_ == streamed.history_ and held.choice_ == streamed.choice_
    for (m1, s1), (m2, s2) in zip(held.block_stats_, streamed.block_stats_):
        assert np.array_equal(m1, m2) and np.array_equal(s1, s2)
    made = []
    monkeypatch.setattr(SIGN, "_shared_blocks", lambda *args: made.append(args))
    scores = streamed.proba(_in_blocks(inputs, n // 10))  # on the kept hops: none made again
    assert not made
    np.testing.assert_allclose(scores, held.proba(inputs), rtol=0, atol=1e-6)
    streamed.release_working_files()
    assert list((tmp_path / "scratch").iterdir()) == []
    monkeypatch.undo()
    np.testing.assert_array_equal(streamed.proba(_in_blocks(inputs, n // 10)), scores)  # made again: the same


def test_scores_in_row_blocks_are_the_whole_graph_scores(shop):
    inputs = shop[0]
    model = _fit(inputs, shop)
    blocks = _in_blocks(inputs, 41)
    np.testing.assert_allclose(model.proba(blocks), model.proba(inputs), rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.embed(blocks), model.embed(inputs), rtol=0, atol=1e-5)
    rows = np.arange(inputs.graph.num_users)[::-2]
    np.testing.assert_allclose(model.proba(blocks, rows=rows), model.proba(inputs)[rows], rtol=0, atol=1e-6)


def test_stored_batches_equal_held_batches_after_pages_are_handed_back(shop, tmp_path):
    inputs, _, parts = shop
    model = _fit(inputs, shop)  # fitted state (statistics, idf, blocks kept) to compute blocks with
    rows = np.union1d(parts["train"], parts["val"])
    shared = model._shared_blocks(inputs, tmp_path, per_block=50)
    names, stored = store.write_blocks(model, inputs, rows, tmp_path, per_block=50, shared=shared)
    assert names == model.block_names_
    stored.stats = [None, *model.block_stats_]
    held = store.HeldBlocks(*model._blocks(inputs, model._raw_blocks_rows(inputs, np.arange(inputs.graph.num_users))))
    assert stored.dims == held.dims and stored.sparse == held.sparse
    pick = rows[::-3]
    for _ in range(2):  # the second read comes back from the files after the pages were handed back
        xs_s, bags_s = stored.batch(pick, train=True)
        xs_h, bags_h = held.batch(pick, train=True)
        assert all(torch.equal(a, b) for a, b in zip(xs_s, xs_h))
        for a, b in zip(bags_s, bags_h):
            assert (a is None) == (b is None)
            if a is not None:
                assert all(torch.equal(x, y) for x, y in zip(a, b))
        stored.release()
    with pytest.raises(ValueError, match="not written"):
        stored.batch(np.setdiff1d(np.arange(inputs.graph.num_users), rows)[:3])
    view = stored.view([0])
    assert view.dims == stored.dims[:1] and len(view.batch(pick)[0]) == 1


def _mapped(a: np.ndarray) -> bool:
    while a is not None and not isinstance(a, np.memmap):
        a = a.base
    return a is not None


@pytest.mark.parametrize("small", [False, True], ids=["one-part", "small-parts"])
def test_every_users_lower_hops_are_mapped_files_equal_to_the_held_hops(shop, tmp_path, monkeypatch, small):
    """Past one row block every user's hops below the last are written once (a row block at a time) and read
    mapped: the numbers of the whole-graph products, bit for bit. ``small``: each hop computed a few rows at a
    time (a budget of a few friends' rows), the files read 13 rows at a time."""
    from graphprof.models.sign import blocks

    passes = []
    gather = store.gather_csr_rows
    monkeypatch.setattr(store, "gather_csr_rows", lambda m, rows, span=None: passes.append(1) or gather(m, rows, span))
    if small:
        monkeypatch.setattr(blocks, "HOP_BYTES", 2000)  # a few friends' rows a pass
        monkeypatch.setattr(store, "GATHER_SPAN", 13)
    inputs = shop[0]
    model = _fit(inputs, shop, block_sets=["all"])
    assert model.social_ and model.params["hops"] == 2
    passes.clear()
    layers = model._shared_blocks(inputs, tmp_path, per_block=37).layers
    blocks_of_37 = -(-inputs.graph.num_users // 37)
    assert len(passes) > 3 * blocks_of_37 if small else len(passes) == blocks_of_37  # one read pass a row block
    names, dense, bags = model._raw_blocks(inputs)
    assert names[:3] == ["own", "social_1", "social_2"] and len(layers) == 2
    (none, t), (hf, ht) = layers
    assert none is None and (t != bags[0]).nnz == 0 and (ht != bags[1]).nnz == 0
    np.testing.assert_array_equal(t.data, bags[0].data)
    np.testing.assert_array_equal(ht.data, bags[1].data)
    np.testing.assert_array_equal(hf, dense[1])
    assert all(_mapped(a) for a in (t.indices, t.data, hf, ht.indices, ht.data))  # never copied into memory
    store.release_layers(layers)
    np.testing.assert_array_equal(hf, dense[1])  # read back from the files after the pages were handed back


def test_rows_gathered_from_mapped_files_a_span_at_a_time(tmp_path):
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    a = rng.random((500, 4))
    np.save(tmp_path / "a.npy", a)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    m = sp.random(500, 40, density=0.1, format="csr", random_state=4)
    files = store.CSRFiles(tmp_path, "m", np.float64)
    files.append(m[:123])
    files.append(m[123:])
    files.close()
    indptr, indices, data = store.mapped_csr(tmp_path, "m", np.float64)
    mapped_m = sp.csr_matrix((data, indices, indptr), shape=m.shape)
    for rows in (np.sort(rng.choice(500, 77, replace=False)), np.arange(0), np.array([0, 499])):
        for span in (1, 13, 10_000):
            np.testing.assert_array_equal(store.gather_rows(mapped, rows, span), a[rows])
            got = store.gather_csr_rows(mapped_m, rows, span)
            assert got.shape == (len(rows), 40) and (got != m[rows]).nnz == 0


def test_cli_block_rows(tmp_path, capsys):
    work = build_shop(tmp_path)
    args = ["train", "--workdir", str(work), "--target", "age_band", "--models", "sign", "--seeds", "1",
            "--epochs", "2", "--json", "-q"]
    assert main(args + ["--block-rows", "0"]) == 2
    assert "--block-rows must be >= 1. Got 0 instead" in capsys.readouterr().err
    assert main(args + ["--block-rows", "60"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["targets"]["age_band"]["sign"]
    assert not (work / workdir.SCRATCH_DIR).exists()


def test_a_full_disk_while_writing_the_blocks_is_said_plainly(tmp_path, capsys, monkeypatch):
    import errno
    import os

    work = build_shop(tmp_path)

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    code = main(["train", "--workdir", str(work), "--target", "age_band", "--models", "sign", "--seeds", "1",
                 "--epochs", "2", "--block-rows", "60", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "no space left on the device" in err and "Traceback" not in err
    assert not (work / workdir.SCRATCH_DIR).exists()
