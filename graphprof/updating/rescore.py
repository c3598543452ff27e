"""Every saved model re-scores the users whose inputs an update changed; community assignments gain the new users.

Whose inputs changed, per model: ``lr`` reads the user's own feature row and bag of items, so the touched users
(:func:`graphprof.updating.refeature.touched_users`); ``sign`` also reads its friends' rows and bags up to its hops
and the co-purchasers' rows (users who bought an item a touched user bought), so the touched users' ball of that
radius plus their co-purchasers; ``sage`` / ``gat`` (and any other model) every user, as their layers reach
through items to everyone. The other users keep their saved probabilities, which are the numbers a re-score
would give them. New users get ``split`` ``unlabelled`` (never seen by a fit) and the label the users table gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.graph import BUYS, FRIEND, IN_CAT, REV_BUYS, REV_IN, ProfileGraph

WHOLE_GRAPH_SHARE = 0.5  # re-scoring more than this share of the users runs the model on the whole graph


def reach(graph: ProfileGraph, touched: np.ndarray, hops: int, copurchase: bool) -> np.ndarray:
    """``touched``, every user within ``hops`` friendship hops of it, and (``copurchase``) every user who bought
    an item a touched user bought; sorted indices."""
    n = graph.num_users
    mask = np.zeros(n, bool)
    mask[touched] = True
    out = mask.copy()
    if hops and FRIEND in graph.edge_types:
        src, dst = graph.edge(FRIEND)
        frontier = mask
        for _ in range(hops):
            nxt = np.zeros(n, bool)
            nxt[src[frontier[dst]]] = True
            frontier = nxt & ~out
            out |= nxt
    if copurchase:
        u, i = graph.edge(BUYS)
        items = np.zeros(graph.num_nodes("item"), bool)
        items[i[mask[u]]] = True
        out[u[items[i]]] = True
    return np.flatnonzero(out)


def restrict_items(graph: ProfileGraph, keep: np.ndarray) -> ProfileGraph:
    """``graph`` with only the items ``keep`` (sorted indices), renumbered ``0 .. len(keep) - 1`` in that order:
    the items a model was fitted on, so its per-item weights (``lr``'s and ``sign``'s bags) line up. Purchases of
    other items are left out, as ``predict`` leaves out unknown items."""
    new_index = np.full(len(graph.item_ids), -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    edges: dict = {}
    for et in graph.edge_types:
        ei = graph.edge(et)
        if et == BUYS:
            ok = new_index[ei[1]] >= 0
            edges[et] = {"edge_index": np.stack([ei[0][ok], new_index[ei[1][ok]]]),
                         "edge_attr": graph.edge(et, "edge_attr")[ok]}
        elif et == IN_CAT:
            ok = new_index[ei[0]] >= 0
            edges[et] = {"edge_index": np.stack([new_index[ei[0][ok]], ei[1][ok]])}
        elif et in (REV_BUYS, REV_IN):
            continue
        else:
            edges[et] = {n: a for n in ("edge_index", "edge_attr", "edge_weight") if (a := graph.edge(et, n)) is not None}
    for rev, fwd in ((REV_BUYS, BUYS), (REV_IN, IN_CAT)):
        if rev in graph.edge_types:
            edges[rev] = {"edge_index": edges[fwd]["edge_index"][::-1]}
    nodes = {nt: graph.num_nodes(nt) for nt in graph.node_types}
    nodes["item"] = len(keep)
    return ProfileGraph(nodes=nodes, edges={et: edges[et] for et in graph.edge_types}, user_ids=graph.user_ids,
                        item_ids=graph.item_ids[keep], category_ids=graph.category_ids)


def fitted_inputs(inputs, keep: np.ndarray | None, cache: dict):
    """The models' input on the items a model was fitted on (``keep``: their indices in the graph, sorted; None:
    every item), made once per item set."""
    from graphprof.features import UserFeatures
    from graphprof.models import ModelInput

    g = inputs.graph
    if keep is None or len(keep) == len(g.item_ids):
        return inputs
    key = len(keep)
    if key not in cache:
        f = inputs.features
        feats = UserFeatures(user_ids=f.user_ids, frame=f.frame, groups=f.groups, item_ids=f.item_ids[keep],
                             items=f.items.iloc[keep].reset_index(drop=True), state=f.state)
        cache[key] = ModelInput(graph=restrict_items(g, keep), features=feats)
    return cache[key]


def fitted_items(root: Path, graph: ProfileGraph, manifest: dict, model_graph: str | None,
                 added_now: np.ndarray) -> np.ndarray | None:
    """The indices of the items of ``graph`` that the graph ``model_graph`` (a model's ``config.json``
    ``graph_id``) had: every item but those added by the updates since (each batch's added items are kept in
    ``tables/updates/<n>/new_items.parquet``; ``added_now``: this batch's indices). The graph's line is followed
    from ``model_graph`` to the current one through the manifest's updates and erasures (``forget`` keeps every
    item); None where ``model_graph`` is not on it."""
    step = {e.get("graph_id_before"): (e.get("graph_id"), e.get("batch")) for e in manifest.get("updates", [])}
    step.update({e.get("graph_id_before"): (e.get("graph_id_after"), None)
                 for e in manifest.get(workdir.ERASURES, []) if e.get("graph_id_before") != e.get("graph_id_after")})
    batches, at, seen = [], model_graph, set()
    while at != manifest.get("graph_id"):
        if at not in step or at in seen:
            return None
        seen.add(at)
        at, batch = step[at]
        if batch is not None:
            batches.append(batch)
    drop = np.zeros(len(graph.item_ids), bool)
    drop[added_now] = True
    for batch in batches:
        path = workdir.table_part_path(root, "new_items", batch)
        if path.exists():
            ids = pd.read_parquet(path)["item_id"].astype(str).to_numpy(dtype=object)
            found = pd.Index(graph.item_ids).get_indexer(ids)
            drop[found[found >= 0]] = True
    return np.flatnonzero(~drop)


def rows_to_score(model, name: str, graph: ProfileGraph, touched: np.ndarray) -> np.ndarray:
    if name == "lr":
        return touched
    if name == "sign":
        hops = int(model.params.get("hops", 2)) if getattr(model, "social_", True) else 0
        return reach(graph, touched, hops, bool(getattr(model, "copurchase_", model.params.get("copurchase", True))))
    return np.arange(graph.num_users)


def remap_frame(old: pd.DataFrame, user_map: np.ndarray, user_ids: np.ndarray, path: Path) -> pd.DataFrame:
    """A per-user frame of the saved graph (rows in its order) laid out on the merged graph's users: the saved
    rows at their new places, new users' rows empty (missing values)."""
    from graphprof.errors import ArtifactError

    if len(old) != len(user_map) or (len(old) and old["user_id"].iloc[-1] != user_ids[user_map[-1]]):
        raise ArtifactError(f"{path}: must have one row per user of the graph, in its order. Got {len(old)} rows "
                            f"for {len(user_map)} users; re-run 'graphprof train'")
    at = np.full(len(user_ids), -1, dtype=np.int64)
    at[user_map] = np.arange(len(user_map))
    out = old.reset_index(drop=True).reindex(at).reset_index(drop=True)  # -1: a row of missing values
    out["user_id"] = pd.Series(user_ids, dtype="string")
    return out


def rescore_models(root: Path, stage, inputs, merged, touched: np.ndarray, users: pd.DataFrame | None,
                   manifest: dict) -> dict:
    """Re-score every saved model's ``predictions.parquet`` into the staging folder, each on the items it was
    fitted on (:func:`fitted_items`); returns per ``target/model`` the users re-scored, or why not."""
    from graphprof.models import get_model

    graph = inputs.graph
    views = {}
    done = {}
    for d in workdir.model_dirs(root):
        path = d / workdir.MODEL_PREDICTIONS
        if not path.exists():
            continue
        target, name = workdir.target_name(d.parent), d.name
        config = workdir.read_json(d / workdir.MODEL_CONFIG, missing="run 'graphprof train' again")
        model = get_model(name).load(workdir.run_dir(root, target, name, config["predictions_from_seed"]))
        frame = remap_frame(workdir.read_parquet(path, missing="run 'graphprof train' again"), merged.user_map,
                            graph.user_ids, path)
        fresh = np.setdiff1d(np.arange(graph.num_users), merged.user_map, assume_unique=True)
        frame.loc[fresh, "split"] = "unlabelled"
        _labels(frame, target, config["classes"], users, np.union1d(fresh, merged.labelled))
        keep = fitted_items(root, graph, manifest, config.get("graph_id"), merged.new_items)
        if keep is None:
            done[f"{target}/{name}"] = "not re-scored: trained on another graph; run 'graphprof train'"
            continue
        seen = fitted_inputs(inputs, keep, views)
        rows = rows_to_score(model, name, seen.graph, touched)
        if len(rows):
            # most users: one whole-graph pass costs less than computing their neighbourhoods row by row
            proba = model.proba(seen, rows=rows) if len(rows) < WHOLE_GRAPH_SHARE * graph.num_users else \
                model.proba(seen)[rows]
            classes = np.array(model.classes_, dtype=object)
            frame.loc[rows, "predicted"] = classes[proba.argmax(axis=1)]
            for j, c in enumerate(model.classes_):
                frame.loc[rows, f"proba_{c}"] = proba[:, j]
        workdir.write_parquet(stage.path(path.relative_to(root)), frame)
        done[f"{target}/{name}"] = int(len(rows))
    return done


def _labels(frame: pd.DataFrame, target: str, classes: list, users: pd.DataFrame | None, rows: np.ndarray) -> None:
    """The known label of ``rows`` from the users table (a class the model knows; else missing)."""
    if not len(rows):
        return
    label = pd.Series(pd.NA, index=range(len(rows)), dtype="string")
    if users is not None and target in users:
        given = users.set_index(users["user_id"].astype(str))[target].astype("string")
        got = given.reindex(frame["user_id"].iloc[rows].astype(str).to_numpy()).reset_index(drop=True)
        label = got.where(got.isin([str(c) for c in classes]))
    frame.loc[rows, "label"] = label.to_numpy()


def assign_communities(root: Path, stage, graph: ProfileGraph, merged, view, graph_id: str) -> dict:
    """Each method's assignments on the merged users: saved users keep theirs, a new user takes the most common
    community among its friends (-1: none), as ``predict`` assigns them."""
    import scipy.sparse as sp

    out = {}
    fresh = np.setdiff1d(np.arange(graph.num_users), merged.user_map, assume_unique=True)
    for method in workdir.community_methods(root):
        path = workdir.communities_dir(root, method) / workdir.COMMUNITY_ASSIGNMENTS
        old = workdir.read_parquet(path, missing=f"run 'graphprof communities --method {method}' again")
        label = np.full(graph.num_users, -1, dtype=np.int64)
        at = pd.Index(graph.user_ids).get_indexer(old["user_id"].astype(str).to_numpy(dtype=object))
        label[at[at >= 0]] = old["community"].to_numpy(np.int64)[at >= 0]
        if len(fresh) and label.max() >= 0:
            rows = view.adjacency_rows(fresh)
            who = np.repeat(np.arange(len(fresh)), np.diff(rows.indptr))
            ok = label[rows.indices] >= 0
            votes = sp.csr_matrix((np.ones(int(ok.sum())), (who[ok], label[rows.indices[ok]])),
                                  shape=(len(fresh), int(label.max()) + 1)).toarray()
            label[fresh] = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)
        frame = pd.DataFrame({"user_id": pd.Series(graph.user_ids, dtype="string"), "community": label})
        extra = [c for c in old.columns if c not in frame.columns]
        if extra:  # other per-user columns keep their saved values; new users' are missing
            kept = remap_frame(old, merged.user_map, graph.user_ids, path) if len(old) == len(merged.user_map) \
                else None
            for c in extra:
                frame[c] = kept[c].to_numpy() if kept is not None else pd.NA
        frame["community"] = frame["community"].astype(old["community"].dtype)
        workdir.write_parquet(stage.path(path.relative_to(root)), frame)
        summary_path = workdir.communities_dir(root, method) / workdir.COMMUNITY_SUMMARY
        summary = workdir.read_json(summary_path, missing=f"run 'graphprof communities --method {method}' again")
        summary["graph_id"] = graph_id  # the assignments cover the merged graph's users
        summary["assigned_by_updates"] = int(summary.get("assigned_by_updates", 0)) + int(len(fresh))
        workdir.write_json(stage.path(summary_path.relative_to(root)), summary)
        out[method] = int(len(fresh))
    return out
