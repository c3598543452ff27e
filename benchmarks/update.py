"""``update`` against a rebuild: a batch of new events applied to a trained 1M-user shop, beside ``build-graph``
on all the rows plus re-scoring every user with the saved models, in the same run.

The shop is the project's generator (10 purchases and 8 friend ties a user; ``benchmarks/build_graph.py``'s
shops), built and trained once (``train --models lr,sign --seeds 1 --epochs 5 --target gender``; kept in
``--cache``). A batch of fraction ``f`` holds ``f`` x the shop's purchases, a realistic mix: 90% by known users
(items drawn as the shop's purchases draw them, a day after the last event), 10% by new users (10 purchases
each, with a users-table row), and ``f`` x the shop's ties (half between known users, half from new users to
known ones). Each batch is applied to a fresh copy of the trained work directory.

Every command runs in its own process; peak RSS is that process's (``os.wait4``). The peer of an update is
``build-graph`` on the shop's rows plus the batch (a fresh work directory) and ``rescore`` (this script's
``--rescore-all W``: every saved model scores every user of W, as ``train`` writes ``predictions.parquet``).

Run: ``python benchmarks/update.py [--users 1000000] [--fractions 0.001,0.01,0.1]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, publish  # noqa: E402
from build_graph import PY, ROOT, generate  # noqa: E402

sys.path.insert(0, str(ROOT))


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS GiB of ``cmd`` in its own process (stderr kept for a failure)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
    return secs, usage.ru_maxrss / 2 ** 20


def cli(*args: str) -> tuple[float, float]:
    return run([PY, "cli.py", *args])


def trained(cache: Path, users: int) -> tuple[Path, Path]:
    data = generate(cache, users, "parquet")
    work = cache / f"u{users}_trained"
    if not (work / "models" / "gender" / "sign" / "config.json").exists():
        shutil.rmtree(work, ignore_errors=True)
        print(f"building and training {work}", flush=True)
        cli("build-graph", "--data", str(data), "--workdir", str(work), "--no-memory-check", "-q")
        cli("train", "--workdir", str(work), "--target", "gender", "--models", "lr,sign", "--seeds", "1",
            "--epochs", "5", "--no-memory-check", "-q")
    return data, work


def make_batch(data: Path, frac: float, out: Path, seed: int = 0) -> dict[str, int]:
    """The batch described in the module docstring, written to ``out`` (Parquet); returns its row counts."""
    rng = np.random.default_rng(seed)
    p = pd.read_parquet(data / "purchases.parquet")
    f_rows = pd.read_parquet(data / "friendships.parquet", columns=["user_id"]).shape[0]
    users = pd.read_parquet(data / "users.parquet")
    n = int(frac * len(p))
    n_new_p = n // 10
    n_new_users = max(n_new_p // 10, 1)
    known = users["user_id"].to_numpy(dtype=object)
    new_ids = np.array([f"new{seed}_{frac}_{k}" for k in range(n_new_users)], dtype=object)
    start = float(p["timestamp"].max()) + 60.0
    who = np.concatenate([rng.choice(known, n - n_new_p), np.repeat(new_ids, 10)[:n_new_p]])
    like = p.iloc[rng.integers(0, len(p), len(who))]  # items, quantities and prices as the shop draws them
    batch_p = pd.DataFrame({"user_id": who, "item_id": like["item_id"].to_numpy(),
                            "timestamp": start + rng.random(len(who)) * 86400.0,
                            "quantity": like["quantity"].to_numpy(), "price": like["price"].to_numpy()})
    n_ties = int(frac * f_rows)
    a = rng.choice(known, n_ties // 2)
    b = rng.choice(known, n_ties // 2)
    keep = a != b
    ties = pd.DataFrame({"user_id": np.concatenate([a[keep], rng.choice(new_ids, n_ties - n_ties // 2)]),
                         "friend_id": np.concatenate([b[keep], rng.choice(known, n_ties - n_ties // 2)])})
    x, y = ties["user_id"].to_numpy(dtype=object), ties["friend_id"].to_numpy(dtype=object)
    pair = pd.Series(np.where(x < y, x + "|" + y, y + "|" + x))
    ties = ties[~pair.duplicated().to_numpy()]  # one row per tie, either direction
    new_users = users.sample(n=len(new_ids), replace=True, random_state=seed).reset_index(drop=True)
    new_users["user_id"] = new_ids
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("purchases", batch_p), ("friendships", ties), ("users", new_users)):
        df.to_parquet(out / f"{name}.parquet", index=False)
    return {"purchases": len(batch_p), "friendships": len(ties), "new_users": len(new_ids)}


def with_batch(data: Path, batch: Path, out: Path) -> Path:
    """The shop's files plus the batch's rows, for the rebuild."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("purchases", "friendships", "users", "items"):
        parts = [pd.read_parquet(d / f"{name}.parquet") for d in (data, batch) if (d / f"{name}.parquet").exists()]
        pd.concat(parts, ignore_index=True).to_parquet(out / f"{name}.parquet", index=False)
    return out


def rescore_all(work: str) -> None:
    """Every saved model scores every user of ``work`` (what a rebuild needs before its profiles are current)."""
    from graphprof import workdir
    from graphprof.features import load_features
    from graphprof.graph import load_graph
    from graphprof.models import ModelInput, get_model

    root = Path(work)
    inputs = ModelInput(graph=load_graph(root), features=load_features(root))
    for d in workdir.model_dirs(root):
        config = workdir.read_json(d / workdir.MODEL_CONFIG, missing="")
        model = get_model(d.name).load(workdir.run_dir(root, workdir.target_name(d.parent), d.name,
                                                       config["predictions_from_seed"]))
        model.proba(inputs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000, help="users of the generated shop (default 1M)")
    ap.add_argument("--fractions", default="0.001,0.01,0.1", help="batch sizes as fractions of the purchases")
    ap.add_argument("--cache", default="/tmp/graphprof-bench", help="where generated data and work dirs go")
    ap.add_argument("--models", default="lr,sign", help="the saved models the update and the re-score use (a "
                    "subset of lr,sign; the others are removed from the copy)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--rescore-all", metavar="W", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rescore_all:
        rescore_all(args.rescore_all)
        return
    cache = Path(args.cache)
    data, work = trained(cache, args.users)
    rows = []
    for frac in [float(x) for x in args.fractions.split(",")]:
        batch = cache / f"u{args.users}_batch_{frac}"
        shutil.rmtree(batch, ignore_errors=True)
        counts = make_batch(data, frac, batch)
        copy = cache / f"u{args.users}_updated"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(work, copy, ignore=shutil.ignore_patterns("cache"))
        for d in (copy / "models" / "gender").iterdir():
            if d.name not in args.models.split(","):
                shutil.rmtree(d)
        print(f"batch {frac:g}: {counts}", flush=True)
        up_s, up_gib = cli("update", "--workdir", str(copy), "--data", str(batch), "-q")
        full = with_batch(data, batch, cache / f"u{args.users}_all_{frac}")
        peer = cache / f"u{args.users}_rebuilt"
        shutil.rmtree(peer, ignore_errors=True)
        b_s, b_gib = cli("build-graph", "--data", str(full), "--workdir", str(peer), "--no-memory-check", "-q")
        r_s, r_gib = run([PY, str(Path(__file__).resolve()), "--rescore-all", str(copy)])
        rows.append((frac, counts, up_s, up_gib, b_s, b_gib, r_s, r_gib))
        shutil.rmtree(full, ignore_errors=True)
        shutil.rmtree(peer, ignore_errors=True)
        shutil.rmtree(copy, ignore_errors=True)
    lines = ["", f"### `update` beside a rebuild: {args.users:,}-user generated shop, models {args.models}", "",
             f"Command: `python benchmarks/update.py --users {args.users} --fractions {args.fractions} --models "
             f"{args.models}`. Machine: {machine()}. Trained with `train --models lr,sign --seeds 1 --epochs 5 "
             f"--target gender`; saved models kept for the update and the re-score: {args.models}. Each command in "
             "its own process; peak RSS of that process.", "",
             "| batch | purchases | ties | new users | update s | update GiB | build-graph s | build GiB | "
             "re-score all s | re-score GiB | update / (build + re-score) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for frac, c, up_s, up_gib, b_s, b_gib, r_s, r_gib in rows:
        lines.append(f"| {frac:.1%} | {c['purchases']:,} | {c['friendships']:,} | {c['new_users']:,} | {up_s:.1f} | "
                     f"{up_gib:.2f} | {b_s:.1f} | {b_gib:.2f} | {r_s:.1f} | {r_gib:.2f} | "
                     f"{up_s / (b_s + r_s):.2f} |")
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
