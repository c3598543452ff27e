"""graphprof.train: targets x models x seeds on paired splits -> TrainResult and models/<target>/<model>/."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures_small import build_shop, load_inputs

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.models import MODELS
from graphprof.training.evaluate import METRICS
from graphprof.training.train import TrainResult, resolve_targets, train

MODELS_RUN = ["lr", "sage"]
SEEDS = 2
EPOCHS = 5


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return build_shop(tmp_path_factory.mktemp("train_shop"))


@pytest.fixture(scope="module")
def result(work) -> TrainResult:
    return train(work, targets=["gender"], models=MODELS_RUN, seeds=SEEDS, epochs=EPOCHS)


# ------------------------------------------------------------------------------------------- the result
def test_to_json_has_every_metric_per_model(result):
    doc = result.to_json()
    json.dumps(doc, allow_nan=False)  # one strict JSON document (NaN would not be)
    assert list(doc["targets"]) == ["gender"]
    assert list(doc["targets"]["gender"]) == MODELS_RUN
    for model in MODELS_RUN:
        summary = doc["targets"]["gender"][model]
        assert set(summary) == {"accuracy", "balanced_accuracy", "macro_f1", "auc", "ece", "brier"} == set(METRICS)
        for metric in METRICS:
            cell = summary[metric]
            assert set(cell) == {"mean", "std", "values"}
            assert len(cell["values"]) == SEEDS
            vals = np.array(cell["values"], dtype=float)
            assert ((vals >= 0) & (vals <= (2 if metric == "brier" else 1))).all()  # Brier: 2 = all wrong
            assert cell["mean"] == pytest.approx(vals.mean(), abs=1e-12)
            assert cell["std"] == pytest.approx(vals.std(), abs=1e-12)


def test_result_seeds_and_info(result, work):
    assert result.seeds == [0, 1]
    assert result.to_json()["seeds"] == [0, 1]
    info = result.info["gender"]
    assert info["classes"] == ["f", "m"]
    assert info["dropped_classes"] == {}
    assert info["picked"] in MODELS_RUN
    assert set(info["val_macro_f1"]) == set(MODELS_RUN)
    assert set(info["vs_baseline"]) == {"sage"}
    _, users = load_inputs(work)
    assert info["labelled"] == int(users["gender"].notna().sum())
    sizes = info["split_sizes"]
    assert sizes["train"] + sizes["val"] + sizes["test"] == info["labelled"]
    assert 0.5 <= info["majority_rate"] <= 1.0


def test_table_shows_both_models_side_by_side(result):
    text = result.table()
    assert "gender" in text
    rows = {}
    for line in text.splitlines()[2:]:
        tokens = line.split()
        name = tokens[1] if tokens[:1] == ["gender"] else tokens[0] if tokens else ""
        if name in MODELS_RUN and "vs lr" not in line:
            rows[name] = line
    assert set(rows) == set(MODELS_RUN)
    for line in rows.values():
        assert line.count("±") == len(METRICS) + 1  # each metric + validation macro-F1
    assert "mean ± std over 2 seeds [0, 1]" in text
    assert text.count("<- picked") == 1


def test_summary_lines_are_the_table_and_to_json_round_trips(result):
    lines = result.summary_lines()
    assert all(isinstance(line, str) and "\n" not in line for line in lines)
    assert "\n".join(lines) == result.table()  # what the command line prints, line by line
    assert lines[0].startswith("target") and set(lines[1]) == {"-"}
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    again = TrainResult(targets=doc["targets"], info=doc["target_info"], seeds=doc["seeds"])
    assert again.summary_lines() == lines


# -------------------------------------------------------------------------------------------- artifacts
@pytest.mark.parametrize("model", MODELS_RUN)
def test_artifacts_are_written_per_target_and_model(result, work, model):
    out = work / "models" / "gender" / model
    assert out == workdir.model_dir(work, "gender", model)
    for name in ("metrics.json", "config.json", "predictions.parquet"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target"] == "gender" and metrics["model"] == model
    assert metrics["seeds"] == [0, 1]
    assert metrics["test"] == result.targets["gender"][model]
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["f", "m"]
    assert config["seeds"] == [0, 1]
    assert config["epochs"] == EPOCHS
    for seed in (0, 1):
        run = workdir.run_dir(work, "gender", model, seed)
        assert (run / "model.json").is_file() and (run / "weights.safetensors").is_file()


@pytest.mark.parametrize("model", MODELS_RUN)
def test_predictions_one_row_per_user(result, work, model):
    inputs, users = load_inputs(work)
    pred = pd.read_parquet(work / "models" / "gender" / model / "predictions.parquet")
    assert list(pred.columns) == ["user_id", "label", "split", "predicted", "proba_f", "proba_m"]
    assert len(pred) == inputs.graph.num_users
    assert pred["user_id"].tolist() == list(inputs.graph.user_ids)
    assert set(pred["split"]) <= {"train", "val", "test", "unlabelled"}
    sizes = result.info["gender"]["split_sizes"]
    counts = pred["split"].value_counts()
    for part in ("train", "val", "test"):
        assert counts[part] == sizes[part]
    # the known label travels with every labelled user; unlabelled users have none
    known = users.set_index("user_id")["gender"].reindex(pred["user_id"]).to_numpy()
    has_label = pred["label"].notna().to_numpy()
    assert np.array_equal(has_label, pd.notna(known))
    assert (pred["label"][has_label].to_numpy() == known[has_label]).all()
    assert ((pred["split"] == "unlabelled").to_numpy() == ~has_label).all()
    proba = pred[["proba_f", "proba_m"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    assert (pred["predicted"].to_numpy() == np.array(["f", "m"])[proba.argmax(axis=1)]).all()


@pytest.mark.parametrize("model", MODELS_RUN)
def test_saved_seed_model_reproduces_the_predictions(result, work, model):
    inputs, _ = load_inputs(work)
    loaded = MODELS[model].load(workdir.run_dir(work, "gender", model, 0))
    pred = pd.read_parquet(work / "models" / "gender" / model / "predictions.parquet")
    proba = loaded.predict_proba(inputs)
    assert np.array_equal(proba.to_numpy(), pred[["proba_f", "proba_m"]].to_numpy())


def test_train_records_the_stage_in_the_manifest(result, work):
    manifest = json.loads((work / "manifest.json").read_text())
    stage = manifest["stages"]["train"]
    assert stage["targets"] == ["gender"] and stage["models"] == MODELS_RUN and stage["seeds"] == [0, 1]


def test_train_twice_gives_identical_metrics(result, work):
    again = train(work, targets=["gender"], models=MODELS_RUN, seeds=SEEDS, epochs=EPOCHS)
    assert again.to_json()["targets"] == result.to_json()["targets"]
    assert again.info["gender"]["picked"] == result.info["gender"]["picked"]


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_target_lists_the_columns(work):
    with pytest.raises(ConfigError, match=r"--target must be a column of the users table "
                                          r"\(gender, age_band, spend_level\)\. Got 'shoe_size' instead"):
        train(work, targets=["shoe_size"], models=["lr"], seeds=1)


def test_unknown_model_lists_the_models(work):
    with pytest.raises(ConfigError, match=r"--models must name registered models \(.*lr.*\)\. Got 'nope' instead"):
        train(work, targets=["gender"], models=["lr", "nope"], seeds=1)


def test_no_model_is_an_error(work):
    with pytest.raises(ConfigError, match="--models must name at least one model"):
        train(work, targets=["gender"], models=[], seeds=1)


@pytest.mark.parametrize("seeds", [0, -1])
def test_seeds_below_one_is_an_error(work, seeds):
    with pytest.raises(ConfigError, match=rf"--seeds must be >= 1\. Got {seeds} instead"):
        train(work, targets=["gender"], models=["lr"], seeds=seeds)


def test_epochs_below_one_is_an_error(work):
    with pytest.raises(ConfigError, match=r"--epochs must be >= 1\. Got 0 instead"):
        train(work, targets=["gender"], models=["lr"], seeds=1, epochs=0)


def test_train_before_build_says_which_command_to_run(tmp_path):
    with pytest.raises(ArtifactError, match=r"no graph found; run 'graphprof build-graph' first"):
        train(tmp_path / "empty", targets=["gender"], models=["lr"], seeds=1)
    assert not (tmp_path / "empty" / "models").exists()


def test_no_target_given_and_none_usable(tmp_path):
    def unlabel(users: pd.DataFrame) -> pd.DataFrame:
        return users[["user_id"]].assign(note="same")

    work = build_shop(tmp_path, n_users=60, edit_users=unlabel)
    with pytest.raises(ConfigError, match=r"train: needs a target\. .*\(columns: note\); pass --target COLUMN"):
        train(work, models=["lr"], seeds=1)


def test_default_targets_are_the_candidate_columns():
    users = pd.DataFrame({"user_id": [str(i) for i in range(40)], "g": ["a", "b"] * 20})
    assert resolve_targets(users, None) == ["g"]
    assert resolve_targets(users, ["x", "g", "x"]) == ["x", "g"]


# ------------------------------------------------------------------------------------- small classes
def test_a_class_too_small_to_split_is_dropped_and_reported(tmp_path):
    def three_x(users: pd.DataFrame) -> pd.DataFrame:
        labelled = users.index[users["gender"].notna()]
        users.loc[labelled[:3], "gender"] = "x"
        return users

    work = build_shop(tmp_path, edit_users=three_x)
    res = train(work, targets=["gender"], models=["lr"], seeds=1)
    info = res.info["gender"]
    assert info["dropped_classes"] == {"x": 3}
    assert info["classes"] == ["f", "m"]
    assert "dropped small classes {'x': 3}" in res.table()
    config = json.loads((work / "models" / "gender" / "lr" / "config.json").read_text())
    assert config["dropped_classes"] == {"x": 3}
    pred = pd.read_parquet(work / "models" / "gender" / "lr" / "predictions.parquet")
    assert list(pred.columns) == ["user_id", "label", "split", "predicted", "proba_f", "proba_m"]
    _, users = load_inputs(work)
    x_users = users.loc[users["gender"] == "x", "user_id"]
    rows = pred[pred["user_id"].isin(x_users)]
    assert len(rows) == 3
    assert rows["label"].isna().all()
    assert (rows["split"] == "unlabelled").all()
    assert set(rows["predicted"]) <= {"f", "m"}


def test_named_targets_read_only_their_users_table_columns(tmp_path, monkeypatch):
    """A run with --target reads the user ids and that column of the users table, not every column (each is
    GiBs at millions of users); the numbers are those of a run that reads them all."""
    from graphprof.graph import build as build_mod
    from graphprof.training import train as train_mod

    work = build_shop(tmp_path)
    read = []
    real = build_mod.load_tables

    def spy(root, name, columns=None):
        out = real(root, name, columns)
        read.append((name, None if out is None else list(out.columns)))
        return out

    monkeypatch.setattr(train_mod, "load_tables", lambda root, name, columns=None: real(root, name))
    every = train(work, targets=["gender"], models=["lr"], seeds=1).to_json()  # every column read
    monkeypatch.setattr(train_mod, "load_tables", spy)
    named = train(work, targets=["gender"], models=["lr"], seeds=1).to_json()
    assert ("users", ["user_id", "gender"]) in read and real(work, "users").shape[1] > 2
    assert named["targets"] == every["targets"]
