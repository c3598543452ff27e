"""``sign``: precomputed neighbourhood aggregates (SIGN/NARS-style) and an MLP over them.

``model.py`` is the model (fit, predict, save, load), ``blocks.py`` its aggregates, ``net.py`` its network,
``search.py`` its grid search and ``sparse_hops.py`` the sparse products behind the hops; its blend with the
baseline is :mod:`graphprof.models.blend`, which ``sage`` and ``gat`` share.
"""

from graphprof.models.sign.model import SIGN

__all__ = ["SIGN"]
