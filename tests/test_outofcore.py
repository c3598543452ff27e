"""``build-graph --engine duckdb``: the out-of-core route writes the work directory the in-memory route writes.

The purchases are validated in slices and reduced in partitions far smaller than the table here, so every slice
and partition boundary is crossed; bad rows, prices only in the items table, users only in the users table or in
ties, and millisecond timestamps (a unit judged from the whole column) are all in the data.
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
from graphprof.graph import build as build_mod
from graphprof.graph import outofcore
from graphprof.ingest.generate import generate

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("duckdb")


def _shop(root: Path, *, millis: bool = False) -> Path:
    t = generate(900, purchases_per_user=4, bad_rows=12, time_format="epoch", seed=5)
    p = t["purchases"]
    p["price"] = p["price"].astype(float)
    p.loc[p.index % 7 == 0, "price"] = np.nan  # these cost the item's list price
    p.loc[p.index % 11 == 0, "quantity"] = 3  # pairs bought more than once with different values
    if millis:
        p["timestamp"] = pd.to_numeric(p["timestamp"], errors="coerce") * 1000
    p = pd.concat([p, p.iloc[:40]], ignore_index=True)  # repeated purchases of one pair
    t["purchases"] = p
    extra = pd.DataFrame({"user_id": ["ZZ-only-in-users", "AA-only-in-users"], "gender": ["f", None],
                          "age_band": [None, None], "spend_level": [None, "low"]})
    t["users"] = pd.concat([t["users"], extra], ignore_index=True)
    t["friendships"] = pd.concat([t["friendships"], pd.DataFrame({"user_id": ["tie-only"],
                                                                  "friend_id": ["C0000001"]})], ignore_index=True)
    data = root / "data"
    data.mkdir(parents=True)
    for name, df in t.items():
        if name == "purchases":
            df.astype({"timestamp": "string"}).to_parquet(data / "purchases.parquet", index=False)
        else:
            df.to_csv(data / f"{name}.csv", index=False)
    return data


def _tables_equal(a: Path, b: Path) -> None:
    ta = workdir.read_safetensors(a / workdir.GRAPH_TENSORS, missing="x", numpy=True)
    tb = workdir.read_safetensors(b / workdir.GRAPH_TENSORS, missing="x", numpy=True)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != workdir.MANIFEST)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != workdir.MANIFEST)
    for f in files:
        if f.suffix == ".parquet":  # the streamed table has other row groups: equal content
            pd.testing.assert_frame_equal(pd.read_parquet(a / f), pd.read_parquet(b / f), check_exact=True)
        else:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


@pytest.mark.parametrize("millis", [False, True])
def test_duckdb_engine_writes_what_the_numpy_engine_writes(tmp_path, monkeypatch, millis):
    data = _shop(tmp_path, millis=millis)
    monkeypatch.setattr(outofcore, "SLICE_ROWS", 517)
    monkeypatch.setattr(outofcore, "PARTITION_ROWS", 300)
    a = build_mod.build(tmp_path / "numpy", data, engine="numpy")
    b = build_mod.build(tmp_path / "duckdb", data, engine="duckdb")
    assert a.accounting == b.accounting
    assert a.accounting["purchases"]["rejected"] > 0
    assert (a.accounting["purchases"].get("timestamp_unit") == "milliseconds") == millis
    assert a.graph == b.graph and b.engine == "duckdb"
    _tables_equal(tmp_path / "numpy", tmp_path / "duckdb")
    ma, mb = (workdir.load_manifest(tmp_path / w) for w in ("numpy", "duckdb"))
    assert ma["graph_id"] == mb["graph_id"] and ma["rows"] == mb["rows"]
    assert mb["config"]["build-graph"]["engine"] == "duckdb"
    assert not (tmp_path / "duckdb" / workdir.PARTIAL_BUILD).exists()  # spill and partitions removed


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "cli.py", *args], cwd=cwd, capture_output=True, text=True)


def test_duckdb_engine_refuses_inputs_it_does_not_stream(tmp_path):
    csv = _cli("build-graph", "--engine", "duckdb", "--workdir", str(tmp_path / "w"))  # the bundled sample: CSV
    assert csv.returncode == 2 and "Traceback" not in csv.stderr
    assert "purchases.csv" in csv.stderr and "Parquet" in csv.stderr
    feather = _cli("build-graph", "--engine", "duckdb", "--format", "feather", "--data", str(tmp_path),
                   "--workdir", str(tmp_path / "w"))
    assert feather.returncode == 2 and "generic layout" in feather.stderr
    assert not (tmp_path / "w" / workdir.MANIFEST).exists()


def test_auto_engine_streams_when_the_in_memory_build_would_not_fit(tmp_path, monkeypatch, capsys):
    from graphprof import cli
    from graphprof.runtime import estimate

    data = _shop(tmp_path)
    monkeypatch.setattr(estimate, "available_memory", lambda: 1 << 20)  # 1 MiB: nothing fits in memory
    # the out-of-core route's own estimate does not fit 1 MiB either: stopped unless told to run anyway
    assert cli.main(["build-graph", "--data", str(data), "--workdir", str(tmp_path / "w"), "-q"]) == 2
    assert "--engine duckdb needs about" in capsys.readouterr().err
    assert cli.main(["build-graph", "--data", str(data), "--workdir", str(tmp_path / "w"), "--json", "-q",
                     "--no-memory-check"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "duckdb"
    # the in-memory route, asked for by name, is stopped by the memory check instead
    assert cli.main(["build-graph", "--engine", "numpy", "--data", str(data), "--workdir",
                     str(tmp_path / "w2"), "-q"]) == 2
    assert "--engine duckdb" in capsys.readouterr().err
    monkeypatch.setattr(estimate, "available_memory", lambda: 1 << 50)
    assert cli.main(["build-graph", "--data", str(data), "--workdir", str(tmp_path / "w3"), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "numpy"


def test_a_damaged_parquet_purchases_table_is_named(tmp_path):
    data = _shop(tmp_path)
    raw = (data / "purchases.parquet").read_bytes()
    (data / "purchases.parquet").write_bytes(raw[: len(raw) // 2])
    r = _cli("build-graph", "--engine", "duckdb", "--data", str(data), "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "purchases.parquet" in r.stderr and "Parquet" in r.stderr


@pytest.mark.parametrize("categories_svd", [False, True])
def test_features_written_by_blocks_equal_the_whole_graph_features(tmp_path, monkeypatch, categories_svd):
    from graphprof.features import blocks, build_features, save_features
    from graphprof.features import users as feature_users
    from graphprof.graph import load_graph

    data = _shop(tmp_path)
    build_mod.build(tmp_path / "w", data)
    graph = load_graph(tmp_path / "w")
    monkeypatch.setattr(feature_users, "SVD_FIT_MAX_ROWS", 300)  # the SVDs fit on a sample, as past 50k users
    if categories_svd:  # more categories than shares: the category SVD too
        monkeypatch.setattr(feature_users, "MAX_CATEGORY_SHARES", 5)
        monkeypatch.setattr(blocks, "MAX_CATEGORY_SHARES", 5)
    whole = build_features(graph, seed=3)
    save_features(whole, tmp_path / "whole", 3)
    assert ("category_svd" in whole.groups) == categories_svd
    assert blocks.write_features(graph, tmp_path / "blocks", 3, block_users=211) == whole.frame.shape
    for f in (workdir.FEATURES_USERS, workdir.FEATURES_ITEMS):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / f), pd.read_parquet(tmp_path / "blocks" / f),
                                      check_exact=True)
    for f in (workdir.FEATURES_META, workdir.FEATURES_STATE):
        assert (tmp_path / "whole" / f).read_bytes() == (tmp_path / "blocks" / f).read_bytes()


def test_estimate_names_the_engine_it_would_take(tmp_path, monkeypatch, capsys):
    from graphprof import cli
    from graphprof.runtime import estimate

    data = _shop(tmp_path)
    assert cli.main(["build-graph", "--data", str(data), "--estimate", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["command"] == "build-graph"
    assert cli.main(["build-graph", "--data", str(data), "--estimate", "--engine", "duckdb", "--json", "-q"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert streamed["command"] == "build-graph --engine duckdb" and streamed["peak_gib"] > 0
    monkeypatch.setattr(estimate, "available_memory", lambda: 1 << 20)
    assert cli.main(["build-graph", "--data", str(data), "--estimate", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["command"] == "build-graph --engine duckdb"


def test_duckdb_failures_of_the_machine_are_said_plainly(tmp_path, monkeypatch):
    import duckdb

    from graphprof.runtime.estimate import MemoryShortage

    with pytest.raises(OSError) as full:
        outofcore._machine_failure(duckdb.IOException("IO Error: No space left on device"), tmp_path, 1 << 30)
    assert full.value.errno == 28
    with pytest.raises(MemoryShortage, match="DuckDB ran out of memory"):
        outofcore._machine_failure(duckdb.OutOfMemoryException("Out of Memory Error: failed"), tmp_path, 1 << 30)
    outofcore._machine_failure(duckdb.BinderException("a bug"), tmp_path, 1 << 30)  # left to propagate


def test_dask_engine_on_a_two_worker_local_cluster_writes_what_one_process_writes(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from graphprof.graph import dask_build

    data = _shop(tmp_path)
    # several row groups: several validation tasks, their parts joined in row order
    pd.read_parquet(data / "purchases.parquet").to_parquet(data / "purchases.parquet", index=False,
                                                          row_group_size=700)
    monkeypatch.setattr(outofcore, "PARTITION_ROWS", 300)
    monkeypatch.setattr(dask_build, "PARTITION_ROWS", 300)
    real = dask_build.client_for
    monkeypatch.setattr(dask_build, "client_for", lambda scheduler: real(scheduler, workers=2))
    a = build_mod.build(tmp_path / "numpy", data, engine="numpy")
    b = build_mod.build(tmp_path / "dask", data, engine="dask")
    assert a.accounting == b.accounting and a.graph == b.graph and b.engine == "dask"
    _tables_equal(tmp_path / "numpy", tmp_path / "dask")
    assert not (tmp_path / "dask" / workdir.PARTIAL_BUILD).exists()


def test_a_scheduler_nobody_answers_at_is_said_plainly(tmp_path, monkeypatch, capsys):
    pytest.importorskip("distributed")
    import socket

    from graphprof import cli
    from graphprof.graph import dask_build

    data = _shop(tmp_path)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(dask_build, "CONNECT_TIMEOUT", 2)
    assert cli.main(["build-graph", "--data", str(data), "--workdir", str(tmp_path / "w"), "--engine", "dask",
                     "--scheduler", f"tcp://127.0.0.1:{port}", "-q"]) == 2
    assert "no Dask scheduler answered" in capsys.readouterr().err
    assert cli.main(["build-graph", "--data", str(data), "--workdir", str(tmp_path / "w"), "--scheduler",
                     f"tcp://127.0.0.1:{port}", "-q"]) == 2
    assert "--scheduler is for --engine dask" in capsys.readouterr().err
    assert not (tmp_path / "w" / workdir.MANIFEST).exists()


def test_a_damaged_row_group_is_named_with_its_first_record(tmp_path):
    pytest.importorskip("distributed")
    import pyarrow.parquet as pq

    from graphprof.errors import InputError
    from graphprof.graph.dask_build import _validate_group
    from graphprof.ingest.schema import TIME_UNITS

    path = tmp_path / "purchases.parquet"
    pd.DataFrame({"user_id": [f"u{i}" for i in range(2000)], "item_id": [f"i{i % 50}" for i in range(2000)]}) \
        .to_parquet(path, row_group_size=1000, compression=None)
    at = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    raw = bytearray(path.read_bytes())
    raw[at:at + 40] = b"\xff" * 40  # the second row group's first page header
    path.write_bytes(bytes(raw))
    assert _validate_group(str(path), 0, 1, TIME_UNITS[0], str(tmp_path))["kept"] == 1000
    with pytest.raises(InputError, match="purchases.parquet: must be a readable Parquet file.*from 1001 on") as err:
        _validate_group(str(path), 1, 1001, TIME_UNITS[0], str(tmp_path))
    assert err.value.row == 1001
