"""graphprof.communities: Leiden / Louvain on hand-made graphs, co-purchase ties, profiles with lift, the
``communities`` stage, ``train --target community``, and a behaviour check against planted communities."""

from __future__ import annotations

import json
import math
import random
import shutil

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from helpers import tiny_graph, validate_dir
from sklearn.metrics import normalized_mutual_info_score

import graphprof
from graphprof import workdir
from graphprof.communities.detect import (
    Communities,
    community_adjacency,
    copurchase_adjacency,
    find_communities,
)
from graphprof.communities.profiles import profile_communities
from graphprof.communities.stage import detect_communities, load_assignments
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import build_graph
from graphprof.graph.build import build
from graphprof.ingest.generate import generate, write_tables
from graphprof.training.evaluate import ranked_target

# Two triangles a1-a2-a3 and b1-b2-b3 joined by the tie a3-b1; z has no friend.
# The a's and z buy item x (books, list price 10), the b's buy item y (toys, 4):
#   a1 x 1 unit, a2 x 1, a3 x 2, z x 1  -> books 5 units;  b1 y 1, b2 y 1, b3 y 2 -> toys 4 units (of 9)
TRIANGLES = "user_id,friend_id\na1,a2\na2,a3\na3,a1\nb1,b2\nb2,b3\nb3,b1\na3,b1\n"
PURCHASES = ("user_id,item_id,quantity\n"
             "a1,x,1\na2,x,1\na3,x,2\nz,x,1\nb1,y,1\nb2,y,1\nb3,y,2\n")
ITEMS = "item_id,category,price\nx,books,10\ny,toys,4\n"
USERS = "user_id,gender\na1,f\na2,f\na3,m\nb1,m\nb2,m\nb3,\nz,f\n"
USER_ORDER = ["a1", "a2", "a3", "b1", "b2", "b3", "z"]  # the graph sorts ids


@pytest.fixture
def triangles(tmp_path):
    return tiny_graph(tmp_path, purchases=PURCHASES, friendships=TRIANGLES, items=ITEMS, users=USERS)


def _users_frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": USER_ORDER, "gender": ["f", "f", "m", "m", "m", None, "f"]})


# ----------------------------------------------------------------------------------------------- detect
ALGORITHMS = [("leiden", {}), ("leiden", {"leiden_backend": "leidenalg"}), ("louvain", {})]


@pytest.mark.parametrize("method, kwargs", ALGORITHMS)
def test_two_triangles_are_found_and_the_friendless_user_is_a_singleton(triangles, method, kwargs):
    c = find_communities(triangles, method=method, **kwargs)
    assert list(triangles.user_ids) == USER_ORDER
    # equal sizes: the community holding the lower user index comes first; z is its own community
    assert c.labels.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert c.sizes.tolist() == [3, 3, 1]
    assert (c.n_communities, c.n_singletons, c.n_edges) == (3, 1, 7)
    # m = 7 ties; each triangle: 3 inner ties, degree sum 7 -> Q = 2 * (3/7 - (7/14)^2) = 5/14
    assert c.modularity == pytest.approx(5 / 14)
    assert c.method == method and c.params["on"] == "social" and c.params["seed"] == 0
    assert c.frame()["community"].tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_modularity_agrees_with_networkx(triangles):
    c = find_communities(triangles, method="leiden")
    g = graphprof.to_networkx(triangles, "social")
    parts = [set(triangles.user_ids[c.labels == k]) for k in range(c.n_communities)]
    assert c.modularity == pytest.approx(nx.community.modularity(g, parts, weight="weight"))


@pytest.mark.parametrize("method", ["leiden", "louvain"])
def test_a_graph_without_ties_gives_singletons_and_no_modularity(tmp_path, method):
    g = tiny_graph(tmp_path, purchases=PURCHASES, friendships=None, items=ITEMS)
    c = find_communities(g, method=method)
    assert c.labels.tolist() == list(range(7))
    assert math.isnan(c.modularity)
    assert c.n_singletons == 7


@pytest.fixture(scope="module")
def shop_graph(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shop400")
    write_tables(generate(400, seed=0), folder)
    return build_graph(validate_dir(folder))


@pytest.mark.parametrize("method, kwargs", ALGORITHMS)
@pytest.mark.parametrize("on", ["social", "combined"])
def test_same_seed_same_labels(shop_graph, method, kwargs, on):
    state = random.getstate()
    a = find_communities(shop_graph, method=method, on=on, seed=3, **kwargs)
    b = find_communities(shop_graph, method=method, on=on, seed=3, **kwargs)
    assert random.getstate() == state  # igraph's generator is seeded privately, not through `random`
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.modularity == b.modularity
    assert np.all(np.diff(a.sizes) <= 0)  # 0 = largest
    assert a.labels.dtype == np.int64 and len(a.labels) == shop_graph.num_users


def test_resolution_controls_the_number_of_communities(shop_graph):
    few = find_communities(shop_graph, resolution=0.2).n_communities
    many = find_communities(shop_graph, resolution=5.0).n_communities
    assert few < many


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "spectral"}, r"--method must be one of leiden, louvain\. Got 'spectral' instead"),
    ({"on": "items"}, r"--graph must be one of social, combined\. Got 'items' instead"),
    ({"resolution": 0}, r"--resolution must be a number > 0\. Got 0 instead"),
    ({"resolution": float("nan")}, r"--resolution must be a number > 0\. Got nan instead"),
    ({"copurchase_weight": -1.0}, r"copurchase_weight must be a number >= 0\. Got -1\.0 instead"),
    ({"leiden_backend": "cugraph"}, r"leiden_backend must be one of igraph, leidenalg\. Got 'cugraph' instead"),
])
def test_bad_arguments_are_config_errors(triangles, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        find_communities(triangles, **kwargs)


# ------------------------------------------------------------------------------------ co-purchase ties
def test_combined_graph_adds_copurchase_ties(triangles):
    social = community_adjacency(triangles, "social").toarray()
    combined = community_adjacency(triangles, "combined", copurchase_weight=0.5).toarray()
    a1, a2, b1, b3, z = (USER_ORDER.index(u) for u in ("a1", "a2", "b1", "b3", "z"))
    assert social[z].sum() == 0
    # z and a1 bought only item x: cosine 1, times the weight 0.5
    assert combined[z, a1] == pytest.approx(0.5)
    assert combined[a1, a2] == pytest.approx(1.5)            # a friendship and a shared item
    assert combined[a1, b1] == 0 and combined[b1, b3] == pytest.approx(1.5)
    np.testing.assert_allclose(combined, combined.T)
    assert np.all(np.diag(combined) == 0)
    c = find_communities(triangles, on="combined")
    assert c.labels.tolist() == [0, 0, 0, 1, 1, 1, 0]        # z joins the x buyers
    assert c.n_singletons == 0 and c.params["copurchase_weight"] == 0.5


def test_copurchase_strength_downweights_popular_items(tmp_path):
    # x has 3 buyers (u1, u2, u4), y has 2 (u1, u3): weights 1/log(4) and 1/log(3)
    g = tiny_graph(tmp_path, purchases="user_id,item_id\nu1,x\nu1,y\nu2,x\nu3,y\nu4,x\n", friendships=None,
                   items=None)
    s = copurchase_adjacency(g).toarray()
    wx, wy = 1 / math.log(4), 1 / math.log(3)
    u1, u2, u3, u4 = range(4)
    assert s[u1, u2] == pytest.approx(wx / math.hypot(wx, wy))
    assert s[u1, u3] == pytest.approx(wy / math.hypot(wx, wy))
    assert s[u1, u3] > s[u1, u2]                              # sharing the rarer item ties closer
    assert s[u2, u4] == pytest.approx(1.0) and s[u2, u3] == 0
    # no items table: no categories to profile, items still are
    p = profile_communities(g, None, find_communities(g, on="combined"), min_size=1)
    assert set(p["top_categories"]) == {""} and p["top_items"].str.len().min() > 0


def test_copurchase_keeps_top_k_neighbours(shop_graph):
    s = copurchase_adjacency(shop_graph, neighbors=2)
    n = shop_graph.num_users
    assert s.nnz <= 2 * 2 * n
    assert (abs(s - s.T)).max() < 1e-12 and s.diagonal().sum() == 0
    assert 0 < s.data.min() and s.data.max() <= 1.0
    assert s.nnz < copurchase_adjacency(shop_graph, neighbors=10).nnz


# ---------------------------------------------------------------------------------------------- profiles
def test_profiles_exact_sizes_shares_and_lift(triangles):
    c = find_communities(triangles, method="leiden")
    p = profile_communities(triangles, None, c, users=_users_frame(), min_size=2)
    assert p["community"].tolist() == [0, 1, -1]             # z's singleton pooled as -1
    assert p["n_communities"].tolist() == [1, 1, 1]
    assert p["size"].tolist() == [3, 3, 1]
    np.testing.assert_allclose(p["share"], [3 / 7, 3 / 7, 1 / 7])
    # spend: a's 10, 10, 20; b's 4, 4, 8 (list prices); p90 interpolates linearly
    np.testing.assert_allclose(p["monetary_median"], [10, 4, 10])
    np.testing.assert_allclose(p["monetary_mean"], [40 / 3, 16 / 3, 10])
    np.testing.assert_allclose(p["monetary_p90"], [18, 7.2, 10])
    np.testing.assert_allclose(p["purchases_mean"], [1, 1, 1])
    # books 5 of 9 units in the population, toys 4: lift 9/5 and 9/4
    assert p["top_categories"].tolist() == ["books 100% x1.80", "toys 100% x2.25", "books 100% x1.80"]
    assert p["top_items"].tolist() == ["x 100% x1.80", "y 100% x2.25", "x 100% x1.80"]
    # gender among labelled users: f 3 of 6; a's f 2/3, b's m 2/2 (b3 unknown), z f
    assert p["labelled_gender"].tolist() == [3, 2, 1]
    np.testing.assert_allclose(p["share_gender=f"], [2 / 3, 0, 1])
    np.testing.assert_allclose(p["lift_gender=f"], [4 / 3, 0, 2])
    np.testing.assert_allclose(p["lift_gender=m"], [2 / 3, 2, 0])
    # attribute values need 5+ members to be "distinctive": here the top category wins
    assert p["distinctive"].tolist() == ["category books 100% x1.80", "category toys 100% x2.25",
                                         "category books 100% x1.80"]


def test_profiles_without_pooling_and_with_features(tmp_path, triangles):
    c = find_communities(triangles, method="leiden")
    p = profile_communities(triangles, None, c, min_size=1)
    assert p["community"].tolist() == [0, 1, 2] and "labelled_gender" not in p
    tables = {"purchases.csv": PURCHASES, "friendships.csv": TRIANGLES, "items.csv": ITEMS}
    for name, text in tables.items():
        (tmp_path / name).write_text(text)
    work = tmp_path / "work"
    build(work, data=tmp_path)
    features = graphprof.load_features(work)
    p = profile_communities(triangles, features, c, min_size=1)
    np.testing.assert_allclose(p["social_degree_mean"], [7 / 3, 7 / 3, 0])


def test_profiles_need_one_label_per_user(triangles):
    c = find_communities(triangles)
    partial = Communities(user_ids=c.user_ids[:3], labels=c.labels[:3], modularity=c.modularity,
                          method=c.method, params=c.params, seconds=0.0)
    with pytest.raises(ConfigError, match=r"communities must label every user of the graph once \(7 users\)"):
        profile_communities(triangles, None, partial)
    with pytest.raises(ConfigError, match=r"min_size must be an integer >= 1\. Got 0 instead"):
        profile_communities(triangles, None, c, min_size=0)


# ------------------------------------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def built_shop(tmp_path_factory):
    base = tmp_path_factory.mktemp("shop")
    write_tables(generate(400, seed=0), base / "data")
    build(base / "work", data=base / "data")
    return base / "work"


@pytest.fixture
def work(built_shop, tmp_path):
    """A private copy of the built shop, so each test starts without communities."""
    return shutil.copytree(built_shop, tmp_path / "work")


def test_run_communities_writes_three_files_that_load(work):
    result = detect_communities(work, method="louvain", on="combined", seed=1)
    out = workdir.communities_dir(work, "louvain")
    assignments = pd.read_parquet(out / workdir.COMMUNITY_ASSIGNMENTS)
    profiles = pd.read_parquet(out / workdir.COMMUNITY_PROFILES)
    summary = json.loads((out / workdir.COMMUNITY_SUMMARY).read_text())
    assert list(assignments.columns) == ["user_id", "community"] and len(assignments) == 400
    assert assignments["community"].max() + 1 == summary["n_communities"] == result.n_communities
    assert profiles["size"].sum() == 400 and profiles["share"].sum() == pytest.approx(1.0)
    pd.testing.assert_frame_equal(profiles, result.profiles, check_dtype=False)
    assert summary["method"] == "louvain" and summary["params"]["on"] == "combined"
    assert summary["params"]["seed"] == 1 and summary["params"]["copurchase_weight"] == 0.5
    assert 0.3 < summary["modularity"] < 1
    assert sum(summary["sizes"]) + summary["n_singletons"] == 400
    manifest = json.loads((work / workdir.MANIFEST).read_text())
    assert summary["graph_id"] == manifest["graph_id"]
    assert manifest["stages"]["communities"]["louvain"]["n_communities"] == summary["n_communities"]
    assert "build-graph" in manifest["stages"]
    json.dumps(result.to_json(), allow_nan=False)
    lines = result.summary_lines()
    assert lines[0].startswith("communities: louvain on the combined graph")
    assert any(line.strip().startswith("0 ") for line in lines)
    assert workdir.community_methods(work) == ["louvain"]
    assert load_assignments(work)[1] == "louvain"


def test_run_communities_needs_a_graph(tmp_path):
    with pytest.raises(ArtifactError, match=r"no graph found; run 'graphprof build-graph' first"):
        detect_communities(tmp_path / "empty")


def test_train_target_community(work):
    detect_communities(work, method="louvain")
    detect_communities(work, method="leiden")                 # leiden wins when both are present
    result = graphprof.train(work, targets=["community"], models=["lr"], seeds=2)
    doc = result.to_json()
    assert set(doc) == {"targets", "target_info", "seeds"}
    info = doc["target_info"]["community"]
    assert info["labels_from"] == "communities/leiden/assignments.parquet"
    summary = json.loads((workdir.communities_dir(work, "leiden") / "summary.json").read_text())
    big = [str(j) for j, s in enumerate(summary["sizes"]) if s >= 10]
    assert info["classes"] == big and info["labelled"] == sum(s for s in summary["sizes"] if s >= 10)
    assert sum(info["dropped_classes"].values()) == 400 - info["labelled"]
    assert 0 <= doc["targets"]["community"]["lr"]["macro_f1"]["mean"] <= 1
    pred = pd.read_parquet(workdir.model_dir(work, "community", "lr") / "predictions.parquet")
    assert len(pred) == 400 and f"proba_{big[0]}" in pred
    assert "community" in result.table()


def test_train_target_community_without_communities(work):
    with pytest.raises(ArtifactError, match=r"no communities found; run 'graphprof communities' first"):
        graphprof.train(work, targets=["community"], models=["lr"], seeds=1)


def test_train_target_community_from_an_earlier_graph(work):
    detect_communities(work)
    path = workdir.communities_dir(work, "leiden") / workdir.COMMUNITY_SUMMARY
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "graph_id": "0" * 64}))
    with pytest.raises(ArtifactError, match=r"communities must come from the current graph.*run 'graphprof "
                                            r"communities --method leiden' again"):
        graphprof.train(work, targets=["community"], models=["lr"], seeds=1)


def test_ranked_target_keeps_the_largest_classes_and_reports_the_rest():
    sizes = [30, 20, 20, 12, 9, 1]
    ids = [f"u{i:03d}" for i in range(sum(sizes))]
    labels = pd.Series(np.repeat(np.arange(len(sizes)), sizes), index=ids)
    t = ranked_target("community", labels, np.array(ids + ["unknown"], dtype=object), max_classes=3)
    assert t.classes == ["0", "1", "2"]
    assert t.dropped == {"3": 12, "4": 9, "5": 1}           # one over max_classes, two too small
    assert (t.y >= 0).sum() == 70 and t.y[-1] == -1
    with pytest.raises(ConfigError, match=r"--target community: needs at least two classes with 10\+ users"):
        ranked_target("community", labels[labels >= 3], np.array(ids, dtype=object))


# ---------------------------------------------------------------------------------- planted communities
def test_generate_exposes_the_planted_truth_without_changing_the_tables():
    tables, truth = generate(200, bad_rows=8, seed=4, return_truth=True)
    plain = generate(200, bad_rows=8, seed=4)
    for name in plain:
        pd.testing.assert_frame_equal(tables[name], plain[name])
    assert len(truth) == 200 and set(truth) == set(plain["users"]["user_id"])
    assert set(truth.values()) <= set(range(8))


def test_leiden_recovers_planted_communities(tmp_path):
    """A behaviour check, not a benchmark: measured NMI is about 0.98 on seeds 0-4 (benchmarks/RESULTS.md)."""
    tables, truth = generate(1000, seed=0, return_truth=True)
    write_tables(tables, tmp_path)
    g = build_graph(validate_dir(tmp_path))
    planted = np.array([truth[u] for u in g.user_ids])
    for on in ("social", "combined"):
        c = find_communities(g, method="leiden", on=on)
        assert normalized_mutual_info_score(planted, c.labels) > 0.8, on
