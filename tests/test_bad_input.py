"""Malformed input, end to end through ``graphprof build-graph`` / ``train`` (in-process ``cli.main``).

One matrix of bad inputs across the four tables and every supported format (generic CSV / TSV / gzip / Parquet,
feather, hetrec-lastfm, movielens). Each case must end in exit code 0 with every row accounted for
(read = kept + rejected, the expected rejects at their physical line and column, a graph holding exactly the
users and items the kept rows imply, counted here by hand) or in exit code 2 with one message naming the file
(and the line and column where they apply); never a traceback, never a silently smaller graph.

A property test then throws random generic CSV tables with random defects at read -> validate -> build_graph.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphprof import cli, workdir
from graphprof.errors import InputError
from graphprof.graph import build_graph
from graphprof.ingest import io, schema

DATA = Path(__file__).resolve().parent / "data"
MKDIR = "<a directory>"  # a file name mapped to this becomes an (empty) directory


@dataclass(frozen=True)
class Case:
    """One bad input.

    ``files``: name -> text (written as UTF-8, verbatim), bytes, a ``pa.Table`` (written as Parquet), ``MKDIR``,
    or None (removes that file of the copied ``fixture``). ``argv``: build-graph arguments instead of
    ``--data DIR``; '{dir}' is the data folder, here and in ``message``.
    Exit 0: ``rows`` is table -> (read, kept, rejected) for every table, ``rejects`` table -> [(source_row,
    column)] in file order, ``nodes`` the graph's node counts by type, ``user_ids`` / ``item_ids`` the exact
    ids where their text matters. Exit 2: ``message`` substrings. ``train``: arguments of a ``train`` run
    after the build (which must pass); ``dropped`` the small classes it must report.
    """

    id: str
    files: dict
    exit: int = 0
    fmt: str = "generic"
    fixture: str | None = None
    argv: tuple[str, ...] | None = None
    message: tuple[str, ...] = ()
    rows: dict = field(default_factory=dict)
    rejects: dict = field(default_factory=dict)
    nodes: dict | None = None
    user_ids: frozenset | None = None
    item_ids: frozenset | None = None
    train: tuple[str, ...] | None = None
    dropped: dict | None = None


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# 40 users, 7 items, a ring of ties; users.csv: 'one' has a single class, 'empty' no label at all, 'three'
# classes a (19), b (19) and c (2 users: too few to split, so dropped and reported)
_N = 40
_THREE = ["a"] * 19 + ["b"] * 19 + ["c"] * 2
SHOP = {
    "purchases.csv": "user_id,item_id\n" + "".join(f"u{k},i{k % 7}\n" for k in range(_N)),
    "friendships.csv": "user_id,friend_id\n" + "".join(f"u{k},u{(k + 1) % _N}\n" for k in range(_N)),
    "users.csv": "user_id,one,empty,three\n" + "".join(f"u{k},x,,{_THREE[k]}\n" for k in range(_N)),
}
SHOP_ROWS = {"purchases": (_N, _N, 0), "friendships": (_N, _N, 0), "users": (_N, _N, 0)}
SHOP_NODES = {"user": _N, "item": 7}
FEATHER_ROWS = {"purchases": (6, 6, 0), "friendships": (3, 3, 0), "users": (4, 4, 0)}
ML_NODES = {"user": 8, "item": 6, "category": 5}

CASES = [
    # ------------------------------------------------------------------------------------- generic CSV / TSV
    Case("csv-space-delimited-header", {"purchases.csv": "user_id item_id\nu1 i1\n"}, exit=2,
         message=("{dir}/purchases.csv: required column 'user_id' is missing", "found: user_id item_id")),
    Case("csv-tab-and-pipe-delimiters-sniffed", {
        "purchases.csv": "user_id\titem_id\tquantity\nu1\ti1\t2\nu2\ti2\tx\n",
        "friendships.csv": "user_id|friend_id\nu1|u2\n"},
        rows={"purchases": (2, 1, 1), "friendships": (1, 1, 0)}, rejects={"purchases": [(3, "quantity")]},
        nodes={"user": 2, "item": 1}),
    Case("csv-rows-with-the-wrong-delimiter", {"purchases.csv": "user_id,item_id\nu1,i1\nu2;i2\nu3,i3\n"},
         rows={"purchases": (3, 2, 1)}, rejects={"purchases": [(3, "item_id")]}, nodes={"user": 2, "item": 2},
         user_ids=frozenset({"u1", "u3"})),
    Case("csv-byte-order-mark-with-semicolons", {
        "purchases.csv": "\ufeffuser_id,item_id\nu1,i1\n",
        "users.csv": "\ufeffuser_id;gender\nu1;F\nu9;M\n"},
        rows={"purchases": (1, 1, 0), "users": (2, 2, 0)}, nodes={"user": 2, "item": 1},
        user_ids=frozenset({"u1", "u9"})),
    Case("csv-utf16-file", {"purchases.csv": "user_id,item_id\nu1,i1\n".encode("utf-16")}, exit=2,
         message=("{dir}/purchases.csv: must be UTF-8 text", "on line 1")),
    Case("csv-quoted-newlines", {"purchases.csv": 'user_id,item_id,quantity\n"u\n1",i1,2\nu2,"i\n\n2",0\nu3,i3,-1\n'},
         rows={"purchases": (3, 1, 2)}, rejects={"purchases": [(4, "quantity"), (7, "quantity")]},
         nodes={"user": 1, "item": 1}, user_ids=frozenset({"u\n1"})),
    Case("csv-crlf-line-ends", {"purchases.csv": "user_id,item_id,quantity\r\nu1,i1,1\r\nu2,i2,0\r\n"},
         rows={"purchases": (2, 1, 1)}, rejects={"purchases": [(3, "quantity")]}, nodes={"user": 1, "item": 1}),
    Case("csv-duplicated-header", {"purchases.csv": "user_id,item_id,user_id\nu1,i1,u2\n"}, exit=2,
         message=("{dir}/purchases.csv: column names must be unique", "Got duplicates: user_id")),
    Case("csv-duplicated-header-after-stripping", {
        "purchases.csv": "user_id,item_id\nu1,i1\n", "users.csv": "user_id, gender,gender \nu1,F,M\n"}, exit=2,
        message=("{dir}/users.csv: column names must be unique", "Got duplicates: gender")),
    Case("csv-non-utf8-bytes", {"purchases.csv": b"user_id,item_id\nu1,i1\nu2,i\xe92\n"}, exit=2,
         message=("{dir}/purchases.csv: must be UTF-8 text", "on line 3")),
    Case("csv-gz-non-utf8-bytes-line-of-the-text", {
        "purchases.csv.gz": gzip.compress(b"user_id,item_id\nu1,i1\nu2,i2\nu\xff3,i3\n")}, exit=2,
        message=("{dir}/purchases.csv.gz: must be UTF-8 text", "on line 4")),
    Case("csv-gz-truncated", {
        "purchases.csv.gz": gzip.compress(b"user_id,item_id\n" + b"u1,i1\n" * 500)[:40]}, exit=2,
        message=("{dir}/purchases.csv.gz: must be a readable gzip-compressed CSV file",)),
    Case("csv-gz-suffix-on-plain-text", {"purchases.csv.gz": b"user_id,item_id\nu1,i1\n"}, exit=2,
         message=("{dir}/purchases.csv.gz: must be a readable gzip-compressed CSV file", "Not a gzipped file")),
    Case("csv-truncated-last-line", {"purchases.csv": "user_id,item_id,quantity\nu1,i1,2\nu2,i2,3\nu3"},
         rows={"purchases": (3, 2, 1)}, rejects={"purchases": [(4, "item_id")]}, nodes={"user": 2, "item": 2}),
    Case("csv-truncated-inside-a-quote", {"purchases.csv": 'user_id,item_id\nu1,i1\nu2,"i2\n'}, exit=2,
         message=("{dir}/purchases.csv: every quoted field must end with a closing quote", "line 3")),
    Case("csv-line-with-an-extra-field", {"purchases.csv": "user_id,item_id\nu1,i1\nu2,i2,extra\n"}, exit=2,
         message=("{dir}/purchases.csv: every line must have 2 fields like the header", "Got 3 on line 3")),
    Case("csv-first-data-line-with-an-extra-field", {"purchases.csv": "user_id,item_id\nu1,i1,extra\nu2,i2\n"},
         exit=2, message=("{dir}/purchases.csv: every line must have 2 fields like the header", "Got 3 on line 2")),
    Case("csv-mixed-type-id-columns", {
        "purchases.csv": "user_id,item_id\n7,a\n007,a\n7.0,a\n 7 ,b\nTrue,b\n-7,b\n",
        "friendships.csv": "user_id,friend_id\n7,007\n07,7\n",
        "users.parquet": pa.table({"user_id": pa.array([7, 8, None], pa.int64()), "gender": ["F", "M", "F"]})},
        rows={"purchases": (6, 6, 0), "friendships": (2, 2, 0), "users": (3, 2, 1)},
        rejects={"users": [(3, "user_id")]}, nodes={"user": 7, "item": 2},
        user_ids=frozenset({"7", "007", "7.0", "True", "-7", "07", "8"})),
    Case("csv-huge-ids", {"purchases.csv": "user_id,item_id\n123456789012345678901234567890,1e400\n"
                                           "00000000000000000001,-0\n18446744073709551616,1e400\n"},
         rows={"purchases": (3, 3, 0)}, nodes={"user": 3, "item": 2},
         user_ids=frozenset({"123456789012345678901234567890", "00000000000000000001", "18446744073709551616"}),
         item_ids=frozenset({"1e400", "-0"})),
    Case("csv-nan-inf-negative-numbers", {
        "purchases.csv": "user_id,item_id,quantity,price,rating\nu1,i1,nan,1,1\nu1,i1,1,inf,1\nu1,i1,1,-1,1\n"
                         "u1,i1,1,1,-inf\nu1,i1,-2,1,1\nu1,i1,1,NaN,1\nu1,i1,1e308,1,1\nu1,i1,2,-0,0\n"
                         "u2,i2,1,1e-300,1\n",
        "friendships.csv": "user_id,friend_id,weight\nu1,u3,nan\nu1,u4,-1\nu1,u5,inf\nu1,u6,0\nu1,u7,0.5\n",
        "items.csv": "item_id,price\ni1,-0.5\ni2,inf\ni3,2\n"},
        rows={"purchases": (9, 2, 7), "friendships": (5, 1, 4), "items": (3, 1, 2)},
        rejects={"purchases": [(2, "quantity"), (3, "price"), (4, "price"), (5, "rating"), (6, "quantity"),
                               (7, "price"), (8, "quantity")],
                 "friendships": [(2, "weight"), (3, "weight"), (4, "weight"), (5, "weight")],
                 "items": [(2, "price"), (3, "price")]},
        nodes={"user": 3, "item": 3}, user_ids=frozenset({"u1", "u2", "u7"})),
    Case("csv-timestamps-in-several-formats-and-out-of-range", {
        "purchases.csv": "user_id,item_id,timestamp\n" + "".join(f"u1,i1,{t}\n" for t in (
            "1704067200", "2024-01-01", "2024-01-01T10:00:00Z", "2024-01-01 10:00:00+02:00", "1704067200.5",
            "1970-01-01T00:00:00Z",                                        # lines 2-7 kept
            "01/02/2024", "Jan 1 2024", "2024-13-01", "nan",                # lines 8-11 not a date
            "1969-12-31T23:59:59Z", "2100-01-01", "1704067200000", "-1", "9999-12-31", "0001-01-01", "inf",
        )) + "u2,i2,\n"},                                                   # line 19: no time is fine
        rows={"purchases": (18, 7, 11)}, rejects={"purchases": [(line, "timestamp") for line in range(8, 19)]},
        nodes={"user": 2, "item": 2}),
    Case("csv-users-only-in-ties-or-only-in-users", {
        "purchases.csv": "user_id,item_id\nu1,i1\n",
        "friendships.csv": "user_id,friend_id\nu1,u2\nu3,u4\nu4,u3\nu5,u5\nu6,\n",
        "users.csv": "user_id,gender\nu7,F\n"},
        rows={"purchases": (1, 1, 0), "friendships": (5, 2, 3), "users": (1, 1, 0)},
        rejects={"friendships": [(4, "friend_id"), (5, "friend_id"), (6, "friend_id")]},
        nodes={"user": 5, "item": 1}, user_ids=frozenset({"u1", "u2", "u3", "u4", "u7"})),
    Case("csv-items-without-a-category", {
        "purchases.csv": "user_id,item_id\nu1,i1\nu1,i2\nu2,i3\n",
        "items.csv": "item_id,category,price\ni1,books,1\ni2,,2\ni4,  ,3\n"},
        rows={"purchases": (3, 3, 0), "items": (3, 3, 0)}, nodes={"user": 2, "item": 4, "category": 2},
        item_ids=frozenset({"i1", "i2", "i3", "i4"})),
    Case("csv-duplicate-and-blank-ids-in-users-and-items", {
        "purchases.csv": "user_id,item_id\nu1,i1\n",
        "users.csv": "user_id,gender,email\nu1,F,a@b.c\nu1,M,c@d.e\n ,F,x\n",
        "items.csv": "item_id,category\ni1,toys\ni1,books\n"},
        rows={"purchases": (1, 1, 0), "users": (3, 1, 2), "items": (2, 1, 1)},
        rejects={"users": [(3, "user_id"), (4, "user_id")], "items": [(3, "item_id")]},
        nodes={"user": 1, "item": 1, "category": 1}),
    Case("csv-unknown-columns-and-whitespace", {"purchases.csv": "  user_id , item_id ,foo,\n u1 , i1 ,x,\n\t u2\t,i2,,\n"},
         rows={"purchases": (2, 2, 0)}, nodes={"user": 2, "item": 2}, user_ids=frozenset({"u1", "u2"})),
    Case("tsv-suffix-with-commas-in-values", {"purchases.tsv": "user_id\titem_id\nu,1\ti,2\n"},
         rows={"purchases": (1, 1, 0)}, nodes={"user": 1, "item": 1}, user_ids=frozenset({"u,1"})),
    Case("csv-header-only-friendships", {
        "purchases.csv": "user_id,item_id\nu1,i1\n", "friendships.csv": "user_id,friend_id\n"},
        rows={"purchases": (1, 1, 0), "friendships": (0, 0, 0)}, nodes={"user": 1, "item": 1}),
    Case("csv-missing-required-column-in-friendships", {
        "purchases.csv": "user_id,item_id\nu1,i1\n", "friendships.csv": "user_id,friend\nu1,u2\n"}, exit=2,
        message=("{dir}/friendships.csv: required column 'friend_id' is missing (found: user_id, friend)",)),
    Case("csv-empty-file", {"purchases.csv": ""}, exit=2,
         message=("{dir}/purchases.csv: must have a header line and data rows. Got an empty file",)),
    Case("csv-empty-optional-table", {"purchases.csv": "user_id,item_id\nu1,i1\n", "users.csv": ""}, exit=2,
         message=("{dir}/users.csv: must have a header line and data rows. Got an empty file",)),
    Case("csv-every-purchase-rejected", {"purchases.csv": "user_id,item_id\n,i1\nu2,\n"}, exit=2,
         message=("{dir}/purchases.csv: must have at least one valid purchase", "Got all 2 rows rejected")),
    # ----------------------------------------------------------------------------------------- directories
    Case("dir-empty", {}, exit=2, message=("{dir}: must contain purchases.csv or purchases.parquet. Got: nothing",)),
    Case("dir-with-extra-files", {
        "purchases.csv": "user_id,item_id\nu1,i1\n", "README.md": "# shop", "purchases_old.csv": "garbage\x00",
        "notes.json": "{", "items.xlsx": b"PK\x03\x04", "archive": MKDIR},
        rows={"purchases": (1, 1, 0)}, nodes={"user": 1, "item": 1}),
    Case("dir-two-files-for-one-table", {
        "purchases.csv": "user_id,item_id\nu1,i1\n", "purchases.parquet": pa.table({"user_id": ["u1"], "item_id": ["i1"]})},
        exit=2, message=("{dir}: must hold one file per table. Got 2 for purchases: purchases.csv, purchases.parquet",)),
    Case("dir-a-table-name-that-is-a-directory", {"purchases.csv": "user_id,item_id\nu1,i1\n", "users.csv": MKDIR},
         exit=2, message=("{dir}/users.csv: the users file must be a file. Got a directory",)),
    Case("dir-data-is-a-file", {"purchases.csv": "user_id,item_id\nu1,i1\n"}, argv=("--data", "{dir}/purchases.csv"),
         exit=2, message=("{dir}/purchases.csv: --data must be a directory",)),
    Case("flag-unknown-suffix", {"purchases.xlsx": b"PK\x03\x04"}, argv=("--purchases", "{dir}/purchases.xlsx"),
         exit=2, message=("{dir}/purchases.xlsx: the format must be CSV, TSV or Parquet", "Got '.xlsx'")),
    Case("flag-missing-file", {}, argv=("--purchases", "{dir}/nope.csv"), exit=2,
         message=("{dir}/nope.csv: the purchases file must exist",)),
    Case("usage-unknown-format", {"purchases.csv": "user_id,item_id\nu1,i1\n"}, fmt="xml", exit=2,
         message=("argument --format: invalid choice: 'xml'",)),
    # --------------------------------------------------------------------------------------------- Parquet
    Case("parquet-wrong-column-types", {"purchases.parquet": pa.table({
        "user_id": pa.array([1, 2, 3, None, 5, 6], pa.int64()),
        "item_id": pa.array([1.0, 2.5, 3.0, 4.0, None, 6.0], pa.float64()),
        "quantity": ["2", "x", None, "1", "1", "1"],
        "price": ["1.5", "1", "abc", "1", "1", None]})},
        rows={"purchases": (6, 2, 4)},
        rejects={"purchases": [(2, "quantity"), (3, "price"), (4, "user_id"), (5, "item_id")]},
        nodes={"user": 2, "item": 2}, user_ids=frozenset({"1", "6"}), item_ids=frozenset({"1", "6"})),
    Case("parquet-boolean-timestamps-and-quantities", {"purchases.parquet": pa.table({
        "user_id": ["1", "2", "3"], "item_id": ["a", "b", "c"],
        "timestamp": pa.array([True, None, None], pa.bool_()), "quantity": pa.array([None, True, None], pa.bool_())})},
        rows={"purchases": (3, 1, 2)}, rejects={"purchases": [(1, "timestamp"), (2, "quantity")]},
        nodes={"user": 1, "item": 1}),
    Case("parquet-uint64-ids-above-int64", {"purchases.parquet": pa.table({
        "user_id": pa.array([2**64 - 1, 2**63, None], pa.uint64()), "item_id": ["a", "b", "c"]})},
        rows={"purchases": (3, 2, 1)}, rejects={"purchases": [(3, "user_id")]}, nodes={"user": 2, "item": 2},
        user_ids=frozenset({"18446744073709551615", "9223372036854775808"})),
    Case("parquet-timestamps-out-of-range", {"purchases.parquet": pa.table({
        "user_id": ["1", "2", "3"], "item_id": ["a", "b", "c"],
        "timestamp": pa.array([_ts("9999-01-01"), _ts("2024-01-01"), _ts("1969-12-31")], pa.timestamp("us"))})},
        rows={"purchases": (3, 1, 2)}, rejects={"purchases": [(1, "timestamp"), (3, "timestamp")]},
        nodes={"user": 1, "item": 1}),
    Case("parquet-int-id-ties-with-nan-weight", {
        "purchases.csv": "user_id,item_id\n1,a\n",
        "friendships.parquet": pa.table({
            "user_id": pa.array([1, 2, 3, 4, 5], pa.int32()), "friend_id": pa.array([2, 3, 3, 5, 6], pa.int64()),
            "weight": [1.0, float("nan"), -1.0, -1.0, float("inf")]})},
        rows={"purchases": (1, 1, 0), "friendships": (5, 2, 3)},
        rejects={"friendships": [(3, "friend_id"), (4, "weight"), (5, "weight")]},
        nodes={"user": 3, "item": 1}, user_ids=frozenset({"1", "2", "3"})),
    Case("parquet-list-column", {"purchases.parquet": pa.table({"user_id": [[1, 2], [3]], "item_id": ["a", "b"]})},
         exit=2, message=("{dir}/purchases.parquet: column 'user_id' must hold text or numbers", "list<")),
    Case("parquet-binary-not-utf8", {"purchases.parquet": pa.table({
        "user_id": ["1", "2"], "item_id": pa.array([b"a", b"\xff"], pa.binary())})}, exit=2,
        message=("{dir}/purchases.parquet: column 'item_id' must hold UTF-8 text", "in record 2")),
    Case("parquet-duplicate-column-names", {"purchases.parquet": pa.Table.from_arrays(
        [pa.array(["1"]), pa.array(["a"]), pa.array(["b"])], names=["user_id", "item_id", "item_id"])}, exit=2,
        message=("{dir}/purchases.parquet: column names must be unique. Got duplicates: item_id",)),
    Case("parquet-garbage-bytes", {"purchases.parquet": b"PAR1garbagePAR1"}, exit=2,
         message=("{dir}/purchases.parquet: must be a readable Parquet file",)),
    # --------------------------------------------------------------------------------------------- feather
    Case("feather-duplicate-json-key", {"tiny_features.json": '{"0": [10], "1": [11], "0": [12]}'},
         fixture="feather", fmt="feather", exit=2,
         message=("{dir}/tiny_features.json: every node id must be a key once", "key '0' twice (keys 1 and 3)")),
    Case("feather-json-not-utf8", {"tiny_features.json": b'{"0": [10],\n "\xe9": [11]}'},
         fixture="feather", fmt="feather", exit=2, message=("{dir}/tiny_features.json: must be UTF-8 JSON", "line 2")),
    Case("feather-json-truncated", {"tiny_features.json": '{"0": [10, 11], "1": ['},
         fixture="feather", fmt="feather", exit=2,
         message=("{dir}/tiny_features.json: must be valid JSON", "on line 1 column 23")),
    Case("feather-json-value-not-a-list", {"tiny_features.json": '{"0": [10], "1": 5}'},
         fixture="feather", fmt="feather", exit=2,
         message=("{dir}/tiny_features.json: every value must be a list of feature ids", "key '1' (key 2)")),
    Case("feather-null-like-and-huge-feature-id", {
        "tiny_features.json": '{"0": [10, null], "1": [], "2": [99999999999999999999999], "3": [12]}'},
        fixture="feather", fmt="feather",
        rows={"purchases": (4, 3, 1), "friendships": (3, 3, 0), "users": (4, 4, 0)},
        rejects={"purchases": [(1, "item_id")]}, nodes={"user": 4, "item": 3},
        item_ids=frozenset({"10", "99999999999999999999999", "12"})),
    Case("feather-edges-self-blank-and-repeated-ties", {
        "tiny_edges.csv": "node_1,node_2\n0,1\n1,1\n2,\n1,0\n2,3\n"}, fixture="feather", fmt="feather",
        rows={"purchases": (6, 6, 0), "friendships": (5, 2, 3), "users": (4, 4, 0)},
        rejects={"friendships": [(3, "friend_id"), (4, "friend_id"), (5, "friend_id")]},
        nodes={"user": 4, "item": 3}),
    Case("feather-target-duplicates-blank-and-extra-user", {"tiny_target.csv": "id,target\n0,1\n0,0\n,1\n9,1\n"},
         fixture="feather", fmt="feather",
         rows={"purchases": (6, 6, 0), "friendships": (3, 3, 0), "users": (4, 2, 2)},
         rejects={"users": [(3, "user_id"), (4, "user_id")]}, nodes={"user": 5, "item": 3},
         user_ids=frozenset({"0", "1", "2", "3", "9"})),
    Case("feather-target-with-a-user_id-label-column", {"tiny_target.csv": "id,user_id,target\n0,a,1\n1,b,0\n"},
         fixture="feather", fmt="feather", exit=2,
         message=("{dir}/tiny_target.csv: only the node id column 'id' may become 'user_id'",
                  "second column named 'user_id'")),
    Case("feather-target-not-utf8", {"tiny_target.csv": b"id,target\n0,1\n1,\xff\n"}, fixture="feather",
         fmt="feather", exit=2, message=("{dir}/tiny_target.csv: must be UTF-8 text", "on line 3")),
    Case("feather-folder-with-extra-files", {"readme.txt": "hi", "notes.json": "{}", "old_edges.csv.bak": "x"},
         fixture="feather", fmt="feather", rows=FEATHER_ROWS, nodes={"user": 4, "item": 3}),
    Case("feather-folder-without-features", {"tiny_features.json": None}, fixture="feather", fmt="feather", exit=2,
         message=("{dir}: --format feather needs a *_features.json file", "Got: tiny_edges.csv, tiny_target.csv")),
    # ----------------------------------------------------------------------------------------------- hetrec
    Case("hetrec-bad-play-counts-crlf", {
        "user_artists.dat": "userID\tartistID\tweight\r\n2\t51\t-3\r\n2\t52\tnan\r\n3\t51\t1e3\r\n3\t\t5\r\n4\t54\t2.5\r\n"},
        fixture="hetrec_lastfm", fmt="hetrec-lastfm",
        rows={"purchases": (5, 1, 4), "friendships": (4, 3, 1), "items": (5, 5, 0)},
        rejects={"purchases": [(2, "quantity"), (3, "quantity"), (5, "item_id"), (6, "quantity")],
                 "friendships": [(7, "friend_id")]},
        nodes={"user": 4, "item": 5, "category": 4}),
    Case("hetrec-comma-instead-of-tab", {"user_artists.dat": "userID,artistID,weight\n2,51,3\n"},
         fixture="hetrec_lastfm", fmt="hetrec-lastfm", exit=2,
         message=("{dir}/user_artists.dat: required column 'userID' is missing",)),
    Case("hetrec-first-data-line-with-an-extra-field", {"user_artists.dat": "userID\tartistID\tweight\n2\t51\t3\t9\n"},
         fixture="hetrec_lastfm", fmt="hetrec-lastfm", exit=2,
         message=("{dir}/user_artists.dat: every line must have 3 fields", "Got 4 on line 2")),
    Case("hetrec-artists-not-utf8", {"artists.dat": b"id\tname\turl\tpictureURL\n51\tBj\xf6rk\tx\ty\n"},
         fixture="hetrec_lastfm", fmt="hetrec-lastfm", exit=2,
         message=("{dir}/artists.dat: must be utf-8 text", "on line 2")),
    Case("hetrec-users-only-in-ties", {"user_friends.dat": "userID\tfriendID\n2\t3\n7\t8\n8\t7\n"},
         fixture="hetrec_lastfm", fmt="hetrec-lastfm",
         rows={"purchases": (5, 5, 0), "friendships": (2, 2, 0), "items": (5, 5, 0)},
         nodes={"user": 5, "item": 5, "category": 4}, user_ids=frozenset({"2", "3", "4", "7", "8"})),
    Case("hetrec-duplicate-and-blank-artists", {"artists.dat": "id\tname\turl\tpictureURL\n51\ta\tb\tc\n51\ta\tb\tc\n\t\t\t\n"},
         fixture="hetrec_lastfm", fmt="hetrec-lastfm",
         rows={"purchases": (5, 5, 0), "friendships": (4, 3, 1), "items": (3, 1, 2)},
         rejects={"friendships": [(7, "friend_id")], "items": [(3, "item_id"), (4, "item_id")]},
         nodes={"user": 4, "item": 4, "category": 2}),
    # -------------------------------------------------------------------------------------------- movielens
    Case("movielens-bad-ratings-times-and-ids", {
        "u.data": "1\t1\t5\t874965758\n1\t2\t-1\t876893171\n2\t1\t4\t99999999999\n2\t4\tx\t888551234\n\t3\t2\t889237455\n"},
        fixture="movielens", fmt="movielens",
        rows={"purchases": (5, 1, 4), "users": (8, 8, 0), "items": (6, 6, 0)},
        rejects={"purchases": [(2, "rating"), (3, "timestamp"), (4, "rating"), (5, "user_id")]}, nodes=ML_NODES),
    Case("movielens-extra-field", {"u.data": "1\t1\t5\t874965758\n1\t2\t3\t876893171\n1\t3\t3\t876893171\t9\n"},
         fixture="movielens", fmt="movielens", exit=2,
         message=("{dir}/u.data: every line must have 4 fields", "Got 5 on line 3")),
    Case("movielens-not-utf8", {"u.data": b"1\t1\t5\t874965758\n1\t\xff\t3\t876893171\n"}, fixture="movielens",
         fmt="movielens", exit=2, message=("{dir}/u.data: must be utf-8 text", "on line 2")),
    Case("movielens-duplicate-user-without-header", {"u.user": "1|abc|M|x|1\n1|20|F|y|2\n2|-4|F|y|2\n3||F|y|2\n"},
         fixture="movielens", fmt="movielens",
         rows={"purchases": (10, 10, 0), "users": (4, 3, 1), "items": (6, 6, 0)},
         rejects={"users": [(2, "user_id")]}, nodes={"user": 7, "item": 6, "category": 5}),
    Case("movielens-header-line-and-truncated-last-line", {
        "u.data": "user_id\titem_id\trating\ttimestamp\n1\t1\t5\t874965758\n2\t2\t3"},
        fixture="movielens", fmt="movielens",
        rows={"purchases": (3, 2, 1), "users": (8, 8, 0), "items": (6, 6, 0)},
        rejects={"purchases": [(1, "timestamp")]}, nodes=ML_NODES),
    # ------------------------------------------------------------------------------------------------ train
    Case("train-target-with-one-class", SHOP, rows=SHOP_ROWS, nodes=SHOP_NODES, train=("--target", "one"), exit=2,
         message=("--target one: needs at least two classes with 10+ labelled users", "Got {'x': 40}")),
    Case("train-target-all-empty", SHOP, rows=SHOP_ROWS, nodes=SHOP_NODES, train=("--target", "empty"), exit=2,
         message=("--target empty: needs at least two classes with 10+ labelled users",)),
    Case("train-target-with-a-class-of-two-users", SHOP, rows=SHOP_ROWS, nodes=SHOP_NODES,
         train=("--target", "three"), dropped={"c": 2}),
    Case("train-unknown-target", SHOP, rows=SHOP_ROWS, nodes=SHOP_NODES, train=("--target", "nope"), exit=2,
         message=("--target must be a column of the users table (one, empty, three). Got 'nope'",)),
]


def _write(case: Case, data: Path) -> None:
    if case.fixture:
        shutil.copytree(DATA / case.fixture, data)
    data.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = data / name
        if content is None:
            path.unlink()
        elif content is MKDIR:
            path.mkdir()
        elif isinstance(content, pa.Table):
            pq.write_table(content, path)
        else:
            write_text(data, name, content)


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse: usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _ids(frame: pd.DataFrame | None, *columns: str) -> set[str]:
    if frame is None:
        return set()
    return {str(v) for c in columns for v in frame[c].dropna()}


def _check_build(case: Case, doc: dict, work: Path) -> None:
    tables = doc["tables"]
    assert {t: (a["read"], a["kept"], a["rejected"]) for t, a in tables.items()} == case.rows
    kept = {}
    for name, acc in tables.items():
        assert acc["read"] == acc["kept"] + acc["rejected"]
        kept[name] = pd.read_parquet(workdir.table_path(work, name))
        assert len(kept[name]) == acc["kept"]
        rejects = pd.read_csv(workdir.rejects_path(work, name), dtype=str, keep_default_na=False)
        assert len(rejects) == acc["rejected"]
        assert [(int(r), c) for r, c in zip(rejects["source_row"], rejects["column"])] == case.rejects.get(name, [])
        assert set(rejects["source_file"]) <= {acc["source"]}  # the real source file, also for an adapter
        for column, reason in zip(rejects["column"], rejects["reason"]):
            assert reason.startswith(f"{column} must ") and reason.endswith(" instead."), reason
    assert workdir.load_manifest(work)["rows"] == tables
    # the graph holds exactly the users and items the kept rows name (no silently smaller graph)
    users = (_ids(kept["purchases"], "user_id") | _ids(kept.get("users"), "user_id")
             | _ids(kept.get("friendships"), "user_id", "friend_id"))
    items = _ids(kept["purchases"], "item_id") | _ids(kept.get("items"), "item_id")
    graph_users = set(pd.read_parquet(workdir.ids_path(work, "user"))["user_id"])
    graph_items = set(pd.read_parquet(workdir.ids_path(work, "item"))["item_id"])
    assert graph_users == users and graph_items == items
    assert doc["graph"]["nodes"] == case.nodes
    if case.user_ids is not None:
        assert graph_users == case.user_ids
    if case.item_ids is not None:
        assert graph_items == case.item_ids


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    _write(case, data)
    argv = [a.replace("{dir}", str(data)) for a in case.argv] if case.argv is not None else ["--data", str(data)]
    code, out, err = _cli(capsys, ["build-graph", "--workdir", str(work), "--json", "--format", case.fmt, *argv])
    assert "Traceback" not in err
    if case.train is not None:
        assert code == 0, err
        _check_build(case, json.loads(out), work)
        code, out, err = _cli(capsys, ["train", "--workdir", str(work), "--json", "--models", "lr", "--seeds", "1",
                                       *case.train])
        assert "Traceback" not in err
    assert code == case.exit, err
    if code == 2:
        assert out == ""  # --json: nothing on stdout but a result
        assert err.count("error:") == 1, err
        for part in case.message:
            assert part.replace("{dir}", str(data)) in err, err
    elif case.train is not None:
        info = json.loads(out)["target_info"][case.train[-1]]
        assert info["dropped_classes"] == case.dropped
        assert info["labelled"] == _N - sum(case.dropped.values())
    else:
        _check_build(case, json.loads(out), work)


def test_the_matrix_covers_every_format_and_table():
    assert len(CASES) >= 30
    assert {c.fmt for c in CASES} >= {"generic", "feather", "hetrec-lastfm", "movielens"}
    assert {t for c in CASES for t in c.rows} == set(io.TABLES)
    assert any(isinstance(v, pa.Table) for c in CASES for v in c.files.values())
    assert {c.exit for c in CASES} == {0, 2}


# ------------------------------------------------------------------------------------------ properties
IDS = ["1", "2", "007", "7", "x", "ü", "NA", "nan", "a,b", 'q"t', "l\nm", "99999999999999999999", "", " "]
NUMBERS = ["", "1", "2", "0", "-1", "1.5", "nan", "inf", "-inf", "x", "1e400", "3 "]
TIMES = ["", "1704067200", "2024-01-01", "2024-01-01T10:00:00+02:00", "1969-12-31", "9999-12-31", "garbage",
         "1e12", "0001-01-01"]
TEXTS = ["", "F", "M", " F ", "a;b", "l\nm", "ü"]
POOLS = {"user_id": IDS, "item_id": IDS, "friend_id": IDS, "timestamp": TIMES, "quantity": NUMBERS,
         "price": NUMBERS, "rating": NUMBERS, "weight": NUMBERS, "gender": TEXTS, "email": TEXTS,
         "category": TEXTS, "foo": TEXTS + NUMBERS}
COLUMNS = {"purchases": (("user_id", "item_id"), ("timestamp", "quantity", "price", "rating")),
           "friendships": (("user_id", "friend_id"), ("weight",)),
           "users": (("user_id",), ("gender", "email")),
           "items": (("item_id",), ("category", "price"))}
ID_COLUMNS = {"purchases": (("user_id",), ("item_id",)), "friendships": (("user_id", "friend_id"), ()),
              "users": (("user_id",), ()), "items": ((), ("item_id",))}


@st.composite
def csv_table(draw, table: str, defect: bool):
    """(file text, rows as dicts of the cells' intended values, each row's first physical line)."""
    required, optional = COLUMNS[table]
    cols = list(required) + [c for c in optional if draw(st.booleans())]
    if draw(st.booleans()):
        cols.append("foo")  # a column the schema does not know
    cols = draw(st.permutations(cols))
    # the delimiter is sniffed from the header: a one-column header has none, so it reads as ','
    sep = draw(st.sampled_from([",", ";", "\t", "|"])) if len(cols) > 1 else ","
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    pad = st.sampled_from(["", "", " ", "  "])

    def cell(value: str) -> str:
        quote = draw(st.booleans()) or any(ch in value for ch in (sep, "\n", '"'))
        padded = draw(pad) + value + draw(pad)
        return '"' + padded.replace('"', '""') + '"' if quote else padded

    text = ("\ufeff" if draw(st.booleans()) else "") + sep.join(draw(pad) + c + draw(pad) for c in cols) + eol
    rows, lines = [], []
    for _ in range(draw(st.integers(0, 10))):
        row = {c: draw(st.sampled_from(POOLS[c])) for c in cols}
        lines.append(text.count("\n") + 1)
        rows.append(row)
        text += sep.join(cell(row[c]) for c in cols) + eol
    if defect:  # a bad file: a line with a field more than the header, or a quote that never closes
        text += (sep.join(["x"] * (len(cols) + 1)) + eol) if draw(st.booleans()) else ('"' + "x" * 3 + eol)
    return text, rows, lines


@st.composite
def shops(draw):
    bad = draw(st.sampled_from([None, None, None, *COLUMNS]))
    return {t: draw(csv_table(t, t == bad)) for t in COLUMNS}, bad


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shop=shops())
def test_random_generic_tables_are_read_validated_and_built_with_every_row_accounted(shop):
    tables, bad = shop
    with tempfile.TemporaryDirectory() as tmp:
        paths = {t: write_text(Path(tmp), f"{t}.csv", text) for t, (text, _, _) in tables.items()}
        if bad is not None:
            with pytest.raises(InputError) as info:
                schema.validate_tables(io.read_tables(paths))
            assert info.value.path == str(paths[bad])
            return
        v = schema.validate_tables(io.read_tables(paths))
    users, items = set(), set()
    for t, (_, rows, lines) in tables.items():
        acc, kept, rejects = v.accounting[t], v.tables[t], v.rejects[t]
        assert acc["read"] == len(rows) == acc["kept"] + acc["rejected"]
        assert len(kept) == acc["kept"] and len(rejects) == acc["rejected"]
        assert sorted(kept[io.ROW].tolist() + rejects["source_row"].tolist()) == lines
        # the ids the kept rows name, from what was written (not from what was parsed)
        by_line = dict(zip(lines, rows))
        user_cols, item_cols = ID_COLUMNS[t]
        for line in kept[io.ROW]:
            users |= {by_line[line][c].strip() for c in user_cols}
            items |= {by_line[line][c].strip() for c in item_cols}
    assert "" not in users | items
    graph = build_graph(v)
    assert graph.num_users == len(users) and set(graph.user_ids) == users
    assert set(graph.item_ids) == items
