"""``build-graph --engine dask``: the purchases' passes of the out-of-core build run on a Dask cluster.

The same three passes as :mod:`graphprof.graph.outofcore`, with the work split into tasks that any worker of a
``dask.distributed`` cluster runs; the work directory (and the input files) must be on storage every worker and
this process see (a shared file system), since the workers write the passes' parts there:

1. **Validate**: one task per Parquet row group of the purchases, each validated by the in-memory rules (the
   timestamp unit judged here first from the whole column) into a part; the parts are then joined, in row
   order, into ``tables/purchases.parquet`` and ``rejects/purchases.csv``.
2. **Code**: the distinct ids of every part (a Dask dataframe), sorted here with the other tables' ids into the
   dictionaries; every part's purchases coded by the workers and written as Parquet partitions of consecutive
   users (``partition_on``: each worker writes its own file into every partition it holds rows of).
3. **Reduce**: one task per partition, by :func:`graphprof.graph.outofcore.reduce_partition`.

The graph is assembled and the features written here, as on one machine. Every row is validated by the same
code and every (user, item) pair reduced whole in the same canonical order, so the work directory equals the
one-process builds' (tested on a local cluster of two worker processes).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ConfigError, InputError
from graphprof.graph.construct import assemble_graph
from graphprof.graph.hetero import ProfileGraph
from graphprof.graph.outofcore import (
    PARTITION_ROWS,
    OtherTables,
    _SliceWriter,
    _timestamp_unit,
    gather_edges,
    parquet_writer,
    reduce_partition,
)
from graphprof.ingest.io import RawTable, _parquet_frame, parquet_names
from graphprof.ingest.schema import validate_purchase_slice

log = logging.getLogger("graphprof")
#: seconds to wait for a scheduler given by address
CONNECT_TIMEOUT = 20


@contextlib.contextmanager
def client_for(scheduler: str | None, workers: int | None = None):
    """A ``distributed.Client`` for ``scheduler`` (``tcp://host:port`` of a running cluster), or for a local
    cluster of ``workers`` worker processes (default: one per core) where None; closed (with the local cluster)
    when the block ends."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--engine dask needs Dask: pip install 'graphprof[cluster]' (dask and distributed)") \
            from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answered there ({exc}). Start one "
                              "('dask scheduler' and 'dask worker' on the cluster) or check the address") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
            Client(local) as client:
        yield client


def validate_purchases(client, source: Path, staging: Path) -> dict:
    """Pass 1 on the cluster; returns the table's row accounting, as the in-memory route gives it."""
    import pyarrow.parquet as pq

    parquet_names(source)  # a damaged file or repeated names: a bad file, named here
    unit = _timestamp_unit(source)
    meta = pq.ParquetFile(source).metadata
    starts = np.cumsum([1] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    tmp = staging / "dask.tmp" / "validated"
    tmp.mkdir(parents=True, exist_ok=True)
    futures = client.map(_validate_group, [str(source)] * meta.num_row_groups, range(meta.num_row_groups),
                         starts[:-1].tolist(), [unit] * meta.num_row_groups, [str(tmp)] * meta.num_row_groups)
    accounts = client.gather(futures)
    acc = {"read": 0, "kept": 0, "rejected": 0, "source": str(source)}
    for a in accounts:
        for key in ("read", "kept", "rejected"):
            acc[key] += a[key]
    if unit[1] != 1.0:
        acc["timestamp_unit"] = unit[0]
    _join_parts(tmp, meta.num_row_groups, workdir.table_path(staging, "purchases"),
                workdir.rejects_path(staging, "purchases"))
    return acc


def _validate_group(source: str, group: int, first_record: int, unit, tmp: str) -> dict:
    """One row group validated into ``tmp/<group>.parquet`` and ``tmp/<group>.csv`` (runs on a worker)."""
    import pyarrow.parquet as pq

    path = Path(source)
    try:
        table = pq.ParquetFile(path).read_row_group(group)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise InputError(f"{path}: must be a readable Parquet file. Got, in the records from {first_record} on: "
                         f"{exc}", path=str(path), row=first_record) from None
    kept, rej, acc = validate_purchase_slice(RawTable("purchases", path, _parquet_frame(path, table, first_record)),
                                             unit)
    writer = _SliceWriter(Path(tmp) / f"{group}.parquet", Path(tmp) / f"{group}.csv")
    try:
        writer.write(kept, rej)
    finally:
        writer.close()
    return {k: acc[k] for k in ("read", "kept", "rejected")}


def _join_parts(tmp: Path, n: int, out: Path, rejects: Path) -> None:
    """The validated parts, in row order, as one kept table and one rejects file."""
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        with open(rejects, "wb") as rej:
            for g in range(n):
                part = pq.read_table(tmp / f"{g}.parquet")
                if writer is None:
                    writer = parquet_writer(out, part.schema)
                writer.write_table(part.cast(writer.schema))
                lines = (tmp / f"{g}.csv").read_bytes().splitlines(keepends=True)
                rej.write(b"".join(lines if g == 0 else lines[1:]))  # one header
    finally:
        if writer is not None:
            writer.close()
    shutil.rmtree(tmp, ignore_errors=True)


def build_graph_on_cluster(client, purchases: Path, others: OtherTables, tmp: Path, *,
                           partition_rows: int | None = None) -> ProfileGraph:
    """Passes 2 and 3 on the cluster: the graph of the validated purchases file and the other tables, equal to
    ``build_graph`` of all of them in memory. ``tmp`` (shared storage; created and removed here) holds the coded
    partitions."""
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    partition_rows = partition_rows or PARTITION_ROWS
    items = others.items
    try:
        frame = dd.read_parquet(str(purchases), columns=["user_id", "item_id", "timestamp", "quantity", "price",
                                                         "weight"])
        users = _sorted_ids([frame["user_id"].unique().compute(), others.user_ids, others.tie_ids])
        item_ids = _sorted_ids([frame["item_id"].unique().compute(),
                                items["item_id"] if items is not None else None])
        user_index, item_index = pd.Index(users), pd.Index(item_ids)
        item_rows = item_index.get_indexer(items["item_id"].astype(str)) if items is not None else None
        ties = None
        if others.tie_ids is not None:
            full = np.full(len(others.tie_pos), -1, dtype=np.int64)
            full[others.tie_pos >= 0] = user_index.get_indexer(others.tie_ids.astype(str))
            ties = (full[others.tie_a], full[others.tie_b], others.tie_weight)
        n_rows = pq.ParquetFile(purchases).metadata.num_rows
        block = max(1, int(len(users) * partition_rows // max(n_rows, 1)))
        parts = tmp / "coded"
        log.info("coding %d purchases on the cluster, %d partitions", n_rows, -(-len(users) // block))
        [u_index, i_index] = client.scatter([user_index, item_index], broadcast=True)
        coded = frame.map_partitions(_code, u_index, i_index, block,
                                     meta={"u": "i8", "i": "i8", "timestamp": "f8", "quantity": "i8", "price": "f8",
                                           "weight": "f8", "part": "i8"})
        coded.to_parquet(str(parts), partition_on=["part"], write_index=False)
        out = tmp / "edges"
        out.mkdir()
        n_parts = -(-len(users) // block)
        shared_items, shared_rows = (client.scatter([items, item_rows], broadcast=True) if items is not None
                                     else (None, None))
        futures = client.map(reduce_partition, [parts] * n_parts, [out] * n_parts, range(n_parts), block=block,
                             items=shared_items, item_rows=shared_rows, n_items=len(item_ids))
        buys = gather_edges(out, client.gather(futures))
        return assemble_graph(users, item_ids, buys, ties, items, item_rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sorted_ids(columns: list) -> np.ndarray:
    """The distinct ids of ``columns`` (None skipped), sorted in code point order (as ``build_graph`` sorts)."""
    present = [pd.Series(c, dtype="string").astype(str) for c in columns if c is not None]
    joined = pd.concat(present, ignore_index=True).unique() if present else np.array([], dtype=object)
    return np.sort(np.asarray(joined, dtype=object))


def _code(part: pd.DataFrame, users: pd.Index, items: pd.Index, block: int) -> pd.DataFrame:
    """A part of the purchases with its ids as codes and its users' partition (runs on a worker)."""
    u = users.get_indexer(part["user_id"].astype(str)).astype(np.int64)
    return pd.DataFrame({"u": u, "i": items.get_indexer(part["item_id"].astype(str)).astype(np.int64),
                         "timestamp": part["timestamp"].to_numpy(np.float64),
                         "quantity": part["quantity"].to_numpy(np.int64),
                         "price": part["price"].to_numpy(np.float64), "weight": part["weight"].to_numpy(np.float64),
                         "part": u // block}, index=part.index)
