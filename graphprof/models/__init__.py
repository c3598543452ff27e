"""Registered model families: ``MODELS[name]`` is a :class:`~graphprof.models.base.Model` subclass."""

from __future__ import annotations

from graphprof.errors import ConfigError
from graphprof.models.base import Model, ModelInput
from graphprof.models.baseline import LogisticBaseline
from graphprof.models.gnn import HeteroGAT, HeteroSAGE
from graphprof.models.sign import SIGN

MODELS: dict[str, type[Model]] = {"lr": LogisticBaseline, "sage": HeteroSAGE, "gat": HeteroGAT}
MODELS["sign"] = SIGN  # precomputed-aggregate (SIGN-style) MLP: graphprof/models/sign.py


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
