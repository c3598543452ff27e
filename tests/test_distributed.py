"""Data-parallel training: the shard helper, the launcher's arguments and errors, and one real 2-process run.

The 2-process run is ``graphprof train --nproc 2`` as a user types it (torchrun, gloo, two workers on this
machine) on the bundled sample, compared with one process on the same splits: the same artifacts, written once,
and ``sign``'s validation macro-F1 within the seeds' spread (at least TOLERANCE) of the 1-process run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphprof import workdir
from graphprof.cli import main
from graphprof.features import load_features
from graphprof.graph import load_graph
from graphprof.graph.build import build
from graphprof.models import ModelInput
from graphprof.models.sign.model import SIGN
from graphprof.runtime import distributed
from graphprof.training.train import train

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = "20"  # sign stops early (patience 6) well before on the sample; the cap bounds the test's time
TOLERANCE = 0.05  # |mean val macro-F1 (2 processes) - (1 process)|, or twice the seeds' std where larger


# ---------------------------------------------------------------------------------------------- shard
@pytest.mark.parametrize("n, parts", [(10, 2), (7, 3), (1, 2), (0, 2), (1000, 4)])
def test_shards_are_disjoint_cover_everything_and_balanced(n, parts):
    idx = np.arange(100, 100 + n)
    for seed in (None, 3):
        got = [distributed.shard(idx, epoch=1, seed=seed, part=r, parts=parts) for r in range(parts)]
        flat = np.concatenate(got)
        assert sorted(flat.tolist()) == idx.tolist()  # covering, and disjoint (no repeats)
        assert max(map(len, got)) - min(map(len, got)) <= 1
        if seed is None:  # unshuffled: the batch's own order, cut in contiguous pieces
            assert flat.tolist() == idx.tolist()


def test_shards_are_deterministic_per_seed_and_epoch():
    idx = np.arange(50)
    a = distributed.shard(idx, epoch=2, seed=7, part=1, parts=2)
    assert np.array_equal(a, distributed.shard(idx, epoch=2, seed=7, part=1, parts=2))
    assert not np.array_equal(a, distributed.shard(idx, epoch=3, seed=7, part=1, parts=2))
    assert not np.array_equal(a, distributed.shard(idx, epoch=2, seed=8, part=1, parts=2))


def test_one_process_helpers_are_plain_calls():
    assert not distributed.is_worker() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(np.arange(5)).tolist() == [0, 1, 2, 3, 4]
    assert distributed.on_main(lambda: 3) == 3 and distributed.everywhere(lambda: 4) == 4
    assert distributed.broadcast_json({"a": 1}) == {"a": 1} and distributed.all_reduce_sum(2.5) == 2.5


def test_strip_nproc_keeps_every_other_argument():
    argv = ["train", "--nproc", "2", "--workdir", "w", "--nproc=3", "--json"]
    assert distributed.strip_nproc(argv) == ["train", "--workdir", "w", "--json"]


# ------------------------------------------------------------------------------------- usage errors
def test_nproc_below_one_is_bad_usage(tmp_path, capsys):
    assert main(["train", "--workdir", str(tmp_path), "--nproc", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --nproc must be >= 1. Got 0 instead"


def test_nproc_checks_the_work_directory_before_starting_processes(tmp_path, capsys):
    assert main(["train", "--workdir", str(tmp_path / "none"), "--nproc", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "build-graph" in err and "\n" not in err


# A stand-in for torchrun: workers that print a one-line error and leave their exit codes (or crash without
# one), then torchrun's own failure report (an error log line and the launcher's traceback), exit code 1.
FAKE_TORCHRUN = """
import os, sys
from pathlib import Path
if {explained}:
    for r in (0, 1):
        Path(os.environ["GRAPHPROF_DIST_STATUS"], f"rank{{r}}").write_text("2")
    print("error: --target must be a column of the users table", file=sys.stderr)
print("E1124 21:43:41.399000 27385 torch/distributed/elastic/multiprocessing/api.py:1002] failed", file=sys.stderr)
print("Traceback (most recent call last):", file=sys.stderr)
print("torch.distributed.elastic.multiprocessing.errors.ChildFailedError:", file=sys.stderr)
sys.exit(1)
"""


@pytest.mark.parametrize("explained", [True, False])
def test_launcher_returns_the_workers_code_and_hides_torchrun_report(monkeypatch, capsys, explained):
    real = subprocess.Popen
    seen = {}

    def fake(cmd, **kwargs):
        seen["cmd"] = cmd
        return real([sys.executable, "-c", FAKE_TORCHRUN.format(explained=explained)], **kwargs)

    monkeypatch.setattr(distributed.subprocess, "Popen", fake)
    code = distributed.launch(["train", "--nproc", "2", "--json"], 2)
    err = capsys.readouterr().err
    assert seen["cmd"][1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert seen["cmd"][7:] == ["graphprof.cli", "train", "--json"]
    if explained:  # a user error in the workers: their message, exit 2, no launcher traceback
        assert code == 2
        assert err == "error: --target must be a column of the users table\n"
    else:  # no worker said why (killed, out of memory): torchrun's report is the only clue, shown
        assert code == 1
        assert "ChildFailedError" in err and err.rstrip().endswith("see the report above")


# ---------------------------------------------------------------------------------- 2 processes, real
@pytest.fixture(scope="module")
def sample_work(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp") / "work"
    build(work, data=ROOT / "datasets" / "sample", seed=0)
    return work


def _val(doc: dict) -> tuple[float, float]:
    v = doc["target_info"]["gender"]["val_macro_f1"]["sign"]
    return v["mean"], v["std"]


@pytest.mark.slow
def test_two_processes_reach_the_one_process_metric_and_write_once(sample_work):
    work = sample_work
    one = train(work, targets=["gender"], models=["lr", "sign"], seeds=2, epochs=int(EPOCHS)).to_json()
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--workdir", str(work), "--target",
                        "gender", "--models", "lr,sign", "--seeds", "2", "--epochs", EPOCHS, "--nproc", "2",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    two = json.loads(r.stdout)  # one JSON document: rank 0 alone printed
    (m1, s1), (m2, s2) = _val(one), _val(two)
    assert abs(m2 - m1) <= max(TOLERANCE, 2 * max(s1, s2)), (m1, s1, m2, s2)
    assert two["targets"]["gender"]["lr"] == one["targets"]["gender"]["lr"]  # lr: rank 0 alone, same fit

    # one set of artifacts, complete, nothing staged or left aside, the lock released
    assert sorted(p.name for p in (work / "models" / "gender").iterdir()) == ["lr", "sign"]
    assert not (work / ".partial-train").exists()
    assert not list((work / "models").glob("*/.old-*"))
    assert (work / ".lock").read_text() == ""
    sign_dir = work / "models" / "gender" / "sign"
    assert sorted(p.name for p in sign_dir.glob("seed_*")) == ["seed_0", "seed_1"]
    assert json.loads((sign_dir / "config.json").read_text())["world_size"] == 2
    assert json.loads((work / "manifest.json").read_text())["stages"]["train"]["world_size"] == 2

    # the saved model loads and predicts what the run wrote
    model = SIGN.load(sign_dir / "seed_0")
    assert model.world_size_ == 2
    inputs = ModelInput(graph=load_graph(work), features=load_features(work))
    proba = model.predict_proba(inputs)
    pred = pd.read_parquet(sign_dir / "predictions.parquet")
    assert np.allclose(pred[[f"proba_{c}" for c in model.classes_]].to_numpy(), proba.to_numpy(), atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_sign_from_one_set_of_block_files(sample_work):
    """Past --block-rows, rank 0 writes sign's blocks once and both ranks map them (each reads its share of every
    batch): the run completes with the 1-process metric and leaves no working files."""
    work = sample_work
    args = ["--target", "gender", "--models", "sign", "--seeds", "1", "--epochs", EPOCHS, "--block-rows", "300"]
    one = train(work, targets=["gender"], models=["sign"], seeds=1, epochs=int(EPOCHS), block_rows=300).to_json()
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--workdir", str(work), *args,
                        "--nproc", "2", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    two = json.loads(r.stdout)
    (m1, _), (m2, _) = _val(one), _val(two)
    assert abs(m2 - m1) <= TOLERANCE, (m1, m2)
    assert not (work / workdir.SCRATCH_DIR).exists()
    assert json.loads((work / "models" / "gender" / "sign" / "config.json").read_text())["world_size"] == 2
