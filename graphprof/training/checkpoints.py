"""Crash-safe training runs: the staging folder, per-(model, seed) checkpoints, resuming, and the final swap.

A ``train`` run writes each target to ``.partial-train/<target>/`` (:func:`_staging`); every finished (model,
seed) fit leaves a checkpoint there whose ``result.json`` is written last (:func:`_fit_or_resume`), so
``--resume`` continues from the last complete one; only once every seed of every model is done does
:func:`promote` replace ``models/<target>/<model>/``. An interrupted run (Ctrl-C, SIGKILL) therefore leaves the
previous models, metrics and predictions intact and loadable.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from graphprof import workdir
from graphprof.errors import ConfigError
from graphprof.models.calibration import apply_temperature, brier, ece, reliability
from graphprof.runtime import distributed, memory
from graphprof.training.evaluate import scores

log = logging.getLogger("graphprof")


def _staging(root: Path, target, model_classes, run_seeds, epochs, graph_id, resume: bool,
             protocol: str = "transductive", audit: str | None = None) -> Path:
    """The folder this target's run is written to; on ``resume``, an interrupted run with the same settings."""
    staging = Path(root) / workdir.PARTIAL_TRAIN / workdir.folder_name(target.name)
    settings = {"models": list(model_classes), "seeds": run_seeds, "epochs": epochs, "graph_id": graph_id,
                "classes": target.classes, "protocol": protocol, **({"audit": audit} if audit else {})}
    found = workdir.load_json_if_any(staging / workdir.RUN_SETTINGS)
    if found is not None:
        if resume and found == settings:
            log.info("%s: resuming the interrupted run in %s", target.name, staging)
            return staging
        if resume:
            raise ConfigError(f"--resume must continue a run with the same settings. Got an interrupted run with "
                              f"{ {k: found.get(k) for k in ('models', 'seeds', 'epochs')} }; run 'graphprof train' "
                              "without --resume to start over")
        log.warning("%s: discarding an interrupted run in %s (use --resume to continue one)", target.name, staging)
        shutil.rmtree(staging)
    elif resume:
        log.info("%s: nothing to resume; starting a new run", target.name)
    workdir.write_json(staging / workdir.RUN_SETTINGS, settings)
    return staging


def _shared(cls) -> bool:
    """Whether every rank fits this model (data parallel), rather than rank 0 alone."""
    return bool(getattr(cls, "distributed", False)) and distributed.active()


def _fit_or_resume(staging, inputs, target, name, cls, s, parts, epochs, fit_inputs=None, groups=None):
    """Fit one (model, seed), or load it where its checkpoint (``result.json``, written last) exists.

    Data parallel: rank 0 decides whether the checkpoint exists; the other ranks fit with it and get
    ``(None, None)`` (they neither predict nor write)."""
    run = workdir.seed_dir(staging / name, s)
    main = distributed.is_main()
    if _shared(cls):
        done = distributed.on_main(lambda: workdir.load_json_if_any(run / workdir.RUN_RESULT))
    else:
        done = workdir.load_json_if_any(run / workdir.RUN_RESULT)
    if done is not None and not main:
        return None, None
    if done is not None:
        model = cls.load(run)
        proba = model.proba(inputs)
        log.info("%s / %s / seed %d: resumed from checkpoint", target.name, name, s)
        return done, proba
    kwargs = {"epochs": epochs} if epochs is not None and "epochs" in cls().params else {}
    t0 = time.perf_counter()
    memory.trim()  # what the loading and the fits before freed: each fit starts from what is live
    model = cls(seed=s, **kwargs).fit(fit_inputs or inputs, target.y, parts["train"], parts["val"], target.classes)
    if not main:
        return None, None
    memory.trim()  # the fit's working memory (optimiser state, copies of weights): the scoring starts from what is live
    raw = model.proba(inputs)
    model.release_working_files()
    model.calibrate(inputs, target.y, parts["val"], raw=raw)
    proba = apply_temperature(raw, model.temperature)
    test_y = target.y[parts["test"]]
    result = {"test": scores(test_y, proba[parts["test"]]),
              "val": scores(target.y[parts["val"]], proba[parts["val"]]),
              "fit_seconds": time.perf_counter() - t0,
              "extra": {"best_epoch": getattr(model, "best_epoch_", None), "C": getattr(model, "c_", None),
                        "route": getattr(model, "route_", None),
                        "calibration": {"temperature": model.temperature,
                                        "test_uncalibrated": {"ece": ece(test_y, raw[parts["test"]]),
                                                              "brier": brier(test_y, raw[parts["test"]])},
                                        "test_reliability": reliability(test_y, proba[parts["test"]])}}}
    if groups is not None:  # train --audit: the test users' predictions by group
        from graphprof.training.fairness import audit

        test = parts["test"]
        result["audit"] = audit(test_y, proba[test].argmax(axis=1), groups[test], target.classes)
    model.save(run)
    workdir.write_json(run / workdir.RUN_RESULT, result)  # last: the checkpoint is complete
    log.info("%s / %s / seed %d: test macro-F1 %.3f (%.1fs)", target.name, name, s, result["test"]["macro_f1"],
             result["fit_seconds"])
    return result, proba


def promote(root: Path, staging: Path, target_name: str, model_classes) -> None:
    """Every seed of every model is done: now, and only now, replace the models of ``target_name`` with the
    staged ones (their checkpoints dropped), and remove the staging folder."""
    for name in model_classes:
        for run in (staging / name).glob(f"seed_*/{workdir.RUN_RESULT}"):
            run.unlink()
        workdir.replace_dir(staging / name, workdir.model_dir(root, target_name, name))
    shutil.rmtree(staging)
    if not any(staging.parent.iterdir()):
        staging.parent.rmdir()
