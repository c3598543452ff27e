"""graphprof.graph: validated tables -> HeteroData, checked by hand on the tiny shop of tests/helpers.py."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import (
    DAY,
    JAN_1_2024,
    TINY_FRIENDSHIPS,
    TINY_ITEMS,
    TINY_PURCHASES,
    tiny_graph,
    validate_dir,
    write_frame,
    write_text,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphprof import workdir
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph import (
    BUY_ATTRS,
    BUYS,
    FRIEND,
    IN_CAT,
    REV_BUYS,
    REV_IN,
    ProfileGraph,
    build,
    build_graph,
    describe,
    load_graph,
    save_graph,
    to_networkx,
)


def _tensors(graph: ProfileGraph) -> dict[str, np.ndarray]:
    """Every tensor of the graph by '<edge type>.<name>', as numpy."""
    out = {}
    for et in graph.data.edge_types:
        for name in ("edge_index", "edge_attr", "edge_weight"):
            if name in graph.data[et]:
                out["__".join(et) + "." + name] = graph.data[et][name].numpy()
    return out


def assert_same_graph(g1: ProfileGraph, g2: ProfileGraph) -> None:
    """Identical ids, node counts and tensors (values, dtypes; NaN equals NaN)."""
    assert g1.user_ids.tolist() == g2.user_ids.tolist()
    assert g1.item_ids.tolist() == g2.item_ids.tolist()
    assert g1.category_ids.tolist() == g2.category_ids.tolist()
    assert {t: g1.data[t].num_nodes for t in g1.data.node_types} == \
           {t: g2.data[t].num_nodes for t in g2.data.node_types}
    t1, t2 = _tensors(g1), _tensors(g2)
    assert sorted(t1) == sorted(t2)
    for key in t1:
        assert t1[key].dtype == t2[key].dtype, key
        assert np.array_equal(t1[key], t2[key], equal_nan=True), key


@pytest.fixture
def tiny(tmp_path) -> ProfileGraph:
    return tiny_graph(tmp_path / "tiny")


# ------------------------------------------------------------------------------------------- nodes, ids


def test_node_counts_and_sorted_ids(tiny):
    d = tiny.data
    assert sorted(d.node_types) == ["category", "item", "user"]
    assert (d["user"].num_nodes, d["item"].num_nodes, d["category"].num_nodes) == (4, 2, 2)
    assert tiny.user_ids.tolist() == ["1", "2", "3", "4"]  # 3 and 4 only appear in friendships
    assert tiny.item_ids.tolist() == ["a", "b"]
    assert tiny.category_ids.tolist() == ["books", "toys"]
    assert tiny.num_users == 4
    assert all(isinstance(u, str) for u in tiny.user_ids)


def test_describe(tiny):
    assert describe(tiny) == {
        "nodes": {"user": 4, "item": 2, "category": 2},
        "edges": {"user__buys__item": 3, "item__rev_buys__user": 3, "user__friend__user": 8,
                  "item__in__category": 2, "category__rev_in__item": 2},
    }


def test_ids_sort_as_strings_and_keep_leading_zeros(tmp_path):
    g = tiny_graph(tmp_path, purchases="user_id,item_id\n10,a\n2,a\n007,a\n7,a\n", friendships=None, items=None)
    assert g.user_ids.tolist() == ["007", "10", "2", "7"]
    assert g.data[BUYS].edge_index.tolist() == [[0, 1, 2, 3], [0, 0, 0, 0]]


def test_users_only_in_the_users_table_are_nodes(tmp_path):
    g = tiny_graph(tmp_path, users="user_id,gender\n1,f\n9,m\n")
    assert g.user_ids.tolist() == ["1", "2", "3", "4", "9"]
    assert (g.data[BUYS].edge_index[0] != 4).all() and (g.data[FRIEND].edge_index != 4).all()


def test_user_index_and_item_index(tiny):
    assert tiny.user_index(["4", "1", "9", ""]).tolist() == [3, 0, -1, -1]
    assert tiny.user_index([1, 3]).tolist() == [0, 2]  # integers are looked up as their text
    assert tiny.user_index([]).tolist() == []
    assert tiny.user_index(["01"]).tolist() == [-1]
    assert tiny.item_index(["b", "a", "c"]).tolist() == [1, 0, -1]
    assert tiny.user_index(["1"]).dtype == np.int64


# ---------------------------------------------------------------------------------------------- buys


def test_buys_edges_aggregate_each_user_item_pair(tiny):
    assert BUY_ATTRS == ("count", "quantity", "spend", "last_time", "weight", "priced_quantity")
    ei = tiny.data[BUYS].edge_index
    assert ei.dtype == torch.int64
    assert ei.tolist() == [[0, 0, 1], [0, 1, 1]]  # (1, a), (1, b), (2, b)
    attr = tiny.data[BUYS].edge_attr
    assert attr.dtype == torch.float64
    assert attr.tolist() == [
        # count, quantity, spend,            last_time,             weight, priced_quantity
        [2.0, 4.0, 2 * 10.0 + 2 * 10.0, JAN_1_2024 + 10 * DAY, 2.0, 4.0],   # 1 bought a twice
        [1.0, 1.0, 5.0, JAN_1_2024 + 4 * DAY, 1.0, 1.0],                  # its own price 5 beats the list price 4
        [1.0, 3.0, 3 * 4.0, JAN_1_2024, 1.0, 3.0],                         # no price: the list price 4 applies
    ]
    assert tiny.data[REV_BUYS].edge_index.tolist() == [[0, 1, 1], [0, 0, 1]]


def test_missing_price_without_a_list_price_adds_no_spend(tmp_path):
    g = tiny_graph(tmp_path, items=None)
    assert g.data[BUYS].edge_attr[:, BUY_ATTRS.index("spend")].tolist() == [40.0, 5.0, 0.0]


def test_unknown_times_are_nan_and_ratings_sum_into_the_weight(tmp_path):
    g = tiny_graph(tmp_path, purchases="user_id,item_id,timestamp,rating\n1,a,,4\n1,a,,2.5\n1,b,5,\n",
                   friendships=None, items=None)
    attr = g.data[BUYS].edge_attr
    assert np.isnan(attr[0, BUY_ATTRS.index("last_time")].item())
    assert attr[1, BUY_ATTRS.index("last_time")].item() == 5.0
    assert attr[:, BUY_ATTRS.index("weight")].tolist() == [6.5, 1.0]
    assert attr[:, BUY_ATTRS.index("count")].tolist() == [2.0, 1.0]


def test_purchase_matrix(tiny):
    m = tiny.purchase_matrix("quantity")
    assert m.shape == (4, 2)
    assert m.toarray().tolist() == [[4.0, 1.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]]
    assert tiny.purchase_matrix("spend").toarray()[:2].tolist() == [[40.0, 5.0], [0.0, 12.0]]


# ------------------------------------------------------------------------------------------- friends


def test_friend_edges_are_stored_in_both_directions(tiny):
    ei = tiny.data[FRIEND].edge_index
    assert ei.dtype == torch.int64
    assert ei.shape == (2, 8)  # 4 ties, each counted twice
    assert ei.tolist() == [[0, 0, 1, 1, 2, 2, 2, 3], [1, 2, 0, 2, 0, 1, 3, 2]]
    pairs = set(map(tuple, ei.t().tolist()))
    assert pairs == {(b, a) for a, b in pairs}
    assert tiny.data[FRIEND].edge_weight.dtype == torch.float32
    assert tiny.data[FRIEND].edge_weight.tolist() == [1.0] * 8


def test_friend_weights_follow_their_tie_in_both_directions(tmp_path):
    g = tiny_graph(tmp_path, friendships="user_id,friend_id,weight\n1,2,3\n3,1,0.5\n")
    ei = g.data[FRIEND].edge_index.t().tolist()
    w = g.data[FRIEND].edge_weight.tolist()
    assert dict(zip(map(tuple, ei), w)) == {(0, 1): 3.0, (1, 0): 3.0, (0, 2): 0.5, (2, 0): 0.5}
    adj = g.social_adjacency()
    assert adj.shape == (3, 3)
    assert adj.toarray().tolist() == [[0.0, 3.0, 0.5], [3.0, 0.0, 0.0], [0.5, 0.0, 0.0]]


def test_social_adjacency_is_symmetric(tiny):
    adj = tiny.social_adjacency().toarray()
    assert (adj == adj.T).all()
    assert adj.sum(axis=1).tolist() == [2.0, 2.0, 3.0, 1.0]


@pytest.mark.parametrize("step", [1, 2, 3, 100])
def test_edge_order_is_checked_a_slice_at_a_time(step):
    from graphprof.graph.hetero import _sorted_unique

    ei = np.array([[0, 0, 1, 1, 2], [1, 2, 0, 2, 0]])
    assert _sorted_unique(ei, 3, step)
    for bad in ([0, 1, 2, 2, 4], [0, 2, 1, 3, 4], [1, 0, 2, 3, 4], [0, 1, 2, 4, 3]):  # a repeat, out of order
        assert not _sorted_unique(ei[:, bad], 3, step)
    assert not _sorted_unique(ei[:, :0], 3, step)


# ------------------------------------------------------------------------------------------ categories


def test_items_link_to_their_category_and_back(tiny):
    assert tiny.data[IN_CAT].edge_index.tolist() == [[0, 1], [0, 1]]  # a -> books, b -> toys
    assert tiny.data[REV_IN].edge_index.tolist() == [[0, 1], [0, 1]]


def test_items_seen_only_in_purchases_get_the_unknown_category(tmp_path):
    g = tiny_graph(tmp_path, purchases=TINY_PURCHASES + "2,c,,1,1\n", items="item_id,category\na,books\nb,\n")
    assert g.item_ids.tolist() == ["a", "b", "c"]
    assert g.category_ids.tolist() == ["books", "unknown"]
    assert g.data[IN_CAT].edge_index.tolist() == [[0, 1, 2], [0, 1, 1]]
    assert g.data[REV_IN].edge_index.tolist() == [[0, 1, 1], [0, 1, 2]]


def test_items_table_without_category_gives_no_category_nodes(tmp_path):
    g = tiny_graph(tmp_path, items="item_id,price\na,10\nb,4\n")
    assert "category" not in g.data.node_types and IN_CAT not in g.data.edge_types
    assert g.data[BUYS].edge_attr[2, BUY_ATTRS.index("spend")].item() == 12.0  # the list price still applies


def test_graph_without_friendships_or_items(tmp_path):
    g = tiny_graph(tmp_path, friendships=None, items=None)
    assert sorted(g.data.node_types) == ["item", "user"]
    assert sorted(g.data.edge_types) == sorted([BUYS, REV_BUYS])
    assert g.user_ids.tolist() == ["1", "2"]
    assert g.category_ids.tolist() == []
    assert g.social_adjacency().shape == (2, 2) and g.social_adjacency().nnz == 0
    assert g.data[BUYS].edge_index.tolist() == [[0, 0, 1], [0, 1, 1]]


def test_header_only_friendships_table_gives_no_friend_edges(tmp_path):
    g = tiny_graph(tmp_path, friendships="user_id,friend_id\n")
    assert FRIEND not in g.data.edge_types
    assert g.user_ids.tolist() == ["1", "2"]


# ------------------------------------------------------------------------------------------- id types


def test_integer_ids_from_parquet_give_the_same_graph_as_csv(tmp_path):
    csv_graph = tiny_graph(tmp_path / "csv", purchases="user_id,item_id,quantity\n1,10,2\n2,20,1\n10,10,1\n",
                           friendships="user_id,friend_id\n1,10\n", items=None)
    folder = tmp_path / "pq"
    write_frame(folder, "purchases", pd.DataFrame({"user_id": [1, 2, 10], "item_id": [10, 20, 10],
                                                   "quantity": [2, 1, 1]}), fmt="parquet")
    write_frame(folder, "friendships", pd.DataFrame({"user_id": [1], "friend_id": [10]}), fmt="parquet")
    pq_graph = build_graph(validate_dir(folder))
    assert pq_graph.user_ids.tolist() == ["1", "10", "2"]
    assert pq_graph.item_ids.tolist() == ["10", "20"]
    assert_same_graph(csv_graph, pq_graph)


def test_string_ids(tmp_path):
    g = tiny_graph(tmp_path, purchases="user_id,item_id\nbob,tea\nalice,tea\nalice,cake\n",
                   friendships="user_id,friend_id\nbob,carol\n", items=None)
    assert g.user_ids.tolist() == ["alice", "bob", "carol"]
    assert g.item_ids.tolist() == ["cake", "tea"]
    assert g.data[BUYS].edge_index.tolist() == [[0, 0, 1], [0, 1, 1]]
    assert g.data[FRIEND].edge_index.tolist() == [[1, 2], [2, 1]]
    assert g.user_index(["carol"]).tolist() == [2]


# ------------------------------------------------------------------------------------------ save / load


def test_save_and_load_round_trip(tiny, tmp_path):
    root = tmp_path / "work"
    save_graph(tiny, root)
    workdir.update_manifest(root)  # load_graph insists on a manifest with the current schema version
    assert (root / workdir.GRAPH_TENSORS).is_file() and (root / workdir.GRAPH_META).is_file()
    loaded = load_graph(root)
    assert_same_graph(tiny, loaded)
    assert loaded.data.edge_types == tiny.data.edge_types  # in order: the GNNs make their parameters in it
    assert loaded.user_index(["3"]).tolist() == [2]


def test_reverse_edges_are_saved_as_a_note_and_flipped_on_load(tiny, tmp_path):
    root = tmp_path / "work"
    save_graph(tiny, root)
    workdir.update_manifest(root)
    saved = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing="")
    assert not any(k.startswith(("item__rev_buys__user", "category__rev_in__item")) for k in saved)
    meta = workdir.read_json(root / workdir.GRAPH_META, missing="")
    assert {tuple(e["type"]): tuple(e.get("mirror_of", ())) for e in meta["edge_types"]}[REV_BUYS] == BUYS
    loaded = load_graph(root)
    assert loaded.data[REV_BUYS].edge_index.tolist() == tiny.data[BUYS].edge_index.flip(0).tolist()
    assert loaded.data[REV_IN].edge_index.tolist() == tiny.data[REV_IN].edge_index.tolist()


def test_a_reverse_type_that_is_not_its_forward_flipped_is_saved_as_tensors(tiny, tmp_path):
    root = tmp_path / "work"
    tiny.data[REV_BUYS].edge_index = tiny.data[REV_BUYS].edge_index[:, :-1]  # one edge fewer: not a mirror
    save_graph(tiny, root)
    workdir.update_manifest(root)
    meta = workdir.read_json(root / workdir.GRAPH_META, missing="")
    assert "mirror_of" not in {tuple(e["type"]): e for e in meta["edge_types"]}[REV_BUYS]
    assert load_graph(root).data[REV_BUYS].edge_index.tolist() == tiny.data[REV_BUYS].edge_index.tolist()


def test_a_graph_saved_with_its_reverse_tensors_still_loads(tiny, tmp_path):
    """A graph whose reverse types hold their own tensors (no ``mirror_of`` note) loads as the same graph."""
    root = tmp_path / "work"
    save_graph(tiny, root)
    workdir.update_manifest(root)
    saved = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing="")
    meta = workdir.read_json(root / workdir.GRAPH_META, missing="")
    for e in meta["edge_types"]:
        if e.pop("mirror_of", None):
            e["tensors"] = ["edge_index"]
            saved["__".join(e["type"]) + ".edge_index"] = tiny.data[tuple(e["type"])].edge_index
    workdir.write_safetensors(root / workdir.GRAPH_TENSORS, saved)
    workdir.write_json(root / workdir.GRAPH_META, meta)
    assert_same_graph(tiny, load_graph(root))


def test_a_graph_whose_tensors_do_not_match_its_meta_is_an_artifact_error(tiny, tmp_path):
    root = tmp_path / "work"
    save_graph(tiny, root)
    workdir.update_manifest(root)
    saved = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing="")
    del saved["user__buys__item.edge_attr"]
    workdir.write_safetensors(root / workdir.GRAPH_TENSORS, saved)
    with pytest.raises(ArtifactError, match="does not match"):
        load_graph(root)


def test_a_graph_whose_edges_have_another_shape_is_an_artifact_error(tiny, tmp_path):
    root = tmp_path / "work"
    save_graph(tiny, root)
    workdir.update_manifest(root)
    saved = workdir.read_safetensors(root / workdir.GRAPH_TENSORS, missing="", numpy=True)
    saved["user__buys__item.edge_index"] = saved["user__buys__item.edge_index"].reshape(1, -1)  # [1, 2E]
    workdir.write_safetensors(root / workdir.GRAPH_TENSORS, saved)
    with pytest.raises(ArtifactError, match=r"must have shape \[2, E\]"):
        load_graph(root)


def test_build_graph_checks_node_index_ranges():
    from graphprof.graph.hetero import _check

    _check({"user": 2, "item": 3}, {BUYS: {"edge_index": np.array([[0, 1], [2, 0]])}})
    with pytest.raises(ValueError, match="out of range"):
        _check({"user": 2, "item": 3}, {BUYS: {"edge_index": np.array([[0, 1], [3, 0]])}})
    with pytest.raises(ValueError, match="one row per edge"):
        _check({"user": 2, "item": 3}, {BUYS: {"edge_index": np.array([[0, 1], [2, 0]]),
                                               "edge_attr": np.zeros((3, 6))}})


def test_numpy_arrays_and_heterodata_are_the_same_graph(tiny, tmp_path):
    """build_graph and load_graph keep numpy arrays; ``.data`` is made from the same memory, in the same edge
    type order, and once made it is what ``edge()`` reads (a model or test that edits it is seen everywhere)."""
    root = tmp_path / "work"
    save_graph(tiny, root)
    workdir.update_manifest(root)
    loaded = load_graph(root)
    assert loaded.edge_types == list(loaded.data.edge_types) == list(tiny.data.edge_types)
    for et in loaded.edge_types:
        for name in ("edge_index", "edge_attr", "edge_weight"):
            arr = tiny.edge(et, name)
            assert (arr is None) == (name not in loaded.data[et])
            if arr is not None:
                assert np.array_equal(arr, loaded.data[et][name].numpy(), equal_nan=True), (et, name)
    assert np.shares_memory(loaded.edge(BUYS), loaded.data[BUYS].edge_index.numpy())  # no copy
    assert {nt: loaded.num_nodes(nt) for nt in loaded.node_types} == describe(tiny)["nodes"]
    loaded.data[FRIEND].edge_weight = loaded.data[FRIEND].edge_weight * 2
    assert np.array_equal(loaded.edge(FRIEND, "edge_weight"), 2 * tiny.edge(FRIEND, "edge_weight"))
    with pytest.raises(KeyError):
        tiny.edge(("user", "likes", "item"))
    with pytest.raises(TypeError, match="either data"):
        ProfileGraph(user_ids=tiny.user_ids, item_ids=tiny.item_ids, category_ids=tiny.category_ids)
    with pytest.raises(TypeError, match="either data"):
        ProfileGraph(edges={}, user_ids=tiny.user_ids, item_ids=tiny.item_ids, category_ids=tiny.category_ids)
    with pytest.raises(TypeError, match="either data"):
        ProfileGraph(data=tiny.data, nodes={"user": 1}, edges={}, user_ids=tiny.user_ids, item_ids=tiny.item_ids,
                     category_ids=tiny.category_ids)


def test_save_and_load_round_trip_without_categories_or_friends(tmp_path):
    g = tiny_graph(tmp_path / "in", purchases="user_id,item_id,timestamp\n007,x,\n7,y,5\n", friendships=None,
                   items=None)
    root = tmp_path / "work"
    save_graph(g, root)
    workdir.update_manifest(root)
    loaded = load_graph(root)
    assert loaded.user_ids.tolist() == ["007", "7"]
    assert loaded.category_ids.tolist() == []
    assert_same_graph(g, loaded)


def test_load_graph_from_an_empty_folder_says_which_command_to_run(tmp_path):
    with pytest.raises(ArtifactError, match=re.escape(f"{tmp_path}/: no graph found; run 'graphprof build-graph' "
                                                      "first")):
        load_graph(tmp_path)


def test_load_graph_without_a_manifest_is_stale(tiny, tmp_path):
    save_graph(tiny, tmp_path)
    with pytest.raises(ArtifactError, match=r"manifest\.json: schema_version must be 1\. Got None instead; "
                                            r"re-run 'graphprof build-graph'"):
        load_graph(tmp_path)


def test_build_then_load_graph_end_to_end(tmp_path):
    data = tmp_path / "data"
    write_text(data, "purchases.csv", TINY_PURCHASES)
    write_text(data, "friendships.csv", TINY_FRIENDSHIPS)
    write_text(data, "items.csv", TINY_ITEMS)
    result = build.build(tmp_path / "work", data=data)
    assert result.accounting["purchases"]["kept"] == 4
    assert result.graph == describe(tiny_graph(tmp_path / "direct"))
    assert_same_graph(load_graph(tmp_path / "work"), tiny_graph(tmp_path / "direct2"))


# -------------------------------------------------------------------------------------------- networkx


def test_social_view(tmp_path):
    g = tiny_graph(tmp_path, friendships="user_id,friend_id,weight\n1,2,2\n2,3,\n3,1,\n4,3,0.5\n")
    s = to_networkx(g, "social")
    assert isinstance(s, nx.Graph) and not s.is_directed()
    assert sorted(s.nodes) == ["1", "2", "3", "4"]
    edges = {tuple(sorted((u, v))): w for u, v, w in s.edges(data="weight")}
    assert edges == {("1", "2"): 2.0, ("2", "3"): 1.0, ("1", "3"): 1.0, ("3", "4"): 0.5}


def test_social_view_keeps_users_without_friends(tmp_path):
    s = to_networkx(tiny_graph(tmp_path, friendships=None), "social")
    assert sorted(s.nodes) == ["1", "2"] and s.number_of_edges() == 0


def test_purchases_view(tiny):
    p = to_networkx(tiny, "purchases")
    assert sorted(n for n, b in p.nodes(data="bipartite") if b == 0) == [("user", u) for u in "1234"]
    assert sorted(n for n, b in p.nodes(data="bipartite") if b == 1) == [("item", "a"), ("item", "b")]
    assert p.number_of_edges() == 3
    assert p.edges[("user", "1"), ("item", "a")] == {
        "count": 2.0, "quantity": 4.0, "spend": 40.0, "last_time": JAN_1_2024 + 10 * DAY, "weight": 2.0,
        "priced_quantity": 4.0}
    assert p.edges[("user", "2"), ("item", "b")]["spend"] == 12.0
    assert not p.has_edge(("user", "2"), ("item", "a"))


def test_unknown_view_raises(tiny):
    with pytest.raises(ConfigError, match=r"^view must be 'social' or 'purchases'\. Got 'friends' instead$"):
        to_networkx(tiny, "friends")
    with pytest.raises(ValueError, match="view must be"):
        to_networkx(tiny, "")


# ------------------------------------------------------------------------------------------ properties

ITEMS = "item_id,category,price\na,books,1.5\nb,toys,4\n"  # c and d appear only in purchases
PRICES = ["", "0", "0.5", "2", "10", "2.25"]  # binary fractions: sums are exact in any order

purchase_row = st.tuples(st.integers(0, 5), st.sampled_from("abcd"),
                         st.one_of(st.just(""), st.integers(1_700_000_000, 1_700_100_000).map(str)),
                         st.integers(1, 4), st.sampled_from(PRICES))
tie = st.tuples(st.integers(0, 7), st.integers(0, 7)).filter(lambda t: t[0] != t[1])


def _graph_from_rows(purchases, ties) -> ProfileGraph:
    with tempfile.TemporaryDirectory() as tmp:
        return tiny_graph(
            Path(tmp),
            purchases="user_id,item_id,timestamp,quantity,price\n"
                      + "".join(f"{u},{i},{t},{q},{p}\n" for u, i, t, q, p in purchases),
            # a tie's weight depends on the pair only, so a duplicate (kept or not) carries the same weight
            friendships="user_id,friend_id,weight\n"
                        + "".join(f"{a},{b},{(min(a, b) * 7 + max(a, b)) % 3 + 0.5}\n" for a, b in ties),
            items=ITEMS,
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(purchases=st.lists(purchase_row, min_size=1, max_size=20), ties=st.lists(tie, max_size=12),
       rnd=st.randoms(use_true_random=False))
def test_shuffling_rows_gives_the_identical_graph(purchases, ties, rnd):
    shuffled_p, shuffled_t = purchases[:], ties[:]
    rnd.shuffle(shuffled_p)
    rnd.shuffle(shuffled_t)
    assert_same_graph(_graph_from_rows(purchases, ties), _graph_from_rows(shuffled_p, shuffled_t))


def test_graph_comparison_can_fail(tiny, tmp_path):
    other = tiny_graph(tmp_path / "other", purchases=TINY_PURCHASES.replace("2,b,2024-01-01T00:00:00Z,3,",
                                                                            "2,b,2024-01-01T00:00:00Z,2,"))
    with pytest.raises(AssertionError, match="user__buys__item.edge_attr"):
        assert_same_graph(tiny, other)


def test_shuffling_rows_with_fractional_prices_gives_the_identical_graph():
    rows = [(1, "a", "", 1, "0.1"), (1, "a", "", 1, "0.2"), (1, "a", "", 1, "0.3")]
    assert_same_graph(_graph_from_rows(rows, []), _graph_from_rows(rows[::-1], []))
