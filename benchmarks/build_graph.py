"""build-graph at scale: wall time and peak RSS on CSV and on Parquet, beside the floor and the naive route.

For each size (users; 10 purchases and ~4 ties a user, from our generator) this runs, each in its own process
so that peak RSS is that run's alone:

* ``build-graph`` (the CLI, as a user runs it: read, validate, rejects, graph, features, atomic writes) from
  Parquet and from CSV;
* the floor: read the same Parquet files with pyarrow and factorize the user and item ids (what any route
  must at least do);
* the naive route a user would write: a networkx graph built row by row (``itertuples``), converted with
  ``torch_geometric.utils.from_networkx``. It is run up to ``--naive-max`` users (default 200k) and given
  ``--naive-timeout`` seconds; at larger sizes its time is extrapolated linearly from the largest size it
  finished, and the table says so.

``--repeat N`` runs ``build-graph`` and the floor N times each (alternating) and reports the median: a run's
system time varies with how much of its memory the host has taken back (the kernel zeroes every page the process
touches fresh), so one run can be well off its neighbour. Every run's seconds are listed.

Run: ``python benchmarks/build_graph.py [--sizes 100000,200000,400000,1000000] [--cache DIR] [--repeat 3]``. Generated data
is cached in ``--cache`` (default ``/tmp/graphprof-bench``); figures are printed and appended to
``benchmarks/RESULTS.md`` with the command and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

FLOOR = r"""
import sys, pyarrow.parquet as pq, pandas as pd
d = sys.argv[1]
t = {n: pq.read_table(f"{d}/{n}.parquet") for n in ("purchases", "friendships", "users", "items")}
users = pd.concat([t["purchases"].column("user_id").to_pandas(), t["users"].column("user_id").to_pandas(),
                   t["friendships"].column("user_id").to_pandas(), t["friendships"].column("friend_id").to_pandas()],
                  ignore_index=True)
items = pd.concat([t["purchases"].column("item_id").to_pandas(), t["items"].column("item_id").to_pandas()],
                  ignore_index=True)
pd.factorize(users, sort=True); pd.factorize(items, sort=True)
"""

NAIVE = r"""
import sys, networkx as nx, pandas as pd
from torch_geometric.utils import from_networkx
d = sys.argv[1]
g = nx.Graph()
for r in pd.read_parquet(f"{d}/users.parquet").itertuples(index=False):
    g.add_node("u" + str(r.user_id), kind=0)
for r in pd.read_parquet(f"{d}/items.parquet").itertuples(index=False):
    g.add_node("i" + str(r.item_id), kind=1)
for r in pd.read_parquet(f"{d}/purchases.parquet").itertuples(index=False):
    a, b = "u" + str(r.user_id), "i" + str(r.item_id)
    if g.has_edge(a, b):
        g[a][b]["quantity"] += float(r.quantity)
    else:
        g.add_edge(a, b, quantity=float(r.quantity))
for r in pd.read_parquet(f"{d}/friendships.parquet").itertuples(index=False):
    g.add_edge("u" + str(r.user_id), "u" + str(r.friend_id), quantity=0.0)
data = from_networkx(g, group_node_attrs=["kind"], group_edge_attrs=["quantity"])
print(data.num_nodes, data.num_edges)
"""


def measure(cmd: list[str], timeout: float | None = None) -> tuple[float | None, float | None, str]:
    """Run ``cmd``; wall seconds and the peak RSS (GiB) of that process alone (``os.wait4``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = None if timeout is None else t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return None, None, "timeout"
        time.sleep(0.05)
    secs = time.perf_counter() - t0
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return secs, usage.ru_maxrss / 2**20, "ok"


def generate(cache: Path, users: int, fmt: str) -> Path:
    out = cache / f"{users}_{fmt}"
    if not (out / f"purchases.{fmt}").exists():
        print(f"generating {users} users ({fmt}) into {out}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([PY, "cli.py", "generate", "-q", "--users", str(users), "--purchases-per-user", "10",
                        "--friends-per-user", "8", "--file-format", fmt, "--time-format", "epoch",
                        "--out", str(out)], cwd=ROOT, check=True)
    return out


def median_run(runs: list[tuple]) -> tuple:
    """The run with the median wall time (the lower middle one for an even count), peak RSS the largest seen."""
    ordered = sorted(runs, key=lambda r: r[0])
    mid = ordered[(len(ordered) - 1) // 2]
    return (mid[0], max(r[1] for r in runs), mid[2])


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,200000,400000,1000000", help="users per size, comma-separated")
    ap.add_argument("--cache", default="/tmp/graphprof-bench", help="where generated data and work dirs go")
    ap.add_argument("--no-csv", action="store_true", help="Parquet only")
    ap.add_argument("--naive-max", type=int, default=200_000, help="largest size the networkx route is run at")
    ap.add_argument("--naive-timeout", type=float, default=600.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs of build-graph and of the floor; the median is reported")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1. Got {args.repeat}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows, naive_rate = [], None
    for users in [int(s) for s in args.sizes.split(",")]:
        pq_dir = generate(cache, users, "parquet")
        row = {"users": users}
        work = cache / f"work_{users}"
        runs: dict[str, list] = {}
        for _ in range(args.repeat):
            for fmt in ("parquet",) + (() if args.no_csv else ("csv",)):
                data = pq_dir if fmt == "parquet" else generate(cache, users, "csv")
                shutil.rmtree(work, ignore_errors=True)
                r = measure([PY, "cli.py", "build-graph", "-q", "--data", str(data), "--workdir", str(work)])
                runs.setdefault(fmt, []).append(r)
                print(f"{users} users, build-graph from {fmt}: {r[0]:.1f} s, peak {r[1]:.2f} GiB", flush=True)
            shutil.rmtree(work, ignore_errors=True)
            r = measure([PY, "-c", FLOOR, str(pq_dir)])
            runs.setdefault("floor", []).append(r)
            print(f"{users} users, floor (pyarrow read + factorize): {r[0]:.1f} s", flush=True)
        for key, rs in runs.items():
            row[key] = median_run(rs)
            row[key + "_all"] = [x[0] for x in rs]
        if users <= args.naive_max:
            row["naive"] = measure([PY, "-c", NAIVE, str(pq_dir)], timeout=args.naive_timeout)
            if row["naive"][0] is not None:
                naive_rate = (row["naive"][0] / users, users)
            print(f"{users} users, networkx route: {fmt_s(row['naive'][0])} s ({row['naive'][2]})", flush=True)
        if row.get("naive", (None,))[0] is None and naive_rate is not None:
            row["naive_est"] = naive_rate[0] * users
        rows.append(row)

    cmd = "python benchmarks/build_graph.py " + " ".join(sys.argv[1:])
    lines = ["", "## build-graph at scale (`benchmarks/build_graph.py`)", "",
             f"Command: `{cmd.strip()}`. Machine: {machine()}, Python " + platform.python_version() + ". "
             "Generator: 10 purchases and 8 friend ties a user on average. Each run is its own process "
             "(`cli.py build-graph`, interpreter start and imports included); RSS is that process's peak."
             + (f" Each figure is the median of {args.repeat} runs (alternating build-graph and floor), the peak "
                "RSS the largest of them; every run is listed below the table." if args.repeat > 1 else ""), "",
             "| users | purchases | Parquet s | Parquet peak GiB | CSV s | CSV peak GiB | floor s | Parquet / floor "
             "| networkx route s | networkx / Parquet |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p, c, f = r["parquet"], r.get("csv", (None, None, "")), r["floor"]
        if r.get("naive", (None,))[0] is not None:
            nv, note = r["naive"][0], ""
        elif "naive_est" in r:
            nv, note = r["naive_est"], f" (extrapolated from {naive_rate[1]:,} users)"
        else:
            nv, note = None, ""
        lines.append(f"| {r['users']:,} | ~{r['users'] * 10:,} | {p[0]:.1f} | {p[1]:.2f} | {fmt_s(c[0])} | "
                     f"{fmt_s(c[1]) if c[1] is None else f'{c[1]:.2f}'} | {f[0]:.1f} | {p[0] / f[0]:.1f}x | "
                     f"{fmt_s(nv)}{note} | {'-' if nv is None else f'{nv / p[0]:.0f}x'} |")
    if args.repeat > 1:
        lines.append("")
        for r in rows:
            lines.append(f"- {r['users']:,} users, every run (s): " + "; ".join(
                f"{k} " + ", ".join(f"{x:.1f}" for x in r[k + "_all"]) for k in ("parquet", "csv", "floor")
                if k + "_all" in r))
    print("\n".join(lines))
    if args.no_write:
        return
    with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("appended to benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
