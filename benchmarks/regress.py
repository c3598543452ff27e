"""One command from two checkouts, alternating: is this change slower than the code before it?

Each checkout's ``cli.py`` runs the command in its own process (peak RSS by ``os.wait4``), the two alternating
``--repeat`` times so that both see the same machine; the medians and every run are reported. ``{workdir}`` in the
command is replaced by a fresh folder per run.

Run: ``python benchmarks/regress.py --base /tmp/base-checkout [--repeat 3] -- build-graph --data D --workdir
{workdir}``; make the base checkout with ``git worktree add /tmp/base-checkout <commit>``. The table is printed
and appended to ``benchmarks/RESULTS.md`` with the command and the machine (``--no-write``: printed only).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, publish  # noqa: E402
from build_graph import PY, ROOT, measure  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (its cli.py runs the base side)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prepare", default="", help="a command (this checkout's cli.py) run once into {workdir} "
                                                  "before each timed run, e.g. a build before a train")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = [c for c in args.command if c != "--"]
    base = Path(args.base).resolve()
    commit = {side: subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True,
                                   text=True).stdout.strip() for side, where in (("base", base), ("this", ROOT))}
    runs: dict[str, list[tuple[float, float]]] = {"base": [], "this": []}
    scratch = Path(tempfile.mkdtemp(prefix="regress-"))
    try:
        for k in range(args.repeat):
            for side, where in (("base", base), ("this", ROOT)):
                work = scratch / f"{side}{k}"
                if args.prepare:
                    subprocess.run([PY, str(ROOT / "cli.py"), *args.prepare.replace("{workdir}", str(work)).split()],
                                   cwd=ROOT, check=True, capture_output=True)
                cmd = [PY, str(where / "cli.py"), *[c.replace("{workdir}", str(work)) for c in command]]
                secs, gib, status = measure(cmd)
                runs[side].append((secs, gib))
                print(f"{side} run {k + 1}: {secs:.1f} s, {gib:.2f} GiB", flush=True)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {side: (statistics.median(s for s, _ in r), max(g for _, g in r)) for side, r in runs.items()}
    lines = ["", f"### `{' '.join(command)}`: this change against the code before it", "",
             f"Command: `python benchmarks/regress.py {' '.join(sys.argv[1:])}`. Machine: {machine()}. The two "
             f"checkouts alternate, each run its own process; median wall, largest peak RSS.", "",
             "| code | commit | median wall | peak RSS | runs |", "|---|---|---:|---:|---|"]
    for side in ("base", "this"):
        lines.append(f"| {side} | {commit[side]} | {med[side][0]:.1f} s | {med[side][1]:.2f} GiB | "
                     + ", ".join(f"{s:.1f}" for s, _ in runs[side]) + " |")
    lines.append(f"\nthis / base: {med['this'][0] / med['base'][0]:.2f} (wall), "
                 f"{med['this'][1] / med['base'][1]:.2f} (peak RSS)")
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
