"""A graph model's blend with the baseline (``sign``, ``sage``, ``gat``): ``p = w * p_net + (1 - w) * p_lr``,
with ``p_lr`` the probabilities of an ``lr`` (:class:`~graphprof.models.baseline.LogisticBaseline`) fitted on the
same training users, and ``w`` chosen on the validation users.

Why: the net and ``lr`` err differently (the net reads the neighbourhood through a few hundred hidden units, ``lr``
the user's own bag of items with a tuned penalty), so their average can rank users better than either (measured
with and without the blend: benchmarks/RESULTS.md). ``w`` only ranges over
:data:`WEIGHTS`, never 0: the model stays a graph model, and where the graph adds nothing the pick rule of
``train`` keeps ``lr`` itself.

``w`` minimises the validation log-loss after temperature scaling (:mod:`graphprof.models.calibration`), the
criterion the model's calibration uses; ties go to the larger ``w``.
"""

from __future__ import annotations

import numpy as np

from graphprof.models.calibration import apply_temperature, fit_temperature, log_loss

#: the net's weights tried, in order of preference on ties
WEIGHTS = (1.0, 0.75, 0.5, 0.25)

#: the last default ``lr`` fitted in this process, with what it was fitted on: ``train`` fits ``lr`` and then the
#: graph models on the same split, so the blend reuses that fit (the same numbers: the fit is deterministic)
#: instead of repeating it. One entry, held by reference; compared by identity and content, never by ``id()``.
_RECENT: list = []


def _key(inputs, seed: int, classes: list, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple:
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    return (seed, list(classes), train_idx.copy(), val_idx.copy(), np.asarray(y)[train_idx].copy(),
            np.asarray(y)[val_idx].copy())


def remember_baseline(model, inputs, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    """Keep ``model`` (a just-fitted ``lr`` with default settings) for :func:`fitted_baseline`."""
    _RECENT[:] = [(inputs, _key(inputs, model.seed, model.classes_, y, train_idx, val_idx), model)]


def fitted_baseline(inputs, seed: int, classes: list, y: np.ndarray, train_idx: np.ndarray,
                    val_idx: np.ndarray):
    """A copy of the remembered ``lr`` if it was fitted on exactly these inputs, seed, classes, labels and split,
    else None. A copy: ``train`` goes on to calibrate its own, and the blend reads uncalibrated probabilities."""
    if not _RECENT or _RECENT[0][0] is not inputs:
        return None
    kept, key = _RECENT[0][1], _key(inputs, seed, classes, y, train_idx, val_idx)
    same = kept[0] == key[0] and kept[1] == key[1] and all(np.array_equal(a, b) for a, b in zip(kept[2:], key[2:]))
    if not same:
        return None
    model = _RECENT[0][2]
    saved, arrays = lr_state(model)
    return lr_from_state(model.seed, model.classes_, saved, arrays)


def choose_weight(y_val: np.ndarray, net_val: np.ndarray, lr_val: np.ndarray) -> tuple[float, dict[str, float]]:
    """The net's weight ``w`` with the lowest validation log-loss (after the best temperature for that blend),
    and the log-loss of every weight tried (keys: the weights as strings, for JSON)."""
    losses = {}
    for w in WEIGHTS:
        p = mix(w, net_val, lr_val)
        losses[str(w)] = float(log_loss(y_val, apply_temperature(p, fit_temperature(y_val, p))))
    best = min(WEIGHTS, key=lambda w: (round(losses[str(w)], 12), -w))
    return best, losses


def mix(w: float, net: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """``w * net + (1 - w) * lr`` (both ``[n, n_classes]``; rows sum to 1, so the blend's do)."""
    return net if w == 1.0 else w * net + (1.0 - w) * lr


def lr_state(base) -> tuple[dict, dict]:
    """The baseline's config and its arrays under ``lr.`` (float64, as it saves them)."""
    config, arrays = base._state()
    return {"params": base.params, "config": config}, {f"lr.{k}": v for k, v in arrays.items()}


def lr_from_state(seed: int, classes: list, saved: dict, arrays: dict):
    """The baseline rebuilt from :func:`lr_state`'s output (``arrays``: torch tensors or numpy arrays)."""
    from graphprof.models.baseline import LogisticBaseline

    base = LogisticBaseline(seed=seed, **saved["params"])
    base.classes_ = list(classes)
    own = {k[len("lr."):]: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64)
           for k, v in arrays.items() if k.startswith("lr.")}
    base._from_state(saved["config"], own)
    return base


class BlendWithBaseline:
    """What a graph model needs for the blend: :meth:`_fit_blend` after fitting its net, :meth:`_blended` when it
    scores, and the blend's part of its saved state. ``blend_`` is None for a model without one."""

    blend_: dict | None = None
    lr_ = None

    def _fit_blend(self, inputs, y, train_idx, val_idx, net_val: np.ndarray) -> None:
        """Fit the baseline on the same users and choose the net's weight on validation (``net_val``: the net's
        probabilities of the validation users ``[len(val_idx), n_classes]``)."""
        import logging

        from graphprof.models.baseline import LogisticBaseline

        self.lr_ = fitted_baseline(inputs, self.seed, self.classes_, y, train_idx, val_idx)
        if self.lr_ is None:
            self.lr_ = LogisticBaseline(seed=self.seed).fit(inputs, y, train_idx, val_idx, self.classes_)
        weight, losses = choose_weight(y[val_idx], net_val, self.lr_.proba(inputs, val_idx))
        self.blend_ = {"weight": weight, "val_log_loss": losses, "lr_C": self.lr_.c_}
        logging.getLogger("graphprof").info(
            "%s: blended with lr, net weight %.2f (validation log-loss %s)", self.name, weight,
            ", ".join(f"{w}: {v:.4f}" for w, v in losses.items()))

    def _blended(self, net_proba: np.ndarray, lr_proba) -> np.ndarray:
        """The net's probabilities, blended with the baseline's (``lr_proba()``) where the model has a blend."""
        if not self.blend_:
            return net_proba
        return mix(self.blend_["weight"], net_proba, lr_proba())

    def _blend_state(self, config: dict, arrays: dict) -> None:
        """Add the blend (its weight, the baseline's config and arrays, as torch tensors) to a saved state."""
        if self.blend_:
            import torch

            saved, lr_arrays = lr_state(self.lr_)
            config["blend"] = {**self.blend_, "lr": saved}
            arrays.update({k: torch.from_numpy(v) for k, v in lr_arrays.items()})

    def _blend_from_state(self, config: dict, arrays: dict) -> None:
        saved = config.get("blend")  # absent: a model fitted without the blend
        self.blend_ = {k: v for k, v in saved.items() if k != "lr"} if saved else None
        self.lr_ = lr_from_state(self.seed, self.classes_, saved["lr"], arrays) if saved else None
