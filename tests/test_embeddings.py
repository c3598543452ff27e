"""graphprof.embeddings: export for recommenders, pseudonymised ids, nearest users and recommendations.

The export tests run the real ``export_embeddings`` on small generated shops; LightGCN is trained with a small
config (few epochs, 8 dims) by wrapping :func:`graphprof.models.lightgcn.fit_lightgcn`, which ``export_embeddings``
looks up at call time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fixtures_small import build_shop

from graphprof import workdir
from graphprof.embeddings.export import Embeddings, export_embeddings, load_embeddings
from graphprof.embeddings.query import recommend, similar
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import build, load_graph
from graphprof.models.lightgcn import LightGCN, LightGCNConfig
from graphprof.privacy.pseudonymize import KEY_ENV, load_key, pseudonymize_ids
from graphprof.training.train import train

ROOT = Path(__file__).resolve().parent.parent
N_USERS = 300
DIM = 8
SMALL = LightGCNConfig(dim=DIM, layers=2, epochs=4, eval_every=2, batch_size=512)
KEY = b"k" * 8 + b"0123456789abcdef" + b"K" * 8  # 32 bytes
USER = "C0100"  # a user of the generated shop (ids C0000 .. C0299)


# ------------------------------------------------------------------------------------------ fixtures
class FitCounter:
    """Stands in for ``fit_lightgcn``: counts calls and trains with :data:`SMALL` (or raises when told to)."""

    def __init__(self, real):
        self.real = real
        self.calls = 0
        self.fail = False

    def __call__(self, graph, config=None, seed=0):
        self.calls += 1
        if self.fail:
            raise AssertionError("fit_lightgcn must not be called: a saved model exists")
        return self.real(graph, SMALL, seed=seed)


@pytest.fixture(scope="module", autouse=True)
def fit_counter():
    import graphprof.models.lightgcn as lightgcn

    counter = FitCounter(lightgcn.fit_lightgcn)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lightgcn, "fit_lightgcn", counter)
        mp.delenv(KEY_ENV, raising=False)
        yield counter


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, fit_counter):
    """A built shop with a plain lightgcn export (also written to out.parquet and out.npy)."""
    base = tmp_path_factory.mktemp("emb_plain")
    work = build_shop(base, n_users=N_USERS)
    res = export_embeddings(work, out=base / "out.parquet")
    res_npy = export_embeddings(work, out=base / "out.npy")
    return work, base, res, res_npy


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "pseudonym.key"
    path.write_bytes(KEY + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def pseudo(tmp_path_factory, key_file, fit_counter):
    """The same shop, exported with pseudonymised user ids (and to out.parquet + out.npy)."""
    base = tmp_path_factory.mktemp("emb_pseudo")
    work = build_shop(base, n_users=N_USERS)
    export_embeddings(work, pseudonymize=True, key_file=key_file, out=base / "out.npy")
    res = export_embeddings(work, pseudonymize=True, key_file=key_file, out=base / "out.parquet")
    return work, base, res


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A built shop with lr and sage trained for gender (small), nothing exported yet."""
    work = build_shop(tmp_path_factory.mktemp("emb_trained"), n_users=N_USERS)
    train(work, targets=["gender"], models=["lr", "sage"], seeds=1, epochs=2)
    return work


def _bought(work: Path, user: str) -> set[str]:
    p = build.load_tables(work, "purchases")
    return set(p.loc[p["user_id"] == user, "item_id"].astype(str))


# ------------------------------------------------------------------------------------- Embeddings unit
# a = (1, 0), b = (1, 1), c = (0, 1), d = (-1, 0), e = (2, 0) (same direction as a)
HAND = Embeddings(np.array(["a", "b", "c", "d", "e"], dtype=object),
                  np.array([[1, 0], [1, 1], [0, 1], [-1, 0], [2, 0]], dtype=np.float32))


def test_nearest_exact_ranks_excluding_self():
    out = HAND.nearest("a", k=3)
    assert list(out.columns) == ["rank", "id", "similarity"]
    assert out["rank"].tolist() == [1, 2, 3]
    assert out["id"].tolist() == ["e", "b", "c"]
    np.testing.assert_allclose(out["similarity"], [1.0, 1 / np.sqrt(2), 0.0], atol=1e-6)


def test_nearest_k_larger_than_the_others_returns_all_others():
    out = HAND.nearest("d", k=100)
    assert len(out) == 4
    assert "d" not in out["id"].tolist()
    # c is orthogonal to d (0); b is at 135 degrees (-0.707); a and e are opposite (-1), a first (stable)
    assert out["id"].tolist() == ["c", "b", "a", "e"]
    np.testing.assert_allclose(out["similarity"], [0.0, -1 / np.sqrt(2), -1.0, -1.0], atol=1e-6)


def test_nearest_zero_vector_has_similarity_zero():
    emb = Embeddings(np.array(["x", "zero", "y"], dtype=object),
                     np.array([[1, 0], [0, 0], [-1, 0.1]], dtype=np.float32))
    out = emb.nearest("x", k=2)
    assert out["id"].tolist() == ["zero", "y"]
    assert out["similarity"].iloc[0] == 0.0
    assert np.isfinite(emb.nearest("zero", k=2)["similarity"]).all()


def test_index_of_and_unknown_id():
    assert HAND.index_of("c") == 2
    with pytest.raises(ConfigError, match=r"user id must be one of the 5 embedded ids\. Got 'zz' instead"):
        HAND.index_of("zz")
    with pytest.raises(ConfigError, match=r"Got 'zz' instead"):
        HAND.nearest("zz")


def test_to_frame_columns_and_dtypes():
    frame = HAND.to_frame("user_id")
    assert list(frame.columns) == ["user_id", "e_0", "e_1"]
    assert frame["user_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert frame["e_0"].dtype == np.float32
    assert np.array_equal(frame[["e_0", "e_1"]].to_numpy(), HAND.vectors)
    assert HAND.dim == 2


# -------------------------------------------------------------------------------------- pseudonymise
def test_pseudonymize_is_hmac_sha256_hex():
    ids = ["C0001", "42", "ünïcode"]
    got = pseudonymize_ids(ids, KEY)
    expected = [hmac.new(KEY, i.encode("utf-8"), hashlib.sha256).hexdigest() for i in ids]
    assert got.tolist() == expected
    for i, p in zip(ids, got):
        assert len(p) == 64 and int(p, 16) >= 0
        assert p != hashlib.sha256(i.encode("utf-8")).hexdigest()  # keyed, not a plain hash
    assert pseudonymize_ids(ids, KEY).tolist() == got.tolist()  # deterministic
    assert pseudonymize_ids(ids, KEY[::-1]).tolist() != got.tolist()  # depends on the key
    assert len(set(got)) == len(ids)


def test_load_key_from_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert load_key() == KEY


def test_load_key_from_file_chmod_600(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_bytes(b"  " + KEY + b"\n")
    path.chmod(0o600)
    assert load_key(path) == KEY  # surrounding whitespace stripped
    monkeypatch.setenv(KEY_ENV, "e" * 32)
    assert load_key(path) == KEY  # the file wins over the environment


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "key"
    path.write_bytes(KEY)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"a key file must be readable by its owner only \(chmod 600\)\. "
                                          rf"Got mode {oct(mode)} instead"):
        load_key(path)


def test_key_file_inside_the_workdir_is_refused(tmp_path):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    for path in (work / "key", work / "sub" / "key"):
        path.write_bytes(KEY)
        path.chmod(0o600)
        with pytest.raises(ConfigError, match=r"--key-file must be kept outside the work directory"):
            load_key(path, root=work)
    # a sibling folder whose name merely starts with the work directory's is outside
    sibling = tmp_path / "work2"
    sibling.mkdir()
    (sibling / "key").write_bytes(KEY)
    (sibling / "key").chmod(0o600)
    assert load_key(sibling / "key", root=work) == KEY


def test_missing_key_names_the_env_var():
    with pytest.raises(ConfigError, match=rf"--pseudonymize needs a key: set {KEY_ENV} or pass --key-file"):
        load_key()


def test_missing_key_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"--key-file must be an existing file\. Got '.*nope' instead"):
        load_key(tmp_path / "nope")


def test_short_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ConfigError, match=r"the pseudonymisation key must be at least 16 bytes\. Got 5"):
        load_key()
    path = tmp_path / "key"
    path.write_bytes(b"0123456789abcde\n")  # 15 bytes once stripped
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"at least 16 bytes\. Got 15"):
        load_key(path)


# ---------------------------------------------------------------------------------------- plain export
def test_export_writes_the_files(plain):
    work, _, res, _ = plain
    d = work / workdir.EMBEDDINGS_DIR
    names = {"users.parquet", "users.npy", "users_ids.csv", "items.parquet", "items.npy", "items_ids.csv",
             "meta.json"}
    assert names <= {p.name for p in d.iterdir()}
    assert {str(d / n) for n in names} <= set(res.files)


def test_export_meta(plain):
    work, _, res, _ = plain
    graph = load_graph(work)
    meta = json.loads((work / "embeddings" / "meta.json").read_text())
    assert meta == res.meta
    assert meta["model"] == "lightgcn" and meta["target"] is None
    assert meta["dim"] == DIM and meta["seed"] == 0
    assert meta["num_users"] == graph.num_users == N_USERS
    assert meta["num_items"] == len(graph.item_ids)
    assert meta["pseudonymized"] is False
    assert meta["graph_id"] == json.loads((work / "manifest.json").read_text())["graph_id"]
    assert meta["best_epoch"] in (2, 4)
    assert "export-embeddings" in json.loads((work / "manifest.json").read_text())["stages"]
    lines = res.summary_lines()
    assert lines[0] == f"embeddings: {N_USERS} users, {len(graph.item_ids)} items x {DIM} dims from model 'lightgcn'"


def test_exported_vectors_are_the_saved_models_in_graph_order(plain):
    work, _, _, _ = plain
    graph = load_graph(work)
    model = LightGCN.load(work / workdir.LIGHTGCN_DIR)
    users = load_embeddings(work, "user")
    items = load_embeddings(work, "item")
    assert users.ids.tolist() == list(graph.user_ids)
    assert items.ids.tolist() == list(graph.item_ids)
    assert np.array_equal(users.vectors, model.users)
    assert np.array_equal(items.vectors, model.items)
    assert users.vectors.dtype == np.float32


def test_parquet_schema_metadata(plain):
    work, _, _, _ = plain
    for name, id_col in (("users", "user_id"), ("items", "item_id")):
        schema = pq.read_schema(work / "embeddings" / f"{name}.parquet")
        assert schema.names == [id_col] + [f"e_{j}" for j in range(DIM)]
        meta = json.loads(schema.metadata[b"graphprof"])
        assert meta["model"] == "lightgcn" and meta["dim"] == DIM
        assert str(schema.field("e_0").type) == "float"


def test_files_load_with_pandas_and_numpy_alone(plain):
    """In a fresh interpreter that imports only pandas and numpy: parquet, npy + ids line up."""
    work, _, _, _ = plain
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import pandas as pd
        d = sys.argv[1]
        out = {}
        for kind in ("user", "item"):
            frame = pd.read_parquet(f"{d}/{kind}s.parquet")
            vec = np.load(f"{d}/{kind}s.npy", allow_pickle=False)
            ids = pd.read_csv(f"{d}/{kind}s_ids.csv", dtype=str, keep_default_na=False)[f"{kind}_id"]
            assert frame[f"{kind}_id"].tolist() == ids.tolist()
            assert np.array_equal(frame.drop(columns=f"{kind}_id").to_numpy(np.float32), vec)
            out[kind] = {"ids": ids.tolist(), "shape": list(vec.shape), "sum": float(vec.astype(float).sum())}
        out["modules"] = sorted(m for m in ("graphprof", "torch", "torch_geometric") if m in sys.modules)
        print(json.dumps(out))
    """)
    r = subprocess.run([sys.executable, "-c", code, str(work / "embeddings")], capture_output=True, text=True,
                       timeout=300, cwd=str(work.parent))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["modules"] == []
    graph = load_graph(work)
    model = LightGCN.load(work / workdir.LIGHTGCN_DIR)
    assert doc["user"]["ids"] == list(graph.user_ids)
    assert doc["item"]["ids"] == list(graph.item_ids)
    assert doc["user"]["shape"] == [N_USERS, DIM]
    assert doc["item"]["shape"] == [len(graph.item_ids), DIM]
    assert doc["user"]["sum"] == pytest.approx(float(model.users.astype(float).sum()), rel=1e-12, abs=1e-9)


def test_out_parquet(plain):
    work, base, res, _ = plain
    users = load_embeddings(work, "user")
    items = load_embeddings(work, "item")
    assert str(base / "out.parquet") in res.files and str(base / "out_items.parquet") in res.files
    frame = pd.read_parquet(base / "out.parquet")
    assert frame["user_id"].tolist() == users.ids.tolist()
    assert np.array_equal(frame[[f"e_{j}" for j in range(DIM)]].to_numpy(), users.vectors)
    item_frame = pd.read_parquet(base / "out_items.parquet")
    assert item_frame["item_id"].tolist() == items.ids.tolist()
    assert np.array_equal(item_frame.drop(columns="item_id").to_numpy(), items.vectors)
    assert json.loads(pq.read_schema(base / "out.parquet").metadata[b"graphprof"])["dim"] == DIM


def test_out_npy(plain):
    work, base, _, res_npy = plain
    users = load_embeddings(work, "user")
    assert {str(base / n) for n in ("out.npy", "out_ids.csv", "out_meta.json")} <= set(res_npy.files)
    assert np.array_equal(np.load(base / "out.npy", allow_pickle=False), users.vectors)
    ids = pd.read_csv(base / "out_ids.csv", dtype=str)["user_id"]
    assert ids.tolist() == users.ids.tolist()
    assert json.loads((base / "out_meta.json").read_text()) == res_npy.meta


def test_bad_out_and_model_are_config_errors(plain, tmp_path):
    work = plain[0]
    with pytest.raises(ConfigError, match=r"--out must end in \.parquet or \.npy\. Got '.*users\.csv' instead"):
        export_embeddings(work, out=tmp_path / "users.csv")
    with pytest.raises(ConfigError, match=r"--model must be one of lightgcn, sage, gat, sign, lr\. Got 'gcn' instead"):
        export_embeddings(work, model="gcn")
    assert not (tmp_path / "users.csv").exists()


def test_export_before_build_says_what_to_run(tmp_path):
    with pytest.raises(ArtifactError, match=r"no graph found; run 'graphprof build-graph' first"):
        export_embeddings(tmp_path / "nowhere")


def test_second_export_reuses_the_saved_model(tmp_path, fit_counter, monkeypatch):
    work = build_shop(tmp_path, n_users=N_USERS)
    before = fit_counter.calls
    export_embeddings(work)
    assert fit_counter.calls == before + 1
    first = np.load(work / "embeddings" / "users.npy")
    monkeypatch.setattr(fit_counter, "fail", True)
    again = export_embeddings(work)  # would raise if it refitted
    assert np.array_equal(np.load(work / "embeddings" / "users.npy"), first)
    assert again.meta["seed"] == 0
    # another seed is another model: trained (here: refused), not reused
    with pytest.raises(AssertionError, match="must not be called"):
        export_embeddings(work, seed=1)
    monkeypatch.setattr(fit_counter, "fail", False)
    other = export_embeddings(work, seed=1)
    assert other.meta["seed"] == 1
    assert not np.array_equal(np.load(work / "embeddings" / "users.npy"), first)
    assert LightGCN.load(work / workdir.LIGHTGCN_DIR).seed == 1


# ------------------------------------------------------------------------------------ recommend / similar
def test_recommend_excludes_bought_items_and_sorts_by_score(plain):
    work = plain[0]
    bought = _bought(work, USER)
    assert bought
    rec = recommend(work, USER, k=5)
    assert list(rec.columns) == ["rank", "item_id", "score", "category", "popularity"]
    assert len(rec) == 5
    assert rec["rank"].tolist() == [1, 2, 3, 4, 5]
    assert rec["item_id"].is_unique
    assert not bought & set(rec["item_id"])
    assert (np.diff(rec["score"].to_numpy()) <= 0).all()
    # the scores are <user, item>, and they are the top ones among the items not bought
    users, items = load_embeddings(work, "user"), load_embeddings(work, "item")
    scores = items.vectors @ users.vectors[users.index_of(USER)]
    by_id = dict(zip(items.ids, scores))
    np.testing.assert_allclose(rec["score"], [by_id[i] for i in rec["item_id"]], rtol=1e-6)
    rest = [s for i, s in by_id.items() if i not in bought and i not in set(rec["item_id"])]
    assert rec["score"].min() >= max(rest)


def test_recommend_category_and_popularity(plain):
    work = plain[0]
    rec = recommend(work, USER, k=5)
    p = build.load_tables(work, "purchases")
    buyers = p.groupby("item_id")["user_id"].nunique()
    assert rec["popularity"].tolist() == [int(buyers.get(i, 0)) for i in rec["item_id"]]
    cats = build.load_tables(work, "items").set_index("item_id")["category"]
    assert rec["category"].tolist() == [cats[i] for i in rec["item_id"]]


def test_recommend_k_beyond_the_unbought_items(plain):
    work = plain[0]
    graph = load_graph(work)
    bought = _bought(work, USER)
    rec = recommend(work, USER, k=10_000)
    assert len(rec) == len(graph.item_ids) - len(bought)
    assert set(rec["item_id"]) == set(graph.item_ids) - bought


@pytest.mark.parametrize("user", ["C0000", "C0150", "C0299"])
def test_recommend_never_returns_a_bought_item(plain, user):
    work = plain[0]
    rec = recommend(work, user, k=10_000)
    assert not _bought(work, user) & set(rec["item_id"])


def test_similar_returns_k_other_users(plain):
    work = plain[0]
    out = similar(work, USER, k=7)
    assert list(out.columns) == ["rank", "user_id", "similarity"]
    assert len(out) == 7 and out["rank"].tolist() == list(range(1, 8))
    assert USER not in out["user_id"].tolist()
    assert out["user_id"].is_unique
    assert (np.diff(out["similarity"].to_numpy()) <= 0).all()
    users = load_embeddings(work, "user")
    v = users.vectors.astype(np.float64)
    sim = v @ v[users.index_of(USER)] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[users.index_of(USER)]))
    sim[users.index_of(USER)] = -np.inf
    assert out["user_id"].tolist() == users.ids[np.argsort(-sim, kind="stable")[:7]].tolist()


@pytest.mark.parametrize("func", [recommend, similar])
def test_unknown_user_and_bad_k(plain, func):
    work = plain[0]
    with pytest.raises(ConfigError, match=rf"user id must be one of the {N_USERS} embedded ids\. "
                                          r"Got 'NOPE' instead"):
        func(work, "NOPE")
    with pytest.raises(ConfigError, match=r"-k must be >= 1\. Got 0 instead"):
        func(work, USER, k=0)


@pytest.mark.parametrize("func", [recommend, similar])
def test_before_export_says_what_to_run(tmp_path, func):
    work = build_shop(tmp_path, n_users=60)
    with pytest.raises(ArtifactError, match=r"run 'graphprof export-embeddings' first"):
        func(work, "C000")


# --------------------------------------------------------------------------------------- pseudonymised
def _embedding_files(work: Path, base: Path) -> list[Path]:
    files = [p for p in (work / "embeddings").rglob("*") if p.is_file()]
    files += [p for p in base.iterdir() if p.is_file() and p.name.startswith("out")]
    return files


def test_pseudonymized_export_holds_no_original_id(pseudo, key_file):
    work, base, res = pseudo
    graph = load_graph(work)
    files = _embedding_files(work, base)
    assert {"users.parquet", "users.npy", "users_ids.csv", "meta.json", "out.parquet", "out_ids.csv",
            "out.npy"} <= {p.name for p in files}
    originals = [graph.user_ids[i] for i in (0, 1, 57, 100, 150, 299)]
    pseudonyms = pseudonymize_ids(originals, KEY)
    blob = {p: p.read_bytes() for p in files}
    for p, data in blob.items():
        for uid in originals:
            assert uid.encode() not in data, f"{uid} found in {p}"
    # ... and the pseudonyms are there, in the graph's order
    ids_csv = (work / "embeddings" / "users_ids.csv").read_bytes()
    assert all(p.encode() in ids_csv for p in pseudonyms)
    users = load_embeddings(work, "user")
    assert users.ids.tolist() == pseudonymize_ids(graph.user_ids, KEY).tolist()
    assert pd.read_csv(base / "out_ids.csv", dtype=str)["user_id"].tolist() == users.ids.tolist()
    assert pd.read_parquet(base / "out.parquet")["user_id"].tolist() == users.ids.tolist()
    assert res.meta["pseudonymized"] is True
    assert "user ids pseudonymized (HMAC-SHA256)" in res.summary_lines()[0]


def test_pseudonymized_vectors_equal_the_plain_ones(pseudo, plain):
    assert np.array_equal(load_embeddings(pseudo[0], "user").vectors, load_embeddings(plain[0], "user").vectors)


def test_similar_and_recommend_with_the_key(pseudo, plain, key_file, monkeypatch):
    work = pseudo[0]
    out = similar(work, USER, k=5, key_file=key_file)
    assert len(out) == 5
    assert pseudonymize_ids([USER], KEY)[0] not in out["user_id"].tolist()
    assert all(len(u) == 64 for u in out["user_id"])
    # the same neighbours as the plain export, under their pseudonyms
    plain_out = similar(plain[0], USER, k=5)
    assert out["user_id"].tolist() == pseudonymize_ids(plain_out["user_id"], KEY).tolist()
    rec = recommend(work, USER, k=5, key_file=key_file)
    assert len(rec) == 5
    assert not _bought(work, USER) & set(rec["item_id"])
    assert rec["item_id"].tolist() == recommend(plain[0], USER, k=5)["item_id"].tolist()
    # the key from the environment works too
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert similar(work, USER, k=5)["user_id"].tolist() == out["user_id"].tolist()


def test_pseudonymized_lookup_without_key_or_with_another_key(pseudo, tmp_path):
    work = pseudo[0]
    with pytest.raises(ConfigError, match=KEY_ENV):
        similar(work, USER, k=3)
    other = tmp_path / "other.key"
    other.write_bytes(b"x" * 32)
    other.chmod(0o600)
    with pytest.raises(ConfigError, match=r"user id must be one of the .* embedded ids"):
        recommend(work, USER, k=3, key_file=other)


def test_pseudonymize_without_key_writes_nothing(tmp_path):
    work = build_shop(tmp_path, n_users=60)
    with pytest.raises(ConfigError, match=KEY_ENV):
        export_embeddings(work, pseudonymize=True)
    assert not (work / "embeddings").exists()


def test_pseudonymize_with_key_in_workdir_is_refused(tmp_path):
    work = build_shop(tmp_path, n_users=60)
    key = work / "secret.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    with pytest.raises(ConfigError, match=r"must be kept outside the work directory"):
        export_embeddings(work, pseudonymize=True, key_file=key)
    assert not (work / "embeddings").exists()


# ------------------------------------------------------------------------------------------ sage / lr
def test_sage_before_train_says_run_train(plain):
    with pytest.raises(ArtifactError, match=r"no trained 'sage' model found; run 'graphprof train' first"):
        export_embeddings(plain[0], model="sage")
    with pytest.raises(ArtifactError, match=r"no trained 'lr' model found; run 'graphprof train' first"):
        export_embeddings(plain[0], model="lr")


def test_untrained_target_is_a_config_error(trained):
    with pytest.raises(ConfigError, match=r"--target must be a target with a trained 'lr' model \(gender\)\. "
                                          r"Got 'age_band' instead"):
        export_embeddings(trained, model="lr", target="age_band")


def test_lr_export_has_no_items_and_recommend_refuses(trained):
    export_embeddings(trained)  # lightgcn first: writes items.*
    assert (trained / "embeddings" / "items.npy").exists()
    res = export_embeddings(trained, model="lr")
    assert res.meta["model"] == "lr" and res.meta["target"] == "gender"
    assert res.meta["num_items"] == 0
    for name in ("items.parquet", "items.npy", "items_ids.csv"):
        assert not (trained / "embeddings" / name).exists(), name  # the lightgcn items are not left behind
    assert load_embeddings(trained, "item") is None
    users = load_embeddings(trained, "user")
    assert users.vectors.shape[0] == N_USERS and np.isfinite(users.vectors).all()
    with pytest.raises(ArtifactError, match=r"the export of model 'lr' has no item vectors; "
                                            r"run 'graphprof export-embeddings --model lightgcn'"):
        recommend(trained, USER)
    out = similar(trained, USER, k=3)  # similar needs no items
    assert len(out) == 3 and USER not in out["user_id"].tolist()


def test_sage_export_has_items_in_the_user_space(trained):
    res = export_embeddings(trained, model="sage", target="gender")
    users, items = load_embeddings(trained, "user"), load_embeddings(trained, "item")
    assert res.meta["model"] == "sage" and res.meta["target"] == "gender"
    assert items is not None and items.vectors.shape == (res.meta["num_items"], users.dim)
    assert users.vectors.shape == (N_USERS, res.meta["dim"])
    rec = recommend(trained, USER, k=4)
    assert len(rec) == 4 and not _bought(trained, USER) & set(rec["item_id"])


# ---------------------------------------------------------------------------------------- stale exports
def test_recommend_after_rebuild_never_returns_a_bought_item(tmp_path):
    from graphprof.ingest import generate

    tables = generate.generate(n_users=N_USERS, seed=0)
    generate.write_tables(tables, tmp_path / "data")
    work = tmp_path / "work"
    build.build(work, data=tmp_path / "data")
    export_embeddings(work)
    # rebuild with one more user whose id sorts first (every other user moves down one row); same items
    extra = pd.DataFrame({"user_id": ["A0"], "item_id": [tables["items"]["item_id"].iloc[0]],
                          "timestamp": ["2025-02-01T00:00:00Z"], "quantity": [1], "price": [1.0]})
    tables["purchases"] = pd.concat([tables["purchases"], extra], ignore_index=True)
    generate.write_tables(tables, tmp_path / "data2")
    build.build(work, data=tmp_path / "data2")
    bought = _bought(work, USER)
    try:
        rec = recommend(work, USER, k=10_000)
    except ArtifactError as exc:
        assert "export-embeddings" in str(exc)
    else:
        assert not bought & set(rec["item_id"])


# ------------------------------------------------------------------------------------------------ CLI
def _cli(*args) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *map(str, args)]


@pytest.fixture(scope="module")
def cli(tmp_path_factory, fit_counter):
    """The CLI commands, run as subprocesses side by side (each pays the torch import) on a shop exported once
    in-process with the small LightGCN: the CLI export (on a copy) then reuses that saved model."""
    base = tmp_path_factory.mktemp("emb_cli")
    work = build_shop(base, n_users=N_USERS)
    export_embeddings(work)
    export_work = base / "work_export"
    shutil.copytree(work, export_work)
    commands = {
        "export-embeddings": _cli("export-embeddings", "--workdir", export_work, "--json"),
        "recommend": _cli("recommend", USER, "-k", 3, "--workdir", work, "--json"),
        "similar": _cli("similar", USER, "-k", 4, "--workdir", work, "--json"),
        "unknown": _cli("recommend", "NOPE", "--workdir", work),
    }
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    names, runs = list(commands), {}
    for start in range(0, len(names), 2):  # two at a time: a CI machine may have only two cores
        procs = {name: subprocess.Popen(commands[name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=str(ROOT), env=env)
                 for name in names[start:start + 2]}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            runs[name] = subprocess.CompletedProcess(commands[name], proc.returncode, out, err)
    return work, export_work, runs


def test_cli_export_embeddings_json(cli):
    _, export_work, runs = cli
    r = runs["export-embeddings"]
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # one JSON document and nothing else on stdout
    assert doc["meta"]["model"] == "lightgcn"
    assert doc["meta"]["dim"] == DIM  # the saved small model was reused, not refitted with the defaults
    assert doc["meta"]["num_users"] == N_USERS
    assert str(export_work / "embeddings" / "users.parquet") in doc["files"]


@pytest.mark.parametrize("command, k, columns", [("recommend", 3, ["rank", "item_id", "score", "category",
                                                                     "popularity"]),
                                                 ("similar", 4, ["rank", "user_id", "similarity"])])
def test_cli_recommend_similar_json(cli, command, k, columns):
    work, _, runs = cli
    r = runs[command]
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [row["rank"] for row in doc["results"]] == list(range(1, k + 1))
    assert list(doc["results"][0]) == columns
    api = (recommend if command == "recommend" else similar)(work, USER, k=k)
    key = columns[1]
    assert [row[key] for row in doc["results"]] == api[key].tolist()


def test_cli_unknown_user_exits_2(cli):
    r = cli[2]["unknown"]
    assert r.returncode == 2
    assert f"user id must be one of the {N_USERS} embedded ids. Got 'NOPE' instead" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_sign_export_is_the_representation_its_head_reads(tmp_path):
    from graphprof.features import load_features
    from graphprof.graph import load_graph
    from graphprof.models import ModelInput, get_model

    work = build_shop(tmp_path, n_users=N_USERS)
    train(work, targets=["gender"], models=["sign"], seeds=1, epochs=2)
    res = export_embeddings(work, model="sign")
    assert res.meta["model"] == "sign" and res.meta["target"] == "gender" and res.meta["num_items"] == 0
    users = load_embeddings(work, "user")
    model = get_model("sign").load(work / "models" / "gender" / "sign" / "seed_0")
    want = model.embed(ModelInput(graph=load_graph(work), features=load_features(work)))
    np.testing.assert_allclose(users.vectors, want.astype(np.float32), rtol=1e-6)


@pytest.fixture(scope="module")
def trained_lr_sign(tmp_path_factory):
    """A built shop with lr and sign trained for gender (small), nothing exported yet."""
    work = build_shop(tmp_path_factory.mktemp("emb_lr_sign"), n_users=N_USERS)
    train(work, targets=["gender"], models=["lr", "sign"], seeds=1, epochs=2)
    return work


@pytest.mark.parametrize("model", ["lr", "sign"])
def test_export_a_block_of_users_at_a_time_writes_the_same_files(trained_lr_sign, tmp_path, monkeypatch, model):
    """The vectors are computed and written WRITE_ROWS users at a time (never every user's at once): the files
    equal the one-block export (sign: its scores' float rounding), and the Parquet file has one row group a block."""
    from graphprof.embeddings import export
    from graphprof.models import baseline

    work = trained_lr_sign
    monkeypatch.setattr(baseline, "BLOCK_ROWS", 16)  # lr's blocks are whole multiples of its scoring blocks
    export_embeddings(work, model=model, out=tmp_path / "one.parquet")
    one = load_embeddings(work, "user")
    one_frame = pd.read_parquet(work / "embeddings" / "users.parquet")
    monkeypatch.setattr(export, "WRITE_ROWS", 64)
    res = export_embeddings(work, model=model, out=tmp_path / "blocks.npy")
    blocks = load_embeddings(work, "user")
    frame = pd.read_parquet(work / "embeddings" / "users.parquet")
    assert res.meta["num_users"] == N_USERS and blocks.meta == one.meta
    assert blocks.ids.tolist() == one.ids.tolist() and blocks.vectors.dtype == np.float32
    np.testing.assert_allclose(blocks.vectors, one.vectors, rtol=0, atol=0 if model == "lr" else 1e-5)
    np.testing.assert_allclose(frame.drop(columns="user_id").to_numpy(), blocks.vectors, rtol=0, atol=0)
    assert frame["user_id"].tolist() == one_frame["user_id"].tolist()
    assert pq.ParquetFile(work / "embeddings" / "users.parquet").num_row_groups == -(-N_USERS // 64)
    assert np.array_equal(np.load(tmp_path / "blocks.npy"), blocks.vectors)  # --out .npy: the same bytes
    out = pd.read_parquet(tmp_path / "one.parquet")
    np.testing.assert_allclose(out.drop(columns="user_id").to_numpy(), one.vectors, rtol=0, atol=0)
