"""The exported embeddings (``embeddings/``) carried onto the merged graph by an update.

* From a trained model (``lr``, ``sign``, ``sage``, ``gat``): the model embeds the users whose inputs changed
  (the same users it re-scores, :func:`graphprof.updating.rescore.rows_to_score`); the others keep their
  vectors, which are what the model gives them. Item vectors (``sage`` / ``gat``) are embedded again.
* From LightGCN (transductive: it has a vector per user it was fitted on): saved users keep theirs; a new user
  is folded in as the mean of the vectors of the items it bought and of its friends that have one (LightGCN's
  propagation step, unweighted); a new item as the mean of its buyers'. ``export-embeddings`` refits LightGCN on
  the merged graph.

Pseudonymised exports need the key for the new users' ids (``--key-file`` or the environment, as for
``export-embeddings``); without it the export is left as it was and the update says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphprof import workdir
from graphprof.graph import BUYS, FRIEND


def update_embeddings(root: Path, stage, inputs, merged, touched: np.ndarray, graph_id: str, batch: int,
                      manifest: dict, key_file=None) -> str | None:
    """Write the carried-over export into the staging folder; returns what was done, in words (None: no export)."""
    from graphprof.embeddings.export import Embeddings, load_embeddings, write_export_dir
    from graphprof.errors import ConfigError
    from graphprof.privacy.pseudonymize import load_key, pseudonymize_ids

    if not (root / workdir.EMBEDDINGS_DIR / workdir.EMBEDDINGS_META).exists():
        return None
    users, items = load_embeddings(root, "user"), load_embeddings(root, "item")
    meta = dict(users.meta)
    g = inputs.graph
    if len(users.ids) != len(merged.user_map):
        return "embeddings/ left as they were: they do not list the graph's users; run 'graphprof export-embeddings'"
    key = None
    if meta.get("pseudonymized"):
        try:
            key = load_key(key_file, root)
        except ConfigError as exc:
            return f"embeddings/ left as they were (pseudonymised; the key is needed for new users: {exc})"
    vectors = np.zeros((g.num_users, users.dim), dtype=np.float32)
    vectors[merged.user_map] = users.vectors
    item_vectors = None
    if meta["model"] == "lightgcn":
        item_vectors = _fold_in(g, merged, vectors, items)
        how = f"{len(merged.new_users)} new users folded into the LightGCN space"
    else:
        from graphprof.models import get_model
        from graphprof.updating.rescore import fitted_inputs, fitted_items, rows_to_score

        name, target = meta["model"], meta["target"]
        model = get_model(name).load(workdir.run_dir(root, target, name, meta["seed"]))
        config = workdir.read_json(workdir.model_file(root, target, name, workdir.MODEL_CONFIG), missing="")
        keep = fitted_items(root, g, manifest, config.get("graph_id"), merged.new_items)
        if keep is None:
            return "embeddings/ left as they were: the model was trained on another graph; run 'graphprof train'"
        seen = fitted_inputs(inputs, keep, {})
        rows = rows_to_score(model, name, seen.graph, touched)
        if len(rows):
            vectors[rows] = model.embed(seen, rows=rows).astype(np.float32)
        if items is not None and hasattr(model, "embed_items"):
            item_vectors = np.zeros((len(g.item_ids), vectors.shape[1]), dtype=np.float32)
            item_vectors[keep] = model.embed_items(seen).astype(np.float32)  # new items: none yet
        how = f"{len(rows)} users embedded again by {name} ({target})"
    ids = pseudonymize_ids(g.user_ids, key) if key else g.user_ids.astype(object)
    meta.update({"num_users": int(g.num_users), "graph_id": graph_id, "updated_by": batch,
                 "num_items": int(len(g.item_ids)) if item_vectors is not None else 0})
    user_emb = Embeddings(ids, vectors, meta)
    item_emb = Embeddings(g.item_ids.astype(object), item_vectors, meta) if item_vectors is not None else None
    write_export_dir(stage.folder, user_emb, item_emb)
    return how


def _fold_in(g, merged, vectors: np.ndarray, items) -> np.ndarray | None:
    """LightGCN vectors for new users (mean of their items' and known friends' vectors) and new items (mean of
    their buyers'); writes the users' into ``vectors``, returns the items' (None without item vectors)."""
    if items is None:
        return None
    item_vectors = np.zeros((len(g.item_ids), vectors.shape[1]), dtype=np.float32)
    item_vectors[merged.item_map] = items.vectors
    has_item = np.zeros(len(g.item_ids), bool)
    has_item[merged.item_map] = True
    has_user = np.zeros(g.num_users, bool)
    has_user[merged.user_map] = True
    u, i = g.edge(BUYS)
    new_u = np.zeros(g.num_users, bool)
    new_u[merged.new_users] = True
    total = np.zeros((g.num_users, vectors.shape[1]))
    count = np.zeros(g.num_users)
    pick = new_u[u] & has_item[i]
    np.add.at(total, u[pick], item_vectors[i[pick]])
    np.add.at(count, u[pick], 1.0)
    if FRIEND in g.edge_types:
        a, b = g.edge(FRIEND)
        pick = new_u[a] & has_user[b]
        np.add.at(total, a[pick], vectors[b[pick]])
        np.add.at(count, a[pick], 1.0)
    ok = new_u & (count > 0)
    vectors[ok] = (total[ok] / count[ok, None]).astype(np.float32)
    if len(merged.new_items):
        new_i = np.zeros(len(g.item_ids), bool)
        new_i[merged.new_items] = True
        pick = new_i[i] & has_user[u]
        itotal = np.zeros((len(g.item_ids), vectors.shape[1]))
        icount = np.zeros(len(g.item_ids))
        np.add.at(itotal, i[pick], vectors[u[pick]])
        np.add.at(icount, i[pick], 1.0)
        ok = new_i & (icount > 0)
        item_vectors[ok] = (itotal[ok] / icount[ok, None]).astype(np.float32)
    return item_vectors
