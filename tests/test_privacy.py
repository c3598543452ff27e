"""Personal-data columns: dropped from every artifact unless kept explicitly, and never features or targets."""

from __future__ import annotations

import pandas as pd
import pytest

from graphprof.features import load_features
from graphprof.graph.build import build
from graphprof.training.evaluate import candidate_targets

USERS = "user_id,email,phone_number,gender\n" + "".join(
    f"{i},u{i}@example.com,+41 79 000 {i:04d},{'f' if i % 2 else 'm'}\n" for i in range(40))
PURCHASES = "user_id,item_id\n" + "".join(f"{i},item{i % 5}\n" for i in range(40))


@pytest.fixture()
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "users.csv").write_text(USERS)
    (d / "purchases.csv").write_text(PURCHASES)
    return d


def _scan(work, needle: bytes) -> list[str]:
    return [str(p) for p in work.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_pii_columns_are_dropped_from_every_artifact(data, tmp_path):
    work = tmp_path / "work"
    result = build(work, data=data)
    assert result.dropped_columns == {"users": ["email", "phone_number"]}
    assert list(pd.read_parquet(work / "tables" / "users.parquet").columns) == ["user_id", "gender"]
    assert _scan(work, b"example.com") == []
    assert _scan(work, b"+41 79") == []


def test_kept_pii_stays_in_tables_but_is_never_a_feature_or_default_target(data, tmp_path):
    work = tmp_path / "work"
    result = build(work, data=data, keep_pii=["email"])
    assert result.dropped_columns == {"users": ["phone_number"]}
    users = pd.read_parquet(work / "tables" / "users.parquet")
    assert list(users.columns) == ["user_id", "email", "gender"]
    assert not any("email" in c for c in load_features(work).frame.columns)
    assert candidate_targets(users.assign(email=["a", "b"] * 20)) == ["gender"]
