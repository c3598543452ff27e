"""Accuracy of ``sign`` (precomputed aggregates + MLP) against ``lr`` and ``sage`` (scratch benchmark; prints only).

* **Bundled sample**: ``build`` to a temporary folder, then ``train(models=["lr", "sage", "sign"], seeds=3)`` on
  every default target; prints graphprof's side-by-side table.
* **Deezer Europe** (``../shared/datasets/deezer_europe``, FEATHER format; skipped where absent):
  ``train(targets=["target"], models=["lr", "sign"], seeds=5)`` (the gender); prints mean ± std over the seeds
  of accuracy, macro-F1 and AUC on the test users, fit seconds, and ``sign``'s validation-chosen grid point.

Torch runs on one thread (``OMP_NUM_THREADS=1``): on a small shared machine a second OpenMP thread spins and
competes for the cores rather than helping.
Run: ``python benchmarks/accuracy_sign.py [--skip-sample] [--skip-deezer]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphprof import workdir  # noqa: E402
from graphprof.graph.build import build  # noqa: E402
from graphprof.training.train import train  # noqa: E402

SAMPLE = ROOT / "datasets" / "sample"
DEEZER = ROOT.parent / "shared" / "datasets" / "deezer_europe"
METRICS = ("accuracy", "macro_f1", "auc")


def _choices(root: Path, target: str, seeds: list[int]) -> list[str]:
    """``sign``'s validation-chosen grid point per seed (from the saved model.json)."""
    out = []
    for s in seeds:
        meta = workdir.read_json(workdir.run_dir(root, target, "sign", s) / "model.json", missing="")
        c = meta["config"]["choice"]
        out.append(f"seed {s}: blocks {c['blocks']} {meta['config']['blocks']}, hidden {c['hidden']}, "
                   f"dropout {c['dropout']}, epoch {meta['config']['best_epoch']}, "
                   f"val macro-F1 {c['val_macro_f1']:.3f}")
    return out


def sample() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build(tmp, data=SAMPLE)
        result = train(tmp, models=["lr", "sage", "sign"], seeds=3)
        print(f"== bundled sample ({time.perf_counter() - t0:.0f} s with the build)")
        print(result.table())
        for target, info in result.info.items():
            secs = ", ".join(f"{m} {v:.1f}" for m, v in info["fit_seconds"].items())
            print(f"{target}: mean fit seconds per seed: {secs}")
            for line in _choices(Path(tmp), target, result.seeds):
                print(f"  sign {line}")


def deezer() -> None:
    if not DEEZER.is_dir():
        print(f"== Deezer Europe: skipped, {DEEZER} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build(tmp, data=DEEZER, format="feather")
        t_build = time.perf_counter() - t0
        result = train(tmp, targets=["target"], models=["lr", "sign"], seeds=5)
        print(f"== Deezer Europe, gender (build {t_build:.0f} s, train {time.perf_counter() - t0 - t_build:.0f} s)")
        print(result.table())
        info = result.info["target"]
        print(f"{'model':<8}" + "".join(f"{m:<18}" for m in METRICS) + "fit s / seed")
        for name, summary in result.targets["target"].items():
            cells = "".join(f"{summary[m]['mean']:.4f} ± {summary[m]['std']:.4f}  " for m in METRICS)
            print(f"{name:<8}{cells}{info['fit_seconds'][name]:.1f}")
        for name, summary in result.targets["target"].items():
            print(f"{name} per-seed AUC: {np.round(summary['auc']['values'], 4).tolist()}")
        sign, lr = result.targets["target"]["sign"]["auc"], result.targets["target"]["lr"]["auc"]
        diff = np.array(sign["values"]) - np.array(lr["values"])
        print(f"sign - lr AUC, paired: {diff.mean():+.4f} ± {diff.std():.4f} (spread: sign {sign['std']:.4f}, "
              f"lr {lr['std']:.4f})")
        for line in _choices(Path(tmp), "target", result.seeds):
            print(f"  sign {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sample", action="store_true")
    parser.add_argument("--skip-deezer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"torch {torch.__version__}; torch threads {torch.get_num_threads()}")
    if not args.skip_sample:
        sample()
    if not args.skip_deezer:
        deezer()


if __name__ == "__main__":
    main()
