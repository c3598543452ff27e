"""The graph stage: validated tables -> the heterogeneous user-item-friend graph, saved to the work directory.

``build.py`` is the ``build-graph`` stage (read, validate, graph, features); ``core.py`` holds the graph itself
(:class:`ProfileGraph`, its edge types, construction, storage and the networkx view); ``aggregate.py`` reduces
purchases to one edge per (user, item).
"""

from graphprof.graph.core import (
    BUY_ATTRS,
    BUY_REDUCERS,
    BUYS,
    FRIEND,
    IN_CAT,
    MIRRORS,
    REV_BUYS,
    REV_IN,
    ProfileGraph,
    build_graph,
    buy_columns,
    describe,
    drop_user_edges,
    index_arrays,
    load_graph,
    save_graph,
    to_networkx,
)

__all__ = ["BUY_ATTRS", "BUY_REDUCERS", "BUYS", "FRIEND", "IN_CAT", "MIRRORS", "REV_BUYS", "REV_IN", "ProfileGraph",
           "build_graph", "buy_columns", "describe", "drop_user_edges", "index_arrays", "load_graph", "save_graph",
           "to_networkx"]
