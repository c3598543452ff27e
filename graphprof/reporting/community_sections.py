"""The report's sections on users: community sizes and profiles, and the 2-D map of users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.reporting.html import Section, esc, figure, html_table, note, png_img

MAX_MAP_POINTS = 20_000   # the user map plots a seeded sample above this (the PCA still uses every user)
MAP_COLOURED = 9          # the largest communities (2+ users) get a colour on the map; the rest are grey
_PALETTE = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"]  # tab10 without its grey
MAX_BARS = 30             # community-size bars shown
PROFILE_ROWS = 10         # rows of the profile table shown


def community_html(root: Path, method: str, summary: dict) -> str:
    d = workdir.communities_dir(root, method)
    profiles = workdir.read_parquet(d / workdir.COMMUNITY_PROFILES, missing=f"run 'graphprof communities --method {method}'")
    params = summary.get("params", {})
    q = summary.get("modularity")
    body = (f"<p>{summary.get('n_communities', 0):,} communities ({summary.get('n_singletons', 0):,} singletons) "
            f"of {summary.get('n_users', 0):,} users on the {esc(params.get('on', 'social'))} graph; modularity "
            f"{'n/a' if q is None else f'{q:.3f}'}; settings: "
            f"{esc(', '.join(f'{k} {v}' for k, v in params.items() if k != 'on'))}.</p>")
    sizes = list(summary.get("sizes", []))
    if sizes:
        shown = sizes[:MAX_BARS]
        fig, ax = figure(8, 3.2)
        ax.bar(range(len(shown)), shown, color="C0")
        ax.set(xlabel="community (0 = largest)", ylabel="users",
               title=f"{method}: sizes of communities of 2+ users"
               + (f" (the {len(shown)} largest of {len(sizes)})" if len(sizes) > len(shown) else ""))
        ax.set_xticks(range(len(shown)))
        ax.tick_params(axis="x", labelsize=7)
        body += png_img(fig, f"community sizes ({method})")
    rows = []
    for r in profiles.head(PROFILE_ROWS).to_dict("records"):
        name = r["community"] if r["community"] >= 0 else f"small ({int(r['n_communities'])} pooled)"
        rows.append([name, f"{int(r['size']):,}", f"{r['share']:.1%}"]
                    + [f"{r[c]:.2f}" if c in r and pd.notna(r[c]) else "" for c in
                       ("purchases_mean", "monetary_mean", "social_degree_mean")]
                    + [r.get("top_categories", ""), r.get("distinctive", "")])
    body += html_table(["community", "users", "share", "purchases (mean)", "spend (mean)", "friends (mean)",
                    "top categories (share, lift)", "most distinctive"], rows, left=(0, 6, 7))
    if len(profiles) > PROFILE_ROWS:
        body += (f"<p class=note>{len(profiles) - PROFILE_ROWS} more rows in "
                 f"<code>{workdir.COMMUNITIES_DIR}/{esc(method)}/{workdir.COMMUNITY_PROFILES}</code>.</p>")
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


def user_map(root: Path, graph_id: str | None, methods: list[str], notes: list) -> Section:
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
        notes.append(note("User map of the learned embeddings", "graphprof export-embeddings",
                           " (the saved export is of an earlier graph)" if stale
                           else " (until then the map shows the user features)"))
        emb = None
        feats = load_features(root)
        x = feats.matrix
        x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        ids, source, pseudo = feats.user_ids, "the standardised user features", False
    else:
        x, ids, pseudo = emb.vectors, emb.ids, bool(emb.meta.get("pseudonymized"))
        source = f"the {esc(emb.meta.get('model'))} user embeddings ({emb.dim} dimensions)"
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
            caption = f" Coloured by {esc(method)} community (the {MAP_COLOURED} largest; the rest grey)."
            caption += " The ids are pseudonymised, so users are matched in the graph's order." if pseudo else ""
    else:
        caption = " Run <code>graphprof communities</code> to colour it by community."
    n = len(xy)
    shown = np.arange(n)
    if n > MAX_MAP_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(n, MAX_MAP_POINTS, replace=False))
        caption += f" A seeded sample of {MAX_MAP_POINTS:,} of {n:,} users is drawn."
    fig, ax = figure(7.5, 6)
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
    return Section("map", "User map", body + png_img(fig, "PCA map of users"))
