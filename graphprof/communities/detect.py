"""Communities of users: Leiden (igraph's C implementation, the fast path; leidenalg on request) or Louvain
(networkx, the reference), on the friendship graph or on friendships plus co-purchase ties; modularity;
and the graphs they run on.

``find_communities`` partitions the users of a :class:`~graphprof.graph.ProfileGraph`;
:mod:`graphprof.communities.profiles` says what sets each community apart, and
:mod:`graphprof.communities.stage` is the ``graphprof communities`` stage that writes ``communities/<method>/``
in the work directory. Vectorised with numpy / scipy.sparse: the only Python loops run over chunks of users or over
communities, never over edges.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphprof.communities import GRAPHS, METHODS
from graphprof.communities.profiles import _top_per_row
from graphprof.errors import ConfigError
from graphprof.graph import ProfileGraph

log = logging.getLogger("graphprof")

LEIDEN_BACKENDS = ("igraph", "leidenalg")
STAGES = ("load", "detect", "profile", "write")  # of ``detect_communities``, shown as a progress bar
DEFAULT_COPURCHASE_WEIGHT = 0.5
DEFAULT_COPURCHASE_NEIGHBORS = 10  # about one friend list's worth of co-purchase ties per user
_CHUNK_ENTRIES = 4_000_000         # bound on the co-purchase product entries held at once (bounds its memory)


@dataclass
class Communities:
    """A partition of the graph's users.

    Attributes:
        user_ids: the user's own ids, shape ``[num_users]`` (graph order).
        labels: int64 ``[num_users]``; ``0`` is the largest community, then by decreasing size (ties: the
            community holding the lower user index first). Users with no tie are singleton communities.
        modularity: Newman modularity (resolution 1) of ``labels`` on the weighted graph the method ran on;
            NaN when that graph has no edge.
        method: ``"leiden"`` or ``"louvain"``; params: the settings (``on``, ``resolution``, ``seed``, ...).
        seconds: wall time of building the graph, partitioning and scoring.
        n_edges: undirected ties of the graph the method ran on.
    """

    user_ids: np.ndarray
    labels: np.ndarray
    modularity: float
    method: str
    params: dict
    seconds: float
    n_edges: int = 0

    @property
    def sizes(self) -> np.ndarray:
        """Users per community, ``sizes[c]`` for label ``c`` (non-increasing)."""
        return np.bincount(self.labels, minlength=0)

    @property
    def n_communities(self) -> int:
        return int(self.labels.max() + 1) if len(self.labels) else 0

    @property
    def n_singletons(self) -> int:
        return int((self.sizes == 1).sum())

    def frame(self) -> pd.DataFrame:
        """**Columns:** ``user_id`` (string), ``community`` (int64)."""
        return pd.DataFrame({"user_id": pd.Series(self.user_ids, dtype="string"),
                             "community": self.labels.astype(np.int64)})


def _check_args(method: str, resolution: float, on: str, copurchase_weight: float, neighbors: int) -> None:
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}. Got {method!r} instead")
    if on not in GRAPHS:
        raise ConfigError(f"--graph must be one of {', '.join(GRAPHS)}. Got {on!r} instead")
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        raise ConfigError(f"--resolution must be a number > 0. Got {resolution!r} instead")
    if not (isinstance(copurchase_weight, (int, float)) and math.isfinite(copurchase_weight)
            and copurchase_weight >= 0):
        raise ConfigError(f"copurchase_weight must be a number >= 0. Got {copurchase_weight!r} instead")
    if int(neighbors) != neighbors or neighbors < 1:
        raise ConfigError(f"copurchase_neighbors must be an integer >= 1. Got {neighbors!r} instead")


# ------------------------------------------------------------------------------------------ the graphs
def copurchase_adjacency(graph: ProfileGraph, neighbors: int = DEFAULT_COPURCHASE_NEIGHBORS) -> sp.csr_matrix:
    """Co-purchase strength between users: symmetric ``[num_users, num_users]`` CSR, values in (0, 1], no
    diagonal.

    The strength is the cosine similarity of what two users bought: rows of the user x item ``log1p(count)``
    matrix, each item scaled by ``1 / log(1 + buyers)`` (Adamic-Adar), L2-normalised, then ``P @ P.T``.
    Two guards against blow-up, for different reasons:

    * the item weight: sharing a best-seller says little about taste, sharing a niche item says a lot, so a
      hugely popular item cannot tie its buyers into one block;
    * top-k: each user keeps only the ``neighbors`` strongest co-purchase ties (a tie stays if either end
      keeps it), so the graph has at most ``2 * neighbors * num_users`` entries whatever the popularity
      curve; and ``P @ P.T`` is computed in row chunks sized by an upper bound on their non-zeros, so
      memory stays bounded even where one item has a million buyers. Down-weighting alone would not bound
      memory; top-k alone would let best-sellers decide who is whose neighbour.
    """
    n = graph.num_users
    counts = graph.purchase_matrix("count").tocsr()
    counts.eliminate_zeros()
    buyers = np.diff(counts.tocsc().indptr).astype(np.float64)
    item_w = 1.0 / np.log1p(np.maximum(buyers, 1.0))
    p = (counts.log1p() @ sp.diags(item_w)).tocsr()
    norms = np.sqrt(np.asarray(p.multiply(p).sum(axis=1)).ravel())
    p = (sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ p).tocsr()
    pt = p.T.tocsr()
    bound = ((p != 0).astype(np.float64) @ buyers).astype(np.float64)   # >= non-zeros of each product row
    chunk = (np.cumsum(bound) - bound) // _CHUNK_ENTRIES
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]) if n else np.zeros(0, np.int64)
    parts = []
    for a, b in zip(starts, np.r_[starts[1:], n]):
        s = (p[a:b] @ pt).tocoo()
        off = s.row + a != s.col
        parts.append(_top_per_row(s.row[off] + a, s.col[off], s.data[off], int(neighbors)))
    if not parts:
        return sp.csr_matrix((n, n))
    row, col, val = (np.concatenate(x) for x in zip(*parts))
    c = sp.csr_matrix((np.minimum(val, 1.0), (row, col)), shape=(n, n))
    return c.maximum(c.T).tocsr()


def community_adjacency(graph: ProfileGraph, on: str = "social", copurchase_weight: float = DEFAULT_COPURCHASE_WEIGHT,
                        copurchase_neighbors: int = DEFAULT_COPURCHASE_NEIGHBORS) -> sp.csr_matrix:
    """The weighted user graph communities are found on: symmetric CSR ``[num_users, num_users]``.

    ``on="social"``: friendship weights (:meth:`ProfileGraph.social_adjacency`). ``on="combined"``: those
    plus ``copurchase_weight`` x :func:`copurchase_adjacency`, so a co-purchase tie weighs at most
    ``copurchase_weight`` of a default (weight 1) friendship.
    """
    _check_args("leiden", 1.0, on, copurchase_weight, copurchase_neighbors)
    adj = graph.social_adjacency().tocsr()
    if on == "combined" and copurchase_weight > 0:
        adj = (adj + copurchase_weight * copurchase_adjacency(graph, copurchase_neighbors)).tocsr()
    adj.eliminate_zeros()
    return adj


# ------------------------------------------------------------------------------------------ partitions
def _rank_by_size(raw: np.ndarray) -> np.ndarray:
    """Relabel so 0 is the largest community; ties go to the community holding the lower user index."""
    n = len(raw)
    if n == 0:
        return np.zeros(0, np.int64)
    _, inv = np.unique(raw, return_inverse=True)
    sizes = np.bincount(inv)
    first = np.full(len(sizes), n, dtype=np.int64)
    np.minimum.at(first, inv, np.arange(n))
    order = np.lexsort((first, -sizes))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inv]


def _leiden(n: int, edges: np.ndarray, w: np.ndarray, resolution: float, seed: int, backend: str) -> np.ndarray:
    """Leiden on the modularity objective with resolution ``gamma`` (= leidenalg's
    ``RBConfigurationVertexPartition``), iterated until a pass changes nothing (``n_iterations=-1``).

    ``"igraph"`` runs igraph's own C implementation: far faster than leidenalg for the same modularity, and
    closer to the planted communities of a generated shop (benchmarks/RESULTS.md has both). igraph draws from
    a process-wide random generator: it is set to ``random.Random(seed)`` for the call and put back to the
    ``random`` module (igraph's default) after.
    """
    import igraph as ig

    g = ig.Graph(n=n, edges=edges, directed=False)
    if backend == "leidenalg":
        import leidenalg

        part = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights=w.tolist(),
                                        resolution_parameter=resolution, n_iterations=-1, seed=seed)
        return np.asarray(part.membership, dtype=np.int64)
    import random

    ig.set_random_number_generator(random.Random(seed))
    try:
        part = g.community_leiden(objective_function="modularity", weights=w.tolist(), resolution=resolution,
                                  n_iterations=-1)
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(part.membership, dtype=np.int64)


def _louvain(n: int, edges: np.ndarray, w: np.ndarray, resolution: float, seed: int) -> np.ndarray:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(edges[:, 0].tolist(), edges[:, 1].tolist(), w.tolist()))
    found = nx.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed)
    membership = np.empty(n, dtype=np.int64)
    for j, members in enumerate(found):  # a loop over communities, not edges
        membership[np.fromiter(members, dtype=np.int64, count=len(members))] = j
    return membership


def modularity(adj: sp.spmatrix, labels: np.ndarray) -> float:
    """Newman modularity (resolution 1) of ``labels`` on the weighted undirected graph ``adj`` (igraph's);
    NaN for a graph with no edge."""
    import igraph as ig

    upper = sp.triu(adj, k=1).tocoo()
    if upper.nnz == 0:
        return float("nan")
    g = ig.Graph(n=adj.shape[0], edges=np.column_stack([upper.row, upper.col]), directed=False)
    return float(g.modularity(np.asarray(labels).tolist(), weights=upper.data.tolist()))


def find_communities(graph: ProfileGraph, method: str = "leiden", resolution: float = 1.0, on: str = "social",
                     copurchase_weight: float = DEFAULT_COPURCHASE_WEIGHT, seed: int = 0, *,
                     copurchase_neighbors: int = DEFAULT_COPURCHASE_NEIGHBORS,
                     leiden_backend: str = "igraph") -> Communities:
    """Partition the users into communities.

    Args:
        method: ``"leiden"`` (Leiden on modularity with resolution, iterated until no improvement) or
            ``"louvain"`` (``networkx.community.louvain_communities``, the reference).
        resolution: higher gives more, smaller communities (the same gamma for both methods).
        on: ``"social"`` (friendships) or ``"combined"`` (plus co-purchase ties; :func:`community_adjacency`).
        copurchase_weight, copurchase_neighbors: see :func:`copurchase_adjacency`; used with ``"combined"``.
        seed: the same seed gives the same labels.
        leiden_backend: ``"igraph"`` (``Graph.community_leiden``, C, the default) or ``"leidenalg"``
            (``RBConfigurationVertexPartition``: the same objective, much slower; see :func:`_leiden`).

    Users without a tie are singleton communities. Modularity is measured at resolution 1 on the weighted
    graph the method ran on, so values from different resolutions and methods compare.

    Raises:
        ConfigError: an unknown method, graph or backend, resolution <= 0, copurchase_weight < 0.
    """
    _check_args(method, resolution, on, copurchase_weight, copurchase_neighbors)
    if leiden_backend not in LEIDEN_BACKENDS:
        raise ConfigError(f"leiden_backend must be one of {', '.join(LEIDEN_BACKENDS)}. "
                          f"Got {leiden_backend!r} instead")
    t0 = time.perf_counter()
    adj = community_adjacency(graph, on, copurchase_weight, copurchase_neighbors)
    n = graph.num_users
    upper = sp.triu(adj, k=1).tocoo()
    raw = np.arange(n, dtype=np.int64) + n  # users without a tie: each its own community
    if upper.nnz:
        active = np.unique(np.r_[upper.row, upper.col])
        local = np.full(n, -1, dtype=np.int64)
        local[active] = np.arange(len(active))
        edges = np.column_stack([local[upper.row], local[upper.col]])
        w = upper.data.astype(np.float64)
        raw[active] = (_leiden(len(active), edges, w, float(resolution), int(seed), leiden_backend)
                       if method == "leiden" else _louvain(len(active), edges, w, float(resolution), int(seed)))
    else:
        log.warning("communities: the %s graph has no tie; every user is a singleton", on)
    labels = _rank_by_size(raw)
    q = modularity(adj, labels)
    params = {"on": on, "resolution": float(resolution), "seed": int(seed)}
    if on == "combined":
        params.update(copurchase_weight=float(copurchase_weight), copurchase_neighbors=int(copurchase_neighbors))
    if method == "leiden":
        params.update(backend=leiden_backend, n_iterations=-1)
    return Communities(user_ids=graph.user_ids, labels=labels, modularity=q, method=method, params=params,
                       seconds=time.perf_counter() - t0, n_edges=int(upper.nnz))
