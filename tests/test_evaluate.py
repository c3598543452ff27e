"""graphprof.evaluate: default targets, labels aligned to the graph, seeded stratified splits, metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from graphprof.errors import ConfigError, GraphprofError
from graphprof.training import evaluate
from graphprof.training.evaluate import MAX_CLASSES, MIN_CLASS_SIZE, MIN_LABELS, Target

# ------------------------------------------------------------------------------------ candidate_targets


def _column(*parts: tuple[object, int], n: int) -> list:
    """``n`` cells: each ``(value, count)`` repeated, the rest unknown (None)."""
    cells = [v for v, k in parts for _ in range(k)]
    assert len(cells) <= n
    return cells + [None] * (n - len(cells))


def _users_for_candidates() -> pd.DataFrame:
    n = 80
    return pd.DataFrame({
        "user_id": [f"u{i:03d}" for i in range(n)],
        "__row__": [i % 2 for i in range(n)],                               # bookkeeping, never a target
        "good": _column(("a", 40), ("b", 40), n=n),
        "few_labels": _column(("a", 14), ("b", 14), n=n),                   # 28 labels < 30
        "edge": _column(("a", 10), ("b", 10), ("c", 10), n=n),               # exactly 30 labels, 10 per class
        "one_big_class": _column(("a", 60), ("b", 9), ("c", 9), n=n),       # only one class of 10+
        "with_small_class": _column(("a", 30), ("b", 30), ("c", 3), n=n),   # c is dropped later, still a target
        "constant": _column(("a", 80), n=n),
        "fifty_values": _column(("a", 10), ("b", 10), *((f"v{j}", 1) for j in range(48)), n=n),
        "fifty_one_values": _column(("a", 10), ("b", 10), *((f"v{j}", 1) for j in range(49)), n=n),
        "all_unknown": [None] * n,
    })


def test_candidate_targets_picks_categorical_columns_with_enough_labels():
    users = _users_for_candidates()
    assert users["fifty_values"].nunique() == MAX_CLASSES
    assert users["fifty_one_values"].nunique() == MAX_CLASSES + 1
    assert users["edge"].notna().sum() == MIN_LABELS
    assert evaluate.candidate_targets(users) == ["good", "edge", "with_small_class", "fifty_values"]


def test_candidate_targets_without_users_table_is_empty():
    assert evaluate.candidate_targets(None) == []
    assert evaluate.candidate_targets(pd.DataFrame({"user_id": ["a", "b"]})) == []


# ------------------------------------------------------------------------------------------ make_target
def _labelled_users() -> pd.DataFrame:
    """u00..u11 are 'x' (12), u12..u21 'y' (10), u22..u24 'z' (3, too few), u25 unknown."""
    labels = ["x"] * 12 + ["y"] * 10 + ["z"] * 3 + [None]
    return pd.DataFrame({"user_id": [f"u{i:02d}" for i in range(len(labels))], "segment": labels,
                         "age": [25] * 13 + [40] * 13})


def test_make_target_aligns_labels_to_graph_order_and_drops_small_classes():
    users = _labelled_users()
    # graph order differs from the table's, and holds a user the users table does not know
    graph_ids = np.array(["u24", "u00", "zz_unknown", "u12", "u25", "u11", "u21"], dtype=object)
    target = evaluate.make_target(users, graph_ids, "segment")
    assert isinstance(target, Target)
    assert target.name == "segment"
    assert target.classes == ["x", "y"]
    assert target.dropped == {"z": 3}
    assert target.y.dtype == np.int64
    assert target.y.tolist() == [-1, 0, -1, 1, -1, 0, 1]
    assert target.labelled.tolist() == [1, 3, 5, 6]
    assert target.majority_rate() == 0.5


def test_make_target_min_class_size_is_a_parameter():
    target = evaluate.make_target(_labelled_users(), np.array(["u00", "u22"], dtype=object), "segment",
                                  min_class_size=3)
    assert target.classes == ["x", "y", "z"]
    assert target.dropped == {}
    assert target.y.tolist() == [0, 2]


def test_make_target_labels_are_strings_even_for_numbers():
    target = evaluate.make_target(_labelled_users(), np.array(["u00", "u20"], dtype=object), "age")
    assert target.classes == ["25", "40"]
    assert target.y.tolist() == [0, 1]


def test_make_target_unknown_column_lists_the_columns():
    with pytest.raises(ConfigError, match=r"--target must be a column of the users table \(segment, age\)\. "
                                          r"Got 'gender' instead") as info:
        evaluate.make_target(_labelled_users(), np.array(["u00"], dtype=object), "gender")
    assert isinstance(info.value, ValueError) and isinstance(info.value, GraphprofError)


def test_make_target_user_id_is_not_a_target():
    with pytest.raises(ConfigError, match=r"Got 'user_id' instead"):
        evaluate.make_target(_labelled_users(), np.array(["u00"], dtype=object), "user_id")


def test_make_target_without_users_table():
    with pytest.raises(ConfigError, match=r"\(no users table\)\. Got 'gender' instead"):
        evaluate.make_target(None, np.array(["u00"], dtype=object), "gender")


def _one_usable_class() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(25)], "c": ["a"] * 20 + ["b"] * 5})


def test_make_target_needs_two_usable_classes():
    users = _one_usable_class()
    with pytest.raises(ConfigError, match=rf"--target c: needs at least two classes with {MIN_CLASS_SIZE}\+ "
                                          r"labelled users\. Got \{'a': .*20.*, 'b': .*5.*\} instead"):
        evaluate.make_target(users, users["user_id"].to_numpy(dtype=object), "c")


def test_make_target_two_classes_message_shows_plain_counts():
    users = _one_usable_class()
    with pytest.raises(ConfigError, match=r"Got \{'a': 20, 'b': 5\} instead"):
        evaluate.make_target(users, users["user_id"].to_numpy(dtype=object), "c")


def test_make_target_rejects_a_non_categorical_column():
    n = MAX_CLASSES + 1
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "c": [f"v{i}" for i in range(n)]})
    with pytest.raises(ConfigError, match=rf"--target c: must be categorical \(at most {MAX_CLASSES} values\)\. "
                                          rf"Got {n} distinct values instead"):
        evaluate.make_target(users, users["user_id"].to_numpy(dtype=object), "c")


# ---------------------------------------------------------------------------------------------- split
def _target() -> Target:
    """100 labelled users (60 of class 0, 40 of class 1) among 130, labels scattered over the index."""
    rng = np.random.default_rng(123)
    y = np.array([0] * 60 + [1] * 40 + [-1] * 30, dtype=np.int64)
    return Target(name="t", y=rng.permutation(y), classes=["a", "b"])


def test_split_is_stratified_disjoint_and_covers_the_labelled_users():
    target = _target()
    parts = evaluate.split(target, seed=0)
    assert set(parts) == {"train", "val", "test"}
    sizes = {k: len(v) for k, v in parts.items()}
    assert sizes == {"train": 60, "val": 20, "test": 20}
    for name, idx in parts.items():
        assert np.array_equal(idx, np.sort(idx)), name
        assert len(np.unique(idx)) == len(idx)
    joined = np.concatenate(list(parts.values()))
    assert len(np.unique(joined)) == len(joined), "parts overlap"
    assert np.array_equal(np.sort(joined), target.labelled)
    # stratified: each part keeps the 60/40 class mix exactly
    assert np.bincount(target.y[parts["train"]]).tolist() == [36, 24]
    assert np.bincount(target.y[parts["val"]]).tolist() == [12, 8]
    assert np.bincount(target.y[parts["test"]]).tolist() == [12, 8]


def test_split_custom_fractions():
    parts = evaluate.split(_target(), seed=0, val=0.25, test=0.2)  # 0.25 / (1 - 0.2) is exact in binary
    assert {k: len(v) for k, v in parts.items()} == {"train": 55, "val": 25, "test": 20}


def test_split_fraction_sizes_are_not_inflated_by_float_error():
    parts = evaluate.split(_target(), seed=0, val=0.1, test=0.3)
    assert {k: len(v) for k, v in parts.items()} == {"train": 60, "val": 10, "test": 30}


def test_split_is_deterministic_per_seed_and_differs_across_seeds():
    target = _target()
    a, b = evaluate.split(target, seed=5), evaluate.split(target, seed=5)
    for name in a:
        assert np.array_equal(a[name], b[name])
    c = evaluate.split(target, seed=6)
    assert not np.array_equal(a["test"], c["test"])
    assert not np.array_equal(a["train"], c["train"])


# --------------------------------------------------------------------------------------------- scores
def test_scores_binary_exact():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    out = evaluate.scores(y, np.stack([1 - p1, p1], axis=1))
    # predicted [0, 1, 0, 1]: half right; F1 0.5 for each class; 3 of the 4 (neg, pos) pairs ranked right;
    # recall 1/2 per class; top-class confidences 0.9 (both right: gap 0.1) and 0.6 (both wrong: gap 0.6);
    # Brier 0.02 + 0.72 + 0.72 + 0.02 over 4
    assert out == pytest.approx({"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.5, "auc": 0.75,
                                 "ece": (2 * 0.1 + 2 * 0.6) / 4, "brier": 1.48 / 4}, rel=1e-12)
    assert set(out) == set(evaluate.METRICS)


def test_scores_three_classes_exact():
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.array([[0.7, 0.2, 0.1],    # -> 0 right
                      [0.1, 0.8, 0.1],    # -> 1 right
                      [0.1, 0.2, 0.7],    # -> 2 right
                      [0.3, 0.6, 0.1],    # -> 1 wrong
                      [0.2, 0.5, 0.3],    # -> 1 right
                      [0.5, 0.1, 0.4]])   # -> 0 wrong
    out = evaluate.scores(y, proba)
    # F1: class 0 P=1/2 R=1/2 -> 1/2; class 1 P=2/3 R=1 -> 4/5; class 2 P=1 R=1/2 -> 2/3
    # AUC one-vs-rest: class 0 7/8, class 1 7/8, class 2 1; recalls 1/2, 1, 1/2
    # confidence bins: 0.7 x2 (right: gap 0.3 each), 0.8 (right: 0.2), 0.6 (wrong: 0.6), 0.5 x2 (one right: 0)
    # Brier per user 0.14, 0.06, 0.14, 0.86, 0.38, 0.62
    assert out == pytest.approx({"accuracy": 4 / 6, "balanced_accuracy": 2 / 3,
                                 "macro_f1": (1 / 2 + 4 / 5 + 2 / 3) / 3, "auc": (7 / 8 + 7 / 8 + 1) / 3,
                                 "ece": (0.6 + 0.2 + 0.6) / 6, "brier": 2.2 / 6}, rel=1e-12)


def test_scores_macro_f1_counts_a_never_predicted_class_as_zero():
    y = np.array([0, 1, 2])
    proba = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.1, 0.8, 0.1]])
    out = evaluate.scores(y, proba)
    # class 0 F1 1; class 1 P=1/2 R=1 -> 2/3; class 2 never predicted -> 0
    assert out["accuracy"] == pytest.approx(2 / 3, rel=1e-12)
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3, rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_scores_auc_is_nan_when_a_class_is_absent_binary():
    y = np.array([1, 1, 1])
    p1 = np.array([0.8, 0.6, 0.3])
    out = evaluate.scores(y, np.stack([1 - p1, p1], axis=1))
    assert out["accuracy"] == pytest.approx(2 / 3, rel=1e-12)
    assert math.isnan(out["auc"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_scores_auc_is_nan_when_a_class_is_absent_multiclass():
    y = np.array([0, 1, 1, 0])   # class 2 absent from y_true
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    out = evaluate.scores(y, proba)
    assert out["accuracy"] == pytest.approx(3 / 4, rel=1e-12)
    assert math.isnan(out["auc"])


# ------------------------------------------------------------------------------------------ summarize
def test_summarize_mean_std_values_with_a_nan():
    per_seed = [{"accuracy": 0.5, "macro_f1": 0.4, "auc": float("nan")},
                {"accuracy": 0.7, "macro_f1": 0.6, "auc": 0.8},
                {"accuracy": 0.9, "macro_f1": 0.8, "auc": 0.6}]
    out = evaluate.summarize(per_seed)
    assert set(out) == set(evaluate.METRICS)
    assert out["accuracy"]["mean"] == pytest.approx(0.7, rel=1e-12)
    assert out["accuracy"]["std"] == pytest.approx(np.sqrt(0.08 / 3), rel=1e-12)  # population std
    assert out["accuracy"]["values"] == [0.5, 0.7, 0.9]
    assert out["macro_f1"]["mean"] == pytest.approx(0.6, rel=1e-12)
    # the NaN is left out of mean and std, and reported as None (JSON null) among the values
    assert out["auc"]["mean"] == pytest.approx(0.7, rel=1e-12)
    assert out["auc"]["std"] == pytest.approx(0.1, rel=1e-12)
    assert out["auc"]["values"] == [None, 0.8, 0.6]


def test_summarize_all_nan_gives_none():
    out = evaluate.summarize([{"accuracy": 1.0, "macro_f1": 1.0, "auc": float("nan")}])
    assert out["auc"] == {"mean": None, "std": None, "values": [None]}
    assert out["accuracy"] == {"mean": 1.0, "std": 0.0, "values": [1.0]}


@pytest.mark.parametrize("val, expected", [
    ({"lr": {"mean": 0.743, "std": 0.017}, "sign": {"mean": 0.744, "std": 0.006}}, "lr"),  # within the spread
    ({"lr": {"mean": 0.725, "std": 0.030}, "sign": {"mean": 0.835, "std": 0.023}}, "sign"),  # beyond it
    ({"lr": {"mean": 0.70, "std": 0.0}, "sage": {"mean": 0.71, "std": 0.0}}, "sage"),  # one seed: any gain
    ({"lr": {"mean": 0.70, "std": 0.0}, "sage": {"mean": 0.70, "std": 0.0}}, "lr"),  # ties: the baseline
    ({"gat": {"mean": 0.5, "std": 0.1}, "sage": {"mean": 0.5, "std": 0.0}}, "gat"),  # no baseline: by name
    ({"lr": {"mean": 0.6, "std": 0.01}, "sage": {"mean": 0.65, "std": 0.02}, "gat": {"mean": 0.66, "std": 0.08}},
     "sage"),  # gat is within its own spread of lr: not a candidate; sage is beyond it
    ({"lr": {"mean": 0.6, "std": 0.01}, "gat": {"mean": 0.66, "std": 0.08}}, "lr"),
])
def test_pick_model_keeps_the_baseline_unless_validation_beats_it_beyond_the_spread(val, expected):
    from graphprof.training.evaluate import pick_model

    assert pick_model(val) == expected
