"""graphprof.predict: profiles for users the models never saw, from the saved models, without retraining.

A generated shop is split: 60 users (every 6th) are held out of ``build`` with their purchases, ties and users
rows, ``train`` runs on the rest, and ``predict`` gets the held-out users' rows (labels included), plus a few rows
it must count and not use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import build, load_graph
from graphprof.ingest import generate
from graphprof.prediction.predict import picked_model, predict, trained_targets
from graphprof.training.train import train

ROOT = Path(__file__).resolve().parent.parent
N_USERS = 360
N_HELD = 60
MODELS_RUN = ["lr", "sage"]
COLUMNS = ["user_id", "gender", "gender_model", "gender_proba_f", "gender_proba_m"]
UNKNOWN_ITEMS = ["SKU-NOT-SOLD-1", "SKU-NOT-SOLD-2"]
N_KNOWN_USER_ROWS = 3
N_KNOWN_TIES = 2


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Build + train without the held-out users; write the held-out users' tables (with extra rows) to new/."""
    base = tmp_path_factory.mktemp("predict_shop")
    tables = generate.generate(n_users=N_USERS, seed=0)
    users, p, f = tables["users"], tables["purchases"], tables["friendships"]
    held = users["user_id"].iloc[::6].iloc[:N_HELD].tolist()
    assert len(held) == N_HELD
    in_p = p["user_id"].isin(held)
    in_f = f["user_id"].isin(held) | f["friend_id"].isin(held)
    in_u = users["user_id"].isin(held)
    generate.write_tables({"purchases": p[~in_p], "friendships": f[~in_f], "users": users[~in_u],
                           "items": tables["items"]}, base / "data")
    work = base / "work"
    build.build(work, data=base / "data")
    result = train(work, targets=["gender"], models=MODELS_RUN, seeds=1, epochs=5)

    known = users.loc[~in_u, "user_id"].tolist()
    template = p[in_p].iloc[0]
    extra = [{**template, "user_id": held[0], "item_id": UNKNOWN_ITEMS[0]},   # unknown items: counted, not used
             {**template, "user_id": held[1], "item_id": UNKNOWN_ITEMS[1]}]
    extra += [{**template, "user_id": known[j], "item_id": tables["items"]["item_id"].iloc[j]}  # known users
              for j in range(N_KNOWN_USER_ROWS)]
    bad = [{**template, "user_id": held[2], "quantity": -2}]  # rejected by validation
    new_p = pd.concat([p[in_p], pd.DataFrame(extra + bad)], ignore_index=True)
    existing = set(map(frozenset, f[["user_id", "friend_id"]].itertuples(index=False)))
    known_ties = [(a, b) for a, b in zip(known[10:40], known[40:70]) if frozenset((a, b)) not in existing]
    known_ties = known_ties[:N_KNOWN_TIES]
    new_f = pd.concat([f[in_f], pd.DataFrame(known_ties, columns=["user_id", "friend_id"])], ignore_index=True)
    generate.write_tables({"purchases": new_p, "friendships": new_f, "users": users[in_u]}, base / "new")
    expected = {"purchases_used": int(in_p.sum()), "ties_used": int(in_f.sum())}
    return {"base": base, "work": work, "train": result, "held": sorted(held), "users": users[in_u],
            "new": base / "new", "expected": expected}


@pytest.fixture(scope="module")
def predicted(shop):
    before = _hashes(shop["work"] / "models")
    res = predict(shop["work"], shop["new"])
    after = _hashes(shop["work"] / "models")
    return res, before, after


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _expected_pick(work: Path, target: str = "gender") -> str:
    scores = {m: json.loads((workdir.model_dir(work, target, m) / "metrics.json").read_text())["val_macro_f1"]["mean"]
              for m in MODELS_RUN}
    best = max(scores.values())
    return "lr" if scores["lr"] == best else max(scores, key=scores.get)


# ------------------------------------------------------------------------------------------ the frame
def test_one_row_per_new_user(shop, predicted):
    res = predicted[0]
    assert list(res.frame.columns) == COLUMNS  # no communities were detected: no community column
    assert res.frame["user_id"].tolist() == shop["held"]
    assert res.frame["user_id"].is_unique
    graph = load_graph(shop["work"])
    assert not set(res.frame["user_id"]) & set(graph.user_ids)  # known users are never predicted here


def test_probabilities_sum_to_one_and_match_the_class(predicted):
    frame = predicted[0].frame
    proba = frame[["gender_proba_f", "gender_proba_m"]].to_numpy()
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    assert frame["gender"].tolist() == np.array(["f", "m"])[proba.argmax(axis=1)].tolist()


def test_written_parquet_is_the_frame(shop, predicted):
    res = predicted[0]
    assert res.out == shop["work"] / workdir.PREDICTIONS_NEW
    back = pd.read_parquet(res.out)
    assert list(back.columns) == COLUMNS
    assert len(back) == N_HELD
    pd.testing.assert_frame_equal(back, res.frame, check_dtype=False)


def test_counts(shop, predicted):
    c = predicted[0].counts
    assert c == {"new_users": N_HELD, "purchases_used": shop["expected"]["purchases_used"],
                 "ties_used": shop["expected"]["ties_used"], "purchases_unknown_item": len(UNKNOWN_ITEMS),
                 "unknown_items": len(UNKNOWN_ITEMS), "purchases_known_user": N_KNOWN_USER_ROWS,
                 "ties_known_users": N_KNOWN_TIES, "rejected_rows": 1}


def test_summary_lines_and_json(shop, predicted):
    res = predicted[0]
    c = res.counts
    lines = res.summary_lines()
    assert lines[0] == f"predicted {N_HELD} new users -> {res.out}"
    assert lines[1] == (f"used {c['purchases_used']} purchases and {c['ties_used']} ties; ignored: 2 purchases of "
                        f"2 unknown items, {N_KNOWN_USER_ROWS} purchases and {N_KNOWN_TIES} ties of users already in "
                        "the graph; 1 rows rejected by validation")
    assert lines[2].startswith(f"  gender ({res.targets['gender']['model']}): ")
    assert "accuracy vs the given labels" in lines[2]
    doc = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert doc["counts"] == c and doc["out"] == str(res.out)


def test_accuracy_against_the_given_labels(shop, predicted):
    res = predicted[0]
    labels = shop["users"].set_index("user_id")["gender"]
    truth = labels.reindex(res.frame["user_id"]).to_numpy()
    has = pd.notna(truth)
    assert res.accuracy["gender"]["n"] == int(has.sum()) > 0
    expected = float((res.frame["gender"].to_numpy()[has] == truth[has]).mean())
    assert res.accuracy["gender"]["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert set(res.accuracy) == {"gender"}  # age_band / spend_level were not trained


def test_predicted_counts_per_class(predicted):
    res = predicted[0]
    assert res.targets["gender"]["predicted"] == res.frame["gender"].value_counts().sort_index().to_dict()
    assert sum(res.targets["gender"]["predicted"].values()) == N_HELD


def test_predict_does_not_retrain(predicted):
    _, before, after = predicted
    assert before and before == after


# ---------------------------------------------------------------------------------------- the picked model
def test_picked_model_follows_validation_macro_f1(shop, predicted):
    res = predicted[0]
    expected = _expected_pick(shop["work"])
    assert picked_model(shop["work"], "gender") == expected
    assert set(res.frame["gender_model"]) == {expected}
    assert res.targets["gender"]["model"] == expected
    assert expected == shop["train"].info["gender"]["picked"]


def test_trained_targets_lists_each_target_once(shop, predicted):
    assert trained_targets(shop["work"]) == ["gender"]


def test_changing_metrics_changes_the_picked_model(shop, predicted, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(shop["work"], work)
    first = _expected_pick(work)
    other = next(m for m in MODELS_RUN if m != first)
    path = workdir.model_dir(work, "gender", other) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["val_macro_f1"]["mean"] = 1.0
    path.write_text(json.dumps(metrics))
    res = predict(work, shop["new"])
    assert set(res.frame["gender_model"]) == {other}
    assert res.frame["user_id"].tolist() == shop["held"]
    proba = res.frame[["gender_proba_f", "gender_proba_m"]].to_numpy()
    assert not np.allclose(proba, predicted[0].frame[["gender_proba_f", "gender_proba_m"]].to_numpy())


def _metrics_dir(root: Path, scores: dict) -> Path:
    for model, mean in scores.items():
        workdir.write_json(workdir.model_dir(root, "t", model) / "metrics.json", {"val_macro_f1": {"mean": mean}})
    return root


@pytest.mark.parametrize("scores, expected", [
    ({"lr": 0.6, "sage": 0.7}, "sage"),
    ({"lr": 0.7, "sage": 0.6}, "lr"),
    ({"lr": 0.7, "sage": 0.7}, "lr"),             # ties go to the baseline
    ({"sage": 0.7, "lr": 0.7, "gat": 0.7}, "lr"),
    ({"gat": 0.5, "sage": 0.5}, "gat"),           # no lr: alphabetical among the tied
    ({"lr": None, "sage": 0.1}, "sage"),          # no value (null) counts as 0
])
def test_picked_model_hand_written(tmp_path, scores, expected):
    assert picked_model(_metrics_dir(tmp_path, scores), "t") == expected


def test_picked_model_without_metrics(tmp_path):
    with pytest.raises(ArtifactError, match=r"no trained model for target 'gender'; run 'graphprof train' first"):
        picked_model(tmp_path, "gender")


# ------------------------------------------------------------------------------------------ determinism
def test_predict_twice_gives_identical_output(shop, predicted, tmp_path):
    again = predict(shop["work"], shop["new"], out=tmp_path / "again.parquet")
    assert again.out == tmp_path / "again.parquet"
    pd.testing.assert_frame_equal(again.frame, predicted[0].frame)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again.parquet"), pd.read_parquet(predicted[0].out))
    assert again.counts == predicted[0].counts
    assert again.accuracy == predicted[0].accuracy


def test_row_order_of_the_input_does_not_matter(shop, predicted, tmp_path):
    src = shop["new"]
    for name in ("purchases", "friendships", "users"):
        df = pd.read_csv(src / f"{name}.csv", dtype=str, keep_default_na=False)
        df.iloc[::-1].to_csv(tmp_path / f"{name}.csv", index=False)
    res = predict(shop["work"], tmp_path, out=tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(res.frame, predicted[0].frame, check_exact=False, rtol=1e-9, atol=1e-12)
    assert res.counts == predicted[0].counts


# ------------------------------------------------------------------------------------------- inputs
def test_purchases_only(shop, tmp_path):
    p = pd.read_csv(shop["new"] / "purchases.csv", dtype=str, keep_default_na=False)
    p = pd.concat([p, pd.DataFrame([{**p.iloc[0], "user_id": "ONLY-UNKNOWN", "item_id": "SKU-NOT-SOLD-3"}])])
    path = tmp_path / "p.csv"
    p.to_csv(path, index=False)
    res = predict(shop["work"], purchases=path, out=tmp_path / "out.parquet")
    # ONLY-UNKNOWN bought nothing known and is named nowhere else: not a new user; counted as ignored
    assert "ONLY-UNKNOWN" not in set(res.frame["user_id"])
    assert res.frame["user_id"].tolist() == shop["held"]
    assert res.counts["purchases_unknown_item"] == len(UNKNOWN_ITEMS) + 1
    assert res.counts["ties_used"] == 0 and res.counts["ties_known_users"] == 0
    assert res.accuracy == {}  # no labels given
    assert "accuracy" not in res.summary_lines()[2]


@pytest.mark.parametrize("case", ["no_rows", "some_users_shuffled"])
def test_accuracy_with_a_partial_or_empty_users_table(shop, tmp_path, case):
    """The given labels are matched to the new users by id, whatever the users table's order or size: a table
    with no rows gives no accuracy (and no error); one naming a shuffled part of the new users, plus ids that are
    not new users, is scored on the named new users only."""
    users = pd.read_csv(shop["new"] / "users.csv", dtype=str, keep_default_na=False)
    if case == "no_rows":
        users = users.iloc[:0]
    else:
        users = users.iloc[::2].sample(frac=1.0, random_state=1)
        users = pd.concat([users, pd.DataFrame([{**users.iloc[0], "user_id": "NOT-A-BUYER-1", "gender": "m"}])])
    shutil.copytree(shop["new"], tmp_path / "new")
    users.to_csv(tmp_path / "new" / "users.csv", index=False)
    res = predict(shop["work"], tmp_path / "new", out=tmp_path / "out.parquet")
    if case == "no_rows":
        assert res.accuracy == {} and res.frame["user_id"].tolist() == shop["held"]
        return
    labels = users.set_index("user_id")["gender"].replace("", np.nan)
    truth = labels.reindex(res.frame["user_id"]).to_numpy()
    has = pd.notna(truth)
    assert 0 < has.sum() < len(res.frame) and res.accuracy["gender"]["n"] == int(has.sum())
    expected = float((res.frame["gender"].to_numpy()[has] == truth[has]).mean())
    assert res.accuracy["gender"]["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_hand_made_new_users_and_ties(shop, tmp_path):
    """NEW1 buys a known and an unknown item; NEW2 is only tied to NEW1; NEW3 only to a known user."""
    known = load_graph(shop["work"]).user_ids
    (tmp_path / "p.csv").write_text("user_id,item_id\nNEW1,SKU-001\nNEW1,SKU-NOPE\n")
    (tmp_path / "f.csv").write_text(f"user_id,friend_id\nNEW2,NEW1\n{known[0]},NEW3\n{known[0]},{known[1]}\n")
    res = predict(shop["work"], purchases=tmp_path / "p.csv", friendships=tmp_path / "f.csv",
                  out=tmp_path / "out.parquet")
    assert res.frame["user_id"].tolist() == ["NEW1", "NEW2", "NEW3"]
    assert res.counts == {"new_users": 3, "purchases_used": 1, "ties_used": 2, "purchases_unknown_item": 1,
                          "unknown_items": 1, "purchases_known_user": 0, "ties_known_users": 1,
                          "rejected_rows": 0}
    np.testing.assert_allclose(res.frame[["gender_proba_f", "gender_proba_m"]].sum(axis=1), 1.0, atol=1e-6)


def test_ids_of_rejected_ties_are_not_new_users(shop, tmp_path):
    """Validation hashes every tie's ids, rejected rows' too; predict reuses that hashing, and must take as new
    users only ids of ties it keeps."""
    (tmp_path / "p.csv").write_text("user_id,item_id\nNEW1,SKU-001\n")
    (tmp_path / "f.csv").write_text("user_id,friend_id,weight\nNEW2,NEW1,1\nNEW4,NEW5,-1\nNEW1,NEW2,1\n")
    res = predict(shop["work"], purchases=tmp_path / "p.csv", friendships=tmp_path / "f.csv",
                  out=tmp_path / "out.parquet")
    assert res.frame["user_id"].tolist() == ["NEW1", "NEW2"]
    assert res.counts["new_users"] == 2 and res.counts["ties_used"] == 1 and res.counts["rejected_rows"] == 2


def test_only_known_users_gives_an_empty_frame(shop, tmp_path):
    known = load_graph(shop["work"]).user_ids
    (tmp_path / "p.csv").write_text(f"user_id,item_id\n{known[0]},SKU-001\n{known[1]},SKU-002\n")
    res = predict(shop["work"], purchases=tmp_path / "p.csv", out=tmp_path / "out.parquet")
    assert res.counts["new_users"] == 0 and res.counts["purchases_known_user"] == 2
    assert list(res.frame.columns) == COLUMNS and len(res.frame) == 0
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert list(back.columns) == COLUMNS and len(back) == 0


# ---------------------------------------------------------------------------------------------- errors
def test_predict_before_train(shop, tmp_path):
    generate.write_tables(generate.generate(n_users=60, seed=1), tmp_path / "data")
    work = tmp_path / "work"
    build.build(work, data=tmp_path / "data")
    with pytest.raises(ArtifactError, match=r"no trained model found; run 'graphprof train' first"):
        predict(work, shop["new"])
    assert not (work / "predictions").exists()


def test_predict_before_build(shop, tmp_path):
    with pytest.raises(ArtifactError, match=r"no graph found; run 'graphprof build-graph' first"):
        predict(tmp_path / "nowhere", shop["new"])


def test_predict_without_data(shop):
    with pytest.raises(ConfigError, match=r"predict needs the new users' data: --data DIR"):
        predict(shop["work"])


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli(shop, tmp_path_factory):
    """``predict --json`` on the trained shop and ``predict`` on an untrained one, side by side."""
    base = tmp_path_factory.mktemp("predict_cli")
    untrained = base / "untrained"
    shutil.copytree(shop["work"], untrained)
    shutil.rmtree(untrained / "models")
    commands = {
        "ok": ["predict", "--workdir", shop["work"], "--data", shop["new"], "--out", base / "cli.parquet",
               "--json"],
        "untrained": ["predict", "--workdir", untrained, "--data", shop["new"]],
    }
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=str(ROOT),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for name, args in commands.items()}
    runs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        runs[name] = subprocess.CompletedProcess(commands[name], proc.returncode, out, err)
    return base, runs


def test_cli_predict_json(cli, predicted):
    base, runs = cli
    r = runs["ok"]
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # one JSON document and nothing else on stdout
    assert doc["out"] == str(base / "cli.parquet")
    assert doc["counts"] == predicted[0].counts
    assert doc["targets"]["gender"]["model"] == predicted[0].targets["gender"]["model"]
    pd.testing.assert_frame_equal(pd.read_parquet(base / "cli.parquet"), pd.read_parquet(predicted[0].out))


def test_cli_predict_before_train_exits_2(cli):
    r = cli[1]["untrained"]
    assert r.returncode == 2
    assert "no trained model found; run 'graphprof train' first" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------------ incremental: graph and features
SAMPLE = ROOT / "datasets" / "sample"


@pytest.fixture(scope="module")
def sample_ext(tmp_path_factory):
    """The bundled sample with every 10th user held out of the build; their rows (a few prices and times blanked,
    some ties weighted) joined to the saved graph by :func:`graphprof.prediction.extend.extend_graph`, and the same rows
    joined by a whole rebuild (``build_graph`` over the saved tables and the used rows): the reference."""
    from graphprof.features import load_features
    from graphprof.graph import build_graph
    from graphprof.graph.build import load_tables, read_inputs
    from graphprof.ingest.schema import ValidatedTables, validate_tables
    from graphprof.prediction.extend import extend_graph, join
    from graphprof.prediction.extend_features import load_state

    base = tmp_path_factory.mktemp("predict_incremental")
    tables = {n: pd.read_csv(SAMPLE / f"{n}.csv", dtype=str, keep_default_na=False)
              for n in ("users", "purchases", "friendships", "items")}
    users, p, f = tables["users"], tables["purchases"], tables["friendships"]
    held = set(users["user_id"].iloc[::10])
    in_p, in_u = p["user_id"].isin(held), users["user_id"].isin(held)
    in_f = f["user_id"].isin(held) | f["friend_id"].isin(held)
    generate.write_tables({"purchases": p[~in_p], "friendships": f[~in_f], "users": users[~in_u],
                           "items": tables["items"]}, base / "data")
    new_p, new_f = p[in_p].copy(), f[in_f].copy()
    new_p.iloc[::7, new_p.columns.get_loc("price")] = ""        # the items table's list price applies
    new_p.iloc[3::11, new_p.columns.get_loc("timestamp")] = ""  # unknown time
    new_f["weight"] = np.where(np.arange(len(new_f)) % 3 == 0, "2.5", "1")
    generate.write_tables({"purchases": new_p, "friendships": new_f, "users": users[in_u]}, base / "new")
    work = base / "work"
    build.build(work, data=base / "data")
    graph = load_graph(work)
    new = validate_tables(read_inputs(base / "new").tables)
    rows = join(graph, new.tables)
    used_p, used_f, new_ids = rows.purchases, rows.friendships, rows.ids
    ext = extend_graph(work, graph, rows)
    old_f = load_tables(work, "friendships").assign(weight=lambda d: d["weight"].astype(np.float64))
    joined = {"purchases": pd.concat([load_tables(work, "purchases"), used_p], ignore_index=True),
              "friendships": pd.concat([old_f, used_f], ignore_index=True),
              "users": pd.concat([load_tables(work, "users")[["user_id"]], pd.DataFrame({"user_id": new_ids})],
                                 ignore_index=True),
              "items": load_tables(work, "items")}
    rebuilt = build_graph(ValidatedTables(tables=joined, rejects={}, accounting={}))
    meta, state, columns = load_state(work)
    return {"work": work, "graph": graph, "ext": ext, "rebuilt": rebuilt, "new_ids": new_ids, "state": state,
            "columns": columns, "saved": load_features(work), "used_p": used_p}


def _edge_frames(g) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Purchases and ties of a graph in the users' own ids, in a canonical order."""
    from graphprof.graph import BUY_ATTRS, BUYS, FRIEND

    ei = g.data[BUYS].edge_index.numpy()
    buys = pd.DataFrame(g.data[BUYS].edge_attr.numpy(), columns=list(BUY_ATTRS))
    buys.insert(0, "item", g.item_ids[ei[1]].astype(str))
    buys.insert(0, "user", g.user_ids[ei[0]].astype(str))
    fi = g.data[FRIEND].edge_index.numpy()
    ties = pd.DataFrame({"a": g.user_ids[fi[0]].astype(str), "b": g.user_ids[fi[1]].astype(str),
                         "w": g.data[FRIEND].edge_weight.numpy()})
    return (buys.sort_values(["user", "item"], ignore_index=True), ties.sort_values(["a", "b"], ignore_index=True))


def test_extended_graph_is_the_rebuilt_graph_up_to_user_order(sample_ext):
    from graphprof.graph import FRIEND, ProfileGraph

    ext, rebuilt, graph = sample_ext["ext"], sample_ext["rebuilt"], sample_ext["graph"]
    assert sample_ext["used_p"]["price"].isna().any() and sample_ext["used_p"]["timestamp"].isna().any()
    n_old, n_new = graph.num_users, len(sample_ext["new_ids"])
    assert n_new > 250 and ext.num_users == n_old + n_new == rebuilt.num_users
    assert list(ext.user_ids[:n_old]) == list(graph.user_ids)  # the saved users keep their indices
    assert list(ext.user_ids[n_old:]) == list(sample_ext["new_ids"])  # the new ones appended, sorted
    assert sorted(ext.user_ids) == list(rebuilt.user_ids) and list(ext.item_ids) == list(rebuilt.item_ids)
    for mine, theirs in zip(_edge_frames(ext), _edge_frames(rebuilt)):
        pd.testing.assert_frame_equal(mine, theirs)  # aggregated exactly as build_graph does
    fi = ext.data[FRIEND].edge_index.numpy()
    key = fi[0].astype(np.int64) * ext.num_users + fi[1]
    assert (np.diff(key) > 0).all()  # friend edges in build_graph's order
    # the lazy matrices are those of the materialized graph
    plain = ProfileGraph(data=ext.data, user_ids=ext.user_ids, item_ids=ext.item_ids, category_ids=ext.category_ids)
    for attr in ("count", "quantity", "spend"):
        assert (ext.purchase_matrix(attr) != plain.purchase_matrix(attr)).nnz == 0
    mix = np.r_[np.arange(ext.n_old, ext.num_users)[::-2], np.arange(0, ext.n_old, 7)]
    fresh = type(ext)(ext.base, ext.user_ids[ext.n_old:], ext.buys, ext.ties)
    by_rows = fresh.adjacency_rows(mix)  # without the whole adjacency: from the rows' own ties
    assert "adj" not in fresh._cache
    assert (ext.social_adjacency() != plain.social_adjacency()).nnz == 0
    expected = plain.social_adjacency()[mix]
    assert (by_rows != expected).nnz == 0 and (by_rows.indptr == expected.indptr).all()
    assert (by_rows.indices == expected.indices).all() and (by_rows.data == expected.data).all()


def test_join_with_validation_codes_is_the_join_without(sample_ext):
    """join reuses validation's factorization of the ties; the rows, ends and counts are those of hashing again."""
    from graphprof.graph.build import read_inputs
    from graphprof.ingest.schema import validate_tables
    from graphprof.prediction.extend import join

    new = validate_tables(read_inputs(sample_ext["work"].parent / "new").tables)
    assert new.friend_codes is not None
    mine, plain = join(sample_ext["graph"], new.tables, friend_codes=new.friend_codes), join(sample_ext["graph"], new.tables)
    assert list(mine.ids) == list(plain.ids) and mine.counts == plain.counts
    for name in ("user", "item", "a", "b"):
        assert (getattr(mine, name) == getattr(plain, name)).all()
    pd.testing.assert_frame_equal(mine.friendships, plain.friendships)


def test_sorted_factorize_is_pandas_sorted_factorize():
    from graphprof.prediction.extend import _arrow, _sorted_factorize

    rng = np.random.default_rng(3)
    pool = np.array(["b", "a", "é", "Z", "z", "10", "9", "ß", "日本", "a b", "\U0001f600", "aa"], dtype=object)
    parts = [pool[rng.integers(0, len(pool), n)] for n in (40, 0, 17)]
    codes, uniques = _sorted_factorize([_arrow(p) for p in parts])
    want_codes, want_uniques = pd.factorize(np.concatenate(parts), sort=True)
    assert list(uniques) == list(want_uniques) and (codes == want_codes).all()
    empty_codes, empty = _sorted_factorize([_arrow(np.zeros(0, dtype=object))])
    assert len(empty_codes) == len(empty) == 0


@pytest.mark.parametrize("pagerank_mode", ["local", "exact"])
def test_new_user_features_in_blocks_are_those_in_one(sample_ext, monkeypatch, pagerank_mode):
    """Blocks of new users, one thread or several, give every feature bit for bit as one block does."""
    from graphprof.prediction import extend_features
    from graphprof.prediction.extend import ExtendedGraph

    ext, state, columns, work = sample_ext["ext"], sample_ext["state"], sample_ext["columns"], sample_ext["work"]
    fresh = lambda: ExtendedGraph(ext.base, ext.user_ids[ext.n_old:], ext.buys, ext.ties)  # noqa: E731
    whole = extend_features.new_user_features(fresh(), state, columns, work, pagerank_mode, workers=1)
    monkeypatch.setattr(extend_features, "CHUNK_ROWS", 7)
    assert ext.num_users - ext.n_old > 3 * 7
    for workers in (1, 3):
        blocks = extend_features.new_user_features(fresh(), state, columns, work, pagerank_mode, workers=workers)
        assert blocks.shape == whole.shape and (blocks == whole).all()


def test_local_pagerank_products_in_row_blocks_are_one_product(sample_ext, monkeypatch):
    """The local PageRank's product in row blocks over threads is one product, bit for bit: on a random matrix
    for 1-3 blocks, and in new_user_features with the threshold lowered so the sample takes the threaded path."""
    import scipy.sparse as sp

    from graphprof.prediction import extend_features
    from graphprof.prediction.extend import ExtendedGraph

    rng = np.random.default_rng(5)
    m = sp.random(500, 500, density=0.02, format="csr", random_state=rng)
    x = rng.random(500)
    monkeypatch.setattr(extend_features, "PARALLEL_MIN_NNZ", 0)
    for workers in (1, 2, 3):
        with extend_features._RowBlocks(m, workers=workers) as product:
            assert len(product.blocks) == workers
            np.testing.assert_array_equal(product(x), m @ x)
    ext, state, columns, work = sample_ext["ext"], sample_ext["state"], sample_ext["columns"], sample_ext["work"]
    fresh = lambda: ExtendedGraph(ext.base, ext.user_ids[ext.n_old:], ext.buys, ext.ties)  # noqa: E731
    threaded = extend_features.new_user_features(fresh(), state, columns, work, workers=1)
    monkeypatch.setattr(extend_features, "PARALLEL_MIN_NNZ", 1 << 40)
    single = extend_features.new_user_features(fresh(), state, columns, work, workers=1)
    np.testing.assert_array_equal(threaded, single)


def test_new_edges_are_in_source_destination_order(sample_ext):
    """The new ties in both directions, ordered by (source, destination) with their weights, as an argsort of
    the packed keys orders them; a repeated tie (which validation rejects) keeps both entries."""
    from graphprof.prediction.extend import ExtendedGraph

    ext = sample_ext["ext"]
    a, b, w = ext.ties
    assert len(a)

    def expected(a, b, w, n):
        src, dst, ww = np.r_[a, b], np.r_[b, a], np.r_[w, w]
        order = np.argsort(src * np.int64(n) + dst, kind="stable")
        return src[order], dst[order], ww[order]

    for ties in ((a, b, w), (np.r_[a, a[:1]], np.r_[b, b[:1]], np.r_[w, w[:1]])):
        g = ExtendedGraph(ext.base, ext.user_ids[ext.n_old:], ext.buys, ties)
        got, want = g._new_edges(), expected(*ties, g.num_users)
        for x, y in zip(got, want):
            assert x.dtype == y.dtype and np.array_equal(x, y)
        starts = g._run_starts(1, got[0])
        assert np.array_equal(starts, np.r_[0, np.cumsum(np.bincount(got[0], minlength=g.num_users))])


def test_new_user_features_are_those_of_a_rebuild(sample_ext):
    """Every feature of a new user equals what build_features on the whole rebuilt graph gives it (saved state);
    PageRank too with pagerank="exact"; the default local estimate is close."""
    from graphprof.features import build_features
    from graphprof.prediction.extend_features import new_user_features

    ext, work, state, columns = sample_ext["ext"], sample_ext["work"], sample_ext["state"], sample_ext["columns"]
    assert columns == list(sample_ext["saved"].frame.columns)
    whole = build_features(sample_ext["rebuilt"], seed=0, state=state)
    expected = whole.frame.set_axis(whole.user_ids).loc[sample_ext["new_ids"]].to_numpy()
    exact = new_user_features(ext, state, columns, work, pagerank_mode="exact")
    np.testing.assert_allclose(exact, expected, rtol=1e-9, atol=1e-9)
    local = new_user_features(ext, state, columns, work)
    pr = columns.index("pagerank")
    others = [j for j in range(len(columns)) if j != pr]
    np.testing.assert_array_equal(local[:, others], exact[:, others])
    # the local estimate against the power iteration over the extended graph, on this split (10% of the users
    # added back); the bounds are well inside the gap between the saved users' own saved and extended scores
    # (adding the users back moves those scores more), so they are not loose. The figures: docs/commands.md
    est, ref = local[:, pr], exact[:, pr]
    assert np.corrcoef(est, ref)[0, 1] > 0.995
    assert np.median(np.abs(est - ref) / ref) < 0.03


# ---------------------------------------------------------------------------- incremental: row-restricted models
@pytest.fixture(scope="module")
def sample_models(sample_ext):
    """lr and sign (every block: own, two social hops, co-purchase) fitted on the saved graph of the sample, and
    the extended inputs (saved feature rows + the new users' rows) they score."""
    from graphprof.models import ModelInput
    from graphprof.models.baseline import LogisticBaseline
    from graphprof.models.sign.model import SIGN
    from graphprof.prediction.extend_features import ExtendedFeatures, new_user_features

    work, graph, saved, ext = sample_ext["work"], sample_ext["graph"], sample_ext["saved"], sample_ext["ext"]
    labels = pd.read_parquet(work / "tables" / "users.parquet").set_index("user_id")["gender"]
    labels = labels.reindex(graph.user_ids)
    classes = sorted(labels.dropna().unique())
    lab = np.flatnonzero(labels.notna().to_numpy())
    y = np.full(graph.num_users, -1)
    y[lab] = pd.Index(classes).get_indexer(labels.iloc[lab])
    lab = np.random.default_rng(0).permutation(lab)
    fit = ModelInput(graph=graph, features=saved)
    models = {"lr": LogisticBaseline(c_grid=(1.0,)).fit(fit, y, lab[: len(lab) // 2], lab[len(lab) // 2:], classes),
              "sign": SIGN(block_sets=("all",), dropout_grid=(0.3,), epochs=2).fit(
                  fit, y, lab[: len(lab) // 2], lab[len(lab) // 2:], classes)}
    assert models["sign"].block_names_ == ["own", "social_1", "social_2", "copurchase"]
    state, columns = sample_ext["state"], sample_ext["columns"]
    feats = ExtendedFeatures(work, ext.user_ids, columns, new_user_features(ext, state, columns, work),
                             saved.groups, ext.item_ids, state)
    return models, ModelInput(graph=ext, features=feats)


@pytest.mark.parametrize("name", ["lr", "sign"])
def test_row_scores_equal_the_whole_graph_scores(sample_models, name):
    """predict_proba / embed on given rows (the new users; and a mix of new and saved users in any order) give the
    whole-graph call's rows, on the same extended graph."""
    models, inputs = sample_models
    model, ext = models[name], inputs.graph
    new = np.arange(ext.n_old, ext.num_users)
    whole = model.predict_proba(inputs)
    part = model.predict_proba(inputs, rows=new)
    np.testing.assert_array_equal(model.proba(inputs, rows=new), part.to_numpy())  # the same numbers, no frame
    assert list(part.index) == list(ext.user_ids[new]) and list(part.columns) == list(whole.columns)
    np.testing.assert_allclose(part.to_numpy(), whole.to_numpy()[new], rtol=0, atol=1e-6)
    mix = np.r_[new[::-3], np.arange(0, ext.n_old, 37)]
    np.testing.assert_allclose(model.predict_proba(inputs, rows=mix).to_numpy(), whole.to_numpy()[mix],
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.embed(inputs, rows=mix), model.embed(inputs)[mix], rtol=0, atol=1e-5)
    # the same on a plain ProfileGraph of the same data (no adjacency_rows: rows of the whole adjacency)
    from graphprof.graph import ProfileGraph
    from graphprof.models import ModelInput

    plain = ProfileGraph(data=ext.data, user_ids=ext.user_ids, item_ids=ext.item_ids, category_ids=ext.category_ids)
    np.testing.assert_allclose(model.predict_proba(ModelInput(graph=plain, features=inputs.features), rows=mix),
                               whole.to_numpy()[mix], rtol=0, atol=1e-6)


def test_lr_on_new_rows_reads_no_saved_feature_row(sample_models):
    models, inputs = sample_models
    ext = inputs.graph
    feats = type(inputs.features)(inputs.features.root, ext.user_ids, inputs.features.columns,
                                  inputs.features.new, inputs.features.groups, ext.item_ids, inputs.features.state)
    from graphprof.models import ModelInput

    models["lr"].predict_proba(ModelInput(graph=ext, features=feats), rows=np.arange(ext.n_old, ext.num_users))
    assert feats._full is None  # features/users.parquet was not read


def test_community_of_new_users_is_their_known_friends_most_common(shop, tmp_path):
    """With communities detected (a hand-made assignment here), each new user gets its known friends' most common
    community (ties: the lower), -1 without a known friend."""
    work = tmp_path / "work"
    shutil.copytree(shop["work"], work)
    known = load_graph(work).user_ids
    assign = pd.DataFrame({"user_id": pd.Series(known, dtype="string"), "community": np.arange(len(known)) % 3})
    workdir.write_parquet(work / workdir.COMMUNITIES_DIR / "leiden" / "assignments.parquet", assign)
    res = predict(work, shop["new"], out=tmp_path / "out.parquet")
    assert list(res.frame.columns) == COLUMNS + ["community"]
    assert (res.frame["community"] >= 0).sum() > N_HELD // 2
    label = dict(zip(assign["user_id"], assign["community"]))
    f = pd.read_csv(shop["new"] / "friendships.csv", dtype=str)
    ties = pd.concat([f.rename(columns={"user_id": "a", "friend_id": "b"}),
                      f.rename(columns={"user_id": "b", "friend_id": "a"})])
    for user, got in zip(res.frame["user_id"], res.frame["community"]):
        votes = pd.Series([label[b] for b in ties.loc[ties["a"] == user, "b"] if b in label])
        expected = int(votes.value_counts().sort_index().idxmax()) if len(votes) else -1
        assert got == expected, user
