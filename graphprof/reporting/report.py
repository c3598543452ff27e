"""The ``report`` stage: one self-contained HTML file that a person opens instead of reading JSON.

It reads what the other stages wrote (manifest, graph and feature metadata, ``models/``, ``communities/``,
``embeddings/``) and trains nothing. Each section appears only when its artifacts exist; a box at the top says
which command produces each missing one. Plots are matplotlib figures rendered with the Agg canvas directly
(``Figure`` + ``FigureCanvasAgg``: no pyplot, so a notebook's backend is left alone) and embedded as base64
PNG; there is no script, no external style sheet and no external link. Every string that comes from the
user's data (paths, target names, class labels, community profiles) goes through :func:`html.escape`, and
through :func:`_mpl` before it reaches a plot. The same artifacts give the same HTML: nothing in it depends
on the clock.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.prediction.predict import picked_model

METRICS_FILE, CONFIG_FILE, PREDICTIONS_FILE, RUN_FILE = (
    "metrics.json", "config.json", "predictions.parquet", "model.json")  # as graphprof.train writes them
SPLITS = ("train", "val", "test")
MAX_MAP_POINTS = 20_000   # the user map plots a seeded sample above this (the PCA still uses every user)
MAP_COLOURED = 9          # the largest communities (2+ users) get a colour on the map; the rest are grey
_PALETTE = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"]  # tab10 without its grey
MAX_BARS = 30             # community-size bars shown
PROFILE_ROWS = 10         # rows of the profile table shown
MAX_CM_ANNOTATED = 12     # confusion matrices with more classes are shown without per-cell numbers
_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right;font-size:90%}th{background:#f3f3f3}td.l,th.l{text-align:left}"
        ".missing{background:#fff8e1;border:1px solid #e0c060;padding:.3em 1em}.note{color:#555}"
        ".warn{color:#a00}img{max-width:100%;display:block;margin:.5em 0}code{background:#f3f3f3}")


@dataclass
class ReportResult:
    """What ``graphprof report`` wrote: the file, the sections it holds, and what is missing (with the command
    that produces it)."""

    path: Path
    sections: list[str]
    missing: list[str] = field(default_factory=list)
    images: int = 0

    def summary_lines(self) -> list[str]:
        lines = [f"report: {self.path} ({len(self.sections)} sections: {', '.join(self.sections)}; "
                 f"{self.images} images)"]
        lines += [f"  not in the report yet: {m}" for m in self.missing]
        return lines

    def to_json(self) -> dict:
        return {"path": str(self.path), "sections": self.sections, "missing": self.missing,
                "images": self.images}


@dataclass
class _Section:
    key: str
    title: str
    body: str


# --------------------------------------------------------------------------------------------- helpers
def _e(value) -> str:
    return html.escape(str(value))


def _mpl(value, limit: int = 24) -> str:
    """User text for a plot: shortened, and ``$`` escaped so matplotlib never parses it as mathtext."""
    text = str(value)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _table(header: list[str], rows: list[list], left: tuple[int, ...] = (0,)) -> str:
    """An HTML table; every cell escaped; the columns ``left`` (text) left-aligned, the rest right."""
    def cells(tag, row):
        return "".join(f'<{tag}{" class=l" if j in left else ""}>{_e(c)}</{tag}>' for j, c in enumerate(row))
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _img(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: same bytes everywhere
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _ms(summary: dict | None) -> str:
    if not summary or summary.get("mean") is None:
        return "n/a"
    return f"{summary['mean']:.3f} ± {summary.get('std') or 0.0:.3f}"


def _note(what: str, command: str, extra: str = "") -> tuple[str, str, str]:
    return what, command, extra


# --------------------------------------------------------------------------------------- input + graph
def _inputs(manifest: dict) -> _Section:
    rows = [[t, a.get("source", ""), a.get("read"), a.get("kept"), a.get("rejected"),
             f"{workdir.REJECTS_DIR}/{t}.csv" if a.get("rejected") else ""]
            for t, a in manifest.get("rows", {}).items()]
    body = ("<p>Every row read is either kept or rejected with a reason (source file, line, column, value).</p>"
            + _table(["table", "file", "read", "kept", "rejected", "rejects"], rows, left=(0, 1)))
    files = [[name, f.get("path", ""), f"{f.get('bytes', 0):,}", str(f.get("sha256", ""))[:16]]
             for name, f in manifest.get("inputs", {}).items()]
    if files:
        body += _table(["input", "path", "bytes", "sha256 (first 16)"], files, left=(0, 1))
    for table, cols in (manifest.get("dropped_columns") or {}).items():
        body += f"<p class=note>{_e(table)}: personal-data columns dropped, never features: {_e(', '.join(cols))}</p>"
    body += "".join(f"<p class=note>note: {_e(n)}</p>" for n in manifest.get("input_notes") or [])
    return _Section("inputs", "Input data", body)


def _graph(root: Path, manifest: dict) -> _Section:
    meta = workdir.read_json(root / workdir.GRAPH_META, missing="run 'graphprof build-graph' again")
    nodes = [[t, f"{n:,}"] for t, n in meta.get("node_types", {}).items()]
    edges = []
    for em in meta.get("edge_types", []):
        src, rel, dst = em["type"]
        if rel.startswith("rev_"):
            continue  # the reverse of an edge type already listed
        n = int(em["num_edges"])
        extra = f" ({n // 2:,} ties, stored in both directions)" if rel == "friend" else ""
        edges.append([f"{src} –{rel}→ {dst}", f"{n:,}{extra}"])
    body = (_table(["node type", "nodes"], nodes) + _table(["edge type", "edges"], edges)
            + f"<p class=note>graph id <code>{_e(str(manifest.get('graph_id', ''))[:16])}</code></p>")
    fpath = root / workdir.FEATURES_META
    if fpath.exists():
        fmeta = workdir.read_json(fpath, missing="run 'graphprof build-graph' again")
        groups = ", ".join(f"{g} {len(c)}" for g, c in fmeta.get("groups", {}).items())
        body += (f"<p>User features: {fmeta.get('num_users', 0):,} users × {fmeta.get('num_features', 0)} "
                 f"columns ({_e(groups)}).</p>")
    return _Section("graph", "Graph", body)


# ----------------------------------------------------------------------------------------------- models
def _targets(root: Path, manifest: dict) -> list[dict]:
    """Per trained target: its models' metrics.json and config.json, the picked model, its predictions."""
    base = root / workdir.MODELS_DIR
    if not base.is_dir():
        return []
    train = manifest.get("stages", {}).get("train", {})
    t_order, m_order = train.get("targets", []), ["lr", *[m for m in train.get("models", []) if m != "lr"]]
    names = sorted((d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("_")),
                   key=lambda t: (t_order.index(t) if t in t_order else len(t_order), t))
    found = []
    for name in names:
        hint = f"run 'graphprof train --target {name}' again"
        models = {}
        dirs = sorted((d for d in (base / name).iterdir() if (d / METRICS_FILE).is_file()),
                      key=lambda d: (m_order.index(d.name) if d.name in m_order else len(m_order), d.name))
        for d in dirs:
            model_dir = workdir.model_dir(root, name, d.name)
            models[d.name] = {"metrics": workdir.read_json(model_dir / METRICS_FILE, missing=hint),
                              "config": workdir.read_json(model_dir / CONFIG_FILE, missing=hint)}
        if not models:
            continue
        picked = picked_model(root, name)  # the same choice predict makes
        pred = workdir.read_parquet(workdir.model_dir(root, name, picked) / PREDICTIONS_FILE, missing=hint)
        found.append({"name": name, "models": models, "picked": picked, "pred": pred})
    return found


def _dropped(dropped: dict) -> str:
    if len(dropped) > 5:  # e.g. the many small communities of --target community
        return f"; dropped {len(dropped)} small classes ({sum(dropped.values()):,} users)"
    return f"; dropped small classes: {_e(', '.join(f'{k} ({v})' for k, v in dropped.items()))}" if dropped else ""


def _metrics_html(t: dict, graph_id: str | None) -> str:
    models, pred = t["models"], t["pred"]
    rows = []
    for m, a in models.items():
        test = a["metrics"].get("test", {})
        rows.append([m, _ms(test.get("accuracy")), _ms(test.get("macro_f1")), _ms(test.get("auc")),
                     _ms(a["metrics"].get("val_macro_f1")), ", ".join(map(str, a["metrics"].get("seeds", []))),
                     "picked" if m == t["picked"] else ""])
    labelled = pred[pred["split"].isin(SPLITS)]
    counts = labelled["label"].value_counts()
    sizes = labelled["split"].value_counts()
    config = models[t["picked"]]["config"]
    body = _table(["model", "accuracy", "macro-F1", "AUC", "val macro-F1", "seeds", ""], rows)
    majority = counts.max() / counts.sum() if len(counts) else float("nan")
    body += (f"<p>Majority-class rate {majority:.3f}; {len(labelled):,} labelled users, "
             f"{'/'.join(str(int(sizes.get(s, 0))) for s in SPLITS)} train/val/test (split of seed "
             f"{_e(config.get('predictions_from_seed'))}); classes: {_e(', '.join(map(str, config.get('classes', []))))}"
             + _dropped(config.get("dropped_classes") or {})
             + ". The picked model has the best validation macro-F1; metrics are on test users, mean ± std over "
               "seeds.</p>")
    base = models.get("lr", {}).get("metrics")
    for m, a in models.items():
        other = a["metrics"]
        if m == "lr" or base is None or other.get("seeds") != base.get("seeds"):
            continue
        diff = np.mean([x["macro_f1"] - y["macro_f1"] for x, y in zip(other["per_seed_test"], base["per_seed_test"])])
        spread = max((other["test"]["macro_f1"].get("std") or 0.0), (base["test"]["macro_f1"].get("std") or 0.0))
        verdict = "better than" if diff > spread else "worse than" if diff < -spread else "within"
        body += f"<p>{_e(m)} vs lr: macro-F1 {diff:+.3f}, {verdict} the seeds' spread ({spread:.3f}).</p>"
    if any(a["config"].get("graph_id") not in (None, graph_id) for a in models.values()):
        body += "<p class=warn>Trained on an earlier graph: run <code>graphprof train</code> again.</p>"
    return body


def _confusion_html(t: dict) -> str:
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
    fig, ax = _figure(side + 1.0, side)
    rate = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class")
    labels = [_mpl(c, 16) for c in classes]
    ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    ax.set_title(f"{_mpl(t['name'])}: {_mpl(t['picked'])} on {int(ok.sum())} test users")
    if k <= MAX_CM_ANNOTATED:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]}\n{rate[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if rate[i, j] > 0.6 else "black")
    return _img(fig, f"confusion matrix of {t['picked']} for {t['name']}")


def _curves_html(root: Path, t: dict) -> str:
    out = ""
    for m, a in t["models"].items():
        runs = []
        for s in a["metrics"].get("seeds", []):
            path = workdir.run_dir(root, t["name"], m, s) / RUN_FILE
            cfg = workdir.read_json(path, missing="run 'graphprof train' again").get("config") if path.exists() else None
            if isinstance(cfg, dict) and cfg.get("history"):
                runs.append((s, pd.DataFrame(cfg["history"]), cfg.get("best_epoch")))
        if not runs:
            continue
        fig, (f1, loss) = _figure(10, 3.6, ncols=2)
        for j, (s, h, best) in enumerate(runs):
            colour = f"C{j % 10}"
            f1.plot(h["epoch"], h["val_macro_f1"], color=colour, label=f"seed {s}")
            if best is not None and best in set(h["epoch"]):
                f1.plot([best], h.loc[h["epoch"] == best, "val_macro_f1"], "o", color=colour)
            loss.plot(h["epoch"], h["train_loss"], "--", color=colour, label=f"train, seed {s}")
            loss.plot(h["epoch"], h["val_loss"], color=colour, label=f"val, seed {s}")
        f1.set(xlabel="epoch", ylabel="validation macro-F1", title=f"{_mpl(t['name'])} / {_mpl(m)} (o = kept epoch)")
        loss.set(xlabel="epoch", ylabel="loss", title="training (dashed) and validation loss")
        f1.legend(fontsize=8)
        loss.legend(fontsize=7, ncol=2)
        out += _img(fig, f"training curves of {m} for {t['name']}")
    return out


# ---------------------------------------------------------------------------------- communities + map
def _community_html(root: Path, method: str, summary: dict) -> str:
    d = workdir.communities_dir(root, method)
    profiles = workdir.read_parquet(d / workdir.COMMUNITY_PROFILES, missing=f"run 'graphprof communities --method {method}'")
    params = summary.get("params", {})
    q = summary.get("modularity")
    body = (f"<p>{summary.get('n_communities', 0):,} communities ({summary.get('n_singletons', 0):,} singletons) "
            f"of {summary.get('n_users', 0):,} users on the {_e(params.get('on', 'social'))} graph; modularity "
            f"{'n/a' if q is None else f'{q:.3f}'}; settings: "
            f"{_e(', '.join(f'{k} {v}' for k, v in params.items() if k != 'on'))}.</p>")
    sizes = list(summary.get("sizes", []))
    if sizes:
        shown = sizes[:MAX_BARS]
        fig, ax = _figure(8, 3.2)
        ax.bar(range(len(shown)), shown, color="C0")
        ax.set(xlabel="community (0 = largest)", ylabel="users",
               title=f"{method}: sizes of communities of 2+ users"
               + (f" (the {len(shown)} largest of {len(sizes)})" if len(sizes) > len(shown) else ""))
        ax.set_xticks(range(len(shown)))
        ax.tick_params(axis="x", labelsize=7)
        body += _img(fig, f"community sizes ({method})")
    rows = []
    for r in profiles.head(PROFILE_ROWS).to_dict("records"):
        name = r["community"] if r["community"] >= 0 else f"small ({int(r['n_communities'])} pooled)"
        rows.append([name, f"{int(r['size']):,}", f"{r['share']:.1%}"]
                    + [f"{r[c]:.2f}" if c in r and pd.notna(r[c]) else "" for c in
                       ("purchases_mean", "monetary_mean", "social_degree_mean")]
                    + [r.get("top_categories", ""), r.get("distinctive", "")])
    body += _table(["community", "users", "share", "purchases (mean)", "spend (mean)", "friends (mean)",
                    "top categories (share, lift)", "most distinctive"], rows, left=(0, 6, 7))
    if len(profiles) > PROFILE_ROWS:
        body += (f"<p class=note>{len(profiles) - PROFILE_ROWS} more rows in "
                 f"<code>{workdir.COMMUNITIES_DIR}/{_e(method)}/{workdir.COMMUNITY_PROFILES}</code>.</p>")
    return body


def _pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components of the rows of ``x`` (signs fixed: deterministic), and their share of
    the variance."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    if x.shape[1] < 2:
        x = np.hstack([x, np.zeros((len(x), 2 - x.shape[1]))])
    x = x - x.mean(axis=0)
    w, v = np.linalg.eigh(x.T @ x / max(len(x) - 1, 1))
    top = np.argsort(w)[::-1][:2]
    comps = v[:, top]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), [0, 1]])
    comps = comps * np.where(signs == 0, 1.0, signs)
    return x @ comps, w[top] / max(w.sum(), 1e-300)


def _user_map(root: Path, graph_id: str | None, methods: list[str], notes: list) -> _Section:
    from graphprof.embeddings.export import load_embeddings
    from graphprof.features import load_features

    emb = None
    if (root / workdir.EMBEDDINGS_DIR).is_dir():
        try:
            emb = load_embeddings(root, "user")
        except ArtifactError:
            emb = None
    stale = emb is not None and emb.meta.get("graph_id") not in (None, graph_id)
    if emb is None or stale:
        notes.append(_note("User map of the learned embeddings", "graphprof export-embeddings",
                           " (the saved export is of an earlier graph)" if stale
                           else " (until then the map shows the user features)"))
        emb = None
        feats = load_features(root)
        x = feats.matrix
        x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        ids, source, pseudo = feats.user_ids, "the standardised user features", False
    else:
        x, ids, pseudo = emb.vectors, emb.ids, bool(emb.meta.get("pseudonymized"))
        source = f"the {_e(emb.meta.get('model'))} user embeddings ({emb.dim} dimensions)"
    xy, ratio = _pca2(x)
    community, caption = None, ""
    method = "leiden" if "leiden" in methods else (methods[0] if methods else None)
    if method is not None:
        assign = workdir.read_parquet(workdir.communities_dir(root, method) / workdir.COMMUNITY_ASSIGNMENTS,
                                      missing=f"run 'graphprof communities --method {method}'")
        if pseudo:  # hashed ids: both files list users in the graph's order
            community = assign["community"].to_numpy() if len(assign) == len(ids) else None
        else:
            lookup = pd.Series(assign["community"].to_numpy(), index=assign["user_id"].astype(str))
            community = lookup.reindex(pd.Index(ids, dtype=object).astype(str)).fillna(-1).to_numpy(np.int64)
        if community is not None:
            caption = f" Coloured by {_e(method)} community (the {MAP_COLOURED} largest; the rest grey)."
            caption += " The ids are pseudonymised, so users are matched in the graph's order." if pseudo else ""
    else:
        caption = " Run <code>graphprof communities</code> to colour it by community."
    n = len(xy)
    shown = np.arange(n)
    if n > MAX_MAP_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(n, MAX_MAP_POINTS, replace=False))
        caption += f" A seeded sample of {MAX_MAP_POINTS:,} of {n:,} users is drawn."
    fig, ax = _figure(7.5, 6)
    if community is None:
        ax.scatter(xy[shown, 0], xy[shown, 1], s=4, alpha=0.6, color="C0", linewidths=0)
    else:
        sizes = np.bincount(community[community >= 0], minlength=MAP_COLOURED)
        coloured = [k for k in range(MAP_COLOURED) if sizes[k] >= 2]  # labels are ranked by size
        c = community[shown]
        rest = ~np.isin(c, coloured)
        if rest.any():
            ax.scatter(xy[shown[rest], 0], xy[shown[rest], 1], s=4, alpha=0.4, color="#bbbbbb", linewidths=0,
                       label="other")
        for k in coloured:
            pts = shown[c == k]
            ax.scatter(xy[pts, 0], xy[pts, 1], s=5, alpha=0.7, color=_PALETTE[k], linewidths=0,
                       label=f"{k} ({sizes[k]:,})")
        ax.legend(title="community (users)", fontsize=7, markerscale=2, loc="best")
    ax.set(xlabel=f"PC 1 ({ratio[0]:.0%} of variance)", ylabel=f"PC 2 ({ratio[1]:.0%} of variance)",
           title=f"users: PCA of {'embeddings' if emb is not None else 'features'}")
    body = f"<p>The first two principal components of {source}, one dot per user.{caption}</p>"
    return _Section("map", "User map", body + _img(fig, "PCA map of users"))


# ------------------------------------------------------------------------------------------------ stage
def write_report(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, out: str | Path | None = None) -> ReportResult:
    """Write one self-contained HTML report of the work directory (default ``<workdir>/report.html``).

    Sections, each only where its artifacts exist: input data (row accounting), graph, attribute prediction
    (metrics per target), confusion matrices (picked model, test users), training curves (models that record
    a history, e.g. sage), communities (sizes, profiles; per method), user map (PCA of the exported
    embeddings, else of the features, coloured by community). Trains nothing; reads only.

    Raises:
        ArtifactError: no graph in the work directory (run ``build-graph`` first), or a damaged artifact.
        ConfigError: ``out`` does not end in ``.html`` / ``.htm``.
    """
    root = Path(workdir_path)
    if out is not None and not str(out).lower().endswith((".html", ".htm")):
        raise ConfigError(f"--out must end in .html. Got {str(out)!r} instead")
    manifest = workdir.require_built(root)
    graph_id = manifest.get("graph_id")
    with workdir.locked(root, "report"):
        notes: list = []
        sections = [_inputs(manifest), _graph(root, manifest)]
        targets = _targets(root, manifest)
        if targets:
            sections.append(_Section("models", "Attribute prediction", "".join(
                f"<h3>{_e(t['name'])}</h3>{_metrics_html(t, graph_id)}" for t in targets)))
            sections.append(_Section("confusion", "Confusion matrices", "<p>Picked model per target, on the test "
                                     "users of the first seed's split; colour = share of the true class.</p>"
                                     + "".join(f"<h3>{_e(t['name'])}</h3>{_confusion_html(t)}" for t in targets)))
            curves = "".join(f"<h3>{_e(t['name'])}</h3>{c}" for t in targets if (c := _curves_html(root, t)))
            if curves:
                sections.append(_Section("curves", "Training curves", "<p>Per epoch and seed; training stops "
                                         "early on validation macro-F1 and keeps the best epoch.</p>" + curves))
            else:
                notes.append(_note("Training curves", "graphprof train --models lr,sage",
                                   " (the sage model records them)"))
        else:
            notes.append(_note("Attribute prediction, confusion matrices, training curves", "graphprof train"))
        methods, parts, saved = [], [], workdir.community_methods(root)
        for method in saved:
            summary = workdir.read_json(workdir.communities_dir(root, method) / workdir.COMMUNITY_SUMMARY,
                                        missing=f"run 'graphprof communities --method {method}'")
            if summary.get("graph_id") not in (None, graph_id):
                notes.append(_note(f"Communities ({method})", f"graphprof communities --method {method}",
                                   " (the saved ones are of an earlier graph)"))
                continue
            methods.append(method)
            parts.append(f"<h3>{_e(method)}</h3>{_community_html(root, method, summary)}")
        if parts:
            sections.append(_Section("communities", "Communities", "".join(parts)))
        elif not saved:
            notes.append(_note("Communities", "graphprof communities"))
        sections.append(_user_map(root, graph_id, methods, notes))
        text = _render(root, manifest, sections, notes)
        path = workdir.atomic_write(Path(out) if out is not None else root / workdir.REPORT,
                                    lambda p: p.write_text(text, encoding="utf-8"))
    missing = [f"{what}: run '{cmd}'{extra}" for what, cmd, extra in notes]
    return ReportResult(path=path, sections=[s.title for s in sections], missing=missing,
                        images=text.count("data:image/png;base64,"))


def _render(root: Path, manifest: dict, sections: list[_Section], notes: list) -> str:
    from graphprof import __version__

    nav = "".join(f'<li><a href="#{s.key}">{_e(s.title)}</a></li>' for s in sections)
    missing = ""
    if notes:
        items = "".join(f"<li>{_e(w)}: run <code>{_e(c)}</code>{_e(x)}</li>" for w, c, x in notes)
        missing = f"<div class=missing><p>Not in this report yet:</p><ul>{items}</ul></div>"
    body = "".join(f'<h2 id="{s.key}">{_e(s.title)}</h2>{s.body}' for s in sections)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>graphprof report</title>"
            f"<style>{_CSS}</style></head><body><h1>graphprof report</h1>"
            f"<p class=note>Work directory <code>{_e(root)}</code>; built by graphprof "
            f"{_e(manifest.get('graphprof_version', '?'))} (schema {_e(manifest.get('schema_version'))}); "
            f"report by graphprof {_e(__version__)}.</p><nav><ul>{nav}</ul></nav>{missing}{body}</body></html>\n")
