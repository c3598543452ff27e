"""End to end: the command line on the bundled sample, as a user runs it (subprocess, exit codes, JSON)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e") / "work"
    r = run("build-graph", "--workdir", str(work), "--json")
    assert r.returncode == 0, r.stderr
    return work, json.loads(r.stdout)


def test_build_graph_accounts_for_every_row(built):
    work, doc = built
    for name, acc in doc["tables"].items():
        assert acc["read"] == acc["kept"] + acc["rejected"], name
        rejects = pd.read_csv(work / "rejects" / f"{name}.csv")
        assert len(rejects) == acc["rejected"]
        assert list(rejects.columns) == ["source_file", "source_row", "column", "value", "reason"]
    # the sample carries 8 deliberately bad rows (datasets/README.md)
    assert sum(acc["rejected"] for acc in doc["tables"].values()) == 8
    assert doc["graph"]["nodes"]["user"] == 3000
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["rows"]["purchases"]["read"] == doc["tables"]["purchases"]["read"]
    assert len(manifest["inputs"]["purchases"]["sha256"]) == 64


@pytest.mark.slow
def test_train_json_and_artifacts(built):
    work, _ = built
    r = run("train", "--workdir", str(work), "--json", "--seeds", "2", "--epochs", "40", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout holds one JSON document and nothing else
    assert set(doc["targets"]) == {"gender", "age_band", "spend_level"}
    for target, models in doc["targets"].items():
        assert set(models) == {"lr", "sign"}  # the default set
        for summary in models.values():
            for metric in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece"):
                assert 0.0 <= summary[metric]["mean"] <= 1.0
                assert len(summary[metric]["values"]) == 2
        assert doc["target_info"][target]["picked"] in models
        pred = pd.read_parquet(work / "models" / target / "sign" / "predictions.parquet")
        assert len(pred) == 3000
        assert set(pred["split"]) == {"train", "val", "test", "unlabelled"}
        probs = pred.filter(like="proba_")
        assert ((probs.sum(axis=1) - 1).abs() < 1e-6).all()
        assert (work / "models" / target / "sign" / "seed_0" / "weights.safetensors").exists()
    # same seed, same numbers (one target is enough: each target's runs are seeded on their own)
    again = run("train", "--workdir", str(work), "--json", "--seeds", "2", "--epochs", "40", "-q",
                "--target", "gender")
    assert json.loads(again.stdout)["targets"]["gender"] == doc["targets"]["gender"]


def test_train_before_build_says_what_to_run(tmp_path):
    r = run("train", "--workdir", str(tmp_path / "nowhere"))
    assert r.returncode == 2
    assert "no graph found; run 'graphprof build-graph' first" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("content, needle", [
    ("uid,item_id\n1,2\n", "required column 'user_id' is missing (found: uid, item_id)"),
    ("", "empty file"),
    ("\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "must be UTF-8"),
    ("user_id,item_id\n,a\n,b\n", "must have at least one valid purchase"),
])
def test_bad_input_exits_2_naming_the_file(tmp_path, content, needle):
    data = tmp_path / "data"
    data.mkdir()
    (data / "purchases.csv").write_bytes(content.encode("latin-1"))
    r = run("build-graph", "--data", str(data), "--workdir", str(tmp_path / "work"))
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "purchases.csv" in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run("train", "--seeds", "zero").returncode == 2
    assert run("no-such-command").returncode == 2
    r = run("build-graph", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 0
    r = run("train", "--workdir", str(tmp_path / "w"), "--models", "lr,xgb")
    assert r.returncode == 2 and "xgb" in r.stderr and "lr, sage" in r.stderr
    r = run("train", "--workdir", str(tmp_path / "w"), "--target", "shoe_size")
    assert r.returncode == 2 and "gender" in r.stderr


def test_help_opens_with_examples():
    r = run("--help")
    assert r.returncode == 0
    after_usage = r.stdout.split("\n\n", 1)[1]
    assert after_usage.startswith("examples:\n  graphprof build-graph")
    for command in ("build-graph", "train"):
        sub = run(command, "--help").stdout.split("\n\n", 1)[1]
        assert sub.startswith(f"examples:\n  graphprof {command}")
    assert run("--version").stdout.startswith("graphprof ")


def _choices(command: str, dest: str) -> list:
    from graphprof.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if a.dest == dest).choices)


def test_choices_come_from_the_registries():
    from graphprof.communities import GRAPHS, METHODS
    from graphprof.embeddings.export import SOURCES
    from graphprof.ingest.adapters import FORMATS
    from graphprof.ingest.generate import FILE_FORMATS, TIME_FORMATS
    from graphprof.training import PROTOCOLS

    assert _choices("build-graph", "format") == list(FORMATS)
    assert _choices("train", "protocol") == list(PROTOCOLS)
    assert _choices("communities", "method") == list(METHODS)
    assert _choices("communities", "graph") == list(GRAPHS)
    assert _choices("export-embeddings", "model") == list(SOURCES)
    assert _choices("generate", "file_format") == list(FILE_FORMATS)
    assert _choices("generate", "time_format") == list(TIME_FORMATS)


def test_help_imports_neither_torch_nor_pyg_nor_sklearn():
    r = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "cli.py"), "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "graphprof.cli" in imported
    assert not {"torch", "torch_geometric", "sklearn"} & imported
