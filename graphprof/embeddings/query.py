"""Queries on the exported embeddings: the nearest users of a user, and items to recommend to a user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.embeddings.export import load_embeddings
from graphprof.errors import ArtifactError, ConfigError
from graphprof.privacy.pseudonymize import load_key, pseudonymize_ids


def _query_id(user_id: str, meta: dict, key_file, root: Path) -> str:
    """The id to look up: the user's own id, or its pseudonym when the export was pseudonymised."""
    if not meta.get("pseudonymized"):
        return str(user_id)
    return str(pseudonymize_ids([user_id], load_key(key_file, root))[0])


def _check_current(root: Path, meta: dict) -> None:
    """Refuse an export made from another graph than the one in the work directory."""
    current = workdir.load_manifest(root).get("graph_id")
    if current is not None and meta.get("graph_id") != current:
        raise ArtifactError(f"{root}/embeddings: must come from the current graph. Got an export of an older build; "
                            "run 'graphprof export-embeddings' again")


def similar(workdir_path: str | Path, user_id: str, k: int = 10,
            key_file: str | Path | None = None) -> pd.DataFrame:
    """The ``k`` users nearest to ``user_id`` in the exported embeddings (cosine).

    Columns: ``rank``, ``user_id``, ``similarity``.
    """
    if k < 1:
        raise ConfigError(f"-k must be >= 1. Got {k} instead")
    root = Path(workdir_path)
    users = load_embeddings(root, "user")
    _check_current(root, users.meta)
    out = users.nearest(_query_id(user_id, users.meta, key_file, root), k, shown=str(user_id))
    return out.rename(columns={"id": "user_id"})


def recommend(workdir_path: str | Path, user_id: str, k: int = 10,
              key_file: str | Path | None = None) -> pd.DataFrame:
    """The ``k`` items the user has not bought with the highest score ``<user, item>``.

    Columns: ``rank``, ``item_id``, ``score``, ``category`` (where items have one), ``popularity``.

    Raises:
        ArtifactError: nothing exported, or an export without item vectors (``lr``).
        ConfigError: unknown user id, or ``k`` < 1.
    """
    from graphprof.features import load_features
    from graphprof.graph import BUYS, load_graph

    if k < 1:
        raise ConfigError(f"-k must be >= 1. Got {k} instead")
    root = Path(workdir_path)
    users = load_embeddings(root, "user")
    items = load_embeddings(root, "item")
    if items is None:
        raise ArtifactError(f"{root}/embeddings: the export of model '{users.meta['model']}' has no item vectors; "
                            "run 'graphprof export-embeddings --model lightgcn' (or sage) first")
    _check_current(root, users.meta)
    u = users.index_of(_query_id(user_id, users.meta, key_file, root), shown=str(user_id))
    graph = load_graph(root)
    if list(graph.item_ids) != list(items.ids):
        raise ArtifactError(f"{root}/embeddings: items must match the graph. Got a stale export; "
                            "run 'graphprof export-embeddings' again")
    scores = items.vectors @ users.vectors[u]
    ei = graph.edge(BUYS)
    scores[ei[1][ei[0] == u]] = -np.inf  # graph users and embedded users share the graph's order
    k = int(min(k, np.isfinite(scores).sum()))
    top = np.argsort(-scores, kind="stable")[:k]
    out = pd.DataFrame({"rank": np.arange(1, k + 1), "item_id": items.ids[top], "score": scores[top]})
    feats = load_features(root).items
    if "category" in feats:
        out["category"] = feats["category"].to_numpy()[top]
    out["popularity"] = feats["popularity"].to_numpy()[top].astype(np.int64)
    return out
