"""Every model on every dataset present: accuracy, balanced accuracy, macro-F1, AUC and the calibration of the
probabilities (ECE, Brier), mean ± std over seeds, side by side with the logistic-regression baseline,
reference rows on the same splits, in the first protocol (``lr`` on the dense features alone, without the bag
of items; ``sign`` without its blend with ``lr``; ``sage`` with identity skips and LayerNorm), the model ``train``'s default set picks, and, where they exist, published figures for the same data set.

Protocol: seeded stratified 60/20/20 train/validation/test splits of the labelled users (split k uses seed k),
the same splits for every model; hyper-parameters and early stopping on validation only; metrics on test users.
``transductive``: the whole graph is seen while fitting (test labels hidden); ``inductive``: the test users'
purchases and ties are removed while fitting and added back to predict.

Data sets: the bundled sample (gender, age_band, spend_level); Deezer Europe (FEATHER; gender) and HetRec
Last.fm 2K (no attributes: the target is the Leiden community of the social graph) where ../shared/datasets
holds them.

Run: ``python benchmarks/accuracy.py [--seeds 5] [--only sample,deezer,hetrec]``; appends its tables to
benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from graphprof.communities.stage import detect_communities  # noqa: E402
from graphprof.graph.build import build  # noqa: E402
from graphprof.models import MODELS  # noqa: E402
from graphprof.training import DEFAULT_MODELS  # noqa: E402
from graphprof.training.evaluate import pick_model  # noqa: E402
from graphprof.training.train import train  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"

# Published figures for the same data, with their protocol (our splits are 60/20/20 over 5 seeds).
PUBLISHED = {
    ("deezer", "target"): [
        "Lim, Li, Hohne & Lim, *New Benchmarks for Learning on Non-Homophilous Graphs* (2021, arXiv:2104.01404), "
        "deezer-europe gender, accuracy, 50/25/25 random splits, 5 runs: MLP (2 layers, on the liked-artist "
        "features) 66.55 ± 0.72; GCN+JK 60.99 ± 0.14; LINK (adjacency only) 57.71 ± 0.36; label propagation "
        "(2-hop) 56.96 ± 0.26. Their splits give the models 50% of users for training against our 60%, and they "
        "report accuracy only.",
        "A plain logistic regression on the TF-IDF bag of liked artists, on these splits: `python "
        "benchmarks/accuracy.py --only deezer --bag-lr` (the reference table below); graphprof's `lr` reads that "
        "bag beside its dense features.",
    ],
}

DATASETS = {
    "sample": dict(data=ROOT / "datasets" / "sample", format="generic",
                   targets=["gender", "age_band", "spend_level"]),
    "deezer": dict(data=SHARED / "deezer_europe", format="feather", targets=["target"]),
    "hetrec": dict(data=SHARED / "hetrec_lastfm_2k", format="hetrec-lastfm", targets=["community"]),
}


def fmt(s: dict) -> str:
    return "n/a" if s["mean"] is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


#: reference rows: a model with other settings, fitted and calibrated on the same splits as train's
#: reference rows: (model, label, parameters), each beside its model's row where that model is measured
REFERENCES = [("lr", "lr, dense features only (reference)", {"bag": False}),
              ("sign", "sign without the blend with lr (reference)", {"blend": False}),
              ("sage", "sage with identity skips and LayerNorm (reference)", {"residual": True, "norm": True}),
              ("sage", "sage with width and depth searched, {64, 128} x {1, 2} (reference)",
               {"hidden": [64, 128], "layers": [1, 2]})]


def reference(work: Path, targets: list[str], seeds: int, protocol: str, model: str,
              params: dict) -> dict[str, tuple[dict, float]]:
    """``model`` with a reference row's ``params``, fitted and calibrated on the same splits as ``train``'s:
    per target, the summary of its test metrics and the mean seconds of a fit (with its calibration)."""
    from graphprof import workdir
    from graphprof.training.evaluate import scores, split, summarize
    from graphprof.training.train import _inductive_inputs, _load

    graph_id = workdir.require_built(work).get("graph_id")
    inputs, _, target_objs, _ = _load(work, graph_id, targets, cache=False)
    out = {}
    for target in target_objs:
        per_seed, secs = [], []
        for s in range(seeds):
            parts = split(target, s)
            fit_on = _inductive_inputs(inputs, parts["test"]) if protocol == "inductive" else inputs
            t0 = time.perf_counter()
            fitted = MODELS[model](seed=s, **params).fit(fit_on, target.y, parts["train"], parts["val"],
                                                         target.classes)
            fitted.calibrate(inputs, target.y, parts["val"])
            secs.append(time.perf_counter() - t0)
            per_seed.append(scores(target.y[parts["test"]], fitted.proba(inputs)[parts["test"]]))
        out[target.name] = (summarize(per_seed), sum(secs) / len(secs))
    return out


def row(model: str, summary: dict, *rest: str) -> str:
    cells = [fmt(summary[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece", "brier")]
    return "| " + " | ".join([model, *cells, *rest]) + " |"


def run(name: str, spec: dict, models: list[str], seeds: int, protocols: list[str], epochs: int | None,
        lines: list[str]) -> None:
    if not Path(spec["data"]).is_dir():
        print(f"skipping {name}: {spec['data']} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        t0 = time.perf_counter()
        build(work, data=spec["data"], format=spec["format"])
        if "community" in spec["targets"]:
            detect_communities(work, method="leiden")
        print(f"{name}: built in {time.perf_counter() - t0:.1f}s")
        for protocol in protocols:
            t0 = time.perf_counter()
            result = train(work, targets=spec["targets"], models=models, seeds=seeds, epochs=epochs,
                           protocol=protocol)
            secs = time.perf_counter() - t0
            print(result.table())
            refs = ([(label, reference(work, list(result.targets), seeds, protocol, m, params))
                     for m, label, params in REFERENCES if m in models]
                    if protocol == protocols[0] else [])  # the reference rows once per data set
            for target, per_model in result.targets.items():
                info = result.info[target]
                default = [m for m in DEFAULT_MODELS if m in per_model]
                default_pick = pick_model({m: info["val_macro_f1"][m] for m in default}) if default else None
                lines += ["", f"### {name} / {target} / {protocol}", "",
                          f"{info['labelled']} labelled users, {len(info['classes'])} classes, majority-class rate "
                          f"{info['majority_rate']:.3f}; {seeds} seeds; picked on validation among the models "
                          f"below: **{info['picked']}**; among the default set ({', '.join(default)}): "
                          f"**{default_pick}**; train stage {secs:.0f} s for all models and seeds.", "",
                          "| model | accuracy | bal. accuracy | macro-F1 | AUC | ECE | Brier | val macro-F1 | "
                          "vs lr (macro-F1, paired) | fit s |",
                          "|---|---|---|---|---|---|---|---|---|---:|"]
                for model, summary in per_model.items():
                    vs = info["vs_baseline"].get(model)
                    verdict = "baseline" if vs is None else (
                        f"{vs['macro_f1_diff']:+.3f} ({'beyond' if abs(vs['macro_f1_diff']) > vs['spread'] else 'within'}"
                        f" spread {vs['spread']:.3f})")
                    lines.append(row(model, summary, fmt(info["val_macro_f1"][model]), verdict,
                                     f"{info['fit_seconds'][model]:.1f}"))
                for label, per_target in refs:
                    summary, fit_s = per_target[target]
                    lines.append(row(label, summary, "", "", f"{fit_s:.1f}"))
                for ref in PUBLISHED.get((name, target), []) if protocol == protocols[0] else []:
                    lines.append("")
                    lines.append(f"Published: {ref}")


def bag_lr_reference(name: str, spec: dict, seeds: int, lines: list[str]) -> None:
    """The issue's reference point, measured rather than quoted: a plain logistic regression on the raw bag of
    items (``log(1 + count)`` TF-IDF, rows L2-normalised), ``C`` chosen on validation macro-F1, on graphprof's
    own splits (transductive). Not a graphprof model: a yardstick for the item-identity signal alone."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from graphprof.graph import load_graph
    from graphprof.graph.build import load_tables
    from graphprof.training.evaluate import make_target, scores, split, summarize

    if not Path(spec["data"]).is_dir():
        print(f"skipping {name}: {spec['data']} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        build(work, data=spec["data"], format=spec["format"])
        graph = load_graph(work)
        bag = TfidfTransformer().fit_transform(graph.purchase_matrix("count").log1p()).tocsr()
        users = load_tables(work, "users")
        for target_name in spec["targets"]:
            target = make_target(users, graph.user_ids, target_name)
            per_seed, picked_c, secs = [], [], []
            for s in range(seeds):
                parts = split(target, s)
                t0 = time.perf_counter()
                best = None
                for c in (0.1, 0.3, 1.0, 3.0, 10.0):
                    m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
                    m.fit(bag[parts["train"]], target.y[parts["train"]])
                    f1 = f1_score(target.y[parts["val"]], m.predict(bag[parts["val"]]), average="macro")
                    if best is None or f1 > best[0]:
                        best = (f1, c, m)
                secs.append(time.perf_counter() - t0)
                picked_c.append(best[1])
                per_seed.append(scores(target.y[parts["test"]], best[2].predict_proba(bag[parts["test"]])))
            summ = summarize(per_seed)
            lines += ["", f"### {name} / {target_name}: reference, logistic regression on the raw bag of items", "",
                      f"Same splits as above (seeds 0..{seeds - 1}), transductive; C on validation (picked: "
                      f"{sorted(set(picked_c))}); {np.mean(secs):.1f} s per seed (5 C values).", "",
                      "| reference | accuracy | macro-F1 | AUC |", "|---|---|---|---|",
                      f"| LR on the TF-IDF bag | {fmt(summ['accuracy'])} | {fmt(summ['macro_f1'])} | "
                      f"{fmt(summ['auc'])} |"]
            print(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", default="sample,deezer,hetrec", help="comma-separated data sets")
    ap.add_argument("--models", default=",".join(MODELS), help=f"default: every registered model ({', '.join(MODELS)})")
    ap.add_argument("--protocols", default="transductive,inductive")
    ap.add_argument("--epochs", type=int, default=None, help="cap on GNN epochs (default: the models' own)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--bag-lr", action="store_true",
                    help="only the reference: logistic regression on the raw bag of items (labelled data sets)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    cmd = "python benchmarks/accuracy.py " + " ".join(sys.argv[1:])
    lines = ["", "## Accuracy: every model on every data set (`benchmarks/accuracy.py`)", "",
             f"Command: `{cmd.strip()}`. Machine: {machine()}. "
             "Stratified 60/20/20 splits, the same for every model; choices on validation only; test metrics."]
    for name in args.only.split(","):
        if args.bag_lr:
            if "community" not in DATASETS[name]["targets"]:
                bag_lr_reference(name, DATASETS[name], args.seeds, lines)
            continue
        run(name, DATASETS[name], models, args.seeds, args.protocols.split(","), args.epochs, lines)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("appended to benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
