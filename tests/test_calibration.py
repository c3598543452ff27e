"""Temperature scaling and the calibration measures (graphprof.models.calibration), and calibrated models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_small import small_kwargs, split_shop
from sklearn.metrics import balanced_accuracy_score

from graphprof.models import MODELS
from graphprof.models.calibration import apply_temperature, brier, ece, fit_temperature, reliability
from graphprof.training import evaluate


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _overconfident(n=20_000, classes=3, true_t=2.5, seed=0):
    """Probabilities ``softmax(z)`` whose labels are drawn from ``softmax(z / true_t)``: over-confident by
    ``true_t``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, classes))
    truth = _softmax(z / true_t)
    y = (rng.random(n)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    return y, _softmax(z)


def test_temperature_one_is_the_identity_and_any_temperature_keeps_the_order_of_classes():
    _, p = _overconfident(n=500)
    assert apply_temperature(p, 1.0) is p
    for t in (0.3, 2.0, 7.0):
        q = apply_temperature(p, t)
        np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
        assert np.array_equal(np.argsort(q, axis=1), np.argsort(p, axis=1))
    # softmax(log softmax(z) / t) == softmax(z / t)
    z = np.random.default_rng(1).normal(size=(50, 4))
    np.testing.assert_allclose(apply_temperature(_softmax(z), 3.0), _softmax(z / 3.0), rtol=1e-10)


def test_fit_temperature_recovers_the_over_confidence_and_lowers_ece_and_brier():
    y, p = _overconfident(true_t=2.5)
    t = fit_temperature(y, p)
    assert t == pytest.approx(2.5, rel=0.1)
    q = apply_temperature(p, t)
    assert ece(y, q) < 0.02 < 0.1 < ece(y, p)
    assert brier(y, q) < brier(y, p)
    # well calibrated already: the fitted temperature stays near 1
    y2, p2 = _overconfident(true_t=1.0, seed=3)
    assert fit_temperature(y2, p2) == pytest.approx(1.0, abs=0.08)
    assert fit_temperature(np.zeros(0, dtype=int), np.zeros((0, 3))) == 1.0


def test_reliability_bins_count_every_user_once():
    y, p = _overconfident(n=3000)
    r = reliability(y, p, bins=15)
    assert sum(r["count"]) == 3000 and len(r["accuracy"]) == 15
    filled = [j for j, c in enumerate(r["count"]) if c]
    for j in filled:  # a bin's mean confidence lies inside the bin
        assert j / 15 <= r["confidence"][j] <= (j + 1) / 15


def test_balanced_accuracy_is_scikit_learns_on_imbalanced_classes():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    p1 = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    out = evaluate.scores(y, np.stack([1 - p1, p1], axis=1))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, (p1 > 0.5).astype(int)), rel=1e-12)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return split_shop(tmp_path_factory.mktemp("calibration_shop"), "age_band")


@pytest.mark.parametrize("name", ["lr", "sign"])
def test_a_calibrated_model_keeps_its_classes_and_saves_its_temperature(shop, name, tmp_path):
    inputs, target, parts = shop
    cls = MODELS[name]
    model = cls(seed=0, **small_kwargs(cls)).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    raw = model.proba(inputs)
    model.calibrate(inputs, target.y, parts["val"])
    assert model.temperature != 1.0
    assert model.temperature == fit_temperature(target.y[parts["val"]], raw[parts["val"]])
    cal = model.proba(inputs)
    assert np.array_equal(cal.argmax(axis=1), raw.argmax(axis=1))
    val = parts["val"]
    from graphprof.models.calibration import log_loss
    assert log_loss(target.y[val], cal[val]) <= log_loss(target.y[val], raw[val])
    model.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m")
    assert loaded.temperature == model.temperature
    pd.testing.assert_frame_equal(loaded.predict_proba(inputs), model.predict_proba(inputs), check_exact=True)
    rows = np.array([5, 0, 17])
    np.testing.assert_allclose(loaded.proba(inputs, rows), cal[rows], rtol=1e-6, atol=1e-9)
