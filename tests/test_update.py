"""``graphprof update``: a batch applied to a built, trained work directory equals a rebuild in the saved feature
space, is applied exactly once (refused again, whole or not at all under SIGKILL), and rejects bad rows as
``build-graph`` does."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphprof import workdir
from graphprof.features import build_features, load_features
from graphprof.graph import build_graph
from graphprof.graph.build import build
from graphprof.ingest import generate
from graphprof.ingest.io import find_tables, read_tables
from graphprof.ingest.schema import validate_tables
from graphprof.models import ModelInput, get_model
from graphprof.training.train import train
from graphprof.updating.stage import update

ROOT = Path(__file__).resolve().parents[1]


def split(tables: dict, frac: float = 0.1, seed: int = 0) -> tuple[dict, dict]:
    """90% / 10% of a shop: a tenth of the users are new (their purchases, ties and users rows in the batch), and
    a tenth of the other purchases and ties too. The items table stays whole in the base."""
    rng = np.random.default_rng(seed)
    users = tables["users"]["user_id"].to_numpy()
    new = set(rng.choice(users, int(frac * len(users)), replace=False))
    p, f, u = tables["purchases"], tables["friendships"], tables["users"]
    p_new = p["user_id"].isin(new).to_numpy() | (rng.random(len(p)) < frac)
    f_new = f["user_id"].isin(new).to_numpy() | f["friend_id"].isin(new).to_numpy() | (rng.random(len(f)) < frac)
    u_new = u["user_id"].isin(new).to_numpy()
    base = {"purchases": p[~p_new], "friendships": f[~f_new], "users": u[~u_new], "items": tables["items"]}
    batch = {"purchases": p[p_new], "friendships": f[f_new], "users": u[u_new]}
    return base, batch


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A trained work directory on 90% of a shop, the batch with the other 10%, and all the rows."""
    tmp = tmp_path_factory.mktemp("update")
    tables = generate.generate(n_users=600, seed=5)
    base, batch = split(tables)
    generate.write_tables(tables, tmp / "all")
    generate.write_tables(base, tmp / "base")
    generate.write_tables(batch, tmp / "batch")
    work = tmp / "trained"
    build(work, data=tmp / "base")
    train(work, targets=["gender"], models=["lr", "sign"], seeds=1, epochs=5)
    return tmp


def fresh(shop: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(shop / "trained", work)
    return work


def snapshot(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*"))
            if p.is_file() and p.name != workdir.LOCK}


def test_update_equals_a_rebuild_in_the_saved_feature_space(shop, tmp_path):
    work = fresh(shop, tmp_path)
    saved_state = load_features(work).state
    result = update(work, data=shop / "batch")
    assert result.entry["counts"]["new_users"] == 60

    # the reference: one build of every row, transformed by the saved feature state
    ref_graph = build_graph(validate_tables(read_tables(find_tables(shop / "all"))))
    ref = build_features(ref_graph, seed=0, state=saved_state)
    got = load_features(work)
    assert sorted(got.user_ids) == sorted(ref.user_ids)
    assert list(got.user_ids) == list(ref_graph.user_ids)  # build_graph's layout: ids sorted
    cols = [c for c in ref.frame.columns if c != "pagerank"]  # PageRank is global: documented as kept
    np.testing.assert_allclose(got.frame[cols].to_numpy(), ref.frame[cols].to_numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.items.drop(columns=["category"]).to_numpy(dtype=float),
                               ref.items.drop(columns=["category"]).to_numpy(dtype=float), rtol=1e-9, atol=1e-9)

    # identical classes for every user: the reference's inputs with the update's PageRank are the same inputs
    ref.frame["pagerank"] = got.frame["pagerank"].to_numpy()
    inputs = ModelInput(graph=ref_graph, features=ref)
    for name in ("lr", "sign"):
        model = get_model(name).load(workdir.run_dir(work, "gender", name, 0))
        want = np.array(model.classes_, dtype=object)[model.proba(inputs).argmax(axis=1)]
        pred = pd.read_parquet(workdir.model_file(work, "gender", name, workdir.MODEL_PREDICTIONS))
        assert list(pred["user_id"]) == list(ref_graph.user_ids)
        assert (pred["predicted"].to_numpy(dtype=object) == want).all(), name
        assert pred["predicted"].notna().all()
    # the new users' labels come from the batch's users table, and they were never in a split
    pred = pd.read_parquet(workdir.model_file(work, "gender", "lr", workdir.MODEL_PREDICTIONS))
    batch_users = pd.read_csv(shop / "batch" / "users.csv", dtype=str)
    new = pred.set_index("user_id").loc[batch_users["user_id"]]
    assert (new["split"] == "unlabelled").all()
    assert (new["label"].fillna("?").to_numpy() == batch_users["gender"].fillna("?").to_numpy()).all()


def test_a_users_table_sets_and_changes_known_users_labels(shop, tmp_path):
    work = fresh(shop, tmp_path)
    users = pd.read_csv(shop / "base" / "users.csv", dtype=str)
    who = users["user_id"].iloc[:3].tolist()
    flip = {"f": "m", "m": "f"}
    old = users.set_index("user_id").loc[who, "gender"]
    batch = tmp_path / "labels"
    batch.mkdir()
    pd.DataFrame(columns=["user_id", "item_id", "timestamp", "quantity", "price"]).to_csv(
        batch / "purchases.csv", index=False)
    pd.DataFrame({"user_id": who, "gender": [flip.get(g, "f") for g in old],
                  "age_band": ["", "", ""]}).to_csv(batch / "users.csv", index=False)
    result = update(work, data=batch)
    assert result.entry["counts"]["labels_set"] == 3 and result.entry["counts"]["new_users"] == 0
    table = pd.read_parquet(workdir.table_path(work, "users")).set_index("user_id")
    assert list(table.loc[who, "gender"]) == [flip.get(g, "f") for g in old]
    assert list(table.loc[who, "age_band"].fillna("?")) == list(users.set_index("user_id").loc[who, "age_band"]
                                                                .fillna("?"))  # empty: the known value stays
    pred = pd.read_parquet(workdir.model_file(work, "gender", "lr", workdir.MODEL_PREDICTIONS)).set_index("user_id")
    assert list(pred.loc[who, "label"]) == [flip.get(g, "f") for g in old]


def test_new_items_and_categories_join_and_the_models_score_on_the_items_they_know(shop, tmp_path):
    from graphprof.graph import load_graph
    from graphprof.privacy.forget import forget

    work = fresh(shop, tmp_path)
    before = load_graph(work)
    buyer = before.user_ids[5]
    batch = tmp_path / "items"
    batch.mkdir()
    # "00new" sorts before every generated id: every known item moves one index up
    pd.DataFrame({"user_id": [buyer, buyer, "newcomer"], "item_id": ["00new", "zznew", "00new"],
                  "timestamp": [1.8e9, 1.8e9, 1.8e9], "quantity": [1, 2, 1], "price": [5.0, 6.0, 5.0]}).to_csv(
        batch / "purchases.csv", index=False)
    pd.DataFrame({"item_id": ["00new", "zznew"], "category": ["brand-new", "brand-new"], "price": [5.0, 6.0]}).to_csv(
        batch / "items.csv", index=False)
    result = update(work, data=batch)
    assert result.entry["counts"]["new_items"] == 2
    g = load_graph(work)
    assert g.item_ids[0] == "00new" and list(g.item_ids[1:-1]) == list(before.item_ids)
    assert "brand-new" in set(g.category_ids)
    items = load_features(work).items
    assert (items.filter(like="item_svd").iloc[[0, -1]].to_numpy() == 0).all()  # unknown to the fitted SVD
    for name in ("lr", "sign"):
        pred = pd.read_parquet(workdir.model_file(work, "gender", name, workdir.MODEL_PREDICTIONS)).set_index("user_id")
        assert pred["predicted"].notna().all() and "newcomer" in pred.index
    # the buyer's lr profile: the model on the items it was fitted on (the new ones left out, as predict does)
    from graphprof.updating.rescore import restrict_items

    model = get_model("lr").load(workdir.run_dir(work, "gender", "lr", 0))
    feats = load_features(work)
    keep = np.arange(1, len(g.item_ids) - 1)
    from graphprof.features import UserFeatures

    seen = ModelInput(graph=restrict_items(g, keep), features=UserFeatures(
        user_ids=feats.user_ids, frame=feats.frame, groups=feats.groups, item_ids=feats.item_ids[keep],
        items=feats.items.iloc[keep].reset_index(drop=True), state=feats.state))
    row = int(np.flatnonzero(g.user_ids == buyer)[0])
    want = model.proba(seen, rows=np.array([row]))[0]
    pred = pd.read_parquet(workdir.model_file(work, "gender", "lr", workdir.MODEL_PREDICTIONS)).set_index("user_id")
    got = pred.loc[buyer, [f"proba_{c}" for c in model.classes_]].to_numpy(dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a second batch after it still knows which items the models were fitted on; forget and train go on
    update(work, data=shop / "batch")
    forget(work, ["newcomer"])
    # the models' line runs through both updates and the erasure: they still re-score, on the items they know
    one = tmp_path / "one"
    one.mkdir()
    pd.DataFrame({"user_id": [buyer], "item_id": ["zznew"], "timestamp": [1.9e9], "quantity": [1],
                  "price": [6.0]}).to_csv(one / "purchases.csv", index=False)
    third = update(work, data=one)
    assert third.entry["rescored"]["gender/lr"] == 1 and isinstance(third.entry["rescored"]["gender/sign"], int)
    assert train(work, targets=["gender"], models=["lr"], seeds=1).targets["gender"]["lr"]


def test_the_same_batch_twice_is_refused_and_changes_nothing(shop, tmp_path):
    work = fresh(shop, tmp_path)
    update(work, data=shop / "batch")
    before = snapshot(work)
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "update", "--workdir", str(work), "--data",
                          str(shop / "batch")], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "not applied before" in out.stderr and "update 1" in out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(work) == before


KILLER = """
import os, signal, sys
import graphprof.workdir.commit as commit
point = sys.argv[3]
if point == "staging":  # killed while the batch is written to .partial-update/, before its commit
    import graphprof.updating.rescore as rescore
    real = rescore.rescore_models
    def rescore_models(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    rescore.rescore_models = rescore_models
else:  # killed after the commit, with some files moved into place and others not
    import types
    moved = []
    def replace(src, dst):
        if len(moved) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        moved.append(src)
        os.replace(src, dst)
    commit.os = types.SimpleNamespace(replace=replace)  # the commit's moves only
from graphprof.updating.stage import update
update(sys.argv[1], data=sys.argv[2])
"""


@pytest.mark.parametrize("point", ["staging", "moving"])
def test_sigkill_during_update_then_rerun_gives_the_uninterrupted_result(shop, tmp_path, point):
    clean = tmp_path / "clean"
    shutil.copytree(shop / "trained", clean)
    update(clean, data=shop / "batch")
    work = fresh(shop, tmp_path)
    before = snapshot(work)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(work), str(shop / "batch"), point], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert (work / workdir.PARTIAL_UPDATE).exists()
    if point == "staging":
        workdir.recover_update(work)
        assert snapshot(work) == before  # the previous state, intact
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "update", "--workdir", str(work), "--data",
                          str(shop / "batch"), "--json"], capture_output=True, text=True)
    if point == "moving":  # committed before the kill: finished by the recovery, so the re-run is refused
        assert out.returncode == 2 and "not applied before" in out.stderr, out.stderr
    else:
        assert out.returncode == 0, out.stderr
    assert not (work / workdir.PARTIAL_UPDATE).exists()
    want, got = snapshot(clean), snapshot(work)
    assert sorted(want) == sorted(got)
    for rel in want:
        if rel != workdir.MANIFEST:  # times and seconds differ
            assert got[rel] == want[rel], rel
    m_want, m_got = (json.loads(x[workdir.MANIFEST]) for x in (want, got))
    assert m_got["graph_id"] == m_want["graph_id"]
    assert [e["batch_id"] for e in m_got["updates"]] == [e["batch_id"] for e in m_want["updates"]]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_a_batch_cut_off_by_the_environment_leaves_the_work_directory_as_it_was(shop, tmp_path, monkeypatch,
                                                                                 capsys, error):
    from graphprof import cli
    from graphprof.workdir import files

    work = fresh(shop, tmp_path)
    before = snapshot(work)
    real = files.atomic_write

    def failing(path, write):
        if "predictions.parquet" in str(path):  # the graph is staged by then: half-way through the batch
            if isinstance(error, OSError):
                error.filename = str(path)
            raise error
        return real(path, write)

    monkeypatch.setattr(files, "atomic_write", failing)
    code = cli.main(["update", "--workdir", str(work), "--data", str(shop / "batch"), "-q"])
    err = capsys.readouterr().err
    assert code == (2 if isinstance(error, OSError) else 130)
    assert "Traceback" not in err
    assert ("no space left" in err) if isinstance(error, OSError) else ("was not applied" in err)
    assert snapshot(work) == before and not (work / workdir.PARTIAL_UPDATE).exists()
    monkeypatch.setattr(files, "atomic_write", real)
    assert update(work, data=shop / "batch").entry["batch"] == 1  # and it applies once, cleanly


def test_bad_rows_go_to_rejects_and_a_bad_file_stops_with_exit_2(shop, tmp_path):
    work = fresh(shop, tmp_path)
    batch = tmp_path / "batch"
    shutil.copytree(shop / "batch", batch)
    p = pd.read_csv(batch / "purchases.csv", dtype=str)
    p.loc[0, "quantity"] = "-3"
    p.to_csv(batch / "purchases.csv", index=False)
    f = pd.read_csv(shop / "base" / "friendships.csv", dtype=str).head(2)  # ties the work directory has
    pd.concat([pd.read_csv(batch / "friendships.csv", dtype=str), f]).to_csv(batch / "friendships.csv", index=False)
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "update", "--workdir", str(work), "--data",
                          str(batch), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["rows"]["purchases"]["rejected"] == 1
    assert doc["rows"]["friendships"]["rejected"] == 2
    rej = pd.read_csv(work / "rejects" / "updates" / "1" / "purchases.csv")
    assert rej.loc[0, "column"] == "quantity" and "must" in rej.loc[0, "reason"]
    rej = pd.read_csv(work / "rejects" / "updates" / "1" / "friendships.csv")
    assert rej["reason"].str.contains("already in the work directory").all()

    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"user_id": ["u1"], "timestamp": [1]}).to_csv(bad / "purchases.csv", index=False)
    before = snapshot(work)
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "update", "--workdir", str(work), "--data",
                          str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "purchases.csv" in out.stderr and "item_id" in out.stderr and "Traceback" not in out.stderr
    assert snapshot(work) == before


def test_other_commands_work_on_an_updated_work_directory(shop, tmp_path):
    from graphprof.communities.stage import detect_communities, load_assignments
    from graphprof.embeddings.export import export_embeddings, load_embeddings
    from graphprof.embeddings.query import recommend, similar
    from graphprof.prediction.predict import predict
    from graphprof.privacy.forget import forget
    from graphprof.reporting.report import write_report

    work = fresh(shop, tmp_path)
    detect_communities(work)
    export_embeddings(work, model="lr")
    before, feats_before = load_embeddings(work), load_features(work)
    result = update(work, data=shop / "batch")
    assert set(result.drift["groups"]) >= {"behaviour", "graph"}
    assert "users_added_share" in result.to_json()["drift"]
    new_user = pd.read_csv(shop / "batch" / "users.csv", dtype=str)["user_id"].iloc[0]
    # the export and the communities follow the update: new users are in them, untouched users kept theirs
    after = load_embeddings(work)
    assert len(after.ids) == len(before.ids) + 60 and new_user in set(after.ids)
    assert len(similar(work, new_user, k=3)) == 3
    feats_after = load_features(work)
    rows = pd.Index(feats_after.user_ids).get_indexer(feats_before.user_ids)
    same = (feats_after.matrix[rows] == feats_before.matrix).all(axis=1)  # lr's input unchanged
    assert 0 < same.sum() < len(same)
    kept = pd.Index(after.ids).get_indexer(before.ids)
    np.testing.assert_array_equal(after.vectors[kept[same]], before.vectors[same])
    assert not np.array_equal(after.vectors[kept[~same]], before.vectors[~same])
    assignments, _ = load_assignments(work)
    assert new_user in set(assignments["user_id"])
    write_report(work)
    assert "Trained before 1 update(s)" in (work / "report.html").read_text()
    new = tmp_path / "new"
    generate.write_tables({"purchases": pd.DataFrame({"user_id": ["zz1"], "item_id": [
        pd.read_csv(shop / "all" / "items.csv", dtype=str)["item_id"].iloc[0]], "timestamp": [1.7e9],
        "quantity": [1], "price": [3.0]})}, new)
    assert len(predict(work, new).frame) == 1
    forget(work, [new_user])
    assert new_user not in set(load_features(work).user_ids)
    assert new_user not in set(pd.read_parquet(workdir.table_path(work, "users"))["user_id"])
    from graphprof.graph.build import load_tables

    assert workdir.table_parts(work, "purchases")  # the batch's rows: a part of the table, filtered on its own
    assert new_user not in set(load_tables(work, "purchases")["user_id"])
    assert new_user not in set(load_tables(work, "friendships")["friend_id"])
    again = train(work, targets=["gender"], models=["lr"], seeds=1)
    assert again.targets["gender"]["lr"]
    export_embeddings(work, model="lightgcn")
    assert len(recommend(work, load_features(work).user_ids[0], k=2)) == 2


def test_lightgcn_export_gets_new_users_folded_in(shop, tmp_path):
    from graphprof.embeddings.export import export_embeddings, load_embeddings
    from graphprof.embeddings.query import similar

    work = fresh(shop, tmp_path)
    export_embeddings(work, model="lightgcn")
    before = load_embeddings(work)
    update(work, data=shop / "batch")
    after = load_embeddings(work)
    at = pd.Index(after.ids).get_indexer(before.ids)
    np.testing.assert_array_equal(after.vectors[at], before.vectors)  # saved users keep theirs
    new_ids = sorted(set(after.ids) - set(before.ids))
    assert len(new_ids) == 60
    assert np.abs(after.vectors[pd.Index(after.ids).get_indexer(new_ids)]).sum(axis=1).min() > 0
    assert len(similar(work, new_ids[0], k=3)) == 3

