"""The ``report`` stage: one self-contained HTML file that a person opens instead of reading JSON.

It reads what the other stages wrote (manifest, graph and feature metadata, ``models/``, ``communities/``,
``embeddings/``) and trains nothing. Each section appears only when its artifacts exist; a box at the top says
which command produces each missing one. Plots are matplotlib figures rendered with the Agg canvas directly
(``Figure`` + ``FigureCanvasAgg``: no pyplot, so a notebook's backend is left alone) and embedded as base64
PNG; there is no script, no external style sheet and no external link. Every string that comes from the
user's data (paths, target names, class labels, community profiles) goes through :func:`html.escape`, and
through :func:`~graphprof.reporting.html.plot_text` before it reaches a plot. The same artifacts give the same HTML: nothing in it depends
on the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphprof import workdir
from graphprof.errors import ConfigError
from graphprof.reporting.community_sections import community_html, user_map
from graphprof.reporting.html import CSS, Section, esc, html_table, note
from graphprof.reporting.model_sections import (
    audit_html,
    confusion_html,
    curves_html,
    explain_html,
    metrics_html,
    reliability_html,
    target_summaries,
)


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


# --------------------------------------------------------------------------------------- input + graph
def _inputs(manifest: dict) -> Section:
    rows = [[t, a.get("source", ""), a.get("read"), a.get("kept"), a.get("rejected"),
             str(workdir.rejects_path(Path(), t)) if a.get("rejected") else ""]
            for t, a in manifest.get("rows", {}).items()]
    body = ("<p>Every row read is either kept or rejected with a reason (source file, line, column, value).</p>"
            + html_table(["table", "file", "read", "kept", "rejected", "rejects"], rows, left=(0, 1)))
    files = [[name, f.get("path", ""), f"{f.get('bytes', 0):,}", str(f.get("sha256", ""))[:16]]
             for name, f in manifest.get("inputs", {}).items()]
    if files:
        body += html_table(["input", "path", "bytes", "sha256 (first 16)"], files, left=(0, 1))
    for table, cols in (manifest.get("dropped_columns") or {}).items():
        body += f"<p class=note>{esc(table)}: personal-data columns dropped, never features: {esc(', '.join(cols))}</p>"
    body += "".join(f"<p class=note>note: {esc(n)}</p>" for n in manifest.get("input_notes") or [])
    return Section("inputs", "Input data", body)


def _graph(root: Path, manifest: dict) -> Section:
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
    body = (html_table(["node type", "nodes"], nodes) + html_table(["edge type", "edges"], edges)
            + f"<p class=note>graph id <code>{esc(str(manifest.get('graph_id', ''))[:16])}</code></p>")
    fpath = root / workdir.FEATURES_META
    if fpath.exists():
        fmeta = workdir.read_json(fpath, missing="run 'graphprof build-graph' again")
        groups = ", ".join(f"{g} {len(c)}" for g, c in fmeta.get("groups", {}).items())
        body += (f"<p>User features: {fmeta.get('num_users', 0):,} users × {fmeta.get('num_features', 0)} "
                 f"columns ({esc(groups)}).</p>")
    return Section("graph", "Graph", body)


# ------------------------------------------------------------------------------------------------ stage
def write_report(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, out: str | Path | None = None) -> ReportResult:
    """Write one self-contained HTML report of the work directory (default ``<workdir>/report.html``).

    Sections, each only where its artifacts exist: input data (row accounting), graph, attribute prediction
    (metrics per target), confusion matrices (picked model, test users), calibration (reliability diagram of the
    picked model, test users), why this profile (one
    worked example of ``explain`` per target), fairness audit (after ``train --audit``), training curves (models that record
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
    journal = manifest.get("updates", [])
    updated_from = {e.get("graph_id_before"): len(journal) - k for k, e in enumerate(journal)}
    with workdir.locked(root, "report"):
        notes: list = []
        sections = [_inputs(manifest), _graph(root, manifest)]
        targets = target_summaries(root, manifest)
        if targets:
            sections.append(Section("models", "Attribute prediction", "".join(
                f"<h3>{esc(t['name'])}</h3>{metrics_html(t, graph_id, updated_from)}" for t in targets)))
            sections.append(Section("confusion", "Confusion matrices", "<p>Picked model per target, on the test "
                                     "users of the first seed's split; colour = share of the true class.</p>"
                                     + "".join(f"<h3>{esc(t['name'])}</h3>{confusion_html(t)}" for t in targets)))
            sections.append(Section("calibration", "Calibration", "<p>Picked model per target, on the test users "
                                     "of the first seed's split. Its probabilities are temperature-scaled on the "
                                     "validation users; in a well-calibrated model, of the users given 70% for "
                                     "their top class, 70% have it (the diagonal).</p>"
                                     + "".join(f"<h3>{esc(t['name'])}</h3>{reliability_html(t)}" for t in targets)))
            sections.append(Section("explain", "Why this profile", "<p>One worked example per target: the "
                                     "signed contributions of a test user's features, items and friends to the "
                                     "picked model's prediction, largest first.</p>"
                                     + "".join(f"<h3>{esc(t['name'])}</h3>{explain_html(root, t)}"
                                               for t in targets)))
            audits = "".join(f"<h3>{esc(t['name'])}</h3>{a}" for t in targets if (a := audit_html(t)))
            if audits:
                sections.append(Section("fairness", "Fairness audit", "<p>How the picked model's predictions "
                                         "differ between the groups of a users-table column it never reads "
                                         "(<code>graphprof train --audit COL</code>; fairlearn's definitions).</p>"
                                         + audits))
            curves = "".join(f"<h3>{esc(t['name'])}</h3>{c}" for t in targets if (c := curves_html(root, t)))
            if curves:
                sections.append(Section("curves", "Training curves", "<p>Per epoch and seed; training stops "
                                         "early on validation macro-F1 and keeps the best epoch.</p>" + curves))
            else:
                notes.append(note("Training curves", "graphprof train --models lr,sage",
                                   " (the sage model records them)"))
        else:
            notes.append(note("Attribute prediction, confusion matrices, training curves", "graphprof train"))
        methods, parts, saved = [], [], workdir.community_methods(root)
        for method in saved:
            summary = workdir.read_json(workdir.communities_dir(root, method) / workdir.COMMUNITY_SUMMARY,
                                        missing=f"run 'graphprof communities --method {method}'")
            if summary.get("graph_id") not in (None, graph_id):
                notes.append(note(f"Communities ({method})", f"graphprof communities --method {method}",
                                   " (the saved ones are of an earlier graph)"))
                continue
            methods.append(method)
            parts.append(f"<h3>{esc(method)}</h3>{community_html(root, method, summary)}")
        if parts:
            sections.append(Section("communities", "Communities", "".join(parts)))
        elif not saved:
            notes.append(note("Communities", "graphprof communities"))
        sections.append(user_map(root, graph_id, methods, notes))
        text = _render(root, manifest, sections, notes)
        path = workdir.atomic_write(Path(out) if out is not None else root / workdir.REPORT,
                                    lambda p: p.write_text(text, encoding="utf-8"))
    missing = [f"{what}: run '{cmd}'{extra}" for what, cmd, extra in notes]
    return ReportResult(path=path, sections=[s.title for s in sections], missing=missing,
                        images=text.count("data:image/png;base64,"))


def _render(root: Path, manifest: dict, sections: list[Section], notes: list) -> str:
    from graphprof import __version__

    nav = "".join(f'<li><a href="#{s.key}">{esc(s.title)}</a></li>' for s in sections)
    missing = ""
    if notes:
        items = "".join(f"<li>{esc(w)}: run <code>{esc(c)}</code>{esc(x)}</li>" for w, c, x in notes)
        missing = f"<div class=missing><p>Not in this report yet:</p><ul>{items}</ul></div>"
    body = "".join(f'<h2 id="{s.key}">{esc(s.title)}</h2>{s.body}' for s in sections)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>graphprof report</title>"
            f"<style>{CSS}</style></head><body><h1>graphprof report</h1>"
            f"<p class=note>Work directory <code>{esc(root)}</code>; built by graphprof "
            f"{esc(manifest.get('graphprof_version', '?'))} (schema {esc(manifest.get('schema_version'))}); "
            f"report by graphprof {esc(__version__)}.</p><nav><ul>{nav}</ul></nav>{missing}{body}</body></html>\n")
