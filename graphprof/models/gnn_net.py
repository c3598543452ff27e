"""The network behind ``sage`` and ``gat`` (:mod:`graphprof.models.gnn`): per-type input projections, one
``HeteroConv`` per layer (a ``SAGEConv`` or ``GATConv`` per edge type, summed per destination type), jumping
knowledge over the layers, a linear head; with three ways to run it (full graph, a sampled subgraph in hop order,
exact layer-wise inference over chunks of destination nodes).

Shapes: ``x_dict[t]`` is ``[num_nodes[t], in_dims[t]]``; logits ``[num_users, n_classes]``; embeddings
``[num_users, hidden * (layers + 1)]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv, SAGEConv
from torch_geometric.nn.conv.hetero_conv import group

from graphprof.models import ops
from graphprof.models.sampler import CSRGraph

#: destination nodes and incoming edges per chunk of the exact layer-wise inference (bound its memory: one
#: chunk's messages are ``[edges, hidden]``)
INFERENCE_CHUNK_NODES = 65_536
INFERENCE_CHUNK_EDGES = 262_144


def _conv(kind: str, hidden: int):
    if kind == "sage":
        return SAGEConv(hidden, hidden, aggr="mean", root_weight=True)
    if kind == "gat":  # attention over each relation's neighbours; the own representation travels by the skip
        return GATConv((hidden, hidden), hidden, heads=1, add_self_loops=False)
    raise ValueError(f"conv must be 'sage' or 'gat'. Got {kind!r} instead")  # an invariant: set by the class


class HeteroSAGENet(nn.Module):
    """Per-type input projections, ``layers`` ``HeteroConv`` layers (one ``conv`` -- ``"sage"`` or ``"gat"`` --
    per edge type), the user's representations after every layer concatenated, and a linear head.

    Each layer's output for a node type is ``h + dropout(relu(norm(conv(h))))``: with ``norm``, a ``LayerNorm``
    per layer and node type; with ``residual``, the identity skip ``h +`` (the tuned classic GNNs of Luo et
    al., NeurIPS 2024: residual connections and normalisation let deeper and wider nets train). Without both,
    ``dropout(relu(conv(h)))``."""

    def __init__(self, in_dims: dict[str, int], edge_types: list[tuple[str, str, str]], hidden: int,
                 out: int, layers: int, dropout: float, conv: str = "sage", residual: bool = False,
                 norm: bool = False):
        super().__init__()
        self.dropout = dropout
        self.residual = residual
        self.lin_in = nn.ModuleDict({nt: nn.Linear(d, hidden) for nt, d in in_dims.items()})
        self.convs = nn.ModuleList([
            HeteroConv({et: _conv(conv, hidden) for et in edge_types}, aggr="sum")
            for _ in range(layers)
        ])
        self.norms = nn.ModuleList([nn.ModuleDict({nt: nn.LayerNorm(hidden) for nt in in_dims})
                                    for _ in range(layers)]) if norm else None
        self.head = nn.Linear(hidden * (layers + 1), out)

    def _post(self, layer: int, nt: str, new: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Layer ``layer`` (0-based)'s output for type ``nt`` from its conv output ``new`` and its input ``prev``
        (the same rows)."""
        if self.norms is not None:
            new = self.norms[layer][nt](new)
        new = ops.dropout(F.relu(new), self.dropout, self.training)
        return prev + new if self.residual else new

    def node_reps(self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict,
                  types: set[str] | None = None) -> dict[str, torch.Tensor]:
        """The representations after each layer, concatenated ``[num_nodes, hidden * (layers + 1)]``, of the
        node types ``types`` (default: all). Each layer computes only the types the layers after it read
        (:meth:`_needed`): for the users' representations, the last layer skips the items, which on a shop with
        many more items than users is most of its work."""
        needed = self._needed(set(x_dict) if types is None else set(types), edge_index_dict)
        h = {nt: ops.dropout(F.relu(self.lin_in[nt](x)), self.dropout, self.training)
             for nt, x in x_dict.items() if nt in needed[0]}
        order = list(x_dict)  # the types in the inputs' order, never a set's: dropout draws in this order
        reps = {nt: [h[nt]] for nt in order if nt in needed[-1]}
        for layer, conv in enumerate(self.convs, start=1):
            dst = {nt: h[nt] for nt in order if nt in needed[layer]}
            new = _bipartite_conv(conv, h, dst, edge_index_dict)
            h = {nt: self._post(layer - 1, nt, new[nt], v) if nt in new else v for nt, v in dst.items()}
            for nt in reps:
                reps[nt].append(h[nt])
        return {nt: torch.cat(v, dim=1) for nt, v in reps.items()}

    def _needed(self, types: set[str], edge_index_dict: dict) -> list[set[str]]:
        """``needed[l]``: the node types whose layer-``l`` outputs the wanted ``types`` depend on (themselves,
        and the sources of every relation into a type needed one layer up)."""
        needed = [set(types)]
        for _ in self.convs:
            up = needed[0]
            needed.insert(0, up | {et[0] for et in edge_index_dict if et[2] in up})
        return needed

    def forward(self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.node_reps(x_dict, edge_index_dict, types={"user"})["user"]
        return self.head(emb), emb

    def forward_sampled(self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict,
                        num_nodes: dict[str, list[int]], num_edges: dict, batch_size: int,
                        seed_type: str = "user") -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[batch_size, out]`` and embeddings ``[batch_size, hidden * (layers + 1)]`` of the seeds
        (the first ``batch_size`` nodes of ``seed_type``) of a sampled subgraph whose nodes and edges are listed
        in hop order (``num_nodes[t]``: nodes per hop, hop 0 = seeds; ``num_edges[et]``: edges per hop).

        Layer ``l`` of ``L`` reads the nodes of hops ``0..L-l`` over the edges of hops ``1..L-l`` and computes
        outputs for hops ``0..L-l-1`` only (PyG's ``trim_to_layer`` idea, trimmed on the destination side too),
        which changes no seed's output."""
        n_layers = len(self.convs)
        h = {nt: ops.dropout(F.relu(self.lin_in[nt](x)), self.dropout, self.training) for nt, x in x_dict.items()}
        reps = [h[seed_type][:batch_size]]
        for layer, conv in enumerate(self.convs):
            hops = n_layers - layer
            dst = {nt: v[:sum(num_nodes[nt][:hops])] for nt, v in h.items()}
            edges = {et: ei[:, :sum(num_edges[et][:hops])] for et, ei in edge_index_dict.items()}
            new = _bipartite_conv(conv, h, dst, edges)
            h = {nt: self._post(layer, nt, new[nt], v) if nt in new else v for nt, v in dst.items()}
            reps.append(h[seed_type][:batch_size])
        emb = torch.cat(reps, dim=1)
        return self.head(emb), emb

    def layerwise_reps(self, x_dict: dict[str, torch.Tensor], graph: CSRGraph, types: set[str] | None = None,
                       chunk_nodes: int = INFERENCE_CHUNK_NODES,
                       chunk_edges: int = INFERENCE_CHUNK_EDGES) -> dict[str, torch.Tensor]:
        """Exact eval-mode :meth:`node_reps` without a full-graph forward: one layer at a time, over chunks of
        destination nodes (at most ``chunk_nodes`` nodes / ``chunk_edges`` incoming edges) with all their
        incoming edges (contiguous CSR slices of ``graph``).

        Memory: one ``[num_nodes, hidden]`` table per node type and layer, plus one chunk's messages.
        ``types``: the node types whose representations are wanted (default: all); the last layer is computed
        for those only. Returns ``{type: [num_nodes, hidden * (layers + 1)]}`` for ``types``."""
        if self.training:
            raise RuntimeError("layerwise_reps is an inference routine: call .eval() first")
        types = set(x_dict) if types is None else set(types)
        h = {nt: F.relu(self.lin_in[nt](x)) for nt, x in x_dict.items()}
        reps = {nt: [v] for nt, v in h.items()}
        for layer, conv in enumerate(self.convs):
            last = layer == len(self.convs) - 1
            new = {}
            for nt, v in h.items():
                into = [et for et in conv.convs.keys() if et[2] == nt]
                if last and nt not in types:
                    continue
                if not into or v.shape[0] == 0:
                    new[nt] = v
                    continue
                parts = []
                for start, stop in graph.chunks(nt, into, chunk_nodes, chunk_edges):
                    edges = {et: graph.in_edges_of_range(et, start, stop) for et in into}
                    out = _bipartite_conv(conv, h, {nt: v[start:stop]}, edges)[nt]
                    parts.append(self._post(layer, nt, out, v[start:stop]))
                new[nt] = torch.cat(parts)
            h = new
            for nt, v in h.items():
                reps[nt].append(v)
        return {nt: torch.cat(reps[nt], dim=1) for nt in types}


def _bipartite_conv(conv: HeteroConv, x_src: dict[str, torch.Tensor], x_dst: dict[str, torch.Tensor],
                    edge_index_dict: dict) -> dict[str, torch.Tensor]:
    """``HeteroConv`` with separate source and destination tables: each relation's conv reads
    ``(x_src[src], x_dst[dst])`` over ``edge_index_dict[et]`` (sources index ``x_src``, destinations ``x_dst``);
    relations into one type are summed (``conv.aggr``). Returns ``{dst type: [len(x_dst[dst]), hidden]}``."""
    outs: dict[str, list[torch.Tensor]] = {}
    for et, module in conv.convs.items():
        if et[2] in x_dst and et in edge_index_dict:
            outs.setdefault(et[2], []).append(module((x_src[et[0]], x_dst[et[2]]), edge_index_dict[et]))
    return {nt: group(v, conv.aggr) for nt, v in outs.items()}
