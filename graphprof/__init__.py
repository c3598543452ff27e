"""graphprof: graph-based customer profiling.

Purchases, friendships, users and items -> a heterogeneous user-item-friend graph -> user features ->
GNN and logistic-regression profiles compared side by side on the same splits.

The stage functions live in modules named after their stage (``graphprof.build.build``,
``graphprof.predict.predict``); ``train`` is re-exported here as well.
"""

from __future__ import annotations

__version__ = "0.1.0"

from graphprof.build import BuildResult  # noqa: E402
from graphprof.communities import detect_communities, profile_communities, run_communities  # noqa: E402
from graphprof.embeddings import Embeddings, export_embeddings, load_embeddings, recommend, similar  # noqa: E402
from graphprof.errors import ArtifactError, ConfigError, GraphprofError, InputError, LockError  # noqa: E402
from graphprof.features import UserFeatures, build_features, load_features  # noqa: E402
from graphprof.graph import ProfileGraph, build_graph, load_graph, to_networkx  # noqa: E402
from graphprof.io import read_tables  # noqa: E402
from graphprof.predict import PredictResult  # noqa: E402
from graphprof.schema import ValidatedTables, validate_tables  # noqa: E402
from graphprof.train import TrainResult, train  # noqa: E402

__all__ = [
    "__version__",
    "ArtifactError",
    "BuildResult",
    "Embeddings",
    "ConfigError",
    "GraphprofError",
    "InputError",
    "LockError",
    "ProfileGraph",
    "TrainResult",
    "UserFeatures",
    "ValidatedTables",
    "build_features",
    "detect_communities",
    "export_embeddings",
    "build_graph",
    "load_features",
    "load_embeddings",
    "load_graph",
    "PredictResult",
    "profile_communities",
    "read_tables",
    "recommend",
    "run_communities",
    "similar",
    "to_networkx",
    "train",
    "validate_tables",
]
