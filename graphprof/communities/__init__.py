"""Communities: Leiden / Louvain on the social (or combined) graph (``detect.py``), their profiles
(``profiles.py``) and the ``communities`` stage that writes them to the work directory (``stage.py``).

The registries the command line offers as choices live here, so ``graphprof --help`` reads them without
importing the stage.
"""

#: community detection methods: igraph's Leiden (the default) and networkx's Louvain
METHODS = ("leiden", "louvain")
#: the graphs they run on: friendships, or friendships plus co-purchase ties
GRAPHS = ("social", "combined")
