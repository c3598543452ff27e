"""The user features: behaviour aggregates, category mix, item and category SVD, social statistics.

``users.py`` computes them from a :class:`~graphprof.graph.ProfileGraph` (the social statistics come from
``social.py``), saves them with the state they fitted (reused for unseen users) and loads them back.
"""

from graphprof.features.social import clustering, pagerank
from graphprof.features.users import (
    CATEGORY_SVD_DIM,
    ITEM_SVD_DIM,
    MAX_CATEGORY_SHARES,
    SECONDS_PER_DAY,
    UserFeatures,
    build_features,
    item_category_matrix,
    load_features,
    lookup_sorted,
    save_features,
    truncated_svd,
    user_max,
)

__all__ = ["CATEGORY_SVD_DIM", "ITEM_SVD_DIM", "MAX_CATEGORY_SHARES", "SECONDS_PER_DAY", "UserFeatures",
           "build_features", "clustering", "item_category_matrix", "load_features", "lookup_sorted", "pagerank",
           "save_features", "truncated_svd", "user_max"]
