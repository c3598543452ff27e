"""Crash safety of ``train``: SIGKILL or Ctrl-C mid-run leaves the previous models loadable; ``--resume``
finishes the run with the numbers an uninterrupted run gives."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from graphprof.graph.build import build
from graphprof.ingest import generate
from graphprof.models import get_model
from graphprof.training.train import train

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--target", "gender", "--models", "lr,sage", "--seeds", "3", "--epochs", "15", "-q", "--json"]


def cli(*args):
    return [sys.executable, str(ROOT / "cli.py"), *args]


@pytest.fixture()
def trained(tmp_path):
    generate.write_tables(generate.generate(n_users=400, seed=3), tmp_path / "data")
    work = tmp_path / "work"
    build(work, data=tmp_path / "data")
    train(work, targets=["gender"], models=["lr", "sage"], seeds=1, epochs=5)  # "the previous model"
    return work


def _snapshot(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "models").rglob("*")) if p.is_file()}


def _interrupt(work: Path, sig: int) -> int:
    # Ctrl-C's default action in the child, whatever this process has: a shell without job control (CI's
    # `cmd &`) starts its background jobs with SIGINT ignored, which the child would inherit, keep, and then
    # finish the run (exit 0) instead of being interrupted
    proc = subprocess.Popen(cli("train", "--workdir", str(work), *ARGS), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list((work / ".partial-train").rglob("result.json")):  # at least one (model, seed) finished
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"train ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    proc.stderr.close()
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_train_keeps_previous_models_and_resume_finishes(trained, sig):
    work = trained
    before = _snapshot(work)
    code = _interrupt(work, sig)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert _snapshot(work) == before  # the previous run's files, byte for byte
    model = get_model("sage").load(work / "models" / "gender" / "sage" / "seed_0")
    assert model.classes_ == ["f", "m"]
    assert len(pd.read_parquet(work / "models" / "gender" / "sage" / "predictions.parquet")) == 400

    resumed = subprocess.run(cli("train", "--workdir", str(work), *ARGS, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not (work / ".partial-train").exists()
    fresh = subprocess.run(cli("train", "--workdir", str(work), *ARGS), capture_output=True, text=True)
    assert json.loads(resumed.stdout)["targets"] == json.loads(fresh.stdout)["targets"]
    metrics = json.loads((work / "models" / "gender" / "sage" / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1, 2]


def test_resume_with_other_settings_is_refused(trained, tmp_path):
    work = trained
    staging = work / ".partial-train" / "gender"
    staging.mkdir(parents=True)
    (staging / "run.json").write_text(json.dumps({"models": ["lr"], "seeds": [0, 1, 2, 3], "epochs": None}))
    from graphprof.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--resume must continue a run with the same settings"):
        train(work, targets=["gender"], models=["lr"], seeds=2, resume=True)
    # without --resume the leftover run is discarded and a new one completes
    train(work, targets=["gender"], models=["lr"], seeds=2)
    assert not (work / ".partial-train").exists()


def test_replace_dir_recovers_from_a_cut_between_renames(tmp_path):
    from graphprof import workdir

    target = tmp_path / "models" / "gender"
    old = target / "lr"
    old.mkdir(parents=True)
    (old / "metrics.json").write_text("{}")
    # the state a crash between the two renames of replace_dir leaves: the old folder aside, no new one
    aside = target / ".old-lr"
    old.rename(aside)
    workdir.recover_dirs(tmp_path)
    assert (target / "lr" / "metrics.json").exists() and not aside.exists()
