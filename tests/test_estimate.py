"""``build-graph --estimate`` / ``train --estimate``: printed before anything runs, sized from the inputs, and a
run whose estimate exceeds the memory available stops before it starts (exit code 2) unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphprof.cli import main
from graphprof.runtime import estimate

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample"


@pytest.fixture(scope="module")
def built_sample(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("estimate") / "w"
    assert main(["build-graph", "--data", str(SAMPLE), "--workdir", str(work), "-q"]) == 0
    return work


def test_build_estimate_prints_and_runs_nothing(tmp_path, capsys):
    work = tmp_path / "w"
    assert main(["build-graph", "--data", str(SAMPLE), "--workdir", str(work), "--estimate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "build-graph" and doc["seconds"] > 0 and doc["peak_gib"] > 0
    rows, _ = estimate.build_sizes(SAMPLE, {}, "generic")
    assert {f"{k}_rows": v for k, v in rows.items()} == doc["sizes"]
    assert not work.exists()  # nothing ran


def test_rows_are_counted_from_the_files(tmp_path):
    (tmp_path / "purchases.csv").write_text("user_id,item_id\n1,2\n3,4\n5,6")  # no final newline
    (tmp_path / "users.csv").write_text("user_id,gender\n1,f\n")
    rows, text = estimate.build_sizes(tmp_path, {}, "generic")
    assert rows == {"purchases": 3, "users": 1} and text


def test_estimates_grow_with_the_input():
    small = estimate.estimate_build({"purchases": 10_000}, text=False)
    big = estimate.estimate_build({"purchases": 10_000_000}, text=False)
    csv = estimate.estimate_build({"purchases": 10_000_000}, text=True)
    assert small.seconds < big.seconds < csv.seconds and small.peak_bytes < big.peak_bytes == csv.peak_bytes
    sizes = {"users": 100_000, "purchase_edges": 1_000_000, "ties": 400_000, "labelled": {"gender": 40_000}}
    one = estimate.estimate_train(sizes, ["lr"], seeds=1, epochs=None)
    more = estimate.estimate_train(sizes, ["lr", "sign"], seeds=3, epochs=None)
    capped = estimate.estimate_train(sizes, ["lr", "sign"], seeds=3, epochs=2)
    assert one.seconds < capped.seconds < more.seconds and one.peak_bytes < more.peak_bytes
    assert set(more.parts) == {"load", "lr", "sign"}


def test_train_estimate_reads_the_built_workdir(built_sample, capsys):
    assert main(["train", "--workdir", str(built_sample), "--target", "gender", "--estimate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "train" and doc["sizes"]["seeds"] == 3 and doc["sizes"]["labelled_gender"] > 0
    assert set(doc["parts_seconds"]) == {"load", "lr", "sign"}
    assert not (built_sample / "models").exists()  # nothing trained


@pytest.mark.parametrize("command", ["build-graph", "train"])
def test_a_run_over_the_memory_available_stops_before_it_starts(built_sample, tmp_path, monkeypatch, capsys,
                                                                command):
    monkeypatch.setattr(estimate, "available_memory", lambda: 64 * 2 ** 20)  # 64 MiB left
    args = (["build-graph", "--data", str(SAMPLE), "--workdir", str(tmp_path / "w")] if command == "build-graph"
            else ["train", "--workdir", str(built_sample), "--target", "gender"])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {command} needs about" in err and "0.1 GiB is available now" in err
    assert "--no-memory-check runs it anyway" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists() and not (built_sample / "models").exists()
    monkeypatch.setattr(estimate, "available_memory", lambda: None)  # unknown: no check
    if command == "build-graph":
        assert main([*args, "--seed", "0"]) == 0


def test_no_memory_check_runs_anyway(tmp_path, monkeypatch):
    monkeypatch.setattr(estimate, "available_memory", lambda: 64 * 2 ** 20)
    assert main(["build-graph", "--data", str(SAMPLE), "--workdir", str(tmp_path / "w"), "--no-memory-check",
                 "-q"]) == 0
    assert (tmp_path / "w" / "manifest.json").exists()


def test_data_parallel_workers_each_hold_the_graph(built_sample, capsys):
    docs = []
    for extra in ([], ["--nproc", "2"]):
        assert main(["train", "--workdir", str(built_sample), "--target", "gender", "--estimate", "--json",
                     *extra]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert docs[1]["sizes"]["processes"] == 2 and docs[1]["peak_gib"] == pytest.approx(2 * docs[0]["peak_gib"],
                                                                                        abs=0.011)
    assert not (built_sample / "models").exists()  # no worker started


def test_a_file_that_cannot_be_counted_is_named(tmp_path, capsys):
    import gzip

    blob = gzip.compress(b"user_id,item_id\n" + b"1,2\n" * 1000)
    (tmp_path / "purchases.csv.gz").write_bytes(blob[: len(blob) // 2])  # truncated
    assert main(["build-graph", "--data", str(tmp_path), "--workdir", str(tmp_path / "w"), "--estimate"]) == 2
    err = capsys.readouterr().err
    assert "purchases.csv.gz: cannot be read to count its rows" in err and "Traceback" not in err


def test_sign_past_its_row_block_setting_is_estimated_on_its_files_route():
    sizes = {"users": 1_000_000, "purchase_edges": 10_000_000, "ties": 4_000_000, "labelled": {"gender": 400_000}}
    size = 15_000_000
    held = estimate.MODELS["sign"]["base_bytes"] + estimate.MODELS["sign"]["bytes_per_size"] * size
    default = estimate.estimate_train(sizes, ["sign"], seeds=1, epochs=None)  # 1M users > 250k: files
    assert default.peak_bytes < held
    bigger_blocks = estimate.estimate_train(sizes, ["sign"], seeds=1, epochs=None, block_rows=500_000)
    assert bigger_blocks.peak_bytes > default.peak_bytes
    within = estimate.estimate_train(sizes, ["sign"], seeds=1, epochs=None, block_rows=2_000_000)  # held
    assert within.peak_bytes == held
