"""Registered model families: ``MODELS[name]`` is a :class:`~graphprof.models.base.Model` subclass.

Each family's module is imported when its class is first asked for: ``lr`` needs neither torch nor PyG, so
``predict`` and ``export-embeddings`` with ``lr`` never pay for importing them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from graphprof.errors import ConfigError
from graphprof.models.base import Model, ModelInput

_WHERE = {"lr": ("graphprof.models.baseline", "LogisticBaseline"), "sage": ("graphprof.models.gnn", "HeteroSAGE"),
          "gat": ("graphprof.models.gnn", "HeteroGAT"),
          "sign": ("graphprof.models.sign", "SIGN")}  # precomputed-aggregate (SIGN-style) MLP


class _Registry(Mapping):
    """name -> model class, importing the class's module on first use."""

    def __getitem__(self, name: str) -> type[Model]:
        module, cls = _WHERE[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)


MODELS: Mapping[str, type[Model]] = _Registry()


def get_model(name: str) -> type[Model]:
    """The model class registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"--models must name registered models ({', '.join(MODELS)}). Got {name!r} instead") from None


__all__ = ["MODELS", "Model", "ModelInput", "get_model"]
