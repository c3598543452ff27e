"""Training at scale: time per epoch, time to the best validation epoch, peak RSS and test accuracy, for every
model, full-batch and mini-batch, on one built work directory.

Each model runs in its own process (so peak RSS is that model's alone, inputs included): it loads the graph
and features from the work directory, splits the labelled users of ``--target`` 60/20/20 (seed 0, as
``graphprof train``), fits, and scores the test users. Epoch boundaries are read from the models' own
validation step (each epoch ends with one validation macro-F1; the benchmark wraps that call to timestamp it),
so "time to best" is the wall time from the start of ``fit`` to the end of the epoch that validation picked
(for ``sign``, over its whole validation grid). ``lr`` has no epochs: its row gives the whole fit (with its
C search).

Model specs: ``lr``, ``sign``, ``sage:full``, ``sage:minibatch``, ``gat:full``, ``gat:minibatch``.

Run: ``python benchmarks/train.py --workdir W [--target gender | community] [--models lr,sign,sage:minibatch]
[--epochs N] [--threads 1,2]``: every model spec once per torch thread count; prints a table and appends it to ``benchmarks/RESULTS.md`` with the command and the machine.
To build W at scale: ``python cli.py generate --users 1000000 --purchases-per-user 10 --file-format parquet
--time-format epoch --out big/`` then ``python cli.py build-graph --data big/ --workdir W``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import machine, publish  # noqa: E402

sys.path.insert(0, str(ROOT))

SPECS = ("lr", "sign", "sage:full", "sage:minibatch", "gat:full", "gat:minibatch")


def one(workdir: str, target: str, spec: str, epochs: int | None, seed: int, threads: int = 1) -> dict:
    """Fit one model spec in this process and return its figures."""
    import numpy as np
    import torch

    from graphprof.features import load_features
    from graphprof.graph import load_graph
    from graphprof.graph.build import load_tables
    from graphprof.models import ModelInput, get_model
    from graphprof.training.evaluate import scores, split
    from graphprof.training.train import _make_target
    from graphprof.workdir.manifest import load_manifest

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    graph = load_graph(workdir)
    inputs = ModelInput(graph=graph, features=load_features(workdir))
    # a users-table column, or "community": the detected communities, as `train` takes them
    graph_id = load_manifest(Path(workdir)).get("graph_id")
    tgt = _make_target(Path(workdir), load_tables(workdir, "users"), graph.user_ids, target, graph_id, {})
    parts = split(tgt, seed)
    load_s = time.perf_counter() - t0

    name, _, mode = spec.partition(":")
    cls = get_model(name)
    kwargs = {}
    if mode:
        kwargs["mode"] = mode
    if epochs is not None and "epochs" in cls().params:
        kwargs["epochs"] = epochs
    stamps: list[tuple[float, float]] = []  # (time since fit start, validation macro-F1) per epoch
    module = sys.modules[cls.__module__]
    # each epoch's validation calls the module's macro_f1 (or f1_score, where a module imports that); lr's f1
    # calls are its C search, not epochs
    hook = next((h for h in ("macro_f1", "f1_score") if hasattr(module, h)), None) if name != "lr" else None
    if hook is not None:
        inner = getattr(module, hook)

        def timed_f1(*a, **k):
            v = inner(*a, **k)
            stamps.append((time.perf_counter() - t_fit, float(v)))
            return v

        setattr(module, hook, timed_f1)
    t_fit = time.perf_counter()
    model = cls(seed=seed, **kwargs).fit(inputs, tgt.y, parts["train"], parts["val"], tgt.classes)
    fit_s = time.perf_counter() - t_fit
    t1 = time.perf_counter()
    proba = model.predict_proba(inputs).to_numpy()
    predict_s = time.perf_counter() - t1
    test = scores(tgt.y[parts["test"]], proba[parts["test"]])
    out = {"spec": spec, "threads": threads, "route": getattr(model, "route_", mode or "-"), "users": int(graph.num_users),
           "train_users": int(len(parts["train"])), "load_s": load_s, "fit_s": fit_s, "predict_s": predict_s,
           "epochs": len(stamps), "test": test, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if stamps:
        ends = np.array([s for s, _ in stamps])
        best = int(np.argmax([f for _, f in stamps]))
        out.update(epoch_s=float(np.diff(np.r_[0.0, ends]).mean()), to_best_s=float(ends[best]),
                   best_val_f1=stamps[best][1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="a built work directory (graphprof build-graph)")
    ap.add_argument("--target", default="gender")
    ap.add_argument("--models", default=",".join(SPECS), help=f"comma-separated specs among {', '.join(SPECS)}")
    ap.add_argument("--epochs", type=int, default=None, help="cap on epochs (default: each model's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="1", help="comma-separated torch thread counts, each spec run at each")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model before it is stopped")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.workdir, args.target, args.one, args.epochs, args.seed, int(args.threads))))
        return
    rows = []
    counts = [int(t) for t in args.threads.split(",")]
    for spec, threads in ((s, t) for s in args.models.split(",") for t in counts):
        cmd = [sys.executable, __file__, "--workdir", args.workdir, "--target", args.target, "--one", spec,
               "--seed", str(args.seed), "--threads", str(threads)] + (["--epochs", str(args.epochs)] if args.epochs else [])
        print(f"{spec}, {threads} thread(s) ...", flush=True)
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        except subprocess.TimeoutExpired:
            rows.append({"spec": spec, "threads": threads, "timeout": args.timeout})
            print(f"{spec}: stopped after {args.timeout:.0f} s")
            continue
        if res.returncode != 0:
            raise SystemExit(f"{spec} failed:\n{res.stderr[-3000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)

    cmd = "python benchmarks/train.py " + " ".join(sys.argv[1:])
    users = next((r["users"] for r in rows if "users" in r), 0)
    lines = ["", f"## Training at scale (`benchmarks/train.py`): {users:,} users, target {args.target}", "",
             f"Command: `{cmd}`. Machine: {machine()}. "
             "One process per model and torch thread count; peak RSS includes the loaded graph and features. "
             "Split: 60/20/20 of the labelled users, seed 0; test metrics.", "",
             "| model | threads | route | train users | epochs | s / epoch | s to best val | fit s | predict s | "
             "peak GiB | best val macro-F1 | test accuracy | test macro-F1 | test AUC |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "timeout" in r:
            lines.append(f"| {r['spec']} | {r['threads']} | - | | | | | stopped after {r['timeout']:.0f} s | | | | | | |")
            continue
        t = r["test"]
        def ep(k: str, r: dict = r) -> str:
            return f"{r[k]:.1f}" if k in r else "-"

        lines.append(f"| {r['spec'].split(':')[0]} | {r['threads']} | {r['route']} | {r['train_users']:,} | {r['epochs'] or '-'} | "
                     f"{ep('epoch_s')} | {ep('to_best_s')} | {r['fit_s']:.1f} | {r['predict_s']:.1f} | "
                     f"{r['peak_gib']:.2f} | {'-' if r.get('best_val_f1') is None else format(r['best_val_f1'], '.3f')} | {t['accuracy']:.3f} | "
                     f"{t['macro_f1']:.3f} | {t['auc']:.3f} |")
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
