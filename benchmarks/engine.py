"""The relational part of ``build-graph`` on two engines: the project's numpy path against DuckDB, at 1M users.

What both do, on the generated shop's purchases table (Parquet; 10 purchases a user): read it; validate it
(non-empty user and item ids, a whole quantity >= 1, a finite price >= 0 or none, a timestamp that is a date
between 1990 and 2100; the numpy path runs the project's own validation of the table, which checks more, such as
the timestamp's unit); reduce the purchases to one edge per (user, item) with ``build_graph``'s attributes
(count, quantity, spend, last time, weight, priced quantity); index users and items by their sorted ids and
return the edges sorted by (user, item) as numpy arrays (what the graph is made of); and the per-user aggregates
the behaviour features start from (purchases, quantity, spend, distinct items, last time).

Each engine runs in its own process (peak RSS from ``os.wait4``); DuckDB with its default memory and again with
``memory_limit`` set low enough that it must spill to disk (the out-of-core case). Both sides' edge arrays are
compared (counts and sums equal).

Run: ``python benchmarks/engine.py [--users 1000000] [--spill-limit 1GB]`` (needs ``pip install duckdb``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, publish  # noqa: E402
from build_graph import PY, ROOT, generate  # noqa: E402

sys.path.insert(0, str(ROOT))


def numpy_path(data: Path, out: Path) -> dict:
    import numpy as np

    from graphprof.features.users import _behaviour
    from graphprof.graph import build_graph
    from graphprof.ingest.io import read_tables
    from graphprof.ingest.schema import validate_tables

    seconds = {}
    t0 = time.perf_counter()
    validated = validate_tables(read_tables({"purchases": data / "purchases.parquet"}))
    seconds["read_validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = build_graph(validated)
    seconds["reduce_index"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    attrs = {k: graph.purchase_matrix(k, copy_structure=False) for k in ("count", "quantity", "spend",
                                                                          "priced_quantity")}
    _behaviour(graph, attrs, None, {})
    seconds["per_user"] = time.perf_counter() - t0
    ei = graph.edge(("user", "buys", "item"))
    a = graph.edge(("user", "buys", "item"), "edge_attr")
    np.save(out / "numpy_edges.npy", np.column_stack([ei[0], ei[1], a[:, 0], a[:, 1]]).astype(np.float64))
    return seconds


def duckdb_path(data: Path, out: Path, memory_limit: str | None) -> dict:
    import duckdb
    import numpy as np

    con = duckdb.connect()
    con.execute(f"SET threads={os.cpu_count() or 1}")
    con.execute(f"SET temp_directory='{out / 'duckdb_spill'}'")
    if memory_limit:
        con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute("SET preserve_insertion_order=false")
    seconds = {}
    t0 = time.perf_counter()
    con.execute(f"""
        CREATE TABLE p AS
        SELECT trim(CAST(user_id AS VARCHAR)) AS user_id, trim(CAST(item_id AS VARCHAR)) AS item_id,
               CAST(timestamp AS DOUBLE) AS ts, quantity, CAST(price AS DOUBLE) AS price,
               user_id IS NOT NULL AND trim(CAST(user_id AS VARCHAR)) <> ''
               AND item_id IS NOT NULL AND trim(CAST(item_id AS VARCHAR)) <> ''
               AND quantity IS NOT NULL AND quantity >= 1 AND quantity = floor(quantity)
               AND (price IS NULL OR (isfinite(price) AND price >= 0))
               AND (timestamp IS NULL OR (timestamp >= 631152000 AND timestamp < 4102444800)) AS ok
        FROM read_parquet('{data / "purchases.parquet"}')""")
    rejected = con.execute("SELECT count(*) FROM p WHERE NOT ok").fetchone()[0]
    seconds["read_validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.execute("""
        CREATE TABLE e AS
        SELECT user_id, item_id, count(*) AS cnt, sum(quantity) AS qty, sum(quantity * coalesce(price, 0)) AS spend,
               max(ts) AS last_time, count(*) AS weight,
               sum(CASE WHEN price IS NULL THEN 0 ELSE quantity END) AS priced
        FROM p WHERE ok GROUP BY user_id, item_id""")
    con.execute("CREATE TABLE u AS SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS ui "
                "FROM (SELECT DISTINCT user_id FROM e)")
    con.execute("CREATE TABLE i AS SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS ii "
                "FROM (SELECT DISTINCT item_id FROM e)")
    edges = con.execute("""
        SELECT u.ui, i.ii, e.cnt, e.qty, e.spend, e.last_time, e.weight, e.priced
        FROM e JOIN u USING (user_id) JOIN i USING (item_id) ORDER BY u.ui, i.ii""").fetchnumpy()
    seconds["reduce_index"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.execute("""
        SELECT user_id, sum(cnt), sum(qty), sum(spend), count(*), max(last_time) FROM e GROUP BY user_id
        """).fetchnumpy()
    seconds["per_user"] = time.perf_counter() - t0
    np.save(out / "duckdb_edges.npy", np.column_stack([edges["ui"], edges["ii"], edges["cnt"],
                                                       edges["qty"]]).astype(np.float64))
    seconds["rejected"] = rejected
    return seconds


def run(engine: str, data: Path, out: Path, limit: str | None) -> tuple[dict, float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([PY, str(Path(__file__).resolve()), "--run", engine, "--data", str(data), "--out",
                             str(out), *(["--limit", limit] if limit else [])], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{engine} failed")
    return json.loads(proc.stdout.read()), wall, usage.ru_maxrss / 2 ** 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--cache", default="/tmp/graphprof-bench")
    ap.add_argument("--spill-limit", default="1GB", help="DuckDB memory_limit for the out-of-core run")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--limit", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        fn = numpy_path if args.run == "numpy" else lambda d, o: duckdb_path(d, o, args.limit)
        print(json.dumps(fn(Path(args.data), Path(args.out))))
        return
    import numpy as np

    data = generate(Path(args.cache), args.users, "parquet")
    with tempfile.TemporaryDirectory(prefix="graphprof-engine-") as tmp:
        out = Path(tmp)
        rows = [("numpy (build-graph's path)", *run("numpy", data, out, None)),
                ("DuckDB, default memory", *run("duckdb", data, out, None)),
                (f"DuckDB, memory_limit {args.spill_limit}", *run("duckdb", data, out, args.spill_limit))]
        a, b = np.load(out / "numpy_edges.npy"), np.load(out / "duckdb_edges.npy")
        same = a.shape == b.shape and np.array_equal(a[:, :2], b[:, :2]) and np.allclose(a[:, 2:], b[:, 2:])
    lines = ["", f"### The relational part of build-graph on two engines: {args.users:,} users", "",
             f"Command: `python benchmarks/engine.py --users {args.users} --spill-limit {args.spill_limit}`. "
             f"Machine: {machine()}. Purchases only (read, validate, reduce to (user, item) edges indexed by sorted "
             "ids as numpy arrays, per-user aggregates); each engine in its own process. Edges equal on both "
             f"sides: {'yes' if same else 'NO'}.", "",
             "| engine | read + validate s | reduce + index s | per-user s | wall s (process) | peak GiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, sec, wall, gib in rows:
        lines.append(f"| {name} | {sec['read_validate']:.1f} | {sec['reduce_index']:.1f} | {sec['per_user']:.1f} | "
                     f"{wall:.1f} | {gib:.2f} |")
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
