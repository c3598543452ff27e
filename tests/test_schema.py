"""graphprof.schema: row rules, rejects with physical lines and exact reasons, required columns, PII columns."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import JAN_1_2024, rejects_as_tuples, validate_one, validate_texts, write_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphprof.errors import GraphprofError, InputError
from graphprof.ingest import io, schema
from graphprof.ingest.io import ROW

PURCHASES_HEADER = "user_id,item_id,timestamp,quantity,price\n"
GOOD_PURCHASE = "1,a,1704067200,1,2.5\n"  # always line 2 in the one-bad-row tests below


def _one_bad_purchase(tmp_path, bad_row: str):
    """A good row on line 2 and ``bad_row`` on line 3."""
    return validate_one(tmp_path, "purchases", PURCHASES_HEADER + GOOD_PURCHASE + bad_row + "\n")


# ------------------------------------------------------------------------------------ purchases: kept rows


def test_purchases_kept_columns_dtypes_and_values(tmp_path):
    kept, rejects, acc = validate_one(tmp_path, "purchases", PURCHASES_HEADER + "1,a,1704067200,3,2.5\n"
                                      "2,b,,,\n")
    assert list(kept.columns) == ["user_id", "item_id", "timestamp", "quantity", "price", "weight", ROW]
    assert kept["user_id"].tolist() == ["1", "2"]
    assert kept["item_id"].tolist() == ["a", "b"]
    assert kept["quantity"].dtype == np.int64
    assert kept["quantity"].tolist() == [3, 1]  # a blank quantity is one unit
    assert kept["timestamp"].iloc[0] == JAN_1_2024 and math.isnan(kept["timestamp"].iloc[1])
    assert kept["price"].iloc[0] == 2.5 and math.isnan(kept["price"].iloc[1])  # blank price = unknown
    assert kept["weight"].tolist() == [1.0, 1.0]
    assert kept[ROW].tolist() == [2, 3]
    assert len(rejects) == 0
    assert list(rejects.columns) == schema.REJECT_COLUMNS
    assert (acc["read"], acc["kept"], acc["rejected"]) == (2, 2, 0)


def test_purchases_with_only_the_required_columns_get_defaults(tmp_path):
    kept, _, _ = validate_one(tmp_path, "purchases", "user_id,item_id\n1,a\n")
    assert kept["quantity"].tolist() == [1]
    assert kept["weight"].tolist() == [1.0]
    assert math.isnan(kept["timestamp"].iloc[0]) and math.isnan(kept["price"].iloc[0])


def test_rating_becomes_the_weight_and_is_not_kept_as_a_column(tmp_path):
    kept, rejects, _ = validate_one(tmp_path, "purchases", "user_id,item_id,rating\n1,a,4.5\n1,b,\n1,c,-1\n")
    assert "rating" not in kept.columns
    assert kept["weight"].tolist() == [4.5, 1.0]  # a blank rating weighs 1
    assert rejects_as_tuples(rejects) == [
        (4, "rating", "-1", "rating must be a finite number >= 0. Got '-1' instead.")]


@pytest.mark.parametrize("text", [
    "1704067200",
    "1704067200.0",
    "2024-01-01",
    "2024-01-01T00:00:00",          # naive = UTC
    "2024-01-01 00:00:00",
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:00:00+01:00",
    "2023-12-31T19:00:00-05:00",
])
def test_epoch_seconds_and_iso_with_or_without_zone_give_the_same_instant(tmp_path, text):
    kept, rejects, _ = validate_one(tmp_path, "purchases", f"user_id,item_id,timestamp\n1,a,{text}\n")
    assert len(rejects) == 0
    assert kept["timestamp"].tolist() == [JAN_1_2024]


def test_timestamp_bounds_are_1970_inclusive_and_2100_exclusive(tmp_path):
    text = ("user_id,item_id,timestamp\n"
            "1,a,0\n"
            "1,a,1970-01-01T00:00:00Z\n"
            "1,a,4102444799\n"
            "1,a,4102444800\n"
            "1,a,-1\n")
    kept, rejects, _ = validate_one(tmp_path, "purchases", text)
    assert kept["timestamp"].tolist() == [0.0, 0.0, 4102444799.0]
    assert rejects_as_tuples(rejects) == [
        (5, "timestamp", "4102444800", "timestamp must lie between 1970 and 2100. Got '4102444800' instead."),
        (6, "timestamp", "-1", "timestamp must lie between 1970 and 2100. Got '-1' instead."),
    ]


def test_ids_keep_leading_zeros_and_are_stripped(tmp_path):
    kept, _, _ = validate_one(tmp_path, "purchases", "user_id,item_id\n007,0042\n7,42\n 7 , x \n")
    assert kept["user_id"].tolist() == ["007", "7", "7"]
    assert kept["item_id"].tolist() == ["0042", "42", "x"]
    assert kept["user_id"].iloc[0] != kept["user_id"].iloc[1]


# --------------------------------------------------------------------------------- purchases: row rules

PURCHASE_RULES = [
    pytest.param(",a,1704067200,1,1", (3, "user_id", "", "user_id must be a non-empty id. Got '' instead."),
                 id="missing-user"),
    pytest.param("  ,a,1704067200,1,1", (3, "user_id", "  ", "user_id must be a non-empty id. Got '  ' instead."),
                 id="blank-user"),
    pytest.param("1,,1704067200,1,1", (3, "item_id", "", "item_id must be a non-empty id. Got '' instead."),
                 id="missing-item"),
    pytest.param("1,a,1704067200,-1,1",
                 (3, "quantity", "-1", "quantity must be an integer >= 1. Got '-1' instead."), id="negative-qty"),
    pytest.param("1,a,1704067200,0,1",
                 (3, "quantity", "0", "quantity must be an integer >= 1. Got '0' instead."), id="zero-qty"),
    pytest.param("1,a,1704067200,1.5,1",
                 (3, "quantity", "1.5", "quantity must be an integer >= 1. Got '1.5' instead."), id="fraction-qty"),
    pytest.param("1,a,1704067200,two,1",
                 (3, "quantity", "two", "quantity must be an integer >= 1. Got 'two' instead."), id="text-qty"),
    pytest.param("1,a,1704067200,1,-0.01",
                 (3, "price", "-0.01", "price must be a finite number >= 0. Got '-0.01' instead."),
                 id="negative-price"),
    pytest.param("1,a,1704067200,1,nan",
                 (3, "price", "nan", "price must be a finite number >= 0. Got 'nan' instead."), id="nan-price"),
    pytest.param("1,a,1704067200,1,inf",
                 (3, "price", "inf", "price must be a finite number >= 0. Got 'inf' instead."), id="inf-price"),
    pytest.param("1,a,1704067200,1,-inf",
                 (3, "price", "-inf", "price must be a finite number >= 0. Got '-inf' instead."), id="-inf-price"),
    pytest.param("1,a,1704067200,1,cheap",
                 (3, "price", "cheap", "price must be a finite number >= 0. Got 'cheap' instead."), id="text-price"),
    pytest.param("1,a,yesterday,1,1",
                 (3, "timestamp", "yesterday",
                  "timestamp must be epoch seconds or an ISO-8601 date. Got 'yesterday' instead."), id="bad-time"),
    pytest.param("1,a,2024-13-45,1,1",
                 (3, "timestamp", "2024-13-45",
                  "timestamp must be epoch seconds or an ISO-8601 date. Got '2024-13-45' instead."),
                 id="impossible-date"),
    pytest.param("1,a,1960-06-01,1,1",
                 (3, "timestamp", "1960-06-01", "timestamp must lie between 1970 and 2100. Got '1960-06-01' instead."),
                 id="before-1970"),
    pytest.param("1,a,2100-01-01T00:00:00Z,1,1",
                 (3, "timestamp", "2100-01-01T00:00:00Z",
                  "timestamp must lie between 1970 and 2100. Got '2100-01-01T00:00:00Z' instead."), id="year-2100"),
    pytest.param("1,a,9999999999,1,1",
                 (3, "timestamp", "9999999999", "timestamp must lie between 1970 and 2100. Got '9999999999' instead."),
                 id="epoch-too-late"),
]


@pytest.mark.parametrize(("bad_row", "expected"), PURCHASE_RULES)
def test_each_purchase_rule_rejects_the_row_with_line_column_value_and_reason(tmp_path, bad_row, expected):
    kept, rejects, acc = _one_bad_purchase(tmp_path, bad_row)
    assert rejects_as_tuples(rejects) == [expected]
    assert kept[ROW].tolist() == [2]
    assert (acc["read"], acc["kept"], acc["rejected"]) == (2, 1, 1)
    assert rejects["source_file"].tolist() == [str(tmp_path / "purchases.csv")]


def test_every_reason_has_the_documented_shape(tmp_path):
    text = PURCHASES_HEADER + "".join(p.values[0] + "\n" for p in PURCHASE_RULES)
    _, rejects, acc = validate_one(tmp_path, "purchases", text)
    assert acc["rejected"] == len(PURCHASE_RULES)
    for row, column, value, reason in rejects_as_tuples(rejects):
        assert re.fullmatch(rf"{column} must [^.]+\. Got '{re.escape(value)}' instead\.", reason), (row, reason)


def test_a_row_is_rejected_once_for_its_first_failing_rule(tmp_path):
    # blank user, negative quantity and negative price: only the user id is reported
    kept, rejects, acc = validate_one(tmp_path, "purchases", PURCHASES_HEADER + ",a,junk,-1,-1\n1,a,junk,-1,-1\n")
    assert rejects_as_tuples(rejects) == [
        (2, "user_id", "", "user_id must be a non-empty id. Got '' instead."),
        (3, "timestamp", "junk", "timestamp must be epoch seconds or an ISO-8601 date. Got 'junk' instead."),
    ]
    assert len(kept) == 0
    assert acc == {"read": 2, "kept": 0, "rejected": 2, "source": str(tmp_path / "purchases.csv")}


def test_rejects_are_in_file_order_whatever_rule_caught_them(tmp_path):
    text = PURCHASES_HEADER + "1,a,,1,-5\n1,a,,0,\n1,,,,\n1,a,,,\n,a,,,\n"
    kept, rejects, acc = validate_one(tmp_path, "purchases", text)
    assert [(r, c) for r, c, _, _ in rejects_as_tuples(rejects)] == [
        (2, "price"), (3, "quantity"), (4, "item_id"), (6, "user_id")]
    assert kept[ROW].tolist() == [5]
    assert acc["read"] == acc["kept"] + acc["rejected"] == 5


def test_quoted_multiline_cell_puts_the_reject_on_its_physical_line(tmp_path):
    text = 'user_id,item_id,note,quantity\n1,a,"two\nlines",1\n1,a,ok,0\n'
    kept, rejects, _ = validate_one(tmp_path, "purchases", text)
    assert kept[ROW].tolist() == [2]
    assert rejects_as_tuples(rejects) == [(4, "quantity", "0", "quantity must be an integer >= 1. Got '0' instead.")]


def test_header_only_purchases_table_keeps_nothing(tmp_path):
    kept, rejects, acc = validate_one(tmp_path, "purchases", PURCHASES_HEADER)
    assert len(kept) == 0 and len(rejects) == 0
    assert (acc["read"], acc["kept"], acc["rejected"]) == (0, 0, 0)


def test_huge_quantity_is_never_kept_as_a_negative_number(tmp_path):
    kept, rejects, acc = validate_one(tmp_path, "purchases", "user_id,item_id,quantity\n1,a,1e20\n"
                                      "1,a,9223372036854775807\n")
    assert acc["read"] == acc["kept"] + acc["rejected"]
    assert (kept["quantity"] >= 1).all(), kept["quantity"].tolist()


# -------------------------------------------------------------------------------------------- friendships


def test_friendships_kept_rows_and_default_weight(tmp_path):
    kept, rejects, acc = validate_one(tmp_path, "friendships", "user_id,friend_id,weight\n1,2,\n2,3,0.5\n")
    assert list(kept.columns) == ["user_id", "friend_id", "weight", ROW]
    assert kept[["user_id", "friend_id"]].values.tolist() == [["1", "2"], ["2", "3"]]
    assert kept["weight"].tolist() == [1.0, 0.5]
    assert kept[ROW].tolist() == [2, 3]
    assert len(rejects) == 0 and acc["read"] == 2


def test_friendships_without_weight_column_weigh_one(tmp_path):
    kept, _, _ = validate_one(tmp_path, "friendships", "user_id,friend_id\n1,2\n")
    assert kept["weight"].tolist() == [1.0]


def test_self_tie_is_rejected(tmp_path):
    kept, rejects, _ = validate_one(tmp_path, "friendships", "user_id,friend_id\n1,2\n3,3\n 4,4 \n")
    assert rejects_as_tuples(rejects) == [
        (3, "friend_id", "3", "friend_id must differ from user_id (self ties are not friendships). Got '3' instead."),
        (4, "friend_id", "4 ",
         "friend_id must differ from user_id (self ties are not friendships). Got '4 ' instead."),
    ]
    assert kept[ROW].tolist() == [2]


def test_leading_zeros_make_a_different_user_so_not_a_self_tie(tmp_path):
    kept, rejects, _ = validate_one(tmp_path, "friendships", "user_id,friend_id\n007,7\n")
    assert len(rejects) == 0
    assert kept[["user_id", "friend_id"]].values.tolist() == [["007", "7"]]


def test_exact_and_reversed_duplicate_ties_name_the_line_of_the_first_copy(tmp_path):
    text = "user_id,friend_id\n1,2\n3,4\n1,2\n2,1\n4,3\n"
    kept, rejects, acc = validate_one(tmp_path, "friendships", text)
    assert rejects_as_tuples(rejects) == [
        (4, "friend_id", "1,2", "friend_id must be a tie listed once (undirected). Got a duplicate of line 2 instead."),
        (5, "friend_id", "2,1", "friend_id must be a tie listed once (undirected). Got a duplicate of line 2 instead."),
        (6, "friend_id", "4,3", "friend_id must be a tie listed once (undirected). Got a duplicate of line 3 instead."),
    ]
    assert kept[ROW].tolist() == [2, 3]
    assert (acc["read"], acc["kept"], acc["rejected"]) == (5, 2, 3)


def test_a_rejected_tie_does_not_count_as_the_first_copy(tmp_path):
    # line 2 is rejected for its weight, so line 3 is the first valid copy and line 4 duplicates it
    text = "user_id,friend_id,weight\n1,2,-1\n2,1,2\n1,2,3\n"
    kept, rejects, _ = validate_one(tmp_path, "friendships", text)
    assert rejects_as_tuples(rejects) == [
        (2, "weight", "-1", "weight must be a finite number > 0. Got '-1' instead."),
        (4, "friend_id", "1,2", "friend_id must be a tie listed once (undirected). Got a duplicate of line 3 instead."),
    ]
    assert kept["weight"].tolist() == [2.0]


@pytest.mark.parametrize("weight", ["0", "-2", "inf", "nan", "heavy"])
def test_non_positive_or_non_finite_tie_weight_is_rejected(tmp_path, weight):
    kept, rejects, _ = validate_one(tmp_path, "friendships", f"user_id,friend_id,weight\n1,2,{weight}\n")
    assert rejects_as_tuples(rejects) == [
        (2, "weight", weight, f"weight must be a finite number > 0. Got '{weight}' instead.")]
    assert len(kept) == 0


@pytest.mark.parametrize(("row", "expected"), [
    (",2", (2, "user_id", "", "user_id must be a non-empty id. Got '' instead.")),
    ("1,", (2, "friend_id", "", "friend_id must be a non-empty id. Got '' instead.")),
    (",", (2, "user_id", "", "user_id must be a non-empty id. Got '' instead.")),
])
def test_tie_with_a_missing_end_is_rejected(tmp_path, row, expected):
    kept, rejects, _ = validate_one(tmp_path, "friendships", f"user_id,friend_id\n{row}\n")
    assert rejects_as_tuples(rejects) == [expected]
    assert len(kept) == 0


# ------------------------------------------------------------------------------------------------ users


def test_users_duplicate_id_is_rejected_naming_the_first_line(tmp_path):
    text = "user_id,gender\n1,f\n2,m\n1,m\n002,f\n"
    kept, rejects, acc = validate_one(tmp_path, "users", text)
    assert rejects_as_tuples(rejects) == [
        (4, "user_id", "1", "user_id must be unique (one row per user_id). Got a duplicate of line 2 instead.")]
    assert kept["user_id"].tolist() == ["1", "2", "002"]
    assert kept["gender"].tolist() == ["f", "m", "f"]  # the first copy wins
    assert (acc["read"], acc["kept"], acc["rejected"]) == (4, 3, 1)


def test_users_blank_id_is_rejected(tmp_path):
    _, rejects, _ = validate_one(tmp_path, "users", "user_id,gender\n,f\n")
    assert rejects_as_tuples(rejects) == [(2, "user_id", "", "user_id must be a non-empty id. Got '' instead.")]


def test_users_empty_or_blank_cell_is_na_and_values_are_stripped_strings(tmp_path):
    kept, _, _ = validate_one(tmp_path, "users", "user_id,gender,age_band\n1,f,\n2, ,30-39\n3, m ,40\n")
    assert list(kept.columns) == ["user_id", "gender", "age_band", ROW]
    assert kept["gender"].isna().tolist() == [False, True, False]
    assert kept["age_band"].isna().tolist() == [True, False, False]
    assert kept["gender"].iloc[2] == "m"
    assert kept["age_band"].iloc[2] == "40"  # attributes stay strings, even numeric-looking ones
    assert pd.api.types.is_string_dtype(kept["age_band"])


def test_users_pii_columns_are_dropped_and_reported(tmp_path):
    text = ("user_id,email,Phone,first_name,ip,home_address,gender,zip_code,description\n"
            "1,a@b.c,555,Ann,10.0.0.1,Main St 1,f,00123,likes books\n")
    v = validate_texts(tmp_path, purchases="user_id,item_id\n1,a\n", users=text)
    users = v.tables["users"]
    assert list(users.columns) == ["user_id", "gender", "zip_code", "description", ROW]
    assert users["zip_code"].tolist() == ["00123"]
    assert v.dropped_columns == {"users": ["email", "Phone", "first_name", "ip", "home_address"]}


def test_no_dropped_columns_reported_when_there_is_no_pii(tmp_path):
    v = validate_texts(tmp_path, purchases="user_id,item_id\n1,a\n", users="user_id,gender\n1,f\n")
    assert v.dropped_columns == {}


def test_items_keep_only_id_category_and_price(tmp_path):
    kept, _, _ = validate_one(tmp_path, "items", "item_id,product_name,brand,category\na,Tea,Acme,food\n")
    assert list(kept.columns) == ["item_id", "category", ROW]


@pytest.mark.parametrize("name", [
    "email", "Email", "e-mail", "EMAIL_ADDRESS", "phone", "phone_number", "mobile", "address", "street",
    "name", "first_name", "LastName", "username", "ssn", "passport_no", "ip", "IP", "user_ip", "ip_address",
    "ipaddr", "ip-addr",
])
def test_is_pii_column_true(name):
    assert schema.is_pii_column(name) is True


@pytest.mark.parametrize("name", [
    "zip_code", "description", "ship_to", "tip", "vip", "vip_level", "gender", "age_band", "spend_level",
    "country", "city", "user_id", "postcode", "birth_year",
])
def test_is_pii_column_false(name):
    assert schema.is_pii_column(name) is False


def test_is_pii_column_e_mail_with_underscore():
    assert schema.is_pii_column("e_mail") is True


# ------------------------------------------------------------------------------------------------ items


def test_items_missing_category_is_unknown_and_negative_price_rejected(tmp_path):
    text = "item_id,category,price\na,books,10\nb,,4\nc, ,\nd,toys,-1\na,toys,3\n"
    kept, rejects, acc = validate_one(tmp_path, "items", text)
    assert kept["item_id"].tolist() == ["a", "b", "c"]
    assert kept["category"].tolist() == ["books", "unknown", "unknown"]
    assert kept["price"].iloc[:2].tolist() == [10.0, 4.0] and math.isnan(kept["price"].iloc[2])
    assert rejects_as_tuples(rejects) == [
        (5, "price", "-1", "price must be a finite number >= 0. Got '-1' instead."),
        (6, "item_id", "a", "item_id must be unique (one row per item_id). Got a duplicate of line 2 instead."),
    ]
    assert (acc["read"], acc["kept"], acc["rejected"]) == (5, 3, 2)


def test_items_without_category_column_get_no_category_column(tmp_path):
    kept, _, _ = validate_one(tmp_path, "items", "item_id,price\na,1\n")
    assert list(kept.columns) == ["item_id", "price", ROW]


# --------------------------------------------------------------------------------------- required columns


@pytest.mark.parametrize(("table", "text", "column", "found"), [
    ("purchases", "uid,item_id,ts\n1,a,0\n", "user_id", "uid, item_id, ts"),
    ("purchases", "user_id\n1\n", "item_id", "user_id"),
    ("friendships", "user_id,friend\n1,2\n", "friend_id", "user_id, friend"),
    ("users", "id,gender\n1,f\n", "user_id", "id, gender"),
    ("items", "sku,category\na,b\n", "item_id", "sku, category"),
])
def test_missing_required_column_raises_naming_file_and_column(tmp_path, table, text, column, found):
    path = tmp_path / f"{table}.csv"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: required column '{column}' is missing "
                                         rf"\(found: {re.escape(found)}\)$") as info:
        validate_one(tmp_path, table, text)
    err = info.value
    assert (err.path, err.row, err.column) == (str(path), 1, column)
    assert isinstance(err, ValueError) and isinstance(err, GraphprofError)


def test_no_purchases_table_raises(tmp_path):
    raw = {"friendships": io.read_table(write_text(tmp_path, "friendships.csv", "user_id,friend_id\n1,2\n"),
                                        "friendships")}
    with pytest.raises(InputError, match=r"^purchases: a purchases table is required\. Got none$"):
        schema.validate_tables(raw)


def test_unknown_table_name_raises(tmp_path):
    p = write_text(tmp_path, "purchases.csv", "user_id,item_id\n1,a\n")
    raw = {"purchases": io.read_table(p, "purchases"), "orders": io.read_table(p, "orders")}
    with pytest.raises(InputError, match=r"^orders: table name must be one of purchases, friendships, users, items\. "
                                         r"Got 'orders'$"):
        schema.validate_tables(raw)


# ------------------------------------------------------------------------------------------- accounting


def test_accounting_for_every_table_and_summary_lines(tmp_path):
    v = validate_texts(
        tmp_path,
        purchases=PURCHASES_HEADER + "1,a,,1,\n,a,,1,\n1,a,,0,\n",
        friendships="user_id,friend_id\n1,2\n2,1\n",
        users="user_id\n1\n1\n2\n",
        items="item_id,price\na,1\nb,-1\n",
    )
    expected = {"purchases": (3, 1, 2), "friendships": (2, 1, 1), "users": (3, 2, 1), "items": (2, 1, 1)}
    for name, (read, kept, rejected) in expected.items():
        acc = v.accounting[name]
        assert (acc["read"], acc["kept"], acc["rejected"]) == (read, kept, rejected), name
        assert acc["read"] == acc["kept"] + acc["rejected"]
        assert len(v.tables[name]) == kept and len(v.rejects[name]) == rejected
        assert acc["source"] == str(tmp_path / f"{name}.csv")
    assert v.summary_lines()[0] == f"purchases: read 3 = kept 1 + rejected 2  ({tmp_path / 'purchases.csv'})"
    assert len(v.summary_lines()) == 4


def test_parquet_null_id_is_rejected_with_its_record_number(tmp_path):
    path = tmp_path / "purchases.parquet"
    pd.DataFrame({"user_id": pd.array([1, None, 7], dtype="Int64"), "item_id": ["a", "b", "c"]}).to_parquet(path)
    v = schema.validate_tables({"purchases": io.read_table(path, "purchases")})
    assert v.tables["purchases"]["user_id"].tolist() == ["1", "7"]
    assert rejects_as_tuples(v.rejects["purchases"]) == [
        (2, "user_id", "", "user_id must be a non-empty id. Got '' instead.")]


# ---------------------------------------------------------------------------------------- value parsers


def test_normalize_ids_strings():
    out = schema.normalize_ids(pd.Series([" 007 ", "", "   ", None, "7", "a b"], dtype=object))
    assert out.fillna("<NA>").tolist() == ["007", "<NA>", "<NA>", "<NA>", "7", "a b"]


def test_normalize_ids_numbers_lose_only_the_dot_zero():
    floats = schema.normalize_ids(pd.Series([1.0, np.nan, 7.0, 1.5]))
    assert floats.fillna("<NA>").tolist() == ["1", "<NA>", "7", "1.5"]
    ints = schema.normalize_ids(pd.Series([1, None], dtype="Int64"))
    assert ints.fillna("<NA>").tolist() == ["1", "<NA>"]
    assert schema.normalize_ids(pd.Series([2**62 + 1])).tolist() == ["4611686018427387905"]


def test_parse_timestamps_mixed_text_series():
    s = pd.Series(["1704067200", "2024-01-01T00:00:00Z", "2024-01-01", "2024-01-01T01:00:00+01:00", None,
                   "junk", "1704067200.5"], dtype=object)
    out = schema.parse_timestamps(s).tolist()
    assert out[:4] == [JAN_1_2024] * 4
    assert math.isnan(out[4]) and math.isnan(out[5])
    assert out[6] == JAN_1_2024 + 0.5


def test_parse_timestamps_numbers_and_datetimes():
    assert schema.parse_timestamps(pd.Series([1704067200, 0])).tolist() == [JAN_1_2024, 0.0]
    naive = schema.parse_timestamps(pd.Series(pd.to_datetime(["2024-01-01", None])))
    assert naive.iloc[0] == JAN_1_2024 and math.isnan(naive.iloc[1])
    aware = schema.parse_timestamps(pd.Series(pd.to_datetime(["2024-01-01T01:00:00+01:00"])))
    assert aware.tolist() == [JAN_1_2024]


# ------------------------------------------------------------------------------------------ properties

IDS = ["1", "2", "3", "007", "7", "x", "", " "]
TIMES = ["", "1704067200", "2024-01-01", "2024-01-01T00:00:00+02:00", "garbage", "-5", "1e12", "nan", "0"]
QUANTITIES = ["", "1", "2", "3.0", "0", "-1", "1.5", "x"]
PRICES = ["", "0", "4.5", "-1", "inf", "nan", "abc"]
WEIGHTS = ["", "1", "2.5", "0", "-2", "x"]

purchase_rows = st.lists(st.tuples(*(st.sampled_from(v) for v in (IDS, IDS, TIMES, QUANTITIES, PRICES))),
                         max_size=25)
tie_rows = st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(IDS), st.sampled_from(WEIGHTS)), max_size=25)


def _check_partition(kept: pd.DataFrame, rejects: pd.DataFrame, acc: dict, n_rows: int) -> None:
    assert acc["read"] == n_rows
    assert acc["read"] == acc["kept"] + acc["rejected"]
    assert len(kept) == acc["kept"] and len(rejects) == acc["rejected"]
    kept_rows = kept[ROW].astype(int).tolist()
    rejected_rows = rejects["source_row"].astype(int).tolist()
    assert len(set(kept_rows) | set(rejected_rows)) == n_rows  # no row both kept and rejected, none twice
    assert sorted(kept_rows + rejected_rows) == list(range(2, n_rows + 2))
    for reason, column in zip(rejects["reason"], rejects["column"]):
        assert reason.startswith(f"{column} must ") and reason.endswith(" instead."), reason


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(purchases=purchase_rows, ties=tie_rows)
def test_random_defects_never_crash_and_every_row_is_kept_or_rejected_once(purchases, ties):
    with tempfile.TemporaryDirectory() as tmp:
        v = validate_texts(
            Path(tmp),
            purchases=PURCHASES_HEADER + "".join(",".join(r) + "\n" for r in purchases),
            friendships="user_id,friend_id,weight\n" + "".join(",".join(r) + "\n" for r in ties),
        )
    p, f = v.tables["purchases"], v.tables["friendships"]
    _check_partition(p, v.rejects["purchases"], v.accounting["purchases"], len(purchases))
    _check_partition(f, v.rejects["friendships"], v.accounting["friendships"], len(ties))
    # what is kept obeys every rule
    assert p["user_id"].notna().all() and p["item_id"].notna().all()
    assert (p["quantity"] >= 1).all()
    assert not (p["price"] < 0).any() and not np.isinf(p["price"]).any()
    ts = p["timestamp"].dropna()
    assert ((ts >= schema.TIME_MIN) & (ts < schema.TIME_MAX)).all()
    assert (f["user_id"] != f["friend_id"]).all() and (f["weight"] > 0).all()
    pairs = [tuple(sorted(pair)) for pair in zip(f["user_id"], f["friend_id"])]
    assert len(pairs) == len(set(pairs))
    # and each rejected tie's duplicate names a kept line
    dup_lines = v.rejects["friendships"]["reason"].str.extract(r"duplicate of line (\d+)")[0].dropna().astype(int)
    assert set(dup_lines) <= set(f[ROW])


# --------------------------------------------------------------------------------- timestamp units
@pytest.mark.parametrize(("unit", "per_second"), [("milliseconds", 10**3), ("microseconds", 10**6),
                                                   ("nanoseconds", 10**9)])
def test_a_column_in_another_epoch_unit_is_converted_and_said(tmp_path, unit, per_second):
    rows = "".join(f"1,a,{(1704067200 + 3600 * k) * per_second}\n" for k in range(5))
    kept, rejects, acc = validate_one(tmp_path, "purchases", "user_id,item_id,timestamp\n" + rows)
    assert len(rejects) == 0
    assert kept["timestamp"].tolist() == [JAN_1_2024 + 3600.0 * k for k in range(5)]
    assert acc["timestamp_unit"] == unit


def test_epoch_seconds_say_no_unit_and_an_outlier_does_not_change_the_unit(tmp_path):
    rows = "1,a,1704067200\n1,a,1704070800\n1,a,9999999999\n"
    kept, rejects, acc = validate_one(tmp_path, "purchases", "user_id,item_id,timestamp\n" + rows)
    assert "timestamp_unit" not in acc
    assert kept["timestamp"].tolist() == [JAN_1_2024, JAN_1_2024 + 3600.0]
    assert rejects_as_tuples(rejects) == [
        (4, "timestamp", "9999999999", "timestamp must lie between 1970 and 2100. Got '9999999999' instead.")]


def test_a_row_out_of_range_in_a_milliseconds_column_says_how_it_was_read(tmp_path):
    rows = "1,a,1704067200000\n1,a,1704070800000\n1,a,9999999999999999\n"
    kept, rejects, acc = validate_one(tmp_path, "purchases", "user_id,item_id,timestamp\n" + rows)
    assert acc["timestamp_unit"] == "milliseconds" and len(kept) == 2
    assert rejects_as_tuples(rejects) == [
        (4, "timestamp", "9999999999999999", "timestamp must lie between 1970 and 2100 (read as epoch "
         "milliseconds, the unit of the column as a whole). Got '9999999999999999' instead.")]


def test_build_says_the_unit_it_converted(tmp_path):
    from graphprof.graph.build import build

    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"u{k % 7},i{k % 5},{(1704067200 + 60 * k) * 1000}\n" for k in range(40))
    (data / "purchases.csv").write_text("user_id,item_id,timestamp\n" + rows)
    result = build(tmp_path / "work", data=data)
    assert result.accounting["purchases"]["rejected"] == 0
    assert ("purchases: timestamps are epoch milliseconds (judged from the column as a whole); converted to "
            "seconds") in result.summary_lines()
