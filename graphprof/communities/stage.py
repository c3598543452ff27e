"""The ``communities`` stage: detect communities on the built graph, profile them, and write
``communities/<method>/`` in the work directory; and load the assignments back for later stages."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from graphprof import workdir
from graphprof.communities.detect import (
    DEFAULT_COPURCHASE_NEIGHBORS,
    DEFAULT_COPURCHASE_WEIGHT,
    STAGES,
    _check_args,
    find_communities,
)
from graphprof.communities.profiles import DEFAULT_MIN_SIZE, profile_communities
from graphprof.errors import ArtifactError
from graphprof.runtime import progress

log = logging.getLogger("graphprof")


@dataclass
class CommunitiesResult:
    """What ``graphprof communities`` found and wrote (``communities/<method>/`` in ``workdir``)."""

    workdir: Path
    method: str
    params: dict
    modularity: float
    n_communities: int
    n_singletons: int
    sizes: list[int]
    n_users: int
    n_edges: int
    seconds: dict[str, float]
    graph_id: str | None
    profiles: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    @property
    def out_dir(self) -> Path:
        return workdir.communities_dir(self.workdir, self.method)

    def summary(self) -> dict:
        """The content of ``summary.json``. ``sizes`` lists the communities of 2+ users (largest first);
        singletons are counted in ``n_singletons``. ``modularity`` is null for a graph with no tie."""
        return {"method": self.method, "params": self.params,
                "modularity": None if math.isnan(self.modularity) else self.modularity,
                "n_communities": self.n_communities, "n_singletons": self.n_singletons, "sizes": self.sizes,
                "n_users": self.n_users, "n_edges": self.n_edges, "seconds": self.seconds,
                "graph_id": self.graph_id}

    def to_json(self) -> dict:
        files = {name: str(self.out_dir / name) for name in
                 (workdir.COMMUNITY_ASSIGNMENTS, workdir.COMMUNITY_PROFILES, workdir.COMMUNITY_SUMMARY)}
        return {**self.summary(), "workdir": str(self.workdir), "files": files,
                "profiles": self.profiles[["community", "size", "share", "distinctive"]].to_dict("records")}

    def summary_lines(self, top: int = 10) -> list[str]:
        """A short human table: counts, modularity, the largest communities and what sets each apart."""
        q = "n/a (no ties)" if math.isnan(self.modularity) else f"{self.modularity:.3f}"
        settings = ", ".join(f"{k} {v}" for k, v in self.params.items() if k != "on")
        lines = [f"communities: {self.method} on the {self.params['on']} graph ({settings}): "
                 f"{self.n_communities} communities ({self.n_singletons} singletons) of {self.n_users} users, "
                 f"modularity {q}, {self.seconds['detect']:.2f}s",
                 f"{'community':>9}  {'size':>6}  {'share':>6}  most distinctive", "-" * 60]
        rows = self.profiles[self.profiles["community"] >= 0]
        for r in rows.head(top).itertuples(index=False):
            lines.append(f"{r.community:>9}  {r.size:>6}  {r.share:>6.1%}  {r.distinctive}")
        more = len(rows) - min(top, len(rows))
        pooled = self.profiles[self.profiles["community"] < 0]
        notes = [f"{more} more communities of {DEFAULT_MIN_SIZE}+ users"] if more > 0 else []
        if len(pooled):
            p = pooled.iloc[0]
            notes.append(f"{int(p['n_communities'])} smaller communities ({int(p['size'])} users) pooled as -1")
        if notes:
            lines.append(f"{'':>9}  " + "; ".join(notes))
        lines.append(f"written to {self.out_dir}/ ({workdir.COMMUNITY_ASSIGNMENTS}, {workdir.COMMUNITY_PROFILES}, "
                     f"{workdir.COMMUNITY_SUMMARY})")
        return lines


def detect_communities(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, method: str = "leiden",
                       resolution: float = 1.0, on: str = "social",
                       copurchase_weight: float = DEFAULT_COPURCHASE_WEIGHT, seed: int = 0) -> CommunitiesResult:
    """The ``communities`` stage: detect communities on the built graph, profile them, and write
    ``communities/<method>/assignments.parquet`` (user_id, community), ``profiles.parquet``
    (:func:`profile_communities`) and ``summary.json`` (method, params, modularity, sizes, seconds,
    graph_id; written last), each atomically; record the stage in ``manifest.json``.

    Raises:
        ArtifactError: no graph in the work directory (run ``build-graph`` first).
        ConfigError: bad arguments (see :func:`find_communities`).
    """
    from graphprof.features import load_features
    from graphprof.graph import load_graph
    from graphprof.graph.build import load_tables

    root = Path(workdir_path)
    _check_args(method, resolution, on, copurchase_weight, DEFAULT_COPURCHASE_NEIGHBORS)
    manifest = workdir.require_built(root)
    with workdir.locked(root, "communities"), progress.stages("communities", STAGES) as stage:
        stage("load")
        t0 = time.perf_counter()
        graph = load_graph(root)
        features = load_features(root)
        users = load_tables(root, "users")
        load_seconds = time.perf_counter() - t0
        stage(f"detect ({method})")
        comms = find_communities(graph, method, resolution, on, copurchase_weight, seed)
        stage("profile")
        t1 = time.perf_counter()
        profiles = profile_communities(graph, features, comms, users)
        sizes = comms.sizes
        result = CommunitiesResult(
            workdir=root, method=method, params=comms.params, modularity=comms.modularity,
            n_communities=comms.n_communities, n_singletons=comms.n_singletons,
            sizes=[int(x) for x in sizes[sizes > 1]], n_users=graph.num_users, n_edges=comms.n_edges,
            seconds={"load": load_seconds, "detect": comms.seconds, "profile": time.perf_counter() - t1},
            graph_id=manifest.get("graph_id"), profiles=profiles)
        stage("write")
        out = result.out_dir
        workdir.write_parquet(out / workdir.COMMUNITY_ASSIGNMENTS, comms.frame())
        workdir.write_parquet(out / workdir.COMMUNITY_PROFILES, profiles)
        workdir.write_json(out / workdir.COMMUNITY_SUMMARY, result.summary())  # last: the run is complete
        done = dict(workdir.load_manifest(root).get("stages", {}).get("communities", {}))
        done[method] = {"seconds": time.perf_counter() - t0, **comms.params,
                        "modularity": result.summary()["modularity"], "n_communities": comms.n_communities}
        workdir.update_manifest(root, stages={"communities": done})
    log.info("communities: %s found %d communities, modularity %.3f", method, comms.n_communities,
             comms.modularity)
    return result


def load_assignments(root: str | Path, graph_id: str | None = None) -> tuple[pd.DataFrame, str]:
    """The community of every user from the work directory: ``communities/leiden/`` if present, else the only
    method present. Returns ``(frame with user_id, community; method)``.

    Raises:
        ArtifactError: no communities yet, several methods but no ``leiden``, or communities detected on
            another graph than ``graph_id`` (the current one).
    """
    root = Path(root)
    methods = workdir.community_methods(root)
    if not methods:
        raise ArtifactError(f"{root}/: no communities found; run 'graphprof communities' first")
    if "leiden" in methods:
        method = "leiden"
    elif len(methods) == 1:
        method = methods[0]
    else:
        raise ArtifactError(f"{root}/{workdir.COMMUNITIES_DIR}/: must hold one method or 'leiden'. "
                            f"Got {', '.join(methods)} instead; run 'graphprof communities --method leiden'")
    out = workdir.communities_dir(root, method)
    hint = f"run 'graphprof communities --method {method}' again"
    summary = workdir.read_json(out / workdir.COMMUNITY_SUMMARY, missing=hint)
    if graph_id is not None and summary.get("graph_id") not in (None, graph_id):
        raise ArtifactError(f"{out / workdir.COMMUNITY_SUMMARY}: communities must come from the current graph. "
                            f"Got communities of an earlier graph; {hint}")
    return workdir.read_parquet(out / workdir.COMMUNITY_ASSIGNMENTS, missing=hint), method
