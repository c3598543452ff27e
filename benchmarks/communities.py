"""Community detection: time and modularity of Leiden and Louvain, and NMI against planted communities.

Cases:
* the bundled sample (3,000 users, built into a temporary work directory), on the social and the combined
  (friendships + co-purchase) graph; NMI against the planted communities of
  ``generate(3000, bad_rows=8, seed=0)``, which made the sample (checked byte for byte first);
* a generated 20,000-user shop with 16 planted communities (as in DESIGN.md section 8), social graph;
* Deezer Europe (28k users, 93k mutual-follower ties), edges read directly from
  ``../shared/datasets/deezer_europe/deezer_europe_edges.csv``; skipped with a message where absent.

Seconds: median of ``--repeats`` timed calls of ``find_communities`` (user graph, partition, modularity;
a call over 20 s is not repeated), libraries imported beforehand; modularity and NMI of the seed-0 run.

Run: ``python benchmarks/communities.py [--repeats 3] [--workdir DIR [--only-workdir]] [--no-append]``
(``--workdir``: a built work directory, e.g. 1M users, timed with the default Leiden only). Prints a table and appends it to
benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import normalized_mutual_info_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import graphprof  # noqa: E402
from graphprof.communities.detect import find_communities  # noqa: E402
from graphprof.graph import FRIEND, ProfileGraph, build_graph, load_graph  # noqa: E402
from graphprof.graph.build import SAMPLE_DIR, build  # noqa: E402
from graphprof.ingest.generate import generate, write_tables  # noqa: E402
from graphprof.ingest.io import find_tables, read_tables  # noqa: E402
from graphprof.ingest.schema import validate_tables  # noqa: E402

DEEZER = ROOT.parent / "shared" / "datasets" / "deezer_europe" / "deezer_europe_edges.csv"
#: (label, method, keyword arguments): igraph's Leiden (the default), leidenalg's, networkx Louvain
ALGORITHMS = (("leiden", "leiden", {}), ("leiden/leidenalg", "leiden", {"leiden_backend": "leidenalg"}),
              ("louvain", "louvain", {}))
SLOW = 20.0  # seconds: a run this slow is not repeated


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = "GPU" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {cpu}, {mem:.0f} GiB RAM, {gpu}; Python {platform.python_version()}"


def versions() -> str:
    import igraph
    import leidenalg
    import networkx

    return (f"graphprof {graphprof.__version__}, igraph {igraph.__version__}, leidenalg {leidenalg.version}, "
            f"networkx {networkx.__version__}")


def social_graph(edges: pd.DataFrame) -> ProfileGraph:
    """A users-only ProfileGraph from an edge list (two id columns), for data sets without purchases."""
    from torch_geometric.data import HeteroData

    a, b = edges.iloc[:, 0].astype(str).to_numpy(), edges.iloc[:, 1].astype(str).to_numpy()
    ids = np.unique(np.concatenate([a, b])).astype(object)
    u, v = np.searchsorted(ids, a), np.searchsorted(ids, b)
    keep = u != v
    u, v = u[keep], v[keep]
    data = HeteroData()
    data["user"].num_nodes = len(ids)
    data["item"].num_nodes = 0
    data[FRIEND].edge_index = torch.from_numpy(np.stack([np.r_[u, v], np.r_[v, u]]).astype(np.int64))
    data[FRIEND].edge_weight = torch.ones(2 * len(u), dtype=torch.float32)
    return ProfileGraph(data=data, user_ids=ids, item_ids=np.array([], dtype=object),
                        category_ids=np.array([], dtype=object))


def warm_up() -> None:
    """Import the libraries (igraph, leidenalg, networkx) outside the timed calls."""
    graph = social_graph(pd.DataFrame({"a": ["1", "2"], "b": ["2", "3"]}))
    for _, method, kwargs in ALGORITHMS:
        find_communities(graph, method, **kwargs)


def measure(name: str, graph: ProfileGraph, on: str, repeats: int, truth: dict | None) -> list[dict]:
    rows = []
    planted = None if truth is None else np.array([truth[u] for u in graph.user_ids])
    for label, method, kwargs in ALGORITHMS:
        runs = [find_communities(graph, method, on=on, seed=0, **kwargs)]
        while len(runs) < repeats and runs[0].seconds < SLOW:
            runs.append(find_communities(graph, method, on=on, seed=0, **kwargs))
        c = runs[0]
        row = {"dataset": name, "users": graph.num_users, "graph": on, "ties": c.n_edges, "method": label,
               "runs": len(runs), "seconds": statistics.median(r.seconds for r in runs), "modularity": c.modularity,
               "communities": c.n_communities, "singletons": c.n_singletons,
               "nmi": None if planted is None else normalized_mutual_info_score(planted, c.labels)}
        rows.append(row)
        print(f"  {name:<26} {on:<9} {label:<17} {row['seconds']:7.2f}s  modularity {c.modularity:.3f}  "
              f"{c.n_communities} communities"
              + ("" if row["nmi"] is None else f"  NMI {row['nmi']:.3f}"), file=sys.stderr)
    return rows


def sample_case(repeats: int) -> list[dict]:
    tables, truth = generate(3000, bad_rows=8, seed=0, return_truth=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_tables(tables, Path(tmp) / "regen")
        same = all(filecmp.cmp(Path(tmp) / "regen" / f.name, f, shallow=False) for f in SAMPLE_DIR.glob("*.csv"))
        if not same:
            print("  the bundled sample differs from generate(3000, bad_rows=8, seed=0): no NMI", file=sys.stderr)
            truth = None
        build(Path(tmp) / "work", data=SAMPLE_DIR)
        graph = load_graph(Path(tmp) / "work")
    return [r for on in ("social", "combined") for r in measure("bundled sample", graph, on, repeats, truth)]


def planted_case(repeats: int, n_users: int = 20000, k: int = 16) -> list[dict]:
    tables, truth = generate(n_users, n_communities=k, time_format="epoch", seed=0, return_truth=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_tables(tables, tmp, "parquet")
        graph = build_graph(validate_tables(read_tables(find_tables(tmp))))
    return measure(f"generated {n_users // 1000}k, {k} planted", graph, "social", repeats, truth)


def deezer_case(repeats: int) -> list[dict]:
    if not DEEZER.is_file():
        print(f"  Deezer Europe skipped: {DEEZER} not found (only in the dev sandbox)", file=sys.stderr)
        return []
    graph = social_graph(pd.read_csv(DEEZER, dtype=str))
    return measure("Deezer Europe", graph, "social", repeats, None)


def workdir_case(path: Path, repeats: int) -> list[dict]:
    """A built work directory (e.g. the 1M-user shop of benchmarks/build_graph.py): igraph's Leiden only (the
    default; leidenalg and networkx Louvain take minutes to hours there), on the social graph."""
    graph = load_graph(path)
    rows = []
    for on in ("social",):
        runs = [find_communities(graph, "leiden", on=on, seed=0)]
        while len(runs) < repeats and runs[0].seconds < SLOW:
            runs.append(find_communities(graph, "leiden", on=on, seed=0))
        c = runs[0]
        rows.append({"dataset": f"work dir {path.name}", "users": graph.num_users, "graph": on, "ties": c.n_edges,
                     "method": "leiden", "runs": len(runs), "seconds": statistics.median(r.seconds for r in runs),
                     "modularity": c.modularity, "communities": c.n_communities, "singletons": c.n_singletons,
                     "nmi": None})
        print(f"  {path.name:<26} {on:<9} leiden {rows[-1]['seconds']:7.2f}s", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| data set | users | graph | ties | method | seconds (runs) | users/s | modularity "
            "| communities (singletons) | NMI vs planted |\n|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        nmi = "–" if r["nmi"] is None else f"{r['nmi']:.3f}"
        lines.append(f"| {r['dataset']} | {r['users']:,} | {r['graph']} | {r['ties']:,} | {r['method']} | "
                     f"{r['seconds']:.2f} ({r['runs']}) | {r['users'] / max(r['seconds'], 1e-9):,.0f} | "
                     f"{r['modularity']:.3f} | {r['communities']} ({r['singletons']}) | {nmi} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (default: 3; the median is shown)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to benchmarks/RESULTS.md")
    ap.add_argument("--workdir", type=Path, help="also time Leiden on this built work directory (users/s at scale)")
    ap.add_argument("--only-workdir", action="store_true", help="skip the sample, generated and Deezer cases")
    args = ap.parse_args(argv)
    if args.only_workdir and args.workdir is None:
        ap.error("--only-workdir needs --workdir DIR")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    warm_up()
    rows = [] if args.only_workdir else sample_case(args.repeats) + planted_case(args.repeats) + deezer_case(args.repeats)
    if args.workdir is not None:
        rows += workdir_case(args.workdir, args.repeats)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    command = "python " + " ".join(["benchmarks/communities.py", *(sys.argv[1:] if argv is None else argv)])
    text = (f"## Community detection (`benchmarks/communities.py`)\n\n"
            f"Command: `{command}` ({time.perf_counter() - t0:.0f} s in all), {time.strftime('%Y-%m-%d')}.  \n"
            f"Machine: {machine()}; {load}.  \nVersions: {versions()}.\n\n"
            f"Seconds: median of {args.repeats} calls of `find_communities` (user graph incl. co-purchase ties, "
            f"partition, modularity; a call over {SLOW:.0f} s is not repeated), libraries imported beforehand; "
            f"seed 0. `leiden` is igraph's C Leiden (graphprof's default), `leiden/leidenalg` the same objective "
            f"through leidenalg's `RBConfigurationVertexPartition`, both with `n_iterations=-1`; `louvain` is "
            f"networkx's. Modularity (resolution 1) is measured on the "
            f"graph each method ran on, so `social` and `combined` values do not compare with each other. "
            f"NMI: `sklearn.metrics.normalized_mutual_info_score` against the generator's planted communities.\n\n"
            f"{table(rows)}\n")
    print(text)
    if not args.no_append:
        path = ROOT / "benchmarks" / "RESULTS.md"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if path.exists() and path.stat().st_size else "# Benchmark results\n\n") + text)
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
