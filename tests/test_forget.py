"""graphprof.forget: erased users are gone from every artifact, checked by scanning every file's bytes.

One generated shop goes through every stage (build with bad rows naming a user, train lr + sage, communities,
LightGCN embeddings, report, predict), then two of its users and one predicted new user are erased. The scan reads
every file under the work directory (Parquet decoded as well as raw, since compressed pages need not hold an id
as plain bytes) and looks for the ids with non-alphanumeric boundaries, so ``C0042`` never matches ``C00420``.
LightGCN is trained with a small config (as in test_embeddings) to stay quick.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from graphprof import workdir
from graphprof.communities.stage import detect_communities, load_assignments
from graphprof.embeddings.export import export_embeddings, load_embeddings
from graphprof.embeddings.query import recommend, similar
from graphprof.errors import ConfigError, InputError
from graphprof.features import load_features
from graphprof.graph import build, load_graph
from graphprof.graph.build import load_tables
from graphprof.ingest import generate
from graphprof.models.lightgcn import LightGCN, LightGCNConfig
from graphprof.prediction.predict import predict
from graphprof.privacy.erasure import _reject_hits
from graphprof.privacy.forget import forget, read_forget_file
from graphprof.privacy.pseudonymize import KEY_ENV, pseudonymize_ids
from graphprof.reporting.report import write_report
from graphprof.training.train import train

N_USERS = 300  # ids C0000 .. C0299: all five characters, so no id is a substring of another
SMALL = LightGCNConfig(dim=8, layers=2, epochs=4, eval_every=2, batch_size=512)
KEY = b"f" * 8 + b"0123456789abcdef" + b"F" * 8
UNKNOWN = "C9999"


@pytest.fixture(scope="module", autouse=True)
def small_lightgcn():
    """``export_embeddings`` looks ``fit_lightgcn`` up at call time: train the small config."""
    import graphprof.models.lightgcn as lightgcn

    real = lightgcn.fit_lightgcn
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lightgcn, "fit_lightgcn", lambda graph, config=None, seed=0: real(graph, SMALL, seed=seed))
        mp.delenv(KEY_ENV, raising=False)
        yield


# ------------------------------------------------------------------------------------------------ scan
def scan(root: Path, ids) -> dict[str, set[str]]:
    """Relative path -> the ids found in that file (raw bytes; for Parquet also every decoded cell and the
    schema metadata), matched with non-alphanumeric boundaries."""
    pattern = re.compile(rb"(?<![0-9A-Za-z])(" + b"|".join(re.escape(i.encode()) for i in ids) + rb")(?![0-9A-Za-z])")
    found = {}
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        texts = [path.read_bytes()]
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            texts.append(json.dumps(table.to_pylist(), default=str).encode())
            texts.extend(b"%s=%s" % kv for kv in (table.schema.metadata or {}).items())
        hits = {m.group(1).decode() for t in texts for m in pattern.finditer(t)}
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def _pick_users(tables) -> tuple[str, str, str]:
    """A (ties and purchases), B (ties and purchases, not A's friend) and C (a friend of A who stays)."""
    p, f = tables["purchases"], tables["friendships"]
    buyers = set(p["user_id"])
    degree = pd.concat([f["user_id"], f["friend_id"]]).value_counts()
    ok = sorted(u for u in degree.index[degree >= 2] if u in buyers)
    a = ok[0]
    friends_a = set(f.loc[f["user_id"] == a, "friend_id"]) | set(f.loc[f["friend_id"] == a, "user_id"])
    b = next(u for u in ok[1:] if u not in friends_a)
    c = sorted(friends_a)[0]
    return a, b, c


def _new_users(tables, folder: Path, ids: list[str], friend: str) -> Path:
    """A predict input: each new user buys two known items; the first is a friend of ``friend``."""
    items = tables["items"]["item_id"].tolist()
    p = pd.DataFrame({"user_id": [u for u in ids for _ in range(2)],
                      "item_id": [items[j % len(items)] for j in range(2 * len(ids))], "quantity": 1})
    f = pd.DataFrame({"user_id": [ids[0]], "friend_id": [friend]})
    generate.write_tables({"purchases": p, "friendships": f}, folder)
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Every stage run on a shop where user B also appears in the rejects (a self tie, a repeated tie, a second
    users row) beside two decoy rejects that merely contain B's id; then forget A, B and the new user NEW-2."""
    base = tmp_path_factory.mktemp("forget_shop")
    tables = generate.generate(n_users=N_USERS, seed=0)
    a, b, c = _pick_users(tables)
    f = tables["friendships"]
    tie = f[(f["user_id"] == b) | (f["friend_id"] == b)].iloc[0]
    bad_ties = pd.DataFrame({"user_id": [b, tie["friend_id"], "X" + b, b + "0"],
                             "friend_id": [b, tie["user_id"], "X" + b, b + "0"]})
    tables["friendships"] = pd.concat([f, bad_ties], ignore_index=True)
    users = tables["users"]
    tables["users"] = pd.concat([users, users[users["user_id"] == b]], ignore_index=True)
    bad_buy = tables["purchases"][tables["purchases"]["user_id"] == b].iloc[[0]].assign(quantity=-2)
    tables["purchases"] = pd.concat([tables["purchases"], bad_buy], ignore_index=True)
    generate.write_tables(tables, base / "data")
    work = base / "work"
    build.build(work, data=base / "data")
    train(work, targets=["gender"], models=["lr", "sage"], seeds=1, epochs=3)
    detect_communities(work)
    export_embeddings(work)
    write_report(work)
    predict(work, _new_users(tables, base / "new", ["NEW-1", "NEW-2"], a))
    erased = [a, b, "NEW-2"]
    before = {"scan": scan(work, erased), "graph": load_graph(work), "features": load_features(work),
              "manifest": workdir.load_manifest(work),
              "state_sha": workdir.sha256_file(work / workdir.FEATURES_STATE),
              "rejects": {t: pd.read_csv(workdir.rejects_path(work, t), dtype=str, keep_default_na=False)
                          for t in ("purchases", "friendships", "users")}}
    result = forget(work, [a, b, "NEW-2", UNKNOWN])
    return {"base": base, "work": work, "tables": tables, "a": a, "b": b, "c": c, "erased": erased,
            "before": before, "result": result}


# --------------------------------------------------------------------------------------- the erasure
def test_the_scan_finds_the_ids_before_forget(shop):
    """The scan can fail: before forget it finds the users in the artifacts of every stage."""
    found = shop["before"]["scan"]
    a, b = shop["a"], shop["b"]
    for rel in ("tables/purchases.parquet", "tables/friendships.parquet", "tables/users.parquet",
                "tables/ids/user.parquet", "features/users.parquet", "models/gender/lr/predictions.parquet",
                "models/gender/sage/predictions.parquet", "communities/leiden/assignments.parquet",
                "embeddings/users.parquet", "embeddings/users_ids.csv"):
        assert {a, b} <= found.get(rel, set()), rel
    assert b in found["rejects/friendships.csv"] and b in found["rejects/users.csv"]
    assert "NEW-2" in found["predictions/new_users.parquet"]


def test_no_erased_id_is_left_in_any_file(shop):
    assert scan(shop["work"], shop["erased"]) == {}


def test_the_result_counts_and_reports_the_unknown_id(shop):
    res = shop["result"]
    assert res.requested == 4 and res.erased == 3 and res.unknown_ids == [UNKNOWN]
    assert sorted(res.erased_ids) == sorted(shop["erased"])
    assert res.users_removed == 2 and res.orphaned == 0
    assert res.rows_removed["rejects/friendships.csv"] == 2 and res.rows_removed["rejects/users.csv"] == 1
    assert res.rows_removed["predictions/new_users.parquet"] == 1
    lines = res.summary_lines()
    assert lines[0].startswith("forget: erased 3 of 4 requested users")
    assert any(UNKNOWN in ln for ln in lines)
    assert any("report.html was deleted" in ln for ln in lines)
    doc = json.dumps(res.to_json())
    assert res.to_json()["unknown_ids"] == [UNKNOWN]
    assert not any(u in doc for u in shop["erased"])  # the JSON names no erased user


def test_the_graph_has_two_fewer_users_and_every_artifact_follows_it(shop):
    work, old = shop["work"], shop["before"]["graph"]
    graph = load_graph(work)
    assert graph.num_users == old.num_users - 2
    assert list(graph.user_ids) == [u for u in old.user_ids if u not in (shop["a"], shop["b"])]
    assert list(graph.item_ids) == list(old.item_ids)
    assert list(load_features(work).user_ids) == list(graph.user_ids)
    for model in ("lr", "sage"):
        pred = pd.read_parquet(workdir.model_dir(work, "gender", model) / "predictions.parquet")
        assert list(pred["user_id"]) == list(graph.user_ids)
    assign, _ = load_assignments(work, workdir.load_manifest(work)["graph_id"])  # current for the new graph
    assert list(assign["user_id"]) == list(graph.user_ids)
    profiles = pd.read_parquet(workdir.communities_dir(work, "leiden") / "profiles.parquet")
    assert profiles["size"].sum() == graph.num_users
    emb = load_embeddings(work, "user")
    assert list(emb.ids) == list(graph.user_ids) and emb.meta["num_users"] == graph.num_users
    assert LightGCN.load(work / workdir.LIGHTGCN_DIR).users.shape[0] == graph.num_users
    assert not (work / workdir.REPORT).exists()


def test_other_users_and_decoy_rejects_stay(shop):
    work, b, c = shop["work"], shop["b"], shop["c"]
    found = scan(work, [c, "NEW-1", "X" + b, b + "0"])
    for rel in ("tables/purchases.parquet", "tables/friendships.parquet", "features/users.parquet",
                "models/gender/sage/predictions.parquet", "embeddings/users_ids.csv"):
        assert c in found[rel], rel
    assert "NEW-1" in found["predictions/new_users.parquet"]
    assert {"X" + b, b + "0"} <= found["rejects/friendships.csv"]  # contain B's id, but are not B
    for t, old in shop["before"]["rejects"].items():  # only B's rows went
        new = pd.read_csv(workdir.rejects_path(work, t), dtype=str, keep_default_na=False)
        assert len(old) - len(new) == shop["result"].rows_removed.get(f"rejects/{t}.csv", 0)
    assert "-2" in set(pd.read_csv(workdir.rejects_path(work, "purchases"), dtype=str)["value"])


def test_features_stay_in_the_saved_space(shop):
    """The state is the one the models were trained with; a user's own-purchase features do not move."""
    work, old = shop["work"], shop["before"]["features"]
    assert workdir.sha256_file(work / workdir.FEATURES_STATE) == shop["before"]["state_sha"]
    new = load_features(work)
    assert list(new.frame.columns) == list(old.frame.columns)
    own = [col for col in new.frame.columns if col.startswith(("item_svd_", "cat_share_", "recency", "n_purchases"))]
    rows = pd.Index(old.user_ids).get_indexer(new.user_ids)
    np.testing.assert_allclose(new.frame[own].to_numpy(), old.frame[own].to_numpy()[rows], rtol=0, atol=1e-12)


def test_manifest_records_the_erasure_without_the_ids(shop):
    work = shop["work"]
    manifest = workdir.load_manifest(work)
    entry = manifest["erasures"][-1]
    assert entry["count"] == 3 and entry["unknown"] == 1 and entry["users_removed_from_graph"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["time"])
    assert "tables/purchases.parquet" in entry["artifacts"]
    assert manifest["graph_id"] == workdir.sha256_file(work / workdir.GRAPH_TENSORS)
    assert manifest["graph_id"] != shop["before"]["manifest"]["graph_id"]
    assert manifest["needs_retraining"] == ["gender/lr", "gender/sage", "_lightgcn"]
    rows = manifest["rows"]["purchases"]
    assert rows["read"] == rows["kept"] + rows["rejected"] + rows["erased"]
    assert rows["kept"] == len(load_tables(work, "purchases"))
    text = (work / workdir.MANIFEST).read_text()
    assert not any(u in text for u in shop["erased"])


def test_models_are_marked_and_still_usable(shop):
    for model in ("lr", "sage"):
        config = json.loads((workdir.model_dir(shop["work"], "gender", model) / "config.json").read_text())
        assert config["needs_retraining"] is True and "graphprof train" in config["needs_retraining_reason"]
    meta = load_embeddings(shop["work"], "user").meta
    assert meta["needs_retraining"] is True
    assert meta["graph_id"] == workdir.load_manifest(shop["work"])["graph_id"]
    assert len(similar(shop["work"], shop["c"], k=3)) == 3  # the filtered export matches the new graph
    assert len(recommend(shop["work"], shop["c"], k=3)) == 3


def test_only_unknown_ids_is_an_error_and_changes_nothing(shop):
    manifest = (shop["work"] / workdir.MANIFEST).read_bytes()
    with pytest.raises(ConfigError, match=r"must name at least one user of .*Got only unknown ids \(C9999, "
                                          r"NOPE\); nothing was changed"):
        forget(shop["work"], [UNKNOWN, "NOPE"])
    with pytest.raises(ConfigError, match=r"forget: the user ids must name at least one user"):
        forget(shop["work"], [shop["a"]])  # already erased
    with pytest.raises(ConfigError, match=r"needs at least one user id"):
        forget(shop["work"], [])
    assert (shop["work"] / workdir.MANIFEST).read_bytes() == manifest


def test_predict_and_train_work_after_forget(shop):
    """Last in this module: it writes new predictions and retrains."""
    work = shop["work"]
    res = predict(work, _new_users(shop["tables"], shop["base"] / "new3", ["NEW-3"], shop["c"]))
    assert list(res.frame["user_id"]) == ["NEW-3"] and res.frame["gender"].notna().all()
    out = train(work, targets=["gender", "community"], models=["lr", "sage"], seeds=1, epochs=3)
    assert set(out.targets) == {"gender", "community"}
    config = json.loads((workdir.model_dir(work, "gender", "sage") / "config.json").read_text())
    assert "needs_retraining" not in config
    assert config["graph_id"] == workdir.load_manifest(work)["graph_id"]
    export_embeddings(work)  # refits LightGCN on the new graph rather than reusing the marked one
    assert not LightGCN.load(work / workdir.LIGHTGCN_DIR).info.get("needs_retraining")
    assert scan(work, shop["erased"]) == {}


# ------------------------------------------------------------------ forget-file, orphans, pseudonyms
@pytest.fixture(scope="module")
def small_shop(tmp_path_factory):
    """A built shop (no training) where A2 has the only tie of ORPHAN-1 and the only purchase of an item that
    is not in the items table."""
    base = tmp_path_factory.mktemp("forget_file")
    tables = generate.generate(n_users=N_USERS, seed=1)
    a, _, _ = _pick_users(tables)
    tables["friendships"] = pd.concat([tables["friendships"], pd.DataFrame({"user_id": [a],
                                                                            "friend_id": ["ORPHAN-1"]})],
                                      ignore_index=True)
    only = tables["purchases"][tables["purchases"]["user_id"] == a].iloc[[0]].assign(item_id="SKU-ONLY-A2")
    tables["purchases"] = pd.concat([tables["purchases"], only], ignore_index=True)
    generate.write_tables(tables, base / "data")
    work = base / "work"
    build.build(work, data=base / "data")
    return base, work, a


def test_forget_file_csv_orphans_and_items(small_shop):
    base, work, a = small_shop
    old = load_graph(work)
    assert "ORPHAN-1" in set(old.user_ids) and "SKU-ONLY-A2" in set(old.item_ids)
    path = base / "erase.csv"
    path.write_text(f"user_id,reason\n{a},request 1\n\n{UNKNOWN},request 2\n", encoding="utf-8")
    res = forget(work, forget_file=path)
    assert res.erased == 1 and res.unknown_ids == [UNKNOWN]
    assert res.users_removed == 2 and res.orphaned == 1  # ORPHAN-1 was known only through A2's tie
    graph = load_graph(work)
    assert graph.num_users == old.num_users - 2 and list(graph.item_ids) == list(old.item_ids)
    assert "SKU-ONLY-A2" in set(load_tables(work, "items")["item_id"])
    assert scan(work, [a, "ORPHAN-1"]) == {}
    assert any("known only from the erased users' purchases" in n for n in res.notes)


def test_read_forget_file_formats_and_errors(tmp_path):
    lines = tmp_path / "ids.txt"
    lines.write_text("\ufeffC0001\n\n  C0002 \nC0001\n", encoding="utf-8")
    assert read_forget_file(lines) == ["C0001", "C0002", "C0001"]
    header = tmp_path / "one_col.csv"
    header.write_text("user_id\nC0003\n", encoding="utf-8")
    assert read_forget_file(header) == ["C0003"]
    tsv = tmp_path / "ids.tsv"
    tsv.write_text("name\tuser_id\nx\t007\n", encoding="utf-8")
    assert read_forget_file(tsv) == ["007"]  # ids stay text: leading zeros survive
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,reason\nC0001,x\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv: a forget file with several columns must have a 'user_id' "
                                         r"column \(found: uid, reason\)"):
        read_forget_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.txt: must name at least one user id"):
        read_forget_file(empty)
    binary = tmp_path / "latin1.txt"
    binary.write_bytes(b"C0001\n\xe9\n")
    with pytest.raises(InputError, match=r"latin1\.txt: must be UTF-8 text. Got a byte that is not on line 2"):
        read_forget_file(binary)
    with pytest.raises(InputError, match=r"missing\.txt: the forget file must exist"):
        read_forget_file(tmp_path / "missing.txt")


def test_reject_values_match_exactly_never_by_substring():
    values = pd.Series(["C0012", "C00123", "C0012,C0200", "C0300,C0012", "XC0012", "C0012 ", "-2", "", "a,b"])
    hit = _reject_hits(values, {"C0012", "a,b"})
    assert hit.tolist() == [True, False, True, True, False, False, False, False, True]


def test_pseudonymised_export_with_and_without_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    tables = generate.generate(n_users=N_USERS, seed=2)
    a, b, c = _pick_users(tables)
    generate.write_tables(tables, tmp_path / "data")
    work = tmp_path / "work"
    build.build(work, data=tmp_path / "data")
    export_embeddings(work, pseudonymize=True, key_file=key_file)
    gone, kept = pseudonymize_ids([a, c], KEY)
    with pytest.raises(ConfigError, match=r"key must be the one the export used"):
        monkeypatch.setenv(KEY_ENV, "w" * 32)
        forget(work, [a])
    monkeypatch.delenv(KEY_ENV)
    res = forget(work, [a], key_file=key_file)  # with the key: the pseudonymised rows are matched and dropped
    assert res.artifacts["embeddings/users.parquet"] == "filtered"
    emb = load_embeddings(work, "user")
    assert gone not in set(emb.ids) and kept in set(emb.ids)
    assert list(emb.ids) == list(pseudonymize_ids(load_graph(work).user_ids, KEY))
    assert scan(work, [gone, a]) == {}
    res = forget(work, [b])  # no key: the export cannot be matched, so it goes
    assert res.artifacts["embeddings"] == "deleted"
    assert res.artifacts["models/_lightgcn"] == "filtered"  # a second erasure still matches its rows
    assert LightGCN.load(work / workdir.LIGHTGCN_DIR).users.shape[0] == load_graph(work).num_users
    assert not (work / workdir.EMBEDDINGS_DIR).exists()
    assert any("without its key" in n for n in res.notes)
    assert len(workdir.load_manifest(work)["erasures"]) == 2


def test_an_interrupted_forget_finishes_when_repeated(tmp_path, monkeypatch):
    """Cut off while writing the tables (the last files before the manifest): the ids are still in the tables, so
    the same command again finds them and finishes; nothing is left and the erasure is recorded once."""
    tables = generate.generate(n_users=N_USERS, seed=3)
    a, _, c = _pick_users(tables)
    generate.write_tables(tables, tmp_path / "data")
    work = tmp_path / "work"
    build.build(work, data=tmp_path / "data")
    detect_communities(work)
    real = workdir.write_parquet

    def cut_off(path, df):
        if Path(path) == workdir.table_path(work, "purchases"):
            raise KeyboardInterrupt
        return real(path, df)

    monkeypatch.setattr(workdir, "write_parquet", cut_off)
    with pytest.raises(KeyboardInterrupt):
        forget(work, [a])
    monkeypatch.setattr(workdir, "write_parquet", real)
    assert "tables/purchases.parquet" in scan(work, [a])
    assert "erasures" not in workdir.load_manifest(work)
    res = forget(work, [a])
    assert res.erased == 1 and scan(work, [a]) == {}
    manifest = workdir.load_manifest(work)
    assert len(manifest["erasures"]) == 1
    assert manifest["graph_id"] == workdir.sha256_file(work / workdir.GRAPH_TENSORS)
    assign, _ = load_assignments(work, manifest["graph_id"])
    assert list(assign["user_id"]) == list(load_graph(work).user_ids) and c in set(assign["user_id"])
