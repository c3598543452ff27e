"""``build-graph --engine duckdb``: the purchases of a shop larger than memory, never all in memory at once.

Three passes over the purchases, each holding a bounded part of them:

1. **Validate a slice at a time.** The Parquet file is read in slices of ``slice_rows`` records; each slice is
   validated by the very rules of the in-memory route (:func:`graphprof.ingest.schema.validate_purchase_slice`,
   the timestamp unit judged from the whole column first) and its kept rows appended to
   ``tables/purchases.parquet``, its rejects to ``rejects/purchases.csv``.
2. **Code the ids on DuckDB.** The sorted distinct user and item ids (with those of the other tables), and every
   kept purchase coded as (user, item) integers, written as Parquet partitions of consecutive users. This is the
   string-heavy, memory-heavy part; DuckDB runs it within ``memory_limit`` and spills the rest to a temporary
   folder in the work directory's staging area.
3. **Reduce a partition at a time.** Each partition is reduced to one edge per (user, item) by
   :func:`graphprof.graph.aggregate.aggregate_pairs`, the in-memory route's code: a pair's purchases all lie in
   one partition and are reduced in the same canonical order, so the edges equal the in-memory route's.

The other tables (ties, users, items) are validated in memory as usual; the graph is then assembled by
:func:`graphprof.graph.construct.assemble_graph`, shared with the in-memory route.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.graph.aggregate import aggregate_pairs
from graphprof.graph.construct import BUY_REDUCERS, assemble_graph, buy_columns, purchase_prices
from graphprof.graph.hetero import BUY_ATTRS, ProfileGraph
from graphprof.ingest.io import ROW, parquet_names, parquet_slices
from graphprof.ingest.schema import TIME_UNITS, ValidatedTables, time_unit, validate_purchase_slice
from graphprof.runtime import progress

log = logging.getLogger("graphprof")

#: purchase records validated at once
SLICE_ROWS = 4_000_000
#: coded purchases reduced at once (a partition holds the purchases of consecutive users, about this many)
PARTITION_ROWS = 4_000_000
#: DuckDB's memory when none is given: a quarter of the memory available, between 1 and 4 GiB
DEFAULT_MEMORY = (1 << 30, 4 << 30)


def duckdb_memory_limit() -> int:
    from graphprof.runtime.estimate import available_memory

    lo, hi = DEFAULT_MEMORY
    return int(min(hi, max(lo, (available_memory() or 4 * hi) // 4)))


def validate_purchases(source: Path, staging: Path, slice_rows: int | None = None) -> dict:
    """Pass 1: ``source`` (Parquet) validated a slice at a time into ``staging``'s ``tables/purchases.parquet``
    and ``rejects/purchases.csv``. Returns the table's row accounting, as the in-memory route gives it."""
    import pyarrow.parquet as pq

    slice_rows = slice_rows or SLICE_ROWS
    unit = _timestamp_unit(source)
    out = workdir.table_path(staging, "purchases")
    rejects = workdir.rejects_path(staging, "purchases")
    out.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    acc = {"read": 0, "kept": 0, "rejected": 0, "source": str(source)}
    total = pq.ParquetFile(source).metadata.num_rows
    slices = _prefetched(parquet_slices(source, "purchases", slice_rows))
    with ThreadPoolExecutor(max_workers=1) as pool, progress.bar(total=total, desc="validate purchases",
                                                                  unit="row") as bar:
        # a slice is written (Arrow's writer releases the GIL) while the next one is validated
        writer = _SliceWriter(out, rejects)
        pending = None
        try:
            for raw in slices:
                kept, rej, a = validate_purchase_slice(raw, unit)
                del raw
                for key in ("read", "kept", "rejected"):
                    acc[key] += a[key]
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write, kept, rej)
                bar.update(a["read"])
            if pending is not None:
                pending.result()
        finally:
            writer.close()
    if unit[1] != 1.0:
        acc["timestamp_unit"] = unit[0]
    return acc


def parquet_writer(path: Path, schema):
    """A Parquet writer for a validated table, dictionary-encoding only the columns whose values repeat (ids,
    not floats), as :func:`graphprof.workdir.write_parquet` does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    encode = [f.name for f in schema if not pa.types.is_floating(f.type)]
    return pq.ParquetWriter(path, schema, use_dictionary=encode or False)


class _SliceWriter:
    """Appends validated slices to the kept table (Parquet) and the rejects (CSV), in the order given."""

    def __init__(self, out: Path, rejects: Path):
        self.out, self.rejects = out, rejects
        self.writer, self.schema, self.first = None, None, True

    def write(self, kept: pd.DataFrame, rej: pd.DataFrame) -> None:
        import pyarrow as pa

        frame = kept.drop(columns=[ROW])
        frame = frame.astype({c: "string" for c in frame.columns if pd.api.types.is_string_dtype(frame[c])})
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = parquet_writer(self.out, self.schema)
        self.writer.write_table(table)
        rej.to_csv(self.rejects, index=False, header=self.first, mode="w" if self.first else "a")
        self.first = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _prefetched(iterator, depth: int = 1):
    """``iterator``'s items, the next one read in a thread while the caller works on the current one (Arrow's
    reading releases the GIL); an error of the reading is raised where its item would have come."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def read() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("end", done))
        except BaseException as exc:  # handed to the consumer, raised there
            items.put(("error", exc))

    thread = threading.Thread(target=read, name="read-slices", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting to put
            with contextlib.suppress(queue.Empty):
                items.get_nowait()
            thread.join(timeout=0.1)


def _timestamp_unit(source: Path) -> tuple[str, float]:
    """The epoch unit of the whole timestamp column (only that column is read), as the in-memory route judges
    it; seconds where the file has no timestamps."""
    import pyarrow.parquet as pq

    parquet_names(source)  # a damaged file or repeated names: a bad file, named
    names = {str(n).strip(): n for n in pq.read_schema(source).names}
    if "timestamp" not in names:
        return TIME_UNITS[0]
    column = next(parquet_slices(source, "purchases", 1 << 62, columns=[names["timestamp"]])).df["timestamp"]
    return time_unit(column)


@dataclass
class OtherTables:
    """What the graph needs of the validated ties, users and items tables (:func:`other_tables`), so the tables
    themselves can be freed before the purchases are coded."""

    user_ids: pd.Series | None  # the users table's ids
    items: pd.DataFrame | None  # the items table (id, category, price)
    tie_ids: pd.Series | None  # the distinct ids the kept ties name
    tie_a: np.ndarray | None  # each kept tie's ends, as positions in the validation's factorized ids
    tie_b: np.ndarray | None
    tie_pos: np.ndarray | None  # factorized id -> position in ``tie_ids`` (-1: named by rejected ties only)
    tie_weight: np.ndarray | None


def other_tables(validated: ValidatedTables) -> OtherTables:
    t = validated.tables
    users, items, ties = t.get("users"), t.get("items"), t.get("friendships")
    user_ids = users["user_id"] if users is not None else None
    if ties is None or not len(ties):
        return OtherTables(user_ids, items, None, None, None, None, None)
    uniques, ca, cb = validated.friend_codes
    used = np.zeros(len(uniques), dtype=bool)
    used[ca] = True
    used[cb] = True
    pos = np.full(len(uniques), -1, dtype=np.int64)
    pos[used] = np.arange(int(used.sum()))
    return OtherTables(user_ids, items, uniques[used].reset_index(drop=True), ca, cb, pos,
                       ties["weight"].to_numpy(np.float32))


def build_graph_out_of_core(purchases: Path, others: OtherTables, tmp: Path, *, memory_limit: int | None = None,
                            partition_rows: int | None = None) -> ProfileGraph:
    """Passes 2 and 3: the graph of the validated purchases file ``purchases`` and the other validated tables
    (:func:`other_tables`), equal to ``build_graph`` of all of them in memory. ``tmp`` (created and removed
    here) holds DuckDB's spill files and the coded partitions."""
    import duckdb
    import pyarrow.parquet as pq

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    limit = memory_limit or duckdb_memory_limit()
    partition_rows = partition_rows or PARTITION_ROWS
    items = others.items
    try:
        con = duckdb.connect(config={"memory_limit": f"{limit // (1 << 20)}MB", "temp_directory": str(tmp / "spill"),
                                     "threads": os.cpu_count() or 1, "preserve_insertion_order": False})
        src = _sql_string(purchases)
        extra_users = [s for s in (others.user_ids, others.tie_ids) if s is not None]
        user_ids = _dictionary(con, "uid", f"SELECT DISTINCT user_id AS id FROM read_parquet({src})", extra_users)
        item_ids = _dictionary(con, "iid", f"SELECT DISTINCT item_id AS id FROM read_parquet({src})",
                               [items["item_id"]] if items is not None else [])
        item_rows = _codes(con, "iid", items["item_id"]) if items is not None else None
        ties = None
        if others.tie_ids is not None:
            full = np.full(len(others.tie_pos), -1, dtype=np.int64)
            full[others.tie_pos >= 0] = _codes(con, "uid", others.tie_ids)
            ties = (full[others.tie_a], full[others.tie_b], others.tie_weight)
        n_rows = pq.ParquetFile(purchases).metadata.num_rows
        block = max(1, int(len(user_ids) * partition_rows // max(n_rows, 1)))
        parts = tmp / "coded"
        log.info("coding %d purchases on DuckDB (memory limit %.1f GiB), %d partitions", n_rows, limit / 2**30,
                 -(-len(user_ids) // block))
        con.execute(f"""COPY (SELECT u.code AS u, i.code AS i, p.timestamp, p.quantity, p.price, p.weight,
                                     u.code // {block} AS part
                              FROM read_parquet({src}) p JOIN uid u ON p.user_id = u.id JOIN iid i ON p.item_id = i.id)
                        TO {_sql_string(parts)} (FORMAT parquet, PARTITION_BY (part))""")
        con.close()
        buys = _reduce_partitions(parts, tmp / "edges", block, len(user_ids), items, item_rows, len(item_ids))
        return assemble_graph(user_ids, item_ids, buys, ties, items, item_rows)
    except duckdb.Error as exc:
        _machine_failure(exc, tmp, limit)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _machine_failure(exc, tmp: Path, limit: int) -> None:
    """DuckDB's errors of the machine said as graphprof says them (a full disk as the OSError it is, memory as
    a shortage, exit 2); any other DuckDB error is left to propagate (a bug of ours)."""
    import duckdb

    from graphprof.runtime.estimate import MemoryShortage

    text = str(exc)
    if "no space left" in text.lower():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp)) from exc
    if isinstance(exc, duckdb.OutOfMemoryException):
        raise MemoryShortage(f"DuckDB ran out of memory coding the purchases within its limit of "
                             f"{limit / 2**30:.1f} GiB ({text.splitlines()[0]}). Free memory, or run on a larger "
                             "machine") from exc


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _arrow_ids(ids: pd.Series):
    import pyarrow as pa

    return pa.table({"id": pa.array(ids.astype(str).to_numpy(dtype=object), type=pa.string()),
                     "pos": pa.array(np.arange(len(ids), dtype=np.int64))})


def _dictionary(con, name: str, distinct_sql: str, extra: list[pd.Series]) -> np.ndarray:
    """Table ``name`` (id, code): the sorted distinct ids of ``distinct_sql`` and ``extra``, coded 0.. in sorted
    (code point) order, as ``build_graph`` orders them. Returns the ids in code order."""
    union = [distinct_sql]
    for k, ids in enumerate(extra):
        con.register(f"{name}_extra_{k}", _arrow_ids(ids))
        union.append(f"SELECT id FROM {name}_extra_{k}")
    con.execute(f"CREATE TABLE {name} AS SELECT id, (row_number() OVER (ORDER BY id) - 1)::BIGINT AS code "
                f"FROM ({' UNION '.join(union)})")
    table = con.sql(f"SELECT id, code FROM {name}").to_arrow_table()  # placed by code: no reliance on row order
    ids = np.empty(len(table), dtype=object)
    ids[table.column("code").to_numpy()] = table.column("id").to_numpy(zero_copy_only=False)
    return ids


def _codes(con, name: str, ids: pd.Series) -> np.ndarray:
    """Each of ``ids``' code in dictionary ``name``, in ``ids``' order."""
    con.register("lookup_ids", _arrow_ids(ids))
    out = con.execute(f"SELECT q.pos, d.code FROM lookup_ids q JOIN {name} d ON q.id = d.id").fetchnumpy()
    con.unregister("lookup_ids")
    if len(out["pos"]) != len(ids):  # every id was put in the dictionary: an invariant of this module
        raise AssertionError(f"{len(ids) - len(out['pos'])} ids missing from dictionary {name}")
    codes = np.empty(len(ids), dtype=np.int64)
    codes[np.asarray(out["pos"], dtype=np.int64)] = np.asarray(out["code"], dtype=np.int64)
    return codes


def _reduce_partitions(parts: Path, out: Path, block: int, n_users: int, items, item_rows, n_items: int,
                       run_all=None):
    """Pass 3: each partition's purchases reduced to edges (saved to ``out``), then gathered into one sorted
    set of arrays ``(u, i, attrs)`` with no second copy of them in memory. ``run_all(fn, ks)``: runs
    ``fn(k)`` for every partition and returns the results in order (default: here, one after another)."""
    out.mkdir(parents=True, exist_ok=True)
    n_parts = -(-n_users // block)

    def one(k: int) -> int:
        return reduce_partition(parts, out, k, block, items, item_rows, n_items)

    if run_all is None:
        sizes = [one(k) for k in progress.track(range(n_parts), desc="reduce purchases", unit="part")]
    else:
        sizes = run_all(one, list(range(n_parts)))
    return gather_edges(out, sizes)


def reduce_partition(parts: Path, out: Path, k: int, block: int, items, item_rows, n_items: int) -> int:
    """Partition ``k``'s purchases reduced to edges, saved as ``out/<k>_{u,i,a}.npy``; returns the edges."""
    import pyarrow.parquet as pq

    folder = parts / f"part={k}"
    if not folder.exists():  # users with no purchase (only in the users table or in ties)
        return 0
    frame = pq.read_table(folder).to_pandas()
    lo = np.int64(k * block)
    u = frame["u"].to_numpy(np.int64) - lo  # codes within the part: a smaller key, the packed sort
    i = frame["i"].to_numpy(np.int64)
    cols = buy_columns(frame, purchase_prices(frame, items, item_rows, i, n_items))
    del frame
    bu, bi, attrs = aggregate_pairs(u, i, n_items, cols, BUY_REDUCERS)
    np.save(out / f"{k}_u.npy", (bu + lo).astype(np.int64))
    np.save(out / f"{k}_i.npy", bi.astype(np.int64))
    np.save(out / f"{k}_a.npy", attrs)
    return len(bu)


def gather_edges(out: Path, sizes: list[int]):
    """The partitions' saved edges (:func:`reduce_partition`) as one set of arrays, in partition order."""
    total = int(sum(sizes))
    bu = np.empty(total, dtype=np.int64)
    bi = np.empty(total, dtype=np.int64)
    attrs = np.empty((total, len(BUY_ATTRS)), dtype=np.float64)
    at = 0
    for k, n in enumerate(sizes):
        if n:
            bu[at:at + n] = np.load(out / f"{k}_u.npy")
            bi[at:at + n] = np.load(out / f"{k}_i.npy")
            attrs[at:at + n] = np.load(out / f"{k}_a.npy")
            for suffix in ("u", "i", "a"):
                (out / f"{k}_{suffix}.npy").unlink()
        at += n
    return bu, bi, attrs
