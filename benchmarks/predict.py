"""``graphprof predict`` at scale: users per second, peak RSS, and agreement with the whole-rebuild route.

Needs a trained work directory (``--workdir``; e.g. 1M users, 10M purchases, ~4M ties). Prepares
``--new-users`` unseen users itself (cached in ``--cache``): our generator's shop (10 purchases a user, seed 7),
user ids prefixed with ``N`` (unseen), item ids mapped onto the graph's (the k-th smallest generated id -> the
k-th smallest known id: for the generator's zero-padded ids, the same item number) and a share
(``--known-tie-share``, default 0.5) of the ties' ``friend_id`` rewritten to random known users, so the new users
are tied both to each other and to the graph.

Then, for each model trained in the work directory (each in a hard-linked copy of it where that model is the
only one per target, so ``predict`` picks it), runs ``cli.py predict --workdir W --data D --json`` as a user
does, each run its own process: wall time (interpreter start and imports included), the command's own seconds
(``seconds`` in its JSON: read + validate to written Parquet), users per second both ways, the stages, and the
peak RSS of that process (``os.wait4``).

Agreement (``--agreement N``, default 10000 new users, 0 to skip): the incremental route (``predict``) against
the whole-rebuild route (the saved tables plus the new rows through ``build_graph`` and
``build_features(state=saved)``, every user scored, the new rows kept), on the first N new users: share of the
same predicted class and the largest probability difference, per model.

Run: ``python benchmarks/predict.py --workdir W [--new-users 100000] [--cache DIR] [--repeat 2] [--models lr,sign] [--no-floor]``; figures are
printed and appended to ``benchmarks/RESULTS.md`` with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import machine, publish  # noqa: E402
from build_graph import measure  # noqa: E402

#: the floor of predict's input, as build_graph.py's floor is build-graph's: read the new users' Parquet tables
#: with pyarrow and factorize their user ids and item ids, in a process of its own (start and imports included)
FLOOR = r"""
import os, sys, pyarrow.parquet as pq, pandas as pd
d = sys.argv[1]
t = {n: pq.read_table(f"{d}/{n}.parquet") for n in ("purchases", "friendships", "users")
     if os.path.exists(f"{d}/{n}.parquet")}
users = [t["purchases"].column("user_id").to_pandas()]
if "friendships" in t:
    users += [t["friendships"].column("user_id").to_pandas(), t["friendships"].column("friend_id").to_pandas()]
if "users" in t:
    users.append(t["users"].column("user_id").to_pandas())
pd.factorize(pd.concat(users, ignore_index=True), sort=True)
pd.factorize(t["purchases"].column("item_id").to_pandas(), sort=True)
"""

PY = sys.executable
MACHINE = machine()
sys.path.insert(0, str(ROOT))


def prepare(work: Path, cache: Path, n_users: int, share: float, seed: int) -> Path:
    """The new users' tables (Parquet) in ``cache``: generated, renamed, pointed at the graph's items and users."""
    out = cache / f"new_{n_users}_{share}_{seed}"
    if (out / "purchases.parquet").exists():
        return out
    gen = cache / f"gen_{n_users}_{seed}"
    if not (gen / "purchases.parquet").exists():
        print(f"generating {n_users} users into {gen}", flush=True)
        subprocess.run([PY, "cli.py", "generate", "-q", "--users", str(n_users), "--purchases-per-user", "10",
                        "--file-format", "parquet", "--time-format", "epoch", "--seed", str(seed), "--out", str(gen)],
                       cwd=ROOT, check=True)
    p = pd.read_parquet(gen / "purchases.parquet")
    f = pd.read_parquet(gen / "friendships.parquet")
    users = pd.read_parquet(gen / "users.parquet")
    known_items = pd.read_parquet(work / "tables" / "ids" / "item.parquet").sort_values("index")["item_id"]
    known_items = np.sort(known_items.astype(str).to_numpy())
    ours = np.sort(p["item_id"].astype(str).unique())
    if len(ours) > len(known_items):
        raise SystemExit(f"the generator made {len(ours)} items, the graph knows {len(known_items)}")
    p["item_id"] = pd.Series(known_items[np.searchsorted(ours, p["item_id"].astype(str))], index=p.index)
    for df, cols in ((p, ["user_id"]), (f, ["user_id", "friend_id"]), (users, ["user_id"])):
        for c in cols:
            df[c] = "N" + df[c].astype(str)
    known_users = pd.read_parquet(work / "tables" / "ids" / "user.parquet")["user_id"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    pick = rng.random(len(f)) < share
    f.loc[pick, "friend_id"] = known_users[rng.integers(0, len(known_users), int(pick.sum()))]
    pair = np.where(f["user_id"] < f["friend_id"], f["user_id"] + "|" + f["friend_id"],
                    f["friend_id"] + "|" + f["user_id"])
    f = f[~pd.Series(pair).duplicated().to_numpy()]
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("purchases", p), ("friendships", f), ("users", users)):
        df.to_parquet(out / f"{name}.parquet", index=False)
    return out


def subset(data: Path, n: int) -> Path:
    """The first ``n`` new users (by id) of ``data`` and their rows (ties among them and to known users)."""
    out = data.parent / f"{data.name}_first{n}"
    if (out / "purchases.parquet").exists():
        return out
    users = pd.read_parquet(data / "users.parquet")
    keep = set(np.sort(users["user_id"].to_numpy())[:n])
    p, f = pd.read_parquet(data / "purchases.parquet"), pd.read_parquet(data / "friendships.parquet")
    new_end = lambda s: s.str.startswith("N")  # noqa: E731
    f = f[f["user_id"].isin(keep) & (f["friend_id"].isin(keep) | ~new_end(f["friend_id"]))]
    out.mkdir(parents=True, exist_ok=True)
    p[p["user_id"].isin(keep)].to_parquet(out / "purchases.parquet", index=False)
    f.to_parquet(out / "friendships.parquet", index=False)
    users[users["user_id"].isin(keep)].to_parquet(out / "users.parquet", index=False)
    return out


def views(work: Path, cache: Path) -> dict[str, Path]:
    """Per trained model name, a hard-linked copy of ``work`` whose ``models/<target>/`` holds only that model."""
    trained = sorted({p.parent.name for p in (work / "models").glob("*/*/metrics.json")})
    out = {}
    for name in trained:
        view = cache / f"view_{work.name}_{name}"
        if not view.exists():
            subprocess.run(["cp", "-al", str(work), str(view)], check=True)
            for other in view.glob("models/*/*/metrics.json"):
                if other.parent.name != name:
                    shutil.rmtree(other.parent)
            shutil.rmtree(view / "predictions", ignore_errors=True)
        out[name] = view
    return out


def run_predict(work: Path, data: Path, out: Path) -> dict:
    """``cli.py predict --json`` in its own process: wall seconds, peak RSS (GiB, ``os.wait4``) and its JSON."""
    cmd = [PY, "cli.py", "predict", "--workdir", str(work), "--data", str(data), "--out", str(out), "--json"]
    logs = out.with_suffix(".stdout"), out.with_suffix(".stderr")
    with open(logs[0], "w") as so, open(logs[1], "w") as se:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{logs[1].read_text()[-3000:]}")
    doc = json.loads(logs[0].read_text())
    doc["wall"], doc["rss_gib"] = wall, usage.ru_maxrss / 2**20
    return doc


def rebuild_predict(work: Path, data: Path) -> dict[str, pd.DataFrame]:
    """The whole-rebuild route (the graph and features rebuilt with the new rows, every user scored): per target
    and trained model, the new users' probabilities (index: user id)."""
    from graphprof import workdir
    from graphprof.features import build_features, load_features
    from graphprof.graph import build_graph, load_graph
    from graphprof.graph.build import load_tables, read_inputs
    from graphprof.ingest.schema import ValidatedTables, validate_tables
    from graphprof.models import ModelInput, get_model
    from graphprof.prediction.extend import join

    graph, saved = load_graph(work), load_features(work)
    new = validate_tables(read_inputs(data).tables)
    rows = join(graph, new.tables)
    used_p, used_f, new_ids = rows.purchases, rows.friendships, rows.ids
    tables = {"purchases": pd.concat([load_tables(work, "purchases"), used_p], ignore_index=True),
              "users": pd.concat([load_tables(work, "users")[["user_id"]], pd.DataFrame({"user_id": new_ids})],
                                 ignore_index=True)}
    old_f = load_tables(work, "friendships")
    if old_f is not None or used_f is not None:
        tables["friendships"] = pd.concat([t for t in (old_f, used_f) if t is not None], ignore_index=True)
    if load_tables(work, "items") is not None:
        tables["items"] = load_tables(work, "items")
    del graph
    ext = build_graph(ValidatedTables(tables=tables, rejects={}, accounting={}))
    feats = build_features(ext, seed=workdir.read_json(work / workdir.FEATURES_META, missing="")["seed"],
                           state=saved.state)
    feats.items = saved.items
    rows = ext.user_index(new_ids)
    out = {}
    for metrics in sorted((work / "models").glob("*/*/metrics.json")):
        target, name = metrics.parent.parent.name, metrics.parent.name
        config = json.loads((metrics.parent / "config.json").read_text())
        model = get_model(name).load(workdir.run_dir(work, target, name, config["predictions_from_seed"]))
        proba = model.predict_proba(ModelInput(graph=ext, features=feats)).to_numpy()[rows]
        out[f"{target}/{name}"] = pd.DataFrame(proba, index=pd.Index(new_ids, name="user_id"), columns=model.classes_)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, type=Path, help="a trained work directory (read only)")
    ap.add_argument("--new-users", type=int, default=100_000)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/graphprof-bench-predict"))
    ap.add_argument("--known-tie-share", type=float, default=0.5, help="ties rewritten to point at known users")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=2, help="runs per model (the first reads cold files)")
    ap.add_argument("--agreement", type=int, default=10_000, help="new users in the agreement check; 0: skip")
    ap.add_argument("--models", default="", help="comma-separated trained models to run (default: every one)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the floor (pyarrow read + id factorization of the new users' tables) after each run")
    args = ap.parse_args()
    wanted = [m for m in args.models.split(",") if m]
    work, cache = args.workdir.resolve(), args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    data = prepare(work, cache, args.new_users, args.known_tie_share, args.seed)
    results = {}
    chosen = {name: view for name, view in views(work, cache).items() if not wanted or name in wanted}
    if wanted and sorted(chosen) != sorted(set(wanted)):
        raise SystemExit(f"--models {args.models}: trained here are {', '.join(views(work, cache))}")
    for name, view in chosen.items():
        runs = []
        for r in range(args.repeat):
            doc = run_predict(view, data, cache / f"out_{name}.parquet")
            if not args.no_floor:  # right after, in the same conditions
                doc["floor"] = measure([PY, "-c", FLOOR, str(data)])[0]
            n = doc["counts"]["new_users"]
            print(f"{name} run {r + 1}: {n} new users, wall {doc['wall']:.1f} s ({n / doc['wall']:,.0f} users/s), "
                  f"predict {doc['seconds']:.1f} s ({n / doc['seconds']:,.0f} users/s), peak {doc['rss_gib']:.2f} "
                  f"GiB; stages " + ", ".join(f"{k} {v:.2f}" for k, v in doc["timings"].items())
                  + (f"; floor {doc['floor']:.1f} s ({n / doc['floor']:,.0f} users/s)" if "floor" in doc else ""),
                  flush=True)
            runs.append(doc)
        results[name] = runs

    agreement = {}
    if args.agreement:
        small = subset(data, args.agreement)
        t0 = time.perf_counter()
        whole = rebuild_predict(work, small)
        t_whole = time.perf_counter() - t0
        for name, view in chosen.items():
            doc = run_predict(view, small, cache / f"agree_{name}.parquet")
            mine = pd.read_parquet(cache / f"agree_{name}.parquet").set_index("user_id")
            for key, theirs in whole.items():
                target, model = key.split("/")
                if model != name:
                    continue
                cols = [f"{target}_proba_{c}" for c in theirs.columns]
                a = mine.loc[theirs.index.astype(str), cols].to_numpy()
                b = theirs.to_numpy()
                agreement[key] = {"n": len(b), "same_class": float((a.argmax(1) == b.argmax(1)).mean()),
                                  "max_diff": float(np.abs(a - b).max()), "mean_diff": float(np.abs(a - b).mean()),
                                  "incremental_s": doc["seconds"], "rebuild_s": t_whole}
                print(f"agreement {key}: {agreement[key]}", flush=True)

    cmd = "python benchmarks/predict.py " + " ".join(sys.argv[1:])
    meta = json.loads((work / "graph" / "meta.json").read_text())
    nodes, edges = meta["node_types"], {"__".join(e["type"]): e["num_edges"] for e in meta["edge_types"]}
    lines = ["", "## predict at scale (`benchmarks/predict.py`)", "",
             f"Command: `{cmd.strip()}`. Machine: {MACHINE}. Graph: {nodes['user']:,} users, {nodes['item']:,} "
             f"items, {edges.get('user__buys__item', 0):,} (user, item) edges, "
             f"{edges.get('user__friend__user', 0) // 2:,} ties. New users: our generator's (seed {args.seed}), "
             f"ids unseen, items mapped onto the graph's, {args.known_tie_share:.0%} of their ties rewritten to known "
             "users. Each run is `cli.py predict --json` in its own process, the only model of its target in a "
             "hard-linked copy of the work directory; wall includes interpreter start and imports, `predict s` is "
             "the command's own (read + validate to written Parquet); RSS is that process's peak. The floor, run "
             "right after each predict run in its own process: the new users' Parquet tables read with pyarrow "
             "and their user and item ids factorized (what any route must at least do with this input), start "
             "and imports included as in `wall s`.", "",
             "| model | run | new users | ties used | wall s | users/s (wall) | predict s | users/s (predict) | "
             "peak GiB | floor s | floor users/s | wall / floor | stages s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, runs in results.items():
        for r, doc in enumerate(runs):
            n = doc["counts"]["new_users"]
            stages = ", ".join(f"{k} {v:.1f}" for k, v in doc["timings"].items())
            floor = (f"{doc['floor']:.1f} | {n / doc['floor']:,.0f} | {doc['wall'] / doc['floor']:.1f}x"
                     if "floor" in doc else "- | - | -")
            lines.append(f"| {name} | {r + 1} | {n:,} | {doc['counts']['ties_used']:,} | {doc['wall']:.1f} | "
                         f"{n / doc['wall']:,.0f} | {doc['seconds']:.1f} | {n / doc['seconds']:,.0f} | "
                         f"{doc['rss_gib']:.2f} | {floor} | {stages} |")
    if agreement:
        lines += ["", f"Agreement with the whole-rebuild route on the first {args.agreement:,} new users "
                  "(saved tables + new rows through `build_graph` and `build_features(state=saved)`, every user "
                  "scored): the incremental route differs by the PageRank estimate and by the saved users keeping "
                  "their saved features.", "",
                  "| target / model | users | same class | max abs proba diff | mean abs proba diff | "
                  "incremental s | rebuild s (in process) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for key, a in agreement.items():
            lines.append(f"| {key} | {a['n']:,} | {a['same_class']:.4f} | {a['max_diff']:.4f} | "
                         f"{a['mean_diff']:.5f} | {a['incremental_s']:.1f} | {a['rebuild_s']:.1f} |")
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
