"""Tiny hand-written tables for the unit tests, written to a temporary folder as CSV / Parquet.

Kept deliberately small: every row of every table is visible in the test that uses it, so the expected values
can be checked by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from graphprof.graph import ProfileGraph, build_graph
from graphprof.ingest import io, schema

# A shop small enough to check by hand (used by test_graph and test_features):
#   users 1, 2 buy; 3 and 4 only appear in friendships; 1-2-3 is a triangle and 4 hangs off 3.
#   user 1 buys item a twice (2 units at 10 each time) and item b once (1 unit at 5);
#   user 2 buys b once (3 units, no price given: the items table's list price 4 applies).
TINY_PURCHASES = (
    "user_id,item_id,timestamp,quantity,price\n"
    "1,a,2024-01-01T00:00:00Z,2,10\n"
    "1,a,2024-01-11T00:00:00Z,2,10\n"
    "1,b,2024-01-05T00:00:00Z,1,5\n"
    "2,b,2024-01-01T00:00:00Z,3,\n"
)
TINY_FRIENDSHIPS = "user_id,friend_id\n1,2\n2,3\n3,1\n4,3\n"
TINY_ITEMS = "item_id,category,price\na,books,10\nb,toys,4\n"
JAN_1_2024 = 1704067200.0
DAY = 86400.0


def write_text(folder: Path, name: str, text: str | bytes) -> Path:
    """Write ``text`` (or raw bytes) verbatim to ``folder/name`` and return the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def write_frame(folder: Path, name: str, df: pd.DataFrame, fmt: str = "csv") -> Path:
    """Write a DataFrame as ``<name>.<fmt>`` (``csv`` or ``parquet``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def validate_dir(folder: Path) -> schema.ValidatedTables:
    """find -> read -> validate, as ``build-graph`` does."""
    return schema.validate_tables(io.read_tables(io.find_tables(folder)))


def validate_texts(folder: Path, **tables: str | bytes) -> schema.ValidatedTables:
    """Write each ``table=text`` as ``<table>.csv`` in ``folder`` and validate them all."""
    paths = {name: write_text(folder, f"{name}.csv", text) for name, text in tables.items()}
    return schema.validate_tables(io.read_tables(paths))


def validate_one(folder: Path, table: str, text: str | bytes, filename: str | None = None):
    """Validate one table (with a one-row purchases table beside it when ``table`` is not purchases).

    Returns ``(kept, rejects, accounting)`` of ``table``.
    """
    raw = {}
    if table != "purchases":
        raw["purchases"] = io.read_table(write_text(folder, "purchases.csv", "user_id,item_id\nu,i\n"),
                                         "purchases")
    raw[table] = io.read_table(write_text(folder, filename or f"{table}.csv", text), table)
    v = schema.validate_tables(raw)
    return v.tables[table], v.rejects[table], v.accounting[table]


def tiny_graph(folder: Path, *, purchases: str = TINY_PURCHASES, friendships: str | None = TINY_FRIENDSHIPS,
               items: str | None = TINY_ITEMS, users: str | None = None) -> ProfileGraph:
    tables = {"purchases": purchases}
    for name, text in (("friendships", friendships), ("items", items), ("users", users)):
        if text is not None:
            tables[name] = text
    return build_graph(validate_texts(folder, **tables))


def rejects_as_tuples(rejects: pd.DataFrame) -> list[tuple[int, str, str, str]]:
    """``(source_row, column, value, reason)`` per reject, in file order."""
    return [(int(r.source_row), r.column, r.value, r.reason) for r in rejects.itertuples(index=False)]
