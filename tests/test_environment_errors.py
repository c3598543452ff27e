"""The user's environment failing (a full disk, a permission denied, a read-only file system) while
``build-graph`` writes: one clear message naming the path, exit code 2, no traceback, and the previous build
(graph, features, tables, models) intact. The failure is injected where every artifact is written
(``workdir.files.atomic_write``), as the file system would raise it."""

from __future__ import annotations

import errno
import json

import pytest
from fixtures_small import build_shop

from graphprof import cli, workdir
from graphprof.ingest.generate import generate, write_tables
from graphprof.training.train import train
from graphprof.workdir import files


@pytest.fixture()
def trained(tmp_path):
    work = build_shop(tmp_path)
    train(work, targets=["gender"], models=["lr"], seeds=1)
    write_tables(generate(n_users=200, seed=7), tmp_path / "other")  # the data of the rebuild that fails
    return tmp_path, work


def _snapshot(work):
    keep = [workdir.GRAPH_TENSORS, workdir.FEATURES_USERS, workdir.table_path(work, "purchases").relative_to(work)]
    return {str(p): (work / p).read_bytes() for p in keep}, sorted(p.name for p in (work / "models").iterdir())


@pytest.mark.parametrize(("error", "said"), [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (OSError("[errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"),
     "no space left on the device"),                                           # Arrow's way of saying it
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EROFS, "Read-only file system"), "the file system is read-only"),
], ids=["ENOSPC", "arrow-ENOSPC", "EACCES", "EROFS"])
def test_a_failed_rebuild_says_why_and_keeps_the_previous_build(trained, monkeypatch, capsys, error, said):
    root, work = trained
    before = _snapshot(work)
    graph_id = json.loads((work / workdir.MANIFEST).read_text())["graph_id"]
    real = files.atomic_write

    def failing(path, write):
        if "features" in str(path):  # tables and graph are written by then: a build half-way
            if getattr(error, "filename", None) is None and error.errno is not None:
                error.filename = str(path)
            raise error
        return real(path, write)

    monkeypatch.setattr(files, "atomic_write", failing)
    code = cli.main(["build-graph", "--workdir", str(work), "--data", str(root / "other"), "-q"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err and "internal error" not in err
    assert err.count("error: ") == 1 and said in err
    assert str(work) in err  # the path, or at least the work directory
    assert "previous artifacts are intact" in err
    assert _snapshot(work) == before
    assert json.loads((work / workdir.MANIFEST).read_text())["graph_id"] == graph_id
    assert not (work / workdir.PARTIAL_BUILD).exists() and not (work / ".lock").read_text()


def test_an_oserror_of_our_own_stays_a_bug(trained, monkeypatch, capsys):
    root, work = trained

    def lost(path, write):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    monkeypatch.setattr(files, "atomic_write", lost)
    code = cli.main(["build-graph", "--workdir", str(work), "--data", str(root / "other"), "-q"])
    assert code == 1
    assert "internal error (a bug)" in capsys.readouterr().err
