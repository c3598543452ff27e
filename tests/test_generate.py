"""The generator writes large shops a slice at a time: the same files as the whole tables written at once."""

from __future__ import annotations

import pandas as pd
import pytest

from graphprof.ingest.generate import TABLES, generate, write_generated, write_tables


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("time_format", ["iso", "epoch"])
def test_chunked_writer_writes_the_tables_generate_returns(tmp_path, fmt, time_format):
    whole = write_tables(generate(1200, time_format=time_format, seed=4), tmp_path / "whole", fmt)
    sliced = write_generated(tmp_path / "sliced", fmt, chunk_rows=257, n_users=1200, time_format=time_format,
                             seed=4)
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    for name in TABLES:
        path, rows = sliced[name]
        pd.testing.assert_frame_equal(read(whole[name]), read(path))
        assert rows == len(read(path)) > 0
        if fmt == "csv":
            assert whole[name].read_bytes() == path.read_bytes()


def test_bad_rows_are_still_mixed_in(tmp_path):
    out = write_generated(tmp_path, "csv", n_users=300, bad_rows=8, seed=1)
    assert out["purchases"][1] == len(generate(300, bad_rows=8, seed=1)["purchases"])
    with pytest.raises(ValueError, match="fmt must be"):
        write_generated(tmp_path, "json", n_users=300)
