"""graphprof.io: finding and reading table files (CSV / TSV / Parquet), bad files, physical line numbers."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import validate_one, write_frame, write_text

from graphprof.errors import GraphprofError, InputError
from graphprof.ingest import io, schema

# ------------------------------------------------------------------------------------------- find_tables


def test_find_tables_finds_each_table_by_name(tmp_path):
    for name in ("purchases.csv", "friendships.tsv", "users.parquet", "items.csv.gz", "notes.txt", "README.md"):
        (tmp_path / name).write_text("x")
    found = io.find_tables(tmp_path)
    assert found == {"purchases": tmp_path / "purchases.csv", "friendships": tmp_path / "friendships.tsv",
                     "users": tmp_path / "users.parquet", "items": tmp_path / "items.csv.gz"}


def test_find_tables_only_purchases_is_required(tmp_path):
    write_text(tmp_path, "purchases.parquet", "x")
    assert io.find_tables(tmp_path) == {"purchases": tmp_path / "purchases.parquet"}


def test_find_tables_missing_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=r"nope: --data must be a directory") as info:
        io.find_tables(missing)
    assert info.value.path == str(missing)


def test_find_tables_on_a_file(tmp_path):
    f = write_text(tmp_path, "purchases.csv", "user_id,item_id\n")
    with pytest.raises(InputError, match=r"must be a directory"):
        io.find_tables(f)


def test_find_tables_empty_dir_says_what_it_must_contain(tmp_path):
    with pytest.raises(InputError, match=r"must contain purchases\.csv or purchases\.parquet\. Got: nothing"):
        io.find_tables(tmp_path)


def test_find_tables_dir_without_purchases_lists_what_it_found(tmp_path):
    write_text(tmp_path, "friendships.csv", "user_id,friend_id\n")
    write_text(tmp_path, "orders.csv", "x\n")
    with pytest.raises(InputError, match=r"must contain purchases\.csv or purchases\.parquet\. "
                                         r"Got: friendships\.csv, orders\.csv"):
        io.find_tables(tmp_path)


def test_find_tables_two_files_for_one_table(tmp_path):
    write_text(tmp_path, "purchases.csv", "user_id,item_id\n")
    write_text(tmp_path, "purchases.parquet", "x")
    with pytest.raises(InputError, match=r"must hold one file per table\. Got 2 for purchases: "
                                         r"purchases\.csv, purchases\.parquet"):
        io.find_tables(tmp_path)


def test_input_error_is_a_value_error_and_a_graphprof_error(tmp_path):
    with pytest.raises(ValueError, match="must contain"):
        io.find_tables(tmp_path)
    with pytest.raises(GraphprofError, match="must contain"):
        io.find_tables(tmp_path)


# ------------------------------------------------------------------------------------------- read_tables


def test_read_tables_rejects_an_unknown_table_name(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id\n1,a\n")
    with pytest.raises(InputError, match=r"table names must be among purchases, friendships, users, items\. "
                                         r"Got orders"):
        io.read_tables({"purchases": p, "orders": p})


def test_read_table_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: the purchases file must exist"):
        io.read_table(tmp_path / "nope.csv", "purchases")


def test_read_table_unknown_suffix(tmp_path):
    p = write_text(tmp_path, "purchases.json", "[]")
    with pytest.raises(InputError, match=r"the format must be CSV, TSV or Parquet .*Got '\.json'"):
        io.read_table(p, "purchases")


def test_read_keeps_cells_as_strings_and_numbers_physical_rows(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id,quantity\n007,0042,2\n8,x,\n")
    df = io.read_table(p, "purchases").df
    assert list(df.columns) == ["user_id", "item_id", "quantity", io.ROW]
    assert df["user_id"].tolist() == ["007", "8"]
    assert df["item_id"].tolist() == ["0042", "x"]
    assert df["quantity"].iloc[0] == "2" and pd.isna(df["quantity"].iloc[1])
    assert df[io.ROW].tolist() == [2, 3]
    assert df[io.ROW].dtype == np.int64


# ------------------------------------------------------------------------------------------ CSV dialects


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_delimiters_are_sniffed(tmp_path, sep):
    text = sep.join(["user_id", "item_id", "quantity"]) + "\n" + sep.join(["007", "a", "3"]) + "\n"
    kept, rejects, acc = validate_one(tmp_path, "purchases", text)
    assert kept["user_id"].tolist() == ["007"]
    assert kept["item_id"].tolist() == ["a"]
    assert kept["quantity"].tolist() == [3]
    assert acc["rejected"] == 0


def test_tsv_suffix_reads_tabs_even_when_the_header_has_commas(tmp_path):
    p = write_text(tmp_path, "purchases.tsv", "user_id\titem_id\tnote\n1\ta\tx,y,z\n")
    df = io.read_table(p, "purchases").df
    assert df["note"].tolist() == ["x,y,z"]


def test_utf8_bom_header(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "\ufeffuser_id,item_id\n1,a\n".encode())
    df = io.read_table(p, "purchases").df
    assert list(df.columns) == ["user_id", "item_id", io.ROW]
    assert df["user_id"].tolist() == ["1"]


def test_utf8_bom_with_semicolons(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "\ufeffuser_id;item_id\n1;a\n".encode())
    assert list(io.read_table(p, "purchases").df.columns) == ["user_id", "item_id", io.ROW]


def test_header_names_are_stripped(tmp_path):
    p = write_text(tmp_path, "purchases.csv", " user_id , item_id\n1,a\n")
    assert list(io.read_table(p, "purchases").df.columns) == ["user_id", "item_id", io.ROW]


def test_crlf_line_endings(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id\r\n1,a\r\n2,b\r\n")
    df = io.read_table(p, "purchases").df
    assert df["item_id"].tolist() == ["a", "b"]
    assert df[io.ROW].tolist() == [2, 3]


def test_gzipped_csv(tmp_path):
    p = tmp_path / "purchases.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write("user_id;item_id\n007;a\n8;b\n")
    df = io.read_table(p, "purchases").df
    assert df["user_id"].tolist() == ["007", "8"]
    assert df[io.ROW].tolist() == [2, 3]


def test_quoted_newlines_give_physical_rows(tmp_path):
    text = 'user_id,item_id,note\n1,a,"x\ny"\n2,b,z\n3,c,"p\nq\nr"\n4,d,\n'
    df = io.read_table(write_text(tmp_path, "purchases.csv", text), "purchases").df
    assert df["note"].tolist()[:3] == ["x\ny", "z", "p\nq\nr"]
    assert df[io.ROW].tolist() == [2, 4, 5, 8]


def test_quoted_newline_rows_reach_the_rejects(tmp_path):
    text = 'user_id,item_id,note\n1,a,"x\ny"\n,b,z\n'
    _, rejects, _ = validate_one(tmp_path, "purchases", text)
    assert rejects["source_row"].tolist() == [4]


@pytest.mark.parametrize("name,sep", [("purchases.csv", ";"), ("purchases.tsv", "\t")])
def test_quoted_newlines_give_physical_rows_with_other_delimiters(tmp_path, name, sep):
    text = f'user_id{sep}item_id{sep}note\n1{sep}a{sep}"x\ny"\n2{sep}b{sep}z\n'
    df = io.read_table(write_text(tmp_path, name, text), "purchases").df
    assert df["note"].tolist() == ["x\ny", "z"]
    assert df[io.ROW].tolist() == [2, 4]


def test_quoted_newlines_give_physical_rows_in_gzip(tmp_path):
    p = tmp_path / "purchases.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write('user_id,item_id,note\n1,a,"x\ny"\n2,b,z\n')
    assert io.read_table(p, "purchases").df[io.ROW].tolist() == [2, 4]


def test_blank_line_in_the_middle_is_a_row_with_its_line(tmp_path):
    _, rejects, acc = validate_one(tmp_path, "purchases", "user_id,item_id\n1,a\n\n2,b\n")
    assert acc == {**acc, "read": 3, "kept": 2, "rejected": 1}
    assert rejects["source_row"].tolist() == [3]
    assert rejects["column"].tolist() == ["user_id"]


# ------------------------------------------------------------------------------------------- bad files


def test_empty_file(tmp_path):
    p = write_text(tmp_path, "purchases.csv", b"")
    with pytest.raises(InputError, match=r"purchases\.csv: must have a header line and data rows\. "
                                         r"Got an empty file") as info:
        io.read_table(p, "purchases")
    assert info.value.path == str(p)


def test_file_with_only_a_newline(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "\n")
    with pytest.raises(InputError, match=r"purchases\.csv: must have a header line and data rows\. Got no columns"):
        io.read_table(p, "purchases")


def test_empty_parquet_file(tmp_path):
    p = write_text(tmp_path, "purchases.parquet", b"")
    with pytest.raises(InputError, match=r"purchases\.parquet: must be a readable Parquet file"):
        io.read_table(p, "purchases")


def test_csv_named_parquet(tmp_path):
    p = write_text(tmp_path, "purchases.parquet", "user_id,item_id\n1,a\n")
    with pytest.raises(InputError, match=r"purchases\.parquet: must be a readable Parquet file\. Got: "):
        io.read_table(p, "purchases")


def test_non_utf8_bytes_name_the_line(tmp_path):
    p = write_text(tmp_path, "purchases.csv", b"user_id,item_id\n1,a\n2,caf\xe9\n3,b\n")
    with pytest.raises(InputError, match=r"purchases\.csv: must be UTF-8 text\. Got bytes that are not UTF-8 "
                                         r"on line 3$") as info:
        io.read_table(p, "purchases")
    assert info.value.row == 3


def test_non_utf8_bytes_in_the_header(tmp_path):
    p = write_text(tmp_path, "purchases.csv", b"user_\xffid,item_id\n1,a\n")
    with pytest.raises(InputError, match=r"not UTF-8 on line 1$"):
        io.read_table(p, "purchases")


def test_binary_file_named_csv(tmp_path):
    p = write_text(tmp_path, "purchases.csv", bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"purchases\.csv: must be UTF-8 text"):
        io.read_table(p, "purchases")


def test_parquet_bytes_named_csv(tmp_path):
    src = write_frame(tmp_path / "src", "purchases", pd.DataFrame({"user_id": ["1"], "item_id": ["a"]}), "parquet")
    p = write_text(tmp_path, "purchases.csv", src.read_bytes())
    with pytest.raises(InputError, match=r"purchases\.csv: must be UTF-8 text"):
        io.read_table(p, "purchases")


def test_json_named_csv(tmp_path):
    text = json.dumps([{"user_id": 1, "item_id": 2}, {"user_id": 3, "item_id": 4}], indent=1)
    p = write_text(tmp_path, "purchases.csv", text)
    with pytest.raises(InputError, match=r"purchases\.csv"):
        schema.validate_tables({"purchases": io.read_table(p, "purchases")})


def test_too_many_fields_names_the_line(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id\n1,a\n2,b,c\n3,d\n")
    with pytest.raises(InputError, match=r"purchases\.csv: every line must have 2 fields like the header\. "
                                         r"Got 3 on line 3$") as info:
        io.read_table(p, "purchases")
    assert info.value.row == 3


def test_too_many_fields_after_a_quoted_newline_names_the_physical_line(tmp_path):
    p = write_text(tmp_path, "purchases.csv", 'user_id,item_id,note\n1,a,"x\ny"\n2,b,c,d\n')
    with pytest.raises(InputError, match=r"Got 4 on line 4$"):
        io.read_table(p, "purchases")


def test_duplicate_header_names_raise(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id,user_id\n1,a,2\n")
    with pytest.raises(InputError, match=r"column names must be unique\. Got duplicates: user_id"):
        io.read_table(p, "purchases")


def test_duplicate_header_names_after_stripping_raise(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id, user_id\n1,a,2\n")
    with pytest.raises(InputError, match=r"column names must be unique\. Got duplicates: user_id") as info:
        io.read_table(p, "purchases")
    assert info.value.column == "user_id"


# ---------------------------------------------------------------------------------------------- Parquet


def test_parquet_rows_are_record_numbers(tmp_path):
    p = write_frame(tmp_path, "purchases", pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x"] * 3}),
                    "parquet")
    assert io.read_table(p, "purchases").df[io.ROW].tolist() == [1, 2, 3]


def test_parquet_integer_ids_become_plain_strings(tmp_path):
    df = pd.DataFrame({"user_id": np.array([7, 70], dtype=np.int64), "item_id": np.array([1, 2], dtype=np.int32)})
    p = write_frame(tmp_path, "purchases", df, "parquet")
    v = schema.validate_tables({"purchases": io.read_table(p, "purchases")})
    assert v.tables["purchases"]["user_id"].tolist() == ["7", "70"]
    assert v.tables["purchases"]["item_id"].tolist() == ["1", "2"]


def test_parquet_integer_ids_with_a_null_become_plain_strings(tmp_path):
    p = tmp_path / "purchases.parquet"
    pq.write_table(pa.table({"user_id": pa.array([7, None, 8], pa.int64()), "item_id": ["a", "b", "c"]}), p)
    v = schema.validate_tables({"purchases": io.read_table(p, "purchases")})
    assert v.tables["purchases"]["user_id"].tolist() == ["7", "8"]
    assert v.rejects["purchases"]["source_row"].tolist() == [2]
    assert v.rejects["purchases"]["reason"].tolist() == ["user_id must be a non-empty id. Got '' instead."]


def test_parquet_float_ids_with_a_null_lose_only_the_dot_zero(tmp_path):
    p = write_frame(tmp_path, "purchases", pd.DataFrame({"user_id": [7.0, np.nan, 2.5], "item_id": ["a"] * 3}),
                    "parquet")
    v = schema.validate_tables({"purchases": io.read_table(p, "purchases")})
    assert v.tables["purchases"]["user_id"].tolist() == ["7", "2.5"]


def test_parquet_large_integer_ids_with_a_null_survive(tmp_path):
    p = tmp_path / "purchases.parquet"
    pq.write_table(pa.table({"user_id": pa.array([12345678901234567, None], pa.int64()), "item_id": ["a", "b"]}), p)
    v = schema.validate_tables({"purchases": io.read_table(p, "purchases")})
    assert v.tables["purchases"]["user_id"].tolist() == ["12345678901234567"]


def test_parquet_huge_float_ids_do_not_overflow(tmp_path):
    p = write_frame(tmp_path, "purchases", pd.DataFrame({"user_id": [1e20, 2.0], "item_id": ["a", "b"]}), "parquet")
    v = schema.validate_tables({"purchases": io.read_table(p, "purchases")})
    assert v.tables["purchases"]["user_id"].tolist()[0] in ("100000000000000000000", "1e+20")


def test_parquet_datetime_timestamps(tmp_path):
    df = pd.DataFrame({"user_id": ["1", "2"], "item_id": ["a", "b"],
                       "timestamp": pd.to_datetime(["2024-01-01T00:00:00", None])})
    p = write_frame(tmp_path, "purchases", df, "parquet")
    v = schema.validate_tables({"purchases": io.read_table(p, "purchases")})
    ts = v.tables["purchases"]["timestamp"].tolist()
    assert ts[0] == 1704067200.0 and np.isnan(ts[1])


# ------------------------------------------------------------------------------- CSV and Parquet agree


def _frames():
    purchases = pd.DataFrame({
        "user_id": ["007", "7", "008", "9", ""],
        "item_id": ["0001", "0001", "x", "y", "z"],
        "timestamp": ["2024-01-01T00:00:00Z", "1704067200", "2024-01-02", None, "2024-01-03"],
        "quantity": pd.array([2, 1, None, 4, 1], dtype="Int64"),
        "price": [1.5, 0.0, 2.25, -1.0, 3.0],
    })
    friendships = pd.DataFrame({"user_id": ["007", "7", "9", "008"], "friend_id": ["7", "007", "9", "9"]})
    users = pd.DataFrame({"user_id": ["007", "7", "10"], "gender": ["f", None, "m"], "email": ["a@b", "c@d", None]})
    items = pd.DataFrame({"item_id": ["0001", "x", "q"], "category": ["books", None, "toys"],
                          "price": [1.0, 2.0, 3.0]})
    return {"purchases": purchases, "friendships": friendships, "users": users, "items": items}


def test_csv_and_parquet_give_the_same_kept_tables(tmp_path):
    frames = _frames()
    out = {}
    for fmt in ("csv", "parquet"):
        for name, df in frames.items():
            write_frame(tmp_path / fmt, name, df, fmt)
        out[fmt] = schema.validate_tables(io.read_tables(io.find_tables(tmp_path / fmt)))
    for name in frames:
        csv_kept = out["csv"].tables[name].drop(columns=[io.ROW])
        pq_kept = out["parquet"].tables[name].drop(columns=[io.ROW])
        pd.testing.assert_frame_equal(csv_kept, pq_kept, check_dtype=False, obj=name)
        # rejects differ only in the row numbering (CSV: physical line, Parquet: record number)
        csv_rej, pq_rej = out["csv"].rejects[name], out["parquet"].rejects[name]
        assert (csv_rej["source_row"] - 1).tolist() == pq_rej["source_row"].tolist()
        assert csv_rej["column"].tolist() == pq_rej["column"].tolist()
        assert [r.split(". Got")[0] for r in csv_rej["reason"]] == [r.split(". Got")[0] for r in pq_rej["reason"]]
        acc_c, acc_p = out["csv"].accounting[name], out["parquet"].accounting[name]
        assert (acc_c["read"], acc_c["kept"], acc_c["rejected"]) == (acc_p["read"], acc_p["kept"], acc_p["rejected"])
    kept = out["csv"].tables["purchases"]
    assert kept["user_id"].tolist() == ["007", "7", "008"]
    assert kept["item_id"].tolist() == ["0001", "0001", "x"]
    assert kept["quantity"].tolist() == [2, 1, 1]
    assert out["csv"].dropped_columns == out["parquet"].dropped_columns == {"users": ["email"]}


def test_error_messages_quote_the_file_path(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "uid,item_id\n1,a\n")
    with pytest.raises(InputError, match=re.escape(str(p))):
        schema.validate_tables({"purchases": io.read_table(p, "purchases")})
