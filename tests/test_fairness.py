"""``train --audit COL``: the fairness audit of every model's test predictions by the groups of a users-table
column (graphprof/training/fairness.py), checked against hand-computed rates and fairlearn's definitions, then
end to end through train, its table and JSON, and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_small import build_shop

from graphprof import cli, workdir
from graphprof.errors import ConfigError
from graphprof.reporting.report import write_report
from graphprof.training.fairness import audit, group_labels, summarize_audit
from graphprof.training.train import train


def test_binary_audit_matches_hand_computed_rates():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1])
    pred = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array(["a"] * 6 + ["b"] * 6, dtype=object)
    a = audit(y, pred, groups, ["no", "yes"])
    assert a["positive"] == "yes" and list(a["classes"]) == ["yes"]
    assert a["groups"]["a"] == {"support": 6, "accuracy": 4 / 6}
    assert a["groups"]["b"] == {"support": 6, "accuracy": 5 / 6}
    rates = a["classes"]["yes"]["groups"]
    # a: predicted positive 3 of 6; positives (rows 0, 1, 4): 2 found; negatives (2, 3, 5): 1 false alarm
    assert rates["a"] == {"selection_rate": 0.5, "tpr": 2 / 3, "fpr": 1 / 3}
    # b: predicted positive 4 of 6; positives (8, 9, 11): all found; negatives (6, 7, 10): 1 false alarm
    assert rates["b"] == {"selection_rate": 4 / 6, "tpr": 1.0, "fpr": 1 / 3}
    assert a["classes"]["yes"]["demographic_parity_difference"] == pytest.approx(4 / 6 - 0.5)
    assert a["classes"]["yes"]["equalized_odds_difference"] == pytest.approx(1.0 - 2 / 3)


def test_one_group_only_says_there_is_nothing_to_compare():
    y = np.array([0, 1] * 10)
    a = audit(y, y.copy(), np.array(["a"] * 20, dtype=object), ["x", "y"])
    s = summarize_audit("g", [a, a])
    assert s["class"] is None and s["demographic_parity_difference"]["mean"] is None
    from graphprof.training.fairness import audit_lines

    assert "nothing to compare" in audit_lines(s, "lr")[0]


def test_unknown_and_small_groups_are_left_out_and_counted():
    y = np.array([0, 1] * 10)
    groups = np.array(["a"] * 12 + ["b"] * 3 + [None] * 5, dtype=object)
    a = audit(y, y.copy(), groups, ["x", "y"])
    assert set(a["groups"]) == {"a"} and a["small_groups"] == ["b"] and a["unknown"] == 5


def test_multiclass_audit_reports_the_class_that_differs_most():
    rng = np.random.default_rng(0)
    groups = np.array(["a"] * 60 + ["b"] * 60, dtype=object)
    y = rng.integers(0, 3, 120)
    pred = y.copy()
    ones = 60 + np.flatnonzero(y[60:] == 1)
    pred[ones] = np.resize([0, 2], len(ones))  # group b never gets class 1 (its share goes half to p, half to r)
    seeds = [audit(y, pred, groups, ["p", "q", "r"]) for _ in range(2)]
    s = summarize_audit("g", seeds)
    assert s["class"] == "q" and s["positive"] is None
    assert s["groups"]["b"]["selection_rate"]["mean"] == 0.0
    assert s["demographic_parity_difference"]["mean"] > 0.2


def test_group_labels_align_to_the_graph_users():
    import pandas as pd

    users = pd.DataFrame({"user_id": ["u2", "u1", "u3"], "gender": ["f", None, "m"]})
    out = group_labels(users, np.array(["u1", "u2", "u9", "u3"], dtype=object), "gender")
    assert out.tolist() == [None, "f", None, "m"]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    work = build_shop(tmp_path_factory.mktemp("audit"), n_users=1000)
    result = train(work, targets=["age_band"], models=["lr", "sign"], seeds=2, epochs=5, audit="gender")
    return work, result


def test_train_audits_the_picked_model_in_the_table_json_and_metrics(audited):
    work, result = audited
    info = result.to_json()["target_info"]["age_band"]
    json.dumps(info, allow_nan=False)
    s = info["audit"]
    assert s["model"] == info["picked"] and s["column"] == "gender"
    assert set(s["groups"]) == {"f", "m"}
    for m in s["groups"].values():
        assert len(m["accuracy"]["values"]) == 2
    table = result.table()
    assert f"audit by gender ({info['picked']}, test users" in table
    assert "demographic-parity difference" in table and "equalized-odds difference" in table
    for model in ("lr", "sign"):
        metrics = json.loads((workdir.model_dir(work, "age_band", model) / workdir.MODEL_METRICS).read_text())
        assert metrics["audit"]["column"] == "gender"
    page = write_report(work).path.read_text(encoding="utf-8")
    assert "Fairness audit" in page and "Demographic-parity difference" in page


def test_audit_column_must_exist_and_not_be_a_target(audited, capsys):
    work, _ = audited
    with pytest.raises(ConfigError, match=r"--audit must be a users-table column .*Got 'height' instead"):
        train(work, targets=["age_band"], models=["lr"], seeds=1, audit="height")
    with pytest.raises(ConfigError, match="--audit must not be a target of the same run"):
        train(work, targets=["gender"], models=["lr"], seeds=1, audit="gender")
    code = cli.main(["train", "--workdir", str(work), "--target", "age_band", "--models", "lr", "--seeds", "1",
                     "--audit", "height", "-q"])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
