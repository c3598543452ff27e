"""The model contract shared by every model family.

A model is built from hyper-parameters only (``__init__`` stores them), ``fit`` learns from the training users
and returns ``self``; learned state ends in ``_``. Models are saved as arrays (safetensors / npz) plus JSON,
never pickled, and loaded with :meth:`Model.load`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphprof.errors import ArtifactError
from graphprof.features import UserFeatures
from graphprof.graph import ProfileGraph
from graphprof.models.calibration import apply_temperature, fit_temperature


@dataclass
class ModelInput:
    """What every model sees: the whole graph and the label-free user features (graph order), and where
    ``train`` runs on a work directory's saved graph, the cache of that graph's label-free arrays
    (:class:`~graphprof.workdir.cache.LabelFreeCache`; None elsewhere: a model then computes them).

    ``block_rows``: users per row block where a model works a block at a time (``sign``: past this many users
    its blocks go to memory-mapped files; None: :data:`graphprof.models.sign.store.DEFAULT_BLOCK_ROWS`).
    ``scratch``: the folder for such files (None: the system's temporary folder)."""

    graph: ProfileGraph
    features: UserFeatures
    cache: Any = None
    block_rows: int | None = None
    scratch: Any = None


def macro_f1(y_true, y_pred) -> float:
    """scikit-learn's macro-F1, imported on first use (the import is slow): loading a model to predict or
    embed never needs it."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro"))


def feature_rows(features: UserFeatures, rows: np.ndarray | None = None) -> np.ndarray:
    """``features.matrix[rows]`` (every row where ``rows`` is None), reading only those rows where the features
    can (:class:`graphprof.prediction.extend_features.ExtendedFeatures`: the new users' rows without the saved ones)."""
    take = getattr(features, "take_rows", None)
    if rows is not None and take is not None:
        return take(rows)
    m = features.matrix
    return m if rows is None else m[rows]


class Model(ABC):
    """Base class. Subclasses set ``name`` and implement ``_fit``, ``_proba``, ``_embed``, ``_state``,
    ``_from_state``."""

    name: str = ""
    #: False where the model's embeddings read only ``inputs.features``: ``embed`` may then be given
    #: ``graph=None`` and the graph left unloaded (``export-embeddings`` of ``lr``)
    uses_graph: bool = True
    numpy_arrays: bool = False  #: weights load as numpy arrays (no torch import), else as torch tensors

    def __init__(self, seed: int = 0, **params):
        self.seed = seed
        self.params = params

    def fit(self, inputs: ModelInput, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
            classes: list[str]) -> Model:
        """Learn from ``y[train_idx]`` (class indices), choosing hyper-parameters / stopping on ``val_idx``.

        Returns:
            self
        """
        self.classes_ = list(classes)
        self._fit(inputs, y, np.asarray(train_idx), np.asarray(val_idx))
        return self

    def predict_proba(self, inputs: ModelInput, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Class probabilities for every user: DataFrame ``[num_users, n_classes]`` indexed by user id, columns
        the class names; rows sum to 1.

        ``rows`` (graph indices): score only these users, in this order (``[len(rows), n_classes]``), with the
        same numbers as the whole-graph call's rows. Models that can compute fewer rows do (``lr``: those rows'
        features; ``sign``: its blocks on the rows' neighbourhoods); the others score every user and keep the rows.
        """
        proba = self.proba(inputs, rows)
        ids = inputs.graph.user_ids if rows is None else inputs.graph.user_ids[np.asarray(rows, dtype=np.int64)]
        return pd.DataFrame(proba, index=pd.Index(ids, name="user_id"), columns=self.classes_)

    def release_working_files(self) -> None:
        """Drop what the fit kept for the scoring right after it (``sign`` past its row-block setting: every
        user's hops, in memory-mapped files). Nothing for models that keep nothing."""
        return None

    def proba(self, inputs: ModelInput, rows: np.ndarray | None = None) -> np.ndarray:
        """:meth:`predict_proba`'s numbers as an array ``[n, n_classes]`` (columns in ``classes_``' order), without
        the frame (building its index of user ids is a cost per target), for callers that have the ids."""
        self._check_fitted()
        proba = self._proba(inputs) if rows is None else self._proba_rows(inputs, np.asarray(rows, dtype=np.int64))
        return apply_temperature(proba, self.temperature)

    @property
    def temperature(self) -> float:
        """The temperature :meth:`proba` divides the log-probabilities by (:meth:`calibrate`; 1.0: none)."""
        return float(getattr(self, "temperature_", 1.0))

    def calibrate(self, inputs: ModelInput, y: np.ndarray, val_idx: np.ndarray,
                  raw: np.ndarray | None = None) -> Model:
        """Fit the temperature on the validation users ``val_idx`` (:mod:`graphprof.models.calibration`): from
        then on :meth:`proba` gives calibrated probabilities, with the same predicted class per user.
        ``raw``: the uncalibrated probabilities of every user, where already computed.

        Returns:
            self
        """
        val_idx = np.asarray(val_idx, dtype=np.int64)
        if raw is None:
            self.temperature_ = 1.0
            raw = self.proba(inputs)
        self.temperature_ = fit_temperature(y[val_idx], raw[val_idx])
        return self

    def embed(self, inputs: ModelInput, rows: np.ndarray | None = None) -> np.ndarray:
        """User embeddings ``[num_users, dim]`` (the representation the classifier head reads); ``rows``: only
        these users, in this order (``[len(rows), dim]``), as :meth:`predict_proba`."""
        self._check_fitted()
        if rows is None:
            return self._embed(inputs)
        return self._embed_rows(inputs, np.asarray(rows, dtype=np.int64))

    def embed_blocks(self, inputs: ModelInput, block_rows: int) -> Iterator[np.ndarray]:
        """:meth:`embed`'s rows for every user, a block of consecutive users at a time (in graph order), for
        writers that stream them (``export-embeddings``). Default: the whole matrix as one block; ``lr`` and
        ``sign`` yield ``block_rows`` users at a time, with the same numbers (``sign``: to float rounding)."""
        self._check_fitted()
        yield self._embed(inputs)

    def _proba_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` of :meth:`_proba`. Default: the whole graph, then the rows (``sage`` / ``gat``)."""
        return self._proba(inputs)[rows]

    def _embed_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` of :meth:`_embed`. Default: the whole graph, then the rows."""
        return self._embed(inputs)[rows]

    def save(self, path: str | Path) -> None:
        """Write ``model.json`` + arrays into the folder ``path`` (no pickle)."""
        from graphprof import workdir

        self._check_fitted()
        path = Path(path)
        config, arrays = self._state()
        meta = {"model": self.name, "seed": self.seed, "params": self.params, "classes": self.classes_,
                "config": config, "calibration": {"method": "temperature", "temperature": self.temperature,
                                                  "fitted_on": "validation users"}}
        workdir.write_safetensors(path / workdir.MODEL_WEIGHTS, arrays)
        workdir.write_json(path / workdir.MODEL_META, meta)

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Load a model written by :meth:`save` (JSON + safetensors only)."""
        from graphprof import workdir

        path = Path(path)
        hint = "run 'graphprof train' to write it"
        meta = workdir.read_json(path / workdir.MODEL_META, missing=hint)
        if meta.get("model") != cls.name:
            raise ArtifactError(f"{path}/model.json: model must be {cls.name!r}. Got {meta.get('model')!r} instead")
        arrays = workdir.read_safetensors(path / workdir.MODEL_WEIGHTS, missing=hint, numpy=cls.numpy_arrays)
        model = cls(seed=meta["seed"], **meta["params"])
        model.classes_ = meta["classes"]
        model._from_state(meta["config"], arrays)
        model.temperature_ = float((meta.get("calibration") or {}).get("temperature", 1.0))  # absent: uncalibrated
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise AttributeError(f"{type(self).__name__} is not fitted yet; call fit() first")

    @abstractmethod
    def _fit(self, inputs: ModelInput, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None: ...

    @abstractmethod
    def _proba(self, inputs: ModelInput) -> np.ndarray: ...

    @abstractmethod
    def _embed(self, inputs: ModelInput) -> np.ndarray: ...

    @abstractmethod
    def _state(self) -> tuple[dict, dict]: ...

    @abstractmethod
    def _from_state(self, config: dict, arrays: dict) -> None: ...
