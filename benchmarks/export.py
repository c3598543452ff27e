"""export-embeddings throughput (users/s) at scale, per embedding source.

For each ``--models`` source this runs ``cli.py export-embeddings --model M --json`` on a trained work
directory in its own process and reports wall time (interpreter start and imports included) and users/s. Sources from ``train`` (``lr``, ``sign``, ``sage``, ``gat``) are exports of a fitted model: load, embed every
user, write Parquet + npy atomically. ``lightgcn`` is fitted on first use: it is run twice, the first row is fit
+ export, the second the export of the saved weights (what a nightly re-export costs).

Run: ``python benchmarks/export.py --workdir W [--models lr,sign,lightgcn]``; W must hold trained models for
the sources named (``graphprof train --models lr,sign``). Prints a table and appends it to
``benchmarks/RESULTS.md`` with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import machine, publish  # noqa: E402


def run(cmd: list[str], timeout: float) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit(f"{' '.join(cmd)}: stopped after {timeout:.0f} s") from None
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return secs, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--models", default="lr,sign", help="comma-separated sources (lightgcn, lr, sign, sage, gat)")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    rows = []
    for m in args.models.split(","):
        for attempt in ((1, 2) if m == "lightgcn" else (1,)):
            cmd = [sys.executable, "cli.py", "export-embeddings", "--workdir", args.workdir, "--model", m, "--json"]
            secs, doc = run(cmd, args.timeout)
            users = doc["meta"]["num_users"] if "meta" in doc else doc.get("num_users")
            what = ("fit + export" if attempt == 1 else "export of the saved weights") if m == "lightgcn" else "export"
            rows.append({"model": m, "what": what, "users": users, "dim": doc["meta"]["dim"], "secs": secs})
            print(f"{m} ({what}): {users:,} users in {secs:.1f} s = {users / secs:,.0f} users/s", flush=True)
    cmd = "python benchmarks/export.py " + " ".join(sys.argv[1:])
    lines = ["", "## export-embeddings throughput (`benchmarks/export.py`)", "",
             f"Command: `{cmd}`. Machine: {machine()}. One `cli.py export-embeddings` process per row, interpreter start and "
             "imports included; writes users.parquet + users.npy + ids atomically.", "",
             "| source | what | users | dim | wall s | users/s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['what']} | {r['users']:,} | {r['dim']} | {r['secs']:.1f} | "
                     f"{r['users'] / r['secs']:,.0f} |")
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
