"""graphprof: graph-based customer profiling.

Purchases, friendships, users and items -> a heterogeneous user-item-friend graph -> user features ->
GNN and logistic-regression profiles compared side by side on the same splits.

The stage functions live in modules named after their stage (``graphprof.build.build``,
``graphprof.predict.predict``); ``train`` is re-exported here as well.
"""

from __future__ import annotations

import sys
import types

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), not here: ``import graphprof`` (and so every command,
# ``--help`` included) no longer pays for torch, PyG and scikit-learn before it needs them, and build-graph can
# import them in a thread while it reads its input.
_EXPORTS = {
    "graphprof.build": ("BuildResult",),
    "graphprof.communities": ("detect_communities", "profile_communities", "run_communities"),
    "graphprof.embeddings": ("Embeddings", "export_embeddings", "load_embeddings", "recommend", "similar"),
    "graphprof.errors": ("ArtifactError", "ConfigError", "GraphprofError", "InputError", "LockError"),
    "graphprof.features": ("UserFeatures", "build_features", "load_features"),
    "graphprof.graph": ("ProfileGraph", "build_graph", "load_graph", "to_networkx"),
    "graphprof.io": ("read_tables",),
    "graphprof.predict": ("PredictResult",),
    "graphprof.schema": ("ValidatedTables", "validate_tables"),
    "graphprof.train": ("TrainResult", "train"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'graphprof' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_MODULE_OF))


class _Package(types.ModuleType):
    """``graphprof.train`` is the function, as when it was imported eagerly: importing the submodule of the
    same name must not replace it with the module (the import system sets the parent's attribute after)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
