"""networkx views of the graph, for analytics in notebooks."""

from __future__ import annotations

from graphprof.graph.hetero import BUY_ATTRS, BUYS, FRIEND, ProfileGraph


def to_networkx(graph: ProfileGraph, view: str = "social"):
    """networkx views for analytics, with the user's own ids as node names.

    Args:
        view: ``"social"`` -> undirected ``nx.Graph`` of users with tie ``weight``;
            ``"purchases"`` -> bipartite ``nx.Graph`` of ``("user", id)`` and ``("item", id)`` nodes
            (attribute ``bipartite`` 0/1) with the :data:`BUY_ATTRS` on each edge.
    """
    import networkx as nx

    from graphprof.errors import ConfigError

    g = nx.Graph()
    if view == "social":
        g.add_nodes_from(graph.user_ids)
        if FRIEND in graph.edge_types:
            ei = graph.edge(FRIEND)
            w = graph.edge(FRIEND, "edge_weight")
            keep = ei[0] < ei[1]
            g.add_weighted_edges_from(zip(graph.user_ids[ei[0][keep]], graph.user_ids[ei[1][keep]],
                                          w[keep].tolist()))
        return g
    if view == "purchases":
        g.add_nodes_from((("user", u) for u in graph.user_ids), bipartite=0)
        g.add_nodes_from((("item", i) for i in graph.item_ids), bipartite=1)
        ei = graph.edge(BUYS)
        attrs = graph.edge(BUYS, "edge_attr")
        g.add_edges_from((("user", u), ("item", i), dict(zip(BUY_ATTRS, row)))
                         for u, i, row in zip(graph.user_ids[ei[0]], graph.item_ids[ei[1]], attrs.tolist()))
        return g
    raise ConfigError(f"view must be 'social' or 'purchases'. Got {view!r} instead")
