"""graphprof: graph-based customer profiling.

Purchases, friendships, users and items -> a heterogeneous user-item-friend graph -> user features ->
GNN and logistic-regression profiles compared side by side on the same splits.

The public API is this package's names. Every stage is one function over a work directory, returning a
result with ``summary_lines()`` and ``to_json()`` (what the command line prints):

=========================  ==========================================================================
``build``                  ``graphprof build-graph``: read, validate, build the graph and the features
``train``                  ``graphprof train``: models per target x seed, metrics, profiles
``detect_communities``     ``graphprof communities``: communities and their profiles
``export_embeddings``      ``graphprof export-embeddings``: user (and item) embeddings
``recommend``, ``similar`` ``graphprof recommend`` / ``similar``: items for a user, nearest users
``predict``                ``graphprof predict``: profiles of users the models never saw
``explain``                ``graphprof explain``: why the picked models gave a user their profile
``forget``                 ``graphprof forget``: erase users from every artifact
``write_report``           ``graphprof report``: one self-contained HTML file
``generate``               ``graphprof generate``: a synthetic shop
=========================  ==========================================================================

Loaders (``load_graph``, ``load_features``, ``load_embeddings``) and the in-memory pieces (``read_tables``,
``validate_tables``, ``build_graph``, ``build_features``, ``find_communities``, ``profile_communities``,
``to_networkx``) serve notebooks. The implementation lives in one sub-package per stage (``ingest``,
``graph``, ``features``, ``models``, ``training``, ``communities``, ``embeddings``, ``prediction``,
``explaining``, ``privacy``, ``reporting``, ``runtime``); their module paths are not part of the API.

Names are imported on first use (PEP 562): ``import graphprof``, and so every command and its ``--help``,
pays for torch, PyG and scikit-learn only when a stage needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "graphprof.errors": ("ArtifactError", "ConfigError", "GraphprofError", "InputError", "LockError"),
    "graphprof.ingest.io": ("read_tables",),
    "graphprof.ingest.schema": ("ValidatedTables", "validate_tables"),
    "graphprof.ingest.generate": ("generate", "write_tables"),
    "graphprof.graph.build": ("BuildResult", "build", "load_tables"),
    "graphprof.graph": ("ProfileGraph", "build_graph", "load_graph", "to_networkx"),
    "graphprof.features.users": ("UserFeatures", "build_features", "load_features"),
    "graphprof.training.train": ("TrainResult", "train"),
    "graphprof.communities.detect": ("Communities", "find_communities"),
    "graphprof.communities.stage": ("CommunitiesResult", "detect_communities", "load_assignments"),
    "graphprof.communities.profiles": ("profile_communities",),
    "graphprof.embeddings.export": ("Embeddings", "ExportResult", "export_embeddings", "load_embeddings"),
    "graphprof.embeddings.query": ("recommend", "similar"),
    "graphprof.prediction.predict": ("PredictResult", "predict"),
    "graphprof.updating.stage": ("UpdateResult", "update"),
    "graphprof.explaining.explain": ("ExplainResult", "explain"),
    "graphprof.privacy.forget": ("ForgetResult", "forget"),
    "graphprof.reporting.report": ("ReportResult", "write_report"),
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
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = ["__version__", *sorted(_MODULE_OF)]
