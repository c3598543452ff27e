"""``lr``'s exact explanation: its logit is linear in the features and the bag of items, so each term is one
contribution, and the contributions and the intercept sum to the logit (tested).

For the scaled, PCA-reduced features: ``logit = b + coef · P ((x - m) / s - c)`` is, per raw feature ``f``,
``w_f (x_f - m_f) / s_f`` with ``w = coef · P``, plus the constant ``b - coef · P c``. For the bag: ``bag_coef_i ×
tfidf_i`` per item bought. A binary model has one logit (the log-odds of its second class); the explanation is
of the predicted class, so a prediction of the first class flips the signs. A model of more classes is
explained by the logit of the predicted class.
"""

from __future__ import annotations

import numpy as np


def lr_contributions(model, x: np.ndarray, bag_row, predicted: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(feature contributions [n_features], item contributions [n_items of the row], constant)`` of the logit
    of class ``predicted`` for one user (``x`` its raw features, ``bag_row`` its TF-IDF bag, a 1-row CSR matrix,
    or None for a model without a bag)."""
    a = model.arrays_
    binary = a["coef"].shape[0] == 1
    row = 0 if binary else predicted
    sign = (1.0 if predicted == 1 else -1.0) if binary else 1.0
    w = a["coef"][row] @ a["pca_components"]                     # per scaled feature
    z = (x - a["scale_mean"]) / a["scale_scale"]
    features = sign * w * z
    constant = sign * float(a["intercept"][row] - w @ a["pca_mean"])
    items = np.zeros(0)
    if bag_row is not None and "bag_coef" in a:
        items = sign * a["bag_coef"][row, bag_row.indices] * bag_row.data
    return features, items, constant


def logit(model, x: np.ndarray, bag_row, predicted: int) -> float:
    """The logit of class ``predicted`` the way the model computes it (for the exactness check)."""
    a = model.arrays_
    z = ((x - a["scale_mean"]) / a["scale_scale"] - a["pca_mean"]) @ a["pca_components"].T
    logits = z @ a["coef"].T + a["intercept"]
    if bag_row is not None and "bag_coef" in a:
        logits = logits + np.asarray(bag_row @ a["bag_coef"].T).ravel()
    if a["coef"].shape[0] == 1:
        return float(logits[0] if predicted == 1 else -logits[0])
    return float(logits[predicted])
