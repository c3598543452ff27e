"""Calibrated probabilities: temperature scaling fitted on the validation users, and the measures of calibration.

Temperature scaling (Guo et al., "On calibration of modern neural networks", ICML 2017) divides a model's
log-probabilities by one number ``T`` fitted to minimise the validation users' log-loss, then re-normalises:
``softmax(log p / T)``, which is ``softmax(z / T)`` for the model's logits ``z``. One parameter cannot over-fit
the validation users, and it keeps each user's order of classes, so the predicted class, accuracy, macro-F1,
balanced accuracy and (with two classes) AUC are unchanged: only how sure the probabilities say they are moves.

numpy and scipy only: a saved ``lr`` predicts without torch or scikit-learn, calibrated.
"""

from __future__ import annotations

import numpy as np

#: equal-width confidence bins of the expected calibration error and the reliability diagram
ECE_BINS = 15
#: the temperature is searched in [1/T_MAX, T_MAX]
T_MAX = 20.0
_TINY = 1e-300


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)`` row by row (``proba`` itself where ``temperature`` is 1)."""
    if temperature == 1.0:
        return proba
    z = np.log(np.maximum(np.asarray(proba, dtype=np.float64), _TINY)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of the true classes ``y`` (class indices)."""
    return float(-np.log(np.maximum(proba[np.arange(len(y)), y], _TINY)).mean())


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    """The temperature that minimises the log-loss of ``proba`` ``[n, classes]`` on the true classes ``y``
    (bounded search over ``log T``; 1.0 where there are no users)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda t: log_loss(y, apply_temperature(proba, float(np.exp(t)))),
                          bounds=(-np.log(T_MAX), np.log(T_MAX)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin of the top class's probability: ``count``, mean ``confidence`` and ``accuracy`` (the
    share of those users whose top class is right); empty bins hold 0 and NaN."""
    conf = proba.max(axis=1)
    right = (proba.argmax(axis=1) == y).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
        acc = np.bincount(which, weights=right, minlength=bins) / count
    return {"count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": acc.tolist()}


def ece(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the count-weighted mean over :data:`ECE_BINS` equal-width bins of
    ``|accuracy - confidence|`` of the top class (NaN where there are no users)."""
    if len(y) == 0:
        return float("nan")
    r = reliability(y, proba, bins)
    count = np.asarray(r["count"], dtype=np.float64)
    gap = np.abs(np.nan_to_num(np.asarray(r["accuracy"]) - np.asarray(r["confidence"])))
    return float((count * gap).sum() / count.sum())


def brier(y: np.ndarray, proba: np.ndarray) -> float:
    """Brier score: the mean over users of ``sum_c (proba_c - [y == c])²`` (0 is perfect; NaN where no users)."""
    if len(y) == 0:
        return float("nan")
    onehot = np.zeros_like(proba, dtype=np.float64)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((proba - onehot) ** 2).sum(axis=1).mean())
