"""Neighbour sampling over a CSR graph in plain (vectorized) torch, for PyG's ``NodeLoader``.

PyG's ``NeighborLoader`` needs pyg-lib or torch-sparse; :class:`CSRNeighborSampler` implements PyG's
``BaseSampler`` interface instead, so ``torch_geometric.loader.NodeLoader`` does the batching and the
feature gathering (``filter_hetero_data``). Python loops run over hops, edge types and fanout slots only,
never over nodes or edges.

The sampled subgraph follows PyG's (pyg-lib's) conventions: at hop ``h`` every node that entered the subgraph
at hop ``h - 1`` (the seeds at hop 1) draws up to ``fanout[h - 1]`` of its incoming edges of each edge type
whose destination is its node type, without replacement (``-1``: all of them); the sources new to the
subgraph enter it at hop ``h``. Nodes are listed per type in hop order, seeds first (so the first
``batch_size`` rows of the seed type are the seeds); edges per type in hop order too, which lets a model trim
each layer to what the later layers need (``num_sampled_nodes`` / ``num_sampled_edges``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput, NodeSamplerInput

log = logging.getLogger(__name__)

EdgeType = tuple[str, str, str]
_INT32_MAX = 2**31 - 1


def _compact(index: Tensor, bound: int) -> Tensor:
    """``index`` as int32 where every value fits (half the memory), else int64."""
    return index.to(torch.int32) if bound <= _INT32_MAX else index.to(torch.int64)


def _ranges(count: Tensor) -> tuple[Tensor, Tensor]:
    """For segments of lengths ``count`` [S]: the segment of every slot and its rank inside it, both
    ``[count.sum()]`` int64 (``repeat_interleave`` + ``arange`` minus the segment's start)."""
    seg = torch.repeat_interleave(torch.arange(count.numel()), count)
    start = torch.cumsum(count, 0) - count
    return seg, torch.arange(seg.numel()) - start[seg]


def _floyd(deg: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """A uniform k-subset of ``range(deg[i])`` per row (Floyd's algorithm, vectorized over rows; every
    ``deg[i] >= k``). Returns ``[len(deg), k]`` int64 offsets, sorted along each row."""
    out = torch.empty(deg.numel(), k, dtype=torch.long)
    u = torch.rand(deg.numel(), k, generator=generator, dtype=torch.float64)
    for i in range(k):
        j = deg - k + i                                     # candidates 0..j; j itself is new for sure
        t = torch.minimum((u[:, i] * (j + 1)).long(), j)
        taken = (out[:, :i] == t[:, None]).any(dim=1)
        out[:, i] = torch.where(taken, j, t)
    return out.sort(dim=1).values


class CSRGraph:
    """The incoming edges of every edge type as a CSR keyed by destination, built once.

    Per edge type ``(src, rel, dst)``: ``rowptr [num_nodes[dst] + 1]`` (int64), ``src [E]`` (source node of
    each CSR slot) and ``eid [E]`` (the slot's position in ``data[et].edge_index``); slots of one destination
    keep the edges' original order (stable sort).
    """

    def __init__(self, data: HeteroData):
        self.num_nodes = {nt: int(data[nt].num_nodes) for nt in data.node_types}
        self.edge_types: list[EdgeType] = [tuple(et) for et in data.edge_types]
        self.rowptr: dict[EdgeType, Tensor] = {}
        self.src: dict[EdgeType, Tensor] = {}
        self.eid: dict[EdgeType, Tensor] = {}
        for et in self.edge_types:
            ei = torch.as_tensor(data[et].edge_index).long()
            if ei.dim() != 2 or ei.shape[0] != 2:
                raise ValueError(f"data[{et}].edge_index must have shape [2, E]. Got {list(ei.shape)} instead")
            n_dst = self.num_nodes[et[2]]
            perm = torch.argsort(ei[1], stable=True)
            self.rowptr[et] = torch.cat([torch.zeros(1, dtype=torch.long),
                                         torch.cumsum(torch.bincount(ei[1], minlength=n_dst), 0)])
            self.src[et] = _compact(ei[0][perm], self.num_nodes[et[0]])
            self.eid[et] = _compact(perm, ei.shape[1])

    def in_edges_of_range(self, et: EdgeType, start: int, stop: int) -> Tensor:
        """All incoming ``et`` edges of the destinations ``start..stop-1``: ``edge_index [2, E']`` with global
        sources in row 0 and destinations relative to ``start`` in row 1 (a contiguous CSR slice)."""
        ptr = self.rowptr[et][start:stop + 1]
        dst = torch.repeat_interleave(torch.arange(stop - start), ptr[1:] - ptr[:-1])
        return torch.stack([self.src[et][int(ptr[0]):int(ptr[-1])].long(), dst])

    def chunks(self, node_type: str, edge_types: Sequence[EdgeType], max_nodes: int,
               max_edges: int) -> list[tuple[int, int]]:
        """Consecutive ``(start, stop)`` ranges covering the ``node_type`` nodes, each with at most ``max_nodes``
        nodes and at most ``max_edges`` incoming edges of ``edge_types`` (a node with more gets a range of its
        own): what bounds the message memory of a layer-wise pass."""
        n = self.num_nodes[node_type]
        cum = sum((self.rowptr[et] for et in edge_types), torch.zeros(n + 1, dtype=torch.long))
        out, start = [], 0
        while start < n:  # one step per chunk
            by_edges = int(torch.searchsorted(cum, cum[start] + max_edges, right=True)) - 1
            stop = min(start + max_nodes, max(by_edges, start + 1), n)
            out.append((start, stop))
            start = stop
        return out

    def sample_in_edges(self, et: EdgeType, dst: Tensor, k: int,
                        generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Up to ``k`` incoming ``et`` edges per node of ``dst`` [F] (global ids), uniformly without
        replacement (``k = -1``: all). Returns ``(src, pos, eid)``, each ``[E']`` int64: global source, the
        position in ``dst`` of the destination, and the edge's id in ``data[et].edge_index``."""
        rowptr = self.rowptr[et]
        start = rowptr[dst]
        deg = rowptr[dst + 1] - start
        take = deg if k < 0 else deg.clamp(max=k)
        pos, offset = _ranges(take)
        if k >= 0:
            big = deg > k                                   # these draw k of their deg edges
            if bool(big.any()):
                row = torch.cumsum(big, 0) - 1              # row of each big node in the Floyd matrix
                drawn = _floyd(deg[big], k, generator)
                slot = big[pos]
                offset[slot] = drawn[row[pos[slot]], offset[slot]]
        csr = start[pos] + offset
        return self.src[et][csr].long(), pos, self.eid[et][csr].long()


class CSRNeighborSampler(BaseSampler):
    """PyG ``BaseSampler`` over a :class:`CSRGraph`; use it with ``torch_geometric.loader.NodeLoader``.

    Args:
        data: the heterogeneous graph (``edge_index`` per edge type, ``num_nodes`` per node type); the same
            object is given to ``NodeLoader``, which gathers the features.
        fanout: incoming edges drawn per node, edge type and hop (one entry per hop / GNN layer); ``-1``
            takes all of them (exact neighbourhoods).
        seed: seeds the sampler's own ``torch.Generator``: the same seed gives the same batches.
    """

    def __init__(self, data: HeteroData, fanout: Sequence[int], seed: int = 0):
        fanout = list(fanout)
        if not fanout or any(not isinstance(k, int) or isinstance(k, bool) or k < -1 for k in fanout):
            raise ValueError(f"fanout must be a non-empty list of integers >= -1 (-1: all neighbours). "
                             f"Got {fanout!r} instead")
        self.fanout = fanout
        self.graph = data if isinstance(data, CSRGraph) else CSRGraph(data)
        self.generator = torch.Generator().manual_seed(int(seed))
        # global -> local index per node type, -1 outside the batch being sampled (reset after each batch)
        self._local = {nt: torch.full((n,), -1, dtype=torch.long) for nt, n in self.graph.num_nodes.items()}

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        """The subgraph around ``inputs.node`` (seeds of ``inputs.input_type``, unique).

        Returns ``HeteroSamplerOutput`` with ``node[t]`` global ids (seeds first), ``row[et]`` / ``col[et]``
        local source / destination indices into ``node[et[0]]`` / ``node[et[2]]``, ``edge[et]`` ids in
        ``data[et].edge_index``, ``num_sampled_nodes[t]`` (per hop, hop 0 = seeds), ``num_sampled_edges[et]``
        (per hop) and ``metadata = (input_id, time)`` as PyG's samplers do.
        """
        if inputs.input_type not in self.graph.num_nodes:
            raise ValueError(f"input_type must be one of the node types {list(self.graph.num_nodes)}. "
                             f"Got {inputs.input_type!r} instead")
        if inputs.time is not None:
            raise ValueError("CSRNeighborSampler does not sample by time. Got seed times instead")
        out = self._sample(inputs.input_type, inputs.node.long())
        out.metadata = (inputs.input_id, inputs.time)
        return out

    def sample_from_edges(self, inputs, neg_sampling=None):
        raise NotImplementedError("CSRNeighborSampler samples from nodes only (link prediction is not supported)")

    # --------------------------------------------------------------------------------------------- helpers
    def _sample(self, seed_type: str, seeds: Tensor) -> HeteroSamplerOutput:
        n_seeds = seeds.numel()
        if n_seeds and (int(seeds.min()) < 0 or int(seeds.max()) >= self.graph.num_nodes[seed_type]):
            raise ValueError(f"seed {seed_type} nodes must be in 0..{self.graph.num_nodes[seed_type] - 1}")
        if torch.unique(seeds).numel() != n_seeds:
            raise ValueError(f"seed nodes must be unique. Got {n_seeds - torch.unique(seeds).numel()} duplicates")
        empty = torch.empty(0, dtype=torch.long)
        nodes = {nt: [seeds if nt == seed_type else empty] for nt in self.graph.num_nodes}
        count = {nt: (n_seeds if nt == seed_type else 0) for nt in self.graph.num_nodes}
        rows = {et: [] for et in self.graph.edge_types}
        cols = {et: [] for et in self.graph.edge_types}
        edges = {et: [] for et in self.graph.edge_types}
        try:
            self._local[seed_type][seeds] = torch.arange(n_seeds)
            frontier = {seed_type: (seeds, torch.arange(n_seeds))}   # global ids, local ids
            for k in self.fanout:
                frontier = self._hop(k, frontier, nodes, count, rows, cols, edges)
            return HeteroSamplerOutput(
                node={nt: torch.cat(parts) for nt, parts in nodes.items()},
                row={et: _cat(v) for et, v in rows.items()}, col={et: _cat(v) for et, v in cols.items()},
                edge={et: _cat(v) for et, v in edges.items()},
                num_sampled_nodes={nt: [p.numel() for p in parts] for nt, parts in nodes.items()},
                num_sampled_edges={et: [e.numel() for e in v] for et, v in edges.items()})
        finally:
            for nt, parts in nodes.items():
                self._local[nt][torch.cat(parts)] = -1

    def _hop(self, k: int, frontier: dict, nodes: dict, count: dict, rows: dict, cols: dict,
             edges: dict) -> dict[str, tuple[Tensor, Tensor]]:
        """One hop: sample the frontier's incoming edges of every type, add the new sources (sorted global
        ids) and the edges; returns the next frontier (the new nodes, as global and local ids)."""
        drawn, sources = [], {nt: [] for nt in self.graph.num_nodes}
        for et in self.graph.edge_types:
            if et[2] not in frontier:
                for acc in (rows, cols, edges):
                    acc[et].append(torch.empty(0, dtype=torch.long))
                continue
            glob, loc = frontier[et[2]]
            src, pos, eid = self.graph.sample_in_edges(et, glob, k, self.generator)
            drawn.append((et, src, loc[pos], eid))
            sources[et[0]].append(src)
        nxt = {}
        for nt, parts in sources.items():
            new = torch.empty(0, dtype=torch.long)
            if parts:
                cand = torch.cat(parts)
                new = torch.unique(cand[self._local[nt][cand] < 0])
                local = count[nt] + torch.arange(new.numel())
                self._local[nt][new] = local
                count[nt] += new.numel()
                if new.numel():
                    nxt[nt] = (new, local)
            nodes[nt].append(new)
        for et, src, dst_local, eid in drawn:
            rows[et].append(self._local[et[0]][src])
            cols[et].append(dst_local)
            edges[et].append(eid)
        return nxt


def _cat(parts: list[Tensor]) -> Tensor:
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
