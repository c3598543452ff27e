"""The report's sections on trained models: metrics per target, confusion matrices and training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.prediction.predict import picked_model
from graphprof.reporting.html import esc, figure, html_table, mean_std, plot_text, png_img

SPLITS = ("train", "val", "test")
MAX_CM_ANNOTATED = 12     # confusion matrices with more classes are shown without per-cell numbers


def target_summaries(root: Path, manifest: dict) -> list[dict]:
    """Per trained target: its models' metrics.json and config.json, the picked model, its predictions."""
    base = root / workdir.MODELS_DIR
    if not base.is_dir():
        return []
    train = manifest.get("stages", {}).get("train", {})
    t_order, m_order = train.get("targets", []), ["lr", *[m for m in train.get("models", []) if m != "lr"]]
    folders = {workdir.target_name(d): d for d in base.iterdir()
               if d.is_dir() and not d.name.startswith(("_", "."))}
    names = sorted(folders, key=lambda t: (t_order.index(t) if t in t_order else len(t_order), t))
    found = []
    for name in names:
        hint = f"run 'graphprof train --target {name}' again"
        models = {}
        dirs = sorted((d for d in folders[name].iterdir() if (d / workdir.MODEL_METRICS).is_file()),
                      key=lambda d: (m_order.index(d.name) if d.name in m_order else len(m_order), d.name))
        for d in dirs:
            model_dir = workdir.model_dir(root, name, d.name)
            models[d.name] = {"metrics": workdir.read_json(model_dir / workdir.MODEL_METRICS, missing=hint),
                              "config": workdir.read_json(model_dir / workdir.MODEL_CONFIG, missing=hint)}
        if not models:
            continue
        picked = picked_model(root, name)  # the same choice predict makes
        pred = workdir.read_parquet(workdir.model_dir(root, name, picked) / workdir.MODEL_PREDICTIONS, missing=hint)
        found.append({"name": name, "models": models, "picked": picked, "pred": pred})
    return found


def _dropped(dropped: dict) -> str:
    if len(dropped) > 5:  # e.g. the many small communities of --target community
        return f"; dropped {len(dropped)} small classes ({sum(dropped.values()):,} users)"
    return f"; dropped small classes: {esc(', '.join(f'{k} ({v})' for k, v in dropped.items()))}" if dropped else ""


def metrics_html(t: dict, graph_id: str | None, updated_from: dict | None = None) -> str:
    """``updated_from``: each graph id an ``update`` moved on from, and how many batches were applied since."""
    models, pred = t["models"], t["pred"]
    labelled = pred[pred["split"].isin(SPLITS)]
    counts = labelled["label"].value_counts()
    sizes = labelled["split"].value_counts()
    config = models[t["picked"]]["config"]
    majority = counts.max() / counts.sum() if len(counts) else float("nan")
    rows, below = [], False
    for m, a in models.items():
        test = a["metrics"].get("test", {})
        acc = mean_std(test.get("accuracy"))
        if ((test.get("accuracy") or {}).get("mean") or 0.0) < majority:
            acc, below = acc + " !", True
        rows.append([m, acc, *(mean_std(test.get(k)) for k in ("balanced_accuracy", "macro_f1", "auc", "ece", "brier")),
                     mean_std(a["metrics"].get("val_macro_f1")), ", ".join(map(str, a["metrics"].get("seeds", []))),
                     "picked" if m == t["picked"] else ""])
    body = html_table(["model", "accuracy", "balanced accuracy", "macro-F1", "AUC", "ECE", "Brier", "val macro-F1",
                       "seeds", ""], rows)
    if below:
        body += ("<p class=warn>! accuracy below the majority-class rate: always answering the largest class scores "
                 "higher; read balanced accuracy and macro-F1.</p>")
    body += (f"<p>Majority-class rate {majority:.3f}; {len(labelled):,} labelled users, "
             f"{'/'.join(str(int(sizes.get(s, 0))) for s in SPLITS)} train/val/test (split of seed "
             f"{esc(config.get('predictions_from_seed'))}); classes: {esc(', '.join(map(str, config.get('classes', []))))}"
             + _dropped(config.get("dropped_classes") or {})
             + ". The picked model has the best validation macro-F1; metrics are on test users, mean ± std over "
               "seeds. Probabilities are calibrated on the validation users (temperature scaling); ECE is the "
               "expected calibration error of the top class over 15 bins, Brier the mean squared error of the "
               "probabilities (lower is better for both).</p>")
    base = models.get("lr", {}).get("metrics")
    for m, a in models.items():
        other = a["metrics"]
        if m == "lr" or base is None or other.get("seeds") != base.get("seeds"):
            continue
        diff = np.mean([x["macro_f1"] - y["macro_f1"] for x, y in zip(other["per_seed_test"], base["per_seed_test"])])
        spread = max((other["test"]["macro_f1"].get("std") or 0.0), (base["test"]["macro_f1"].get("std") or 0.0))
        verdict = "better than" if diff > spread else "worse than" if diff < -spread else "within"
        body += f"<p>{esc(m)} vs lr: macro-F1 {diff:+.3f}, {verdict} the seeds' spread ({spread:.3f}).</p>"
    trained_on = {a["config"].get("graph_id") for a in models.values()} - {None, graph_id}
    since = [updated_from[g] for g in trained_on if g in (updated_from or {})]
    if trained_on and len(since) == len(trained_on):
        body += (f"<p class=note>Trained before {max(since)} update(s): <code>graphprof update</code> re-scored the "
                 "users whose inputs changed with these models; <code>graphprof train</code> refits them on "
                 "everything.</p>")
    elif trained_on:
        body += "<p class=warn>Trained on an earlier graph: run <code>graphprof train</code> again.</p>"
    return body


def confusion_html(t: dict) -> str:
    classes = [str(c) for c in t["models"][t["picked"]]["config"].get("classes", [])]
    test = t["pred"][t["pred"]["split"] == "test"]
    index = {c: j for j, c in enumerate(classes)}
    true = test["label"].astype(str).map(index)
    guess = test["predicted"].astype(str).map(index)
    ok = true.notna() & guess.notna()
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (true[ok].astype(int).to_numpy(), guess[ok].astype(int).to_numpy()), 1)
    side = min(3.0 + 0.45 * k, 14.0)
    fig, ax = figure(side + 1.0, side)
    rate = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class")
    labels = [plot_text(c, 16) for c in classes]
    ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    ax.set_title(f"{plot_text(t['name'])}: {plot_text(t['picked'])} on {int(ok.sum())} test users")
    if k <= MAX_CM_ANNOTATED:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]}\n{rate[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if rate[i, j] > 0.6 else "black")
    return png_img(fig, f"confusion matrix of {t['picked']} for {t['name']}")


def curves_html(root: Path, t: dict) -> str:
    out = ""
    for m, a in t["models"].items():
        runs = []
        for s in a["metrics"].get("seeds", []):
            path = workdir.run_dir(root, t["name"], m, s) / workdir.MODEL_META
            cfg = workdir.read_json(path, missing="run 'graphprof train' again").get("config") if path.exists() else None
            if isinstance(cfg, dict) and cfg.get("history"):
                runs.append((s, pd.DataFrame(cfg["history"]), cfg.get("best_epoch")))
        if not runs:
            continue
        fig, (f1, loss) = figure(10, 3.6, ncols=2)
        for j, (s, h, best) in enumerate(runs):
            colour = f"C{j % 10}"
            f1.plot(h["epoch"], h["val_macro_f1"], color=colour, label=f"seed {s}")
            if best is not None and best in set(h["epoch"]):
                f1.plot([best], h.loc[h["epoch"] == best, "val_macro_f1"], "o", color=colour)
            loss.plot(h["epoch"], h["train_loss"], "--", color=colour, label=f"train, seed {s}")
            if "val_loss" in h:  # sage / gat record it; sign stops on validation macro-F1 alone
                loss.plot(h["epoch"], h["val_loss"], color=colour, label=f"val, seed {s}")
        f1.set(xlabel="epoch", ylabel="validation macro-F1", title=f"{plot_text(t['name'])} / {plot_text(m)} (o = kept epoch)")
        loss.set(xlabel="epoch", ylabel="loss", title="training (dashed) and validation loss (where recorded)")
        f1.legend(fontsize=8)
        loss.legend(fontsize=7, ncol=2)
        out += png_img(fig, f"training curves of {m} for {t['name']}")
    return out


def reliability_html(t: dict) -> str:
    """The picked model's reliability diagram on the test users of the first seed's split: per bin of the top
    class's probability, the share of those users whose top class is right, against the diagonal of perfect
    calibration; below it, how many users each bin holds."""
    from graphprof.models.calibration import ECE_BINS, ece, reliability

    classes = [str(c) for c in t["models"][t["picked"]]["config"].get("classes", [])]
    test = t["pred"][t["pred"]["split"] == "test"]
    index = {c: j for j, c in enumerate(classes)}
    y = test["label"].astype(str).map(index)
    cols = [f"proba_{c}" for c in classes]
    if test.empty or y.isna().any() or any(c not in test for c in cols):
        return "<p>No test users with a known class in the saved predictions.</p>"
    y, proba = y.astype(int).to_numpy(), test[cols].to_numpy(np.float64)
    r = reliability(y, proba)
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    fig, (top, bottom) = figure(5.0, 6.0, nrows=2, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    filled = np.asarray(r["count"]) > 0
    top.bar(centres[filled], np.asarray(r["accuracy"])[filled], width=1.0 / ECE_BINS, edgecolor="black",
            alpha=0.7, label="share right")
    top.plot(np.asarray(r["confidence"])[filled], np.asarray(r["accuracy"])[filled], "o-", color="C1",
             label="at the bin's mean probability")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="share of users whose top class is right",
            title=f"{plot_text(t['name'])}: {plot_text(t['picked'])}, ECE {ece(y, proba):.3f} ({len(y)} test users)")
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centres, r["count"], width=1.0 / ECE_BINS, edgecolor="black", color="C0")
    bottom.set(xlim=(0, 1), xlabel="probability of the top class (calibrated)", ylabel="users")
    return png_img(fig, f"reliability diagram of {t['picked']} for {t['name']}")


def audit_html(t: dict) -> str:
    """The fairness audit of the picked model (``train --audit COL``), where the last run made one: per group of
    COL on the test users, support, accuracy and the class's rates; the two differences; a plain sentence where
    a difference exceeds the seeds' spread. Empty where there is none."""
    s = t["models"][t["picked"]]["metrics"].get("audit")
    if not s:
        return ""
    if s.get("class") is None:
        return (f"<p>{esc(t['picked'])} by {esc(s['column'])}: fewer than two groups with enough test users to "
                "compare.</p>")
    def cell(m):
        return "n/a" if m["mean"] is None else f"{m['mean']:.3f} ± {m['std']:.3f}"
    rows = [[g, f"{m['support']['mean']:.0f}", *(cell(m[k]) for k in ("accuracy", "selection_rate", "tpr", "fpr"))]
            for g, m in s["groups"].items()]
    what = (f"the positive class {s['class']}" if s["positive"] is not None else
            f"class {s['class']} against the rest, the class whose selection rate differs most between the groups")
    body = (f"<p>{esc(t['picked'])} by {esc(s['column'])}, on the test users, mean ± std over the seeds; rates of "
            f"{esc(what)}. {s['unknown']} test users with no {esc(s['column'])} are left out.</p>"
            + html_table([s["column"], "test users", "accuracy", "selection rate", "TPR", "FPR"], rows))
    for key, name in (("demographic_parity_difference", "demographic-parity"),
                      ("equalized_odds_difference", "equalized-odds")):
        d = s[key]
        body += f"<p>{name.capitalize()} difference {cell(d)}"
        body += (" — <strong>larger than the seeds' spread</strong>: the gap between the groups is not an accident of one "
                 "split.</p>" if d.get("beyond_spread") else ".</p>")
    return body


def explain_html(root, t: dict) -> str:
    """One worked example of ``graphprof explain`` for the target: the first test user (by id) of the first
    seed's split, its picked model's prediction and its 8 largest contributions."""
    from graphprof.errors import ConfigError
    from graphprof.explaining.explain import explain

    test = t["pred"][t["pred"]["split"] == "test"]
    if test.empty:
        return "<p>No test users in the saved predictions.</p>"
    user = str(sorted(test["user_id"].astype(str))[0])
    try:
        e = explain(root, user, target=t["name"], top=8).targets[t["name"]]
    except ConfigError as exc:  # a model explain does not support: say so
        return f"<p>{esc(str(exc))}</p>"
    rows = [[c["kind"], c["name"], "" if c["value"] is None else f"{c['value']:.4g}", f"{c['contribution']:+.4f}",
             f"{c['share']:.1%}"] for c in e["contributions"]]
    if e["rest"]["count"]:
        rows.append(["", f"{e['rest']['count']} smaller terms", "", f"{e['rest']['contribution']:+.4f}",
                     f"{e['rest']['share']:.1%}"])
    return (f"<p>User <code>{esc(user)}</code>: <strong>{esc(e['predicted'])}</strong> (p = {e['probability']:.3f}) by "
            f"{esc(e['model'])}. Method: {esc(e['method'])}. In {esc(e['unit'])}: {esc(e['explained'])}. "
            f"<code>graphprof explain {esc(user)} --target {esc(t['name'])}</code> gives the same.</p>"
            + html_table(["kind", "name", "value", "contribution", "share"], rows, left=(0, 1)))
