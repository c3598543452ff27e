"""Same inputs, same seed: byte-identical artifacts on CPU (graph, features, metrics, predictions, embeddings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphprof.communities.stage import detect_communities
from graphprof.graph.build import build
from graphprof.ingest import generate
from graphprof.training.train import train

DETERMINISTIC = [
    "graph/tensors.safetensors", "graph/meta.json", "tables/ids/user.parquet", "features/users.parquet",
    "features/items.parquet", "features/state.safetensors",
    "models/gender/lr/metrics.json", "models/gender/lr/predictions.parquet",
    "models/gender/sage/metrics.json", "models/gender/sage/predictions.parquet",
    "models/gender/sage/seed_0/weights.safetensors", "models/gender/lr/seed_1/weights.safetensors",
    "communities/leiden/assignments.parquet", "communities/leiden/profiles.parquet",
]


def _run(data: Path, work: Path) -> None:
    build(work, data=data, seed=0)
    train(work, targets=["gender"], models=["lr", "sage"], seeds=2, epochs=8, seed=0)
    detect_communities(work, seed=0)


@pytest.mark.slow
def test_two_runs_give_byte_identical_artifacts(tmp_path):
    generate.write_tables(generate.generate(n_users=300, seed=5), tmp_path / "data")
    _run(tmp_path / "data", tmp_path / "a")
    _run(tmp_path / "data", tmp_path / "b")
    for rel in DETERMINISTIC:
        a, b = (tmp_path / "a" / rel).read_bytes(), (tmp_path / "b" / rel).read_bytes()
        assert a == b, f"{rel} differs between two runs with the same inputs and seed"


def test_another_seed_gives_other_splits_and_numbers(tmp_path):
    generate.write_tables(generate.generate(n_users=300, seed=5), tmp_path / "data")
    build(tmp_path / "w", data=tmp_path / "data")
    a = train(tmp_path / "w", targets=["gender"], models=["lr"], seeds=1, seed=0).to_json()["targets"]
    b = train(tmp_path / "w", targets=["gender"], models=["lr"], seeds=1, seed=7).to_json()["targets"]
    assert a != b
