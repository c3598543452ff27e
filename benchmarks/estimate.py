"""``--estimate`` against the measured: wall time and peak RSS of ``build-graph`` and ``train`` on generated shops.

Two parts, each command in its own process (``os.wait4`` gives that process's peak RSS):

* ``--calibrate SIZES`` (two sizes): ``build-graph`` from Parquet at both and from CSV at the smaller, ``train
  --models lr`` and ``train --models sign`` (one seed, target gender) at both. From these it fits and prints the
  cost model's coefficients (the dictionaries of ``graphprof/runtime/estimate.py``): two-point lines for time and
  memory, ``lr``'s and ``sign``'s per-seed seconds (from ``train``'s own per-seed lines) split into a part per
  graph size and, for ``sign``, a part per epoch and training user (epochs read from the saved model: every grid
  point's).
* ``--check SIZES``: ``build-graph --estimate`` and ``train --estimate`` (the code's coefficients) beside the
  measured ``build-graph`` and ``train --models lr,sign --seeds 1 --target gender`` (``--epochs 5`` from
  ``--cap-from`` users on, as the scale tables run ``sign``), with the ratio measured / estimated.

Generator: 10 purchases and 8 friend ties a user (``benchmarks/build_graph.py``'s shops). Data and work
directories go to ``--cache``. The check table is appended to RESULTS.md with the command and the machine.

Run: ``python benchmarks/estimate.py --calibrate 100000,1000000`` (prints coefficients) and
``python benchmarks/estimate.py --check 100000,300000,1000000 [--real W=TARGET,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, publish  # noqa: E402
from build_graph import PY, ROOT, generate  # noqa: E402

sys.path.insert(0, str(ROOT))

SEED_LINE = re.compile(r"/ (\w+) / seed \d+: .*\(([\d.]+)s\)")


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """``cli.py ARGS`` in its own process: wall seconds, peak RSS GiB (``os.wait4``: that process alone), and its
    stderr (to a file: a pipe could fill while the command runs)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([PY, "cli.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t0
        err.seek(0)
        text = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cli.py {' '.join(args)} failed:\n{text[-2000:]}")
    return secs, usage.ru_maxrss / 2 ** 20, text


def built(cache: Path, users: int, fmt: str = "parquet") -> tuple[Path, float, float]:
    """A fresh work directory built from the generated shop: (workdir, build seconds, build peak GiB)."""
    data = generate(cache, users, fmt)
    work = cache / f"w{users}_{fmt}"
    shutil.rmtree(work, ignore_errors=True)
    secs, gib, _ = run_cli(["build-graph", "--data", str(data), "--workdir", str(work), "--no-memory-check"])
    return work, secs, gib


def rows_of(data: Path) -> int:
    from graphprof.runtime.estimate import build_sizes

    return sum(build_sizes(data, {}, "generic")[0].values())


def graph_size(work: Path) -> tuple[int, int]:
    """(users + purchase edges + ties, users) of a built work directory."""
    from graphprof.runtime.estimate import train_sizes

    s = train_sizes(work, ["gender"])
    return s["users"] + s["purchase_edges"] + s["ties"], s["users"]


def sign_epochs(work: Path) -> int:
    """Epochs ``sign`` trained in the last run, over every grid point."""
    meta = json.loads(next((work / "models").glob("gender/sign/seed_*/model.json")).read_text())
    grid = meta["config"]["choice"].get("grid") or []
    return sum(g["epochs"] for g in grid) if grid else len(meta["config"]["history"])


def line(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Intercept and slope through two points."""
    slope = (b[1] - a[1]) / (b[0] - a[0])
    return a[1] - slope * a[0], slope


def calibrate(cache: Path, sizes: list[int], cap_from: int) -> None:
    gib = 2 ** 30
    pts = {}
    for users in sizes:
        work, b_s, b_gib = built(cache, users)
        size, _ = graph_size(work)
        rows = rows_of(generate(cache, users, "parquet"))
        cap = ["--epochs", "5"] if users >= cap_from else []
        lr_s, lr_gib, lr_err = run_cli(["train", "--workdir", str(work), "--target", "gender", "--models", "lr",
                                        "--seeds", "1", "--no-memory-check"])
        sg_s, sg_gib, sg_err = run_cli(["train", "--workdir", str(work), "--target", "gender", "--models", "sign",
                                        "--seeds", "1", "--no-memory-check", *cap])
        lr_fit = sum(float(t) for m, t in SEED_LINE.findall(lr_err) if m == "lr")
        sg_fit = sum(float(t) for m, t in SEED_LINE.findall(sg_err) if m == "sign")
        train_users = int(0.6 * _labelled(work))
        pts[users] = dict(rows=rows, size=size, build_s=b_s, build_gib=b_gib, lr_total=lr_s, lr_fit=lr_fit,
                          lr_gib=lr_gib, sign_fit=sg_fit, sign_gib=sg_gib, epochs=sign_epochs(work),
                          train_users=train_users)
        print(users, pts[users], flush=True)
    small, big = (pts[u] for u in sorted(pts))
    csv_data = generate(cache, min(sizes), "csv")
    work_csv = cache / f"w{min(sizes)}_csv"
    shutil.rmtree(work_csv, ignore_errors=True)
    csv_s, _, _ = run_cli(["build-graph", "--data", str(csv_data), "--workdir", str(work_csv), "--no-memory-check"])
    b0, b1 = line((small["rows"], small["build_s"]), (big["rows"], big["build_s"]))
    m0, m1 = line((small["rows"], small["build_gib"] * gib), (big["rows"], big["build_gib"] * gib))
    csv_factor = (csv_s - b0) / (small["build_s"] - b0)
    load = [(p["size"], p["lr_total"] - p["lr_fit"]) for p in (small, big)]
    l0, l1 = line(*load)
    lr_s = (small["lr_fit"] + big["lr_fit"]) / (small["size"] + big["size"])
    # sign: fit = a * size + e * epochs * train_users, two equations
    x1, y1, z1 = small["size"], small["epochs"] * small["train_users"], small["sign_fit"]
    x2, y2, z2 = big["size"], big["epochs"] * big["train_users"], big["sign_fit"]
    det = x1 * y2 - x2 * y1
    a, e = (z1 * y2 - z2 * y1) / det, (x1 * z2 - x2 * z1) / det
    lr_m = line((small["size"], small["lr_gib"] * gib), (big["size"], big["lr_gib"] * gib))
    sg_m = line((small["size"], small["sign_gib"] * gib), (big["size"], big["sign_gib"] * gib))
    print(f"BUILD = {{'base_s': {b0:.3g}, 's_per_row': {b1:.3g}, 'csv_factor': {csv_factor:.3g}, "
          f"'base_bytes': {m0 / gib:.3g} * GIB, 'bytes_per_row': {m1:.3g}}}")
    print(f"LOAD = {{'base_s': {l0:.3g}, 's_per_size': {l1:.3g}}}")
    print(f"lr: s_per_size {lr_s:.3g}, base_bytes {lr_m[0] / gib:.3g} GiB, bytes_per_size {lr_m[1]:.3g}")
    print(f"sign: s_per_size {a:.3g}, epoch_s {e:.3g}, base_bytes {sg_m[0] / gib:.3g} GiB, "
          f"bytes_per_size {sg_m[1]:.3g}; grid-route epochs (every point) at {min(sizes)}: {small['epochs']}")


def _labelled(work: Path) -> int:
    from graphprof.runtime.estimate import train_sizes

    return train_sizes(work, ["gender"])["labelled"]["gender"]


def estimate_json(args: list[str]) -> dict:
    out = subprocess.run([PY, "cli.py", *args, "--estimate", "--json"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def check(cache: Path, sizes: list[int], cap_from: int, real: list[str], write: bool) -> None:
    """Estimate against measured at ``sizes`` (generated shops) and on the built work directories ``real``
    (``W=TARGET``: ``train`` with its default models and seeds on them)."""
    rows = []
    for users in sizes:
        for fmt in ("parquet", "csv") if users == sizes[0] else ("parquet",):
            data = generate(cache, users, fmt)
            est = estimate_json(["build-graph", "--data", str(data)])
            work, secs, gib = built(cache, users, fmt)
            rows.append((f"build-graph ({fmt})", users, est, secs, gib))
        cap = ["--epochs", "5"] if users >= cap_from else []
        args = ["train", "--workdir", str(cache / f"w{users}_parquet"), "--target", "gender", "--models", "lr,sign",
                "--seeds", "1", *cap]
        est = estimate_json(args)
        secs, gib, _ = run_cli([*args, "--no-memory-check"])
        rows.append(("train lr,sign" + (" --epochs 5" if cap else ""), users, est, secs, gib))
        print(rows[-2:], flush=True)
    for spec in real:
        work, target = spec.split("=", 1)
        shutil.rmtree(Path(work) / "cache", ignore_errors=True)  # a cold run: the first train after a build
        args = ["train", "--workdir", work, "--target", target]  # the default models and seeds
        est = estimate_json(args)
        secs, gib, _ = run_cli([*args, "--no-memory-check"])
        rows.append((f"train (defaults) on {Path(work).name}, target {target}", est["sizes"]["users"], est, secs,
                     gib))
        print(rows[-1], flush=True)
    cmd = "python benchmarks/estimate.py " + " ".join(sys.argv[1:])
    lines = ["", "### `--estimate` against the measured: generated shops", "",
             f"Command: `{cmd.strip()}`. Machine: {machine()}. Generator: 10 purchases and 8 friend ties a user; "
             "`train` on target gender, one seed. Each command in its own process; peak RSS of that process.", "",
             "| command | users | estimated s | measured s | measured / estimated | estimated GiB | measured GiB | "
             "measured / estimated |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, users, est, secs, gib in rows:
        lines.append(f"| {name} | {users:,} | {est['seconds']:.0f} | {secs:.0f} | {secs / est['seconds']:.2f} | "
                     f"{est['peak_gib']:.2f} | {gib:.2f} | {gib / est['peak_gib']:.2f} |")
    publish(lines, write)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate", default=None, help="two sizes (users), comma-separated: fit the coefficients")
    ap.add_argument("--check", default=None, help="sizes (users), comma-separated: estimate against measured")
    ap.add_argument("--real", default="", help="W=TARGET,...: built work directories to check train --estimate "
                    "on too (default models and seeds; each one's cache and models are replaced)")
    ap.add_argument("--cap-from", type=int, default=500_000, help="users from which sign runs --epochs 5")
    ap.add_argument("--cache", default="/tmp/graphprof-bench", help="where generated data and work dirs go")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    cache = Path(args.cache)
    if args.calibrate:
        sizes = sorted(int(s) for s in args.calibrate.split(","))
        if len(sizes) != 2:
            raise SystemExit("--calibrate takes two sizes")
        calibrate(cache, sizes, args.cap_from)
    if args.check:
        check(cache, sorted(int(s) for s in args.check.split(",")), args.cap_from,
              [r for r in args.real.split(",") if r], not args.no_write)


if __name__ == "__main__":
    main()
