"""The graph stage: validated tables -> the heterogeneous user-item-friend graph, saved to the work directory.

``build.py`` is the ``build-graph`` stage (read, validate, graph, features, write). ``hetero.py`` holds the graph
itself (:class:`ProfileGraph` and its edge types), ``construct.py`` makes it from validated tables (with
``aggregate.py``, which reduces purchases to one edge per (user, item)), ``store.py`` saves and loads it, and
``views.py`` gives networkx views.
"""

from graphprof.graph.construct import BUY_REDUCERS, build_graph, buy_columns, drop_user_edges
from graphprof.graph.hetero import (
           BUY_ATTRS,
           BUYS,
           FRIEND,
           IN_CAT,
           MIRRORS,
           REV_BUYS,
           REV_IN,
           ProfileGraph,
           index_arrays,
)
from graphprof.graph.store import describe, load_graph, save_graph
from graphprof.graph.views import to_networkx

__all__ = ["BUY_ATTRS", "BUY_REDUCERS", "BUYS", "FRIEND", "IN_CAT", "MIRRORS", "REV_BUYS", "REV_IN", "ProfileGraph",
           "build_graph", "buy_columns", "describe", "drop_user_edges", "index_arrays", "load_graph", "save_graph",
           "to_networkx"]
