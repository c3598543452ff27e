"""Saving and loading the graph: ``graph/tensors.safetensors`` (edge arrays, mirrors noted rather than written),
``graph/meta.json`` and ``tables/ids/*.parquet``; nothing is unpickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof import workdir
from graphprof.errors import ArtifactError
from graphprof.graph.hetero import BUY_ATTRS, MIRRORS, ProfileGraph, _check


def _key(edge_type: tuple[str, str, str], name: str) -> str:
    return "__".join(edge_type) + "." + name


def _flipped(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether edge_index ``a`` is ``b`` flipped (compared row by row: views, no copy)."""
    return a.shape == b.shape and bool(np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0]))


def save_graph(graph: ProfileGraph, root: str | Path) -> None:
    """Write ``graph/tensors.safetensors``, ``graph/meta.json`` and ``tables/ids/*.parquet``."""
    root = Path(root)
    tensors, edge_meta = {}, []
    types = graph.edge_types
    for et in types:
        arrays = {n: graph.edge(et, n) for n in ("edge_index", "edge_attr", "edge_weight")}
        names = [n for n, a in arrays.items() if a is not None]
        entry = {"type": list(et), "num_edges": int(arrays["edge_index"].shape[1])}
        mirror = MIRRORS.get(et)
        if mirror in types and names == ["edge_index"] and _flipped(arrays["edge_index"], graph.edge(mirror)):
            # a reverse type is its forward type's edge_index flipped: noted, not written (it would double
            # the purchase edges in the file, to be written and hashed for nothing)
            entry["mirror_of"] = list(mirror)
        else:
            for n in names:
                tensors[_key(et, n)] = arrays[n]
            entry["tensors"] = names
        edge_meta.append(entry)
    meta = {"node_types": {nt: graph.num_nodes(nt) for nt in graph.node_types},
            "edge_types": edge_meta, "buy_attrs": list(BUY_ATTRS)}
    workdir.write_safetensors(root / workdir.GRAPH_TENSORS, tensors)
    for kind, ids in (("user", graph.user_ids), ("item", graph.item_ids), ("category", graph.category_ids)):
        workdir.write_parquet(workdir.ids_path(root, kind),
                              pd.DataFrame({f"{kind}_id": pd.Series(ids, dtype="string"),
                                            "index": np.arange(len(ids), dtype=np.int64)}))
    workdir.write_json(root / workdir.GRAPH_META, meta)  # last: its presence means the graph is complete


def load_graph(root: str | Path = workdir.DEFAULT_WORKDIR) -> ProfileGraph:
    """Load a graph saved by :func:`save_graph` (safetensors + JSON + Parquet; nothing is unpickled).

    Raises:
        ArtifactError: no graph in ``root``, or a damaged one.
    """
    root = Path(root)
    workdir.require_built(root)
    hint = "run 'graphprof build-graph' again"
    meta = workdir.read_json(root / workdir.GRAPH_META, missing=hint)
    tensors = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing=hint, numpy=True)
    try:
        nodes = {nt: int(n) for nt, n in meta["node_types"].items()}
        edges: dict = {}
        for em in meta["edge_types"]:  # the saved order, mirrors too (the GNNs make their parameters in that
            et = tuple(em["type"])      # order, so their initial values depend on it)
            edges[et] = {n: tensors[_key(et, n)] for n in em.get("tensors", ())}
        for em in meta["edge_types"]:
            if "mirror_of" in em:
                edges[tuple(em["type"])]["edge_index"] = edges[tuple(em["mirror_of"])]["edge_index"][::-1]
        _check(nodes, edges, ranges=False)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{root / workdir.GRAPH_TENSORS}: does not match {root / workdir.GRAPH_META} "
                            f"({e}); {hint}") from None
    ids = {}
    for kind in ("user", "item", "category"):
        df = workdir.read_parquet(workdir.ids_path(root, kind), missing=hint)
        ids[kind] = df.sort_values("index")[f"{kind}_id"].astype(str).to_numpy(dtype=object)
    return ProfileGraph(nodes=nodes, edges=edges, user_ids=ids["user"], item_ids=ids["item"],
                        category_ids=ids["category"])


def describe(graph: ProfileGraph) -> dict:
    """Node and edge counts, for logs and ``--json``."""
    return {"nodes": {nt: graph.num_nodes(nt) for nt in graph.node_types},
            "edges": {"__".join(et): int(graph.edge(et).shape[1]) for et in graph.edge_types}}
