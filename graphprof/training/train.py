"""The ``train`` stage: targets x models x seeds on the same splits -> metrics, models and profiles.

For every target and seed, one stratified split of the labelled users is made and every model is fitted on
it, so the comparison is paired. Metrics are measured on the test users only; hyper-parameters and early
stopping use the validation users only. The model picked per target is the best on validation macro-F1, except
that it must beat ``lr``'s by more than the seeds' spread (:func:`graphprof.training.evaluate.pick_model`).
Staging, per-fit checkpoints and ``--resume`` are in :mod:`graphprof.training.checkpoints`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ConfigError
from graphprof.features import load_features
from graphprof.graph import load_graph
from graphprof.graph.build import load_tables
from graphprof.models import ModelInput, get_model
from graphprof.runtime import distributed, progress
from graphprof.training import DEFAULT_MODELS, PROTOCOLS
from graphprof.training.checkpoints import _fit_or_resume, _shared, _staging, promote
from graphprof.training.evaluate import (
    METRICS,
    candidate_targets,
    make_target,
    pick_model,
    ranked_target,
    split,
    summarize,
)
from graphprof.workdir.cache import LabelFreeCache

log = logging.getLogger("graphprof")
#: ``--target community`` (when the users table has no such column): the detected communities, from
#: ``communities/leiden/`` or the only method run (``graphprof communities``).
COMMUNITY_TARGET = "community"


@dataclass
class TrainResult:
    """Metrics per target and model, plus what a reader needs to trust them.

    Attributes:
        targets: ``{target: {model: {metric: {"mean", "std", "values"}}}}``, the metrics of
            :data:`~graphprof.training.evaluate.METRICS` (accuracy, balanced accuracy, macro-F1, AUC, expected
            calibration error, Brier score) on test users, probabilities calibrated on validation.
        info: per target: classes, dropped classes, labelled users, majority-class rate, split sizes, the
            validation macro-F1 of each model, the picked model, each model's paired macro-F1 difference to
            the ``lr`` baseline (``vs_baseline``), fit seconds, and ``routes`` (``sage`` / ``gat``: ``full`` batch
            or neighbour-sampled ``minibatch``, picked by graph size).
    """

    targets: dict[str, dict[str, dict]] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"targets": self.targets, "target_info": self.info, "seeds": self.seeds}

    def table(self) -> str:
        """The side-by-side table (mean ± std over seeds, test users), as one string."""
        return "\n".join(self.summary_lines())

    def summary_lines(self) -> list[str]:
        """The lines of the side-by-side table: per target and model, test metrics (mean ± std over seeds) and
        validation macro-F1, then what to read them against (majority rate, split sizes, the pick, vs ``lr``)."""
        head = f"{'target':<14}{'model':<8}" + "".join(f"{COLUMN[m]:<16}" for m in METRICS) + "val macro_f1"
        lines = [head, "-" * len(head)]
        for target, models in self.targets.items():
            info = self.info[target]
            below = False
            for j, (name, summary) in enumerate(models.items()):
                cells = ""
                for m in METRICS:
                    mark = ""
                    if m == "accuracy" and (summary[m].get("mean") or 0.0) < info["majority_rate"]:
                        mark, below = " !", True
                    cells += f"{_fmt(summary.get(m)) + mark:<16}"
                val = _fmt(info["val_macro_f1"][name])
                pick = "  <- picked" if info["picked"] == name else ""
                lines.append(f"{target if j == 0 else '':<14}{name:<8}{cells}{val}{pick}")
            if below:
                lines.append(f"{'':<14}! accuracy below the majority-class rate: always answering the largest "
                             "class scores higher (read balanced accuracy and macro-F1)")
            note = (f"{'':<14}majority-class rate {info['majority_rate']:.3f}; {info['labelled']} labelled users, "
                    f"{info['split_sizes']['train']}/{info['split_sizes']['val']}/{info['split_sizes']['test']} "
                    f"train/val/test per seed")
            if info["dropped_classes"] and "labels_from" in info:  # communities: often many, say how many
                dropped = info["dropped_classes"]
                note += f"; dropped {len(dropped)} communities ({sum(dropped.values())} users)"
            elif info["dropped_classes"]:
                note += f"; dropped small classes {info['dropped_classes']}"
            lines.append(note)
            best_val = max(info["val_macro_f1"], key=lambda m: info["val_macro_f1"][m]["mean"] or 0.0)
            if info["picked"] != best_val:
                lines.append(f"{'':<14}validation: {best_val} not better than {info['picked']} beyond the seeds' "
                             f"spread, so {info['picked']} is kept")
            if info.get("routes"):  # picked by graph size (sage / gat): say which
                lines.append(f"{'':<14}route: " + ", ".join(f"{m} {r}" for m, r in info["routes"].items()))
            for m, v in info["vs_baseline"].items():
                d, spread = v["macro_f1_diff"], v["spread"]
                verdict = "better than" if d > spread else "worse than" if d < -spread else "within"
                lines.append(f"{'':<14}{m} vs lr: macro-F1 {d:+.3f}, {verdict} the seeds' spread ({spread:.3f})")
            if info.get("audit"):
                from graphprof.training.fairness import audit_lines

                lines.extend(f"{'':<14}{line}" for line in audit_lines(info["audit"], info["picked"]))
        protocol = next(iter(self.info.values()), {}).get("protocol", "transductive")
        seen = ("unseen while fitting: inductive" if protocol == "inductive"
                else "in the graph while fitting, labels hidden: transductive")
        lines.append(f"mean ± std over {len(self.seeds)} seeds {self.seeds}; metrics on test users ({seen})")
        return lines


#: the table's column headers
COLUMN = {"accuracy": "accuracy", "balanced_accuracy": "bal. accuracy", "macro_f1": "macro_f1", "auc": "auc",
          "ece": "ece", "brier": "brier"}


def _fmt(s: dict | None) -> str:
    return "n/a" if not s or s.get("mean") is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


def resolve_targets(users: pd.DataFrame | None, targets: list[str] | None) -> list[str]:
    if targets:
        return list(dict.fromkeys(targets))
    found = candidate_targets(users)
    if not found:
        cols = [c for c in (users.columns if users is not None else []) if c not in ("user_id", "__row__")]
        raise ConfigError("train: needs a target. Got no categorical column with enough labels in the users table "
                          f"(columns: {', '.join(cols) or 'no users table'}); pass --target COLUMN")
    return found


def train(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, targets: list[str] | None = None,
          models: list[str] | tuple[str, ...] = DEFAULT_MODELS, seeds: int = 3, epochs: int | None = None,
          seed: int = 0, resume: bool = False, protocol: str = "transductive", cache: bool = True,
          audit: str | None = None, block_rows: int | None = None) -> TrainResult:
    """Train and compare ``models`` on each target over ``seeds`` paired splits; write everything under
    ``models/<target>/<model>/``.

    Args:
        targets: users-table columns; default: every categorical column with enough labels. ``"community"``
            (where the users table has no such column) predicts the detected communities (run
            ``graphprof communities`` first): the largest communities of 10+ users, at most 50, are the classes.
        seeds: number of splits; split ``k`` uses seed ``seed + k``.
        epochs: maximum epochs for the GNN models (default: the model's own).
        protocol: ``transductive`` (the whole graph is seen while fitting; test labels are hidden) or
            ``inductive`` (the test users' purchases and ties are removed while fitting, and their features
            recomputed without them in the same feature space; they are added back to predict: the
            cold-start profile).
        resume: continue an interrupted run with the same settings: every (model, seed) fit that finished is
            kept (its checkpoint is in ``.partial-train/``), the rest is fitted. Without it, a leftover
            interrupted run is discarded.
        audit: a users-table column (gender, an age band) to audit every model's test predictions by
            (:mod:`graphprof.training.fairness`): per group support, accuracy, selection rate, true- and
            false-positive rates, and the demographic-parity and equalized-odds differences; in the table, the
            JSON (``target_info[t]["audit"]``, the picked model's) and each model's ``metrics.json``.
        cache: reuse (and write) the label-free arrays of this graph under ``cache/``
            (:mod:`graphprof.workdir.cache`): computed by the first fit that needs them, memory-mapped by every
            later one (other seeds, targets, runs). The numbers are the same without it.
        block_rows: users per row block of the models that work a block at a time (``sign``: past this many
            users its blocks are written to memory-mapped files under ``.scratch/`` and read a mini-batch at a
            time, so its memory follows this setting, not the number of users; default
            :data:`graphprof.models.sign.store.DEFAULT_BLOCK_ROWS`). The numbers are the same either way (to
            float rounding in the scores).

    Crash safety: a run is written to ``.partial-train/<target>/`` and each model's folder replaces
    ``models/<target>/<model>/`` only once all its seeds are done, so an interrupted run (Ctrl-C, SIGKILL)
    leaves the previous model, metrics and predictions intact and loadable.

    Data parallel: inside a ``torchrun`` worker (``graphprof train --nproc N``, or ``torchrun`` run by hand on
    one or several machines), every rank reads the same work-directory files; models that can train data
    parallel (``sign``) shard each mini-batch across the ranks and all-reduce the gradients; the others
    (``lr``, ``sage``, ``gat``) are fitted by rank 0 alone. Rank 0 alone holds the lock and writes; every rank
    returns the same result.

    Raises:
        ArtifactError: no graph in the work directory (run ``build-graph`` first), or ``community`` asked for
            and no (current) communities found (run ``communities`` first).
        ConfigError: unknown model or target, or ``seeds`` < 1, or an ``audit`` column the users table lacks or
            that is a target of the run.
    """
    root = Path(workdir_path)
    model_classes = check_args(models, seeds, epochs, protocol)
    if block_rows is not None and block_rows < 1:
        raise ConfigError(f"--block-rows must be >= 1. Got {block_rows} instead")
    with distributed.init(), contextlib.ExitStack() as held:
        main, world = distributed.is_main(), distributed.world_size()

        def _open() -> dict:  # rank 0: recover, check and lock the work directory; the others wait for it
            manifest = workdir.require_built(root)
            held.enter_context(workdir.locked(root, "train"))
            shutil.rmtree(root / workdir.SCRATCH_DIR, ignore_errors=True)  # a killed run's working files
            return manifest

        manifest = distributed.on_main(_open)

        # every rank reads the same files (on several machines: shared storage)
        inputs, target_names, target_objs, sources = distributed.everywhere(
            lambda: _load(root, manifest.get("graph_id"), targets, cache, block_rows))
        held.callback(_clear_scratch, inputs.scratch)
        groups = _audit_groups(root, inputs, audit, target_names) if audit is not None else None
        run_seeds = [seed + k for k in range(seeds)]
        result = TrainResult(seeds=run_seeds)
        t_start = time.perf_counter()
        for target in target_objs:
            summaries, info = _train_target(root, inputs, target, model_classes, run_seeds, epochs,
                                            manifest.get("graph_id"), resume, protocol, (audit, groups))
            if not main:
                continue
            result.targets[target.name], result.info[target.name] = summaries, info
            if target.name in sources:
                result.info[target.name]["labels_from"] = sources[target.name]
        if main:
            _clear_needs_retraining(root, [f"{t}/{m}" for t in result.targets for m in model_classes])
            from graphprof.updating.drift import write_reference  # what later updates measure drift against

            write_reference(root, inputs.features.matrix, list(inputs.features.frame.columns))
            workdir.update_manifest(root, stages={"train": {"seconds": time.perf_counter() - t_start,
                                                            "targets": target_names, "models": list(models),
                                                            "seeds": run_seeds, "world_size": world}})
        if world > 1:  # every rank returns rank 0's result, once its artifacts are all written
            doc = distributed.broadcast_json(result.to_json() if main else None)
            if not main:
                result = TrainResult(targets=doc["targets"], info=doc["target_info"], seeds=doc["seeds"])
    return result


def _load(root: Path, graph_id: str | None, targets: list[str] | None, cache: bool, block_rows: int | None = None):
    """The models' input (with the graph's label-free cache where ``cache``) and the targets to train."""
    store = LabelFreeCache(root, graph_id) if cache and graph_id else None
    graph = load_graph(root)
    # every rank its own scratch folder (ranks may share the work directory's storage)
    scratch = root / workdir.SCRATCH_DIR / f"rank{distributed.rank()}"
    features = load_features(root)
    if len(features.user_ids) == len(graph.user_ids) and np.array_equal(features.user_ids, graph.user_ids):
        features.user_ids = graph.user_ids  # one copy of the ids: 10M of them as strings are most of a GiB
    inputs = ModelInput(graph=graph, features=features, cache=store, block_rows=block_rows, scratch=scratch)
    # the target columns only, where they are named (every column is read where they are to be found)
    users = load_tables(root, "users", columns=None if targets is None else ["user_id", *targets])
    if users is not None and targets and set(targets) - set(users.columns) - {COMMUNITY_TARGET}:
        users = load_tables(root, "users")  # a target it lacks: the error names every column
    target_names = resolve_targets(users, targets)
    sources: dict = {}
    target_objs = [_make_target(root, users, graph.user_ids, t, graph_id, sources) for t in target_names]
    return inputs, target_names, target_objs, sources


def _clear_scratch(scratch: Path) -> None:
    """Remove this rank's scratch folder, and the work directory's ``.scratch/`` once it is empty."""
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()


def check_args(models, seeds: int, epochs: int | None, protocol: str) -> dict:
    """The model classes by name, once the arguments are checked (before any work: ``train --nproc`` checks
    them before it starts the processes).

    Raises:
        ConfigError: unknown protocol or model, no model, ``seeds`` < 1 or ``epochs`` < 1.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}. Got {protocol!r} instead")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1. Got {seeds} instead")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1. Got {epochs} instead")
    model_classes = {m: get_model(m) for m in models}
    if not model_classes:
        raise ConfigError("--models must name at least one model. Got none")
    return model_classes


def preflight(workdir_path: str | Path, models, seeds: int, epochs: int | None, protocol: str) -> None:
    """What ``train --nproc N`` checks before it starts N processes, so that a user mistake is one message
    from one process: the arguments, a built and current work directory, and no other run holding it."""
    check_args(models, seeds, epochs, protocol)
    root = Path(workdir_path)
    workdir.require_built(root)
    with workdir.locked(root, "train"):
        pass


def _clear_needs_retraining(root: Path, retrained: list[str]) -> None:
    """Models retrained after a ``graphprof forget`` are fitted without the erased users: unmark them."""
    manifest = workdir.load_manifest(root)
    marked = manifest.get(workdir.NEEDS_RETRAINING)
    if marked:
        manifest[workdir.NEEDS_RETRAINING] = [m for m in marked if m not in retrained]
        workdir.write_json(root / workdir.MANIFEST, manifest)


def _make_target(root, users, user_ids, name, graph_id, sources):
    """A users-table column, or for ``community`` (absent from the users table) the detected communities:
    classes are communities of MIN_CLASS_SIZE+ users, at most MAX_CLASSES of the largest; the rest are
    dropped and reported. ``sources[name]`` records where such labels came from."""
    if name == COMMUNITY_TARGET and (users is None or name not in users.columns):
        from graphprof.communities.stage import load_assignments

        assignments, method = load_assignments(root, graph_id)
        labels = pd.Series(assignments["community"].to_numpy(np.int64),
                           index=assignments["user_id"].astype(str).to_numpy(dtype=object))
        target = ranked_target(name, labels, user_ids)
        sources[name] = f"{workdir.COMMUNITIES_DIR}/{method}/{workdir.COMMUNITY_ASSIGNMENTS}"
        log.info("target community: %d communities from %s, %d kept as classes, %d dropped", labels.nunique(),
                 sources[name], len(target.classes), len(target.dropped))
        return target
    return make_target(users, user_ids, name)


def _inductive_inputs(inputs: ModelInput, test_idx: np.ndarray) -> ModelInput:
    """The graph without the test users' edges (the users stay, isolated, so indices line up), with features
    recomputed on it in the saved feature space: what the models may see when the test users are unseen."""
    from graphprof.features import build_features
    from graphprof.graph import drop_user_edges

    graph = drop_user_edges(inputs.graph, test_idx)
    features = build_features(graph, seed=0, state=inputs.features.state)
    features.items = inputs.features.items  # item features: label-free and kept as the models will see them
    return ModelInput(graph=graph, features=features)


def _audit_groups(root: Path, inputs: ModelInput, column: str, target_names: list[str]) -> np.ndarray:
    """The ``--audit`` column aligned to the graph's users (None where unknown), once it is checked."""
    from graphprof.training.fairness import group_labels

    users = load_tables(root, "users")
    present = [c for c in (users.columns if users is not None else []) if c != "user_id"]
    if column not in present:
        raise ConfigError(f"--audit must be a users-table column ({', '.join(present) or 'no users table'}). "
                          f"Got {column!r} instead")
    if column in target_names:
        raise ConfigError(f"--audit must not be a target of the same run: auditing {column!r} by itself says "
                          f"nothing. Got --audit {column} with targets {', '.join(target_names)}")
    return group_labels(users, inputs.graph.user_ids, column)


def _train_target(root, inputs, target, model_classes, run_seeds, epochs, graph_id, resume=False,
                  protocol="transductive", audit=(None, None)):
    column, groups = audit
    staging = Path(distributed.on_main(
        lambda: _staging(root, target, model_classes, run_seeds, epochs, graph_id, resume, protocol, column)))
    runs, first_split, first_proba = _fit_seeds(staging, inputs, target, model_classes, run_seeds, epochs,
                                                protocol, groups)
    if not distributed.is_main():
        return None, None
    per_seed = {m: [r["test"] for r in runs[m]] for m in model_classes}
    val = {m: [r["val"] for r in runs[m]] for m in model_classes}
    fit_seconds = {m: [r["fit_seconds"] for r in runs[m]] for m in model_classes}
    extra = {m: [r["extra"] for r in runs[m]] for m in model_classes}
    summaries = {m: summarize(per_seed[m]) for m in model_classes}
    val_f1 = {m: summarize(val[m])["macro_f1"] for m in model_classes}
    picked = pick_model(val_f1)
    baseline = "lr" if "lr" in model_classes else None
    versus = {}
    for m in model_classes:
        if baseline and m != baseline:
            diff = np.array([a["macro_f1"] - b["macro_f1"] for a, b in zip(per_seed[m], per_seed[baseline])])
            spread = max(summaries[m]["macro_f1"]["std"], summaries[baseline]["macro_f1"]["std"])
            versus[m] = {"macro_f1_diff": float(diff.mean()), "paired_diff_std": float(diff.std()),
                         "spread": spread, "beats_baseline_beyond_spread": bool(diff.mean() > spread)}
    info = {"protocol": protocol, "classes": target.classes, "dropped_classes": target.dropped, "labelled": int(len(target.labelled)),
            "majority_rate": target.majority_rate(),
            "split_sizes": {k: int(len(v)) for k, v in first_split.items()},
            "val_macro_f1": val_f1, "picked": picked, "vs_baseline": versus,
            "fit_seconds": {m: float(np.mean(v)) for m, v in fit_seconds.items()},
            "routes": {m: e[0].get("route") for m, e in extra.items() if e and e[0].get("route")}}
    audits = {}
    if column is not None:
        from graphprof.training.fairness import summarize_audit

        audits = {m: summarize_audit(column, [r["audit"] for r in runs[m]]) for m in model_classes}
        info["audit"] = {**audits[picked], "model": picked}
    for name in model_classes:
        out = staging / name
        workdir.write_json(out / workdir.MODEL_METRICS, {"target": target.name, "model": name, "seeds": run_seeds,
                                                  "test": summaries[name], "val_macro_f1": val_f1[name],
                                                  "per_seed_test": per_seed[name], "per_seed_val": val[name],
                                                  "runs": extra[name],
                                                  **({"audit": audits[name]} if name in audits else {})})
        # timings apart, so metrics.json is byte-identical for the same inputs and seed
        workdir.write_json(out / workdir.MODEL_TIMINGS, {"fit_seconds": fit_seconds[name]})
        workdir.write_json(out / workdir.MODEL_CONFIG, {"target": target.name, "model": name, "classes": target.classes,
                                                 "dropped_classes": target.dropped, "seeds": run_seeds,
                                                 "epochs": epochs, "graph_id": graph_id,
                                                 "world_size": distributed.world_size(),
                                                 "torch_threads": _torch_threads(),
                                                 "params": model_classes[name](seed=run_seeds[0]).params,
                                                 "predictions_from_seed": run_seeds[0]})
        workdir.write_parquet(out / workdir.MODEL_PREDICTIONS,
                              _predictions(inputs.graph.user_ids, target, first_split, first_proba[name]))
    promote(root, staging, target.name, model_classes)
    return summaries, info


def _torch_threads() -> int | None:
    """torch's thread count in this run (a model's float sums can depend on it), None where torch was never
    imported (``lr`` alone)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def _fit_seeds(staging, inputs, target, model_classes, run_seeds, epochs, protocol, groups=None):
    """Every (model, seed) fit of one target (or resumed from its checkpoint), seed by seed on that seed's
    split, with one progress bar over them. Returns ``({model: [the fit's result.json, per seed]}, the first
    seed's split, {model: the first seed's probabilities})``; on the other ranks of a data-parallel run the
    lists stay empty (rank 0 alone predicts and writes)."""
    runs = {m: [] for m in model_classes}
    first_split, first_proba = None, {}
    main = distributed.is_main()
    with progress.bar(total=len(run_seeds) * len(model_classes), desc=target.name, unit="fit") as fits:
        for k, s in enumerate(run_seeds):
            parts = split(target, s)
            if k == 0:
                first_split = parts
            mine = {n: c for n, c in model_classes.items() if main or _shared(c)}  # the others: rank 0 alone
            fit_inputs = (_inductive_inputs(inputs, parts["test"]) if protocol == "inductive" and mine else None)
            for name, cls in mine.items():
                fits.set_postfix_str(f"{name} seed {s}")
                done, proba = _fit_or_resume(staging, inputs, target, name, cls, s, parts, epochs, fit_inputs,
                                             groups)
                fits.update()
                if not main:
                    continue
                runs[name].append(done)
                if k == 0:
                    first_proba[name] = proba
    return runs, first_split, first_proba


def _predictions(user_ids, target, parts, proba) -> pd.DataFrame:
    """The profile: predicted class and probabilities for every user, with the known label and the split of
    the first seed (``unlabelled`` users were never seen with a label)."""
    split_col = np.full(len(user_ids), "unlabelled", dtype=object)
    for name, idx in parts.items():
        split_col[idx] = name
    classes = np.array(target.classes, dtype=object)
    label = np.where(target.y >= 0, classes[np.maximum(target.y, 0)], None)
    df = pd.DataFrame({"user_id": pd.Series(user_ids, dtype="string"), "label": pd.Series(label, dtype="string"),
                       "split": pd.Series(split_col, dtype="string"),
                       "predicted": pd.Series(classes[proba.argmax(axis=1)], dtype="string")})
    for j, c in enumerate(target.classes):
        df[f"proba_{c}"] = proba[:, j]
    return df
