"""Every stage at 1M, 3M and 10M users on one machine: wall time, peak RSS, and how far from linear each grows.

For each size (the project's generator: 10 purchases and ~4 ties a user, Parquet, epoch times; cached in
``--cache``) this runs each command as a user does, each in its own process (peak RSS of that process alone,
``os.wait4``), one after another on an otherwise idle machine:

* ``build-graph --engine E`` (``--engine``, default ``duckdb``: the same route at every size, so the sizes
  compare; ``auto`` picks it where the in-memory build would not fit);
* ``train --target gender --models M --seeds 1`` (``--models``, default ``lr``; ``--epochs N`` passed on);
* ``predict`` of ``--new-users`` unseen users (default 100k; prepared as ``benchmarks/predict.py`` prepares them:
  tied to each other and to known users, buying known items);
* ``export-embeddings`` of every user (the trained model's embeddings).

A stage that fails or passes ``--timeout`` is reported as such, with its error's last line. The linearity column
is (seconds at this size / seconds at the smallest size) / (users / smallest users): 1.0 is linear.

Run: ``python benchmarks/scale.py [--sizes 1000000,3000000,10000000] [--stages build,train,predict,export]
[--engine duckdb] [--models lr] [--epochs N] [--cache DIR] [--no-write]``; the table is printed and appended to
``benchmarks/RESULTS.md`` with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, publish  # noqa: E402
from build_graph import PY, generate, measure  # noqa: E402
from predict import prepare  # noqa: E402

STAGES = ("build", "train", "predict", "export")


def commands(size: int, data: Path, work: Path, new: Path | None, args) -> dict[str, list[str]]:
    cli = [PY, "cli.py"]
    return {
        "build": cli + ["build-graph", "-q", "--data", str(data), "--workdir", str(work), "--engine", args.engine],
        "train": cli + ["train", "-q", "--workdir", str(work), "--target", "gender", "--models", args.models,
                        "--seeds", "1", "--no-memory-check"] + (["--epochs", str(args.epochs)] if args.epochs else []),
        "predict": cli + ["predict", "-q", "--workdir", str(work), "--data", str(new)] if new else [],
        "export": cli + ["export-embeddings", "-q", "--workdir", str(work), "--model", args.models.split(",")[0]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000000,3000000,10000000")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--engine", default="duckdb", choices=["auto", "numpy", "duckdb", "dask"])
    ap.add_argument("--models", default="lr")
    ap.add_argument("--epochs", type=int, default=None, help="train's --epochs (default: the models' own)")
    ap.add_argument("--new-users", type=int, default=100_000)
    ap.add_argument("--cache", default="/tmp/graphprof-bench")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    stages = [s for s in args.stages.split(",") if s]
    cache = Path(args.cache)
    rows = []
    for size in sizes:
        data = generate(cache, size, "parquet")
        work = cache / f"scale_{size}"
        if "build" in stages:
            shutil.rmtree(work, ignore_errors=True)
        new = None
        for stage in stages:
            if stage == "predict":
                new = prepare(work, cache, args.new_users, 0.5, 7)
            cmd = commands(size, data, work, new, args)[stage]
            print(f"{size} users: {stage}: {' '.join(cmd[1:])}", flush=True)
            try:
                secs, gib, status = measure(cmd, args.timeout)
            except SystemExit as exc:  # the command failed: said in the table, the other stages still run
                secs, gib, status = None, None, "failed: " + str(exc).strip().splitlines()[-1][:120]
            rows.append((size, stage, secs, gib, status))
            print(f"  {status}: {secs and round(secs, 1)} s, {gib and round(gib, 2)} GiB", flush=True)
    base = {}
    lines = ["", f"### Every stage at {', '.join(f'{s / 1e6:g}M' for s in sizes)} users", "",
             f"Command: `python benchmarks/scale.py {' '.join(sys.argv[1:])}`. Machine: {machine()}. Each command its "
             "own process, alone on the machine, peak RSS by `os.wait4`; data from `cli.py generate` (10 purchases "
             "and ~4 ties a user). Linear = (seconds / seconds at the smallest size) / (users / smallest users).", "",
             "| users | stage | wall | peak RSS | linear | status |", "|---:|---|---:|---:|---:|---|"]
    for size, stage, secs, gib, status in rows:
        if secs is not None and status == "ok" and stage not in base:
            base[stage] = (size, secs)
        ratio = "-"
        if secs is not None and status == "ok" and stage in base and base[stage][0] != size:
            ratio = f"{(secs / base[stage][1]) / (size / base[stage][0]):.2f}"
        lines.append(f"| {size:,} | {stage} | {'-' if secs is None else f'{secs:.0f} s'} | "
                     f"{'-' if gib is None else f'{gib:.1f} GiB'} | {ratio} | {status} |")
    publish(lines, write=not args.no_write)
    print(json.dumps([dict(zip(("users", "stage", "seconds", "peak_gib", "status"), r)) for r in rows]))


if __name__ == "__main__":
    main()
