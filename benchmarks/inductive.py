"""``predict`` on users the models never saw, against the same users seen unlabelled in the training graph.

From the bundled sample, 300 labelled users (seeded) are held out:

* **A, transductive**: build on every row, with the held-out users' labels blanked; train; read their profile
  from ``models/<target>/<model>/predictions.parquet``.
* **B, inductive**: build without any row of the held-out users; train; then ``predict`` them from their own
  purchases and ties (which point at users of B).

Printed per target: the model picked, the share of held-out users with the same predicted class in A and B, and
the accuracy of each against the held-out labels. The two differ only by the inductive difference: in B the
models (and the SVD of the purchase matrix) were fitted without these users, and their graph statistics come
from the extended graph. Run: ``python benchmarks/inductive.py [--seeds N]``; appends to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import pandas as pd
from _results import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphprof.graph.build import build  # noqa: E402
from graphprof.prediction.predict import predict  # noqa: E402
from graphprof.training.train import train  # noqa: E402

SAMPLE = ROOT / "datasets" / "sample"
TARGETS = ["gender", "age_band", "spend_level"]


def split_sample(tmp: Path, n_held: int, seed: int) -> dict[str, Path]:
    read = {n: pd.read_csv(SAMPLE / f"{n}.csv", dtype=str, keep_default_na=False)
            for n in ("purchases", "friendships", "users", "items")}
    users = read["users"]
    labelled = users.loc[users[TARGETS].ne("").any(axis=1), "user_id"].unique()
    held = set(np.random.default_rng(seed).choice(labelled, n_held, replace=False))
    dirs = {k: tmp / k for k in ("all", "train", "new")}
    for d in dirs.values():
        d.mkdir()
    p, f = read["purchases"], read["friendships"]
    in_p = p["user_id"].isin(held)
    in_f = f["user_id"].isin(held) | f["friend_id"].isin(held)
    in_u = users["user_id"].isin(held)
    blank = users.copy()
    blank.loc[in_u, TARGETS] = ""
    for name, frame in (("purchases", p), ("friendships", f), ("items", read["items"])):
        frame.to_csv(dirs["all"] / f"{name}.csv", index=False)
    blank.to_csv(dirs["all"] / "users.csv", index=False)
    p[~in_p].to_csv(dirs["train"] / "purchases.csv", index=False)
    f[~in_f].to_csv(dirs["train"] / "friendships.csv", index=False)
    users[~in_u].to_csv(dirs["train"] / "users.csv", index=False)
    read["items"].to_csv(dirs["train"] / "items.csv", index=False)
    p[in_p].to_csv(dirs["new"] / "purchases.csv", index=False)
    f[in_f].to_csv(dirs["new"] / "friendships.csv", index=False)
    users[in_u].to_csv(dirs["new"] / "users.csv", index=False)
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds (default 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        dirs = split_sample(tmp, args.held_out, seed=1)
        build(tmp / "wA", data=dirs["all"])
        train(tmp / "wA", targets=TARGETS, seeds=args.seeds)
        build(tmp / "wB", data=dirs["train"])
        train(tmp / "wB", targets=TARGETS, seeds=args.seeds)
        result = predict(tmp / "wB", data=dirs["new"])
        truth = pd.read_csv(dirs["new"] / "users.csv", dtype=str, keep_default_na=False)
        rows = []
        for target in TARGETS:
            model = result.targets[target]["model"]
            a = pd.read_parquet(tmp / "wA" / "models" / target / model / "predictions.parquet")
            j = (result.frame[["user_id", target]].astype(str)
                 .merge(a[["user_id", "predicted"]].astype(str), on="user_id")
                 .merge(truth[["user_id", target]].rename(columns={target: "truth"}), on="user_id"))
            labelled = j["truth"] != ""
            rows.append({"target": target, "model": model, "users": len(j),
                         "agreement": float((j[target] == j["predicted"]).mean()),
                         "labelled": int(labelled.sum()),
                         "acc_inductive": float((j[target] == j["truth"])[labelled].mean()),
                         "acc_transductive": float((j["predicted"] == j["truth"])[labelled].mean())})
    lines = ["", "## Inductive profiles: `predict` on unseen users vs the same users unlabelled in training", "",
             f"Command: `python benchmarks/inductive.py --held-out {args.held_out} --seeds {args.seeds}`. Machine: "
             f"{machine()}. Bundled sample; held-out users drawn with seed 1; predictions from "
             "the first training seed's model of the picked family.", "",
             "| target | picked model | held-out users | same prediction | labelled | accuracy, predict (unseen) | "
             "accuracy, in training graph unlabelled |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        print(f"{r['target']:<12} {r['model']:<5} agreement {r['agreement']:.3f}  accuracy unseen "
              f"{r['acc_inductive']:.3f} vs in-graph {r['acc_transductive']:.3f} ({r['labelled']} labelled)")
        lines.append(f"| {r['target']} | {r['model']} | {r['users']} | {r['agreement']:.3f} | {r['labelled']} | "
                     f"{r['acc_inductive']:.3f} | {r['acc_transductive']:.3f} |")
    with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
