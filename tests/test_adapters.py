"""graphprof.adapters: FEATHER, HetRec Last.fm and MovieLens folders -> the generic raw tables, and build(format=).

The fixtures in tests/data/ are tiny, hand-written copies of each format's exact layout:
  feather/        tiny_{edges.csv, features.json, target.csv}: users 0..3, user 1 liked nothing
  hetrec_lastfm/  every tie listed both ways (CRLF, as in the GroupLens archive) plus one exact repeat; tags.dat
                  in Latin-1 ('électronique'); artist 53 is never tagged, artist 99 is tagged but not in artists.dat
  movielens/      u.data (user 7 rated nothing, user 8 rated a movie with no genre), u.user, u.item in Latin-1
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import rejects_as_tuples, write_text

from graphprof import workdir
from graphprof.errors import ConfigError, InputError
from graphprof.graph.build import build
from graphprof.ingest.adapters import FORMATS, age_band, read_format
from graphprof.ingest.io import ROW
from graphprof.ingest.schema import validate_tables

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def _records(table) -> list[tuple]:
    df = table.df
    return [tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False)]


# ------------------------------------------------------------------------------------------- registry
def test_formats_registry():
    assert FORMATS == ("generic", "feather", "hetrec-lastfm", "movielens")


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"^--format must be one of generic, feather, hetrec-lastfm, movielens\. "
                                          r"Got 'csv' instead$"):
        read_format("csv", tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match=r"nope: --data must be a directory"):
        read_format("movielens", tmp_path / "nope")


@pytest.mark.parametrize(("fmt", "needed"), [
    ("feather", r"needs a \*_features\.json file \(SNAP FEATHER: \*_features\.json, \*_edges\.csv, \*_target\.csv\)"),
    ("hetrec-lastfm", r"needs user_artists\.dat in the folder \(HetRec 2011 Last\.fm: user_artists\.dat, "
                      r"user_friends\.dat, artists\.dat, tags\.dat, user_taggedartists\.dat\)"),
    ("movielens", r"needs u\.data in the folder \(MovieLens 100K: u\.data, u\.user, u\.item\)"),
])
def test_missing_required_file_names_the_folder_and_what_it_holds(tmp_path, fmt, needed):
    write_text(tmp_path, "readme.txt", "x")
    with pytest.raises(InputError, match=rf"^{tmp_path}: --format {fmt} {needed}\. Got: readme\.txt$") as info:
        read_format(fmt, tmp_path)
    assert info.value.path == str(tmp_path)


def test_generic_is_the_plain_reader(tmp_path):
    write_text(tmp_path, "purchases.csv", "user_id,item_id\nu,i\n")
    result = read_format("generic", tmp_path)
    assert list(result.tables) == ["purchases"]
    assert result.sources == [tmp_path / "purchases.csv"]
    assert result.notes == []


# -------------------------------------------------------------------------------------------- feather
def test_feather_exact_tables():
    result = read_format("feather", DATA / "feather")
    folder = DATA / "feather"
    assert result.sources == [folder / "tiny_features.json", folder / "tiny_edges.csv", folder / "tiny_target.csv"]
    purchases, friendships, users = (result.tables[t] for t in ("purchases", "friendships", "users"))
    assert purchases.path == folder / "tiny_features.json"
    assert list(purchases.df.columns) == ["user_id", "item_id", ROW]
    # __row__ = the user's 1-based position among the JSON keys; user "1" (key 2) liked nothing
    assert _records(purchases) == [("0", "10", 1), ("0", "11", 1), ("2", "11", 3), ("3", "12", 4), ("3", "10", 4),
                                   ("3", "11", 4)]
    assert friendships.path == folder / "tiny_edges.csv"
    assert _records(friendships) == [("0", "1", 2), ("1", "2", 3), ("2", "3", 4)]
    assert users.path == folder / "tiny_target.csv"
    assert list(users.df.columns) == ["user_id", "target", ROW]
    assert _records(users) == [("0", "1", 2), ("1", "0", 3), ("2", "1", 4), ("3", "0", 5)]
    assert "tiny_features.json: 1 users liked nothing; they stay users through the other files" in result.notes
    assert "tiny_target.csv: id column 'id' -> user_id; label columns kept: target" in result.notes


def test_feather_user_with_empty_like_list_is_a_user():
    validated = validate_tables(read_format("feather", DATA / "feather").tables)
    assert "1" not in set(validated.tables["purchases"]["user_id"])
    assert list(validated.tables["users"]["user_id"]) == ["0", "1", "2", "3"]


def test_feather_without_target_makes_every_json_key_a_user(tmp_path):
    folder = tmp_path / "f"
    write_text(folder, "x_features.json", '{"a": [1], "b": []}')
    result = read_format("feather", folder)
    assert set(result.tables) == {"purchases", "users"}
    assert result.tables["users"].path == folder / "x_features.json"
    assert _records(result.tables["users"]) == [("a", 1), ("b", 2)]
    assert any("no *_target.csv; users are the 2 keys of x_features.json" in n for n in result.notes)
    assert any("no *_edges.csv, so no friendships" in n for n in result.notes)


def test_feather_empty_list_found_nowhere_else_is_reported(tmp_path):
    folder = tmp_path / "f"
    write_text(folder, "x_features.json", '{"a": [1], "b": [], "c": []}')
    write_text(folder, "x_target.csv", "id,target\na,1\nb,0\n")
    result = read_format("feather", folder)
    assert "x_features.json: 2 users liked nothing; they stay users through the other files, except 1 found " \
           "nowhere else (not in the graph)" in result.notes


def test_feather_rejects_point_at_the_json_key_and_the_edge_line(tmp_path):
    folder = tmp_path / "f"
    write_text(folder, "x_features.json", '{"a": [1, 2], "b": [null], "c": [3, 3]}')
    write_text(folder, "x_edges.csv", "id_1,id_2\na,b\nc,c\n")
    result = read_format("feather", folder)
    assert "x_features.json: dropped 1 repeated ids within a like list (a like is a set)" in result.notes
    v = validate_tables(result.tables)
    assert v.accounting["purchases"] == {"read": 4, "kept": 3, "rejected": 1, "source": str(folder / "x_features.json")}
    assert rejects_as_tuples(v.rejects["purchases"]) == [
        (2, "item_id", "", "item_id must be a non-empty id. Got '' instead.")]
    assert rejects_as_tuples(v.rejects["friendships"]) == [
        (3, "friend_id", "c", "friend_id must differ from user_id (self ties are not friendships). Got 'c' instead.")]
    assert "x_edges.csv: columns id_1, id_2 -> friendships user_id, friend_id" in result.notes


def test_feather_twitch_style_target_uses_new_id(tmp_path):
    folder = tmp_path / "f"
    write_text(folder, "musae_features.json", '{"0": [5]}')
    write_text(folder, "musae_target.csv", "id,days,mature,new_id\n73045350,1,False,0\n")
    users = read_format("feather", folder).tables["users"]
    assert list(users.df.columns) == ["id", "days", "mature", "user_id", ROW]
    assert users.df["user_id"].tolist() == ["0"]


@pytest.mark.parametrize(("text", "message"), [
    ('[1, 2]', r"x_features\.json: must be a JSON object \{node id: \[feature ids\]\}\. Got a list instead"),
    ('{"a": [1], "b": 7}', r"x_features\.json: every value must be a list of feature ids\. Got int for key 'b' \(key 2\)"),
    ('{"a": [1],\n "b": [2,}', r"x_features\.json: must be valid JSON\. Got .* on line 2 column"),
])
def test_feather_bad_json(tmp_path, text, message):
    write_text(tmp_path, "x_features.json", text)
    with pytest.raises(InputError, match=message):
        read_format("feather", tmp_path)


def test_feather_two_files_with_one_suffix(tmp_path):
    write_text(tmp_path, "a_features.json", "{}")
    write_text(tmp_path, "b_features.json", "{}")
    with pytest.raises(InputError, match=r"needs one \*_features\.json file\. Got 2: a_features\.json, b_features\.json"):
        read_format("feather", tmp_path)


def test_feather_edges_need_two_columns(tmp_path):
    write_text(tmp_path, "x_features.json", '{"a": [1]}')
    write_text(tmp_path, "x_edges.csv", "node\na\n")
    with pytest.raises(InputError, match=r"x_edges\.csv: must have two node id columns \(like node_1,node_2\)\. Got: node"):
        read_format("feather", tmp_path)


# --------------------------------------------------------------------------------------- hetrec-lastfm
def test_hetrec_exact_tables():
    folder = DATA / "hetrec_lastfm"
    result = read_format("hetrec-lastfm", folder)
    assert result.sources == [folder / n for n in ("user_artists.dat", "user_friends.dat", "artists.dat",
                                                   "user_taggedartists.dat", "tags.dat")]
    assert set(result.tables) == {"purchases", "friendships", "items"}  # no user attributes
    purchases = result.tables["purchases"]
    assert purchases.path == folder / "user_artists.dat"
    assert list(purchases.df.columns) == ["user_id", "item_id", "quantity", ROW]
    assert _records(purchases) == [("2", "51", "13883", 2), ("2", "52", "11690", 3), ("3", "51", "5", 4),
                                   ("3", "53", "1", 5), ("4", "54", "250", 6)]
    items = result.tables["items"]
    assert items.path == folder / "artists.dat"
    assert list(items.df.columns) == ["item_id", "category", ROW]  # no name, url or picture
    # 51: 'new wave' twice vs 'pop' once; 52: a 1-1 tie between tags 5 and 4 goes to tag 4; 53, 55 untagged
    assert _records(items) == [("51", "new wave", 2), ("52", "électronique", 3), ("53", None, 4), ("54", "pop", 5),
                               ("55", None, 6)]
    assert ("artists.dat: 3 of 5 artists get a category (their most frequent tag, ties to the smallest tag id); "
            "2 never tagged -> 'unknown'; 1 tagged artists not in artists.dat are ignored") in result.notes


def test_hetrec_collapses_the_reverse_copy_of_each_tie():
    folder = DATA / "hetrec_lastfm"
    result = read_format("hetrec-lastfm", folder)
    friendships = result.tables["friendships"]
    assert friendships.path == folder / "user_friends.dat"
    # lines 4 (3-2) and 5 (4-2) reverse lines 2 and 3; line 6 (3-5) is listed one way only; line 7 repeats line 2
    assert _records(friendships) == [("2", "3", 2), ("2", "4", 3), ("3", "5", 6), ("2", "3", 7)]
    assert ("user_friends.dat: each tie is listed in both directions; the adapter collapsed 2 reverse copies of 6 "
            "rows, so friendships read counts only the 4 rows passed on") in result.notes
    v = validate_tables(result.tables)
    assert v.accounting["friendships"]["read"] == 4 == v.accounting["friendships"]["kept"] + 1
    assert rejects_as_tuples(v.rejects["friendships"]) == [
        (7, "friend_id", "2,3", "friend_id must be a tie listed once (undirected). Got a duplicate of line 2 instead.")]
    assert v.tables["friendships"][["user_id", "friend_id"]].values.tolist() == [["2", "3"], ["2", "4"], ["3", "5"]]


def test_hetrec_tags_are_latin1_and_untagged_artists_are_unknown():
    v = validate_tables(read_format("hetrec-lastfm", DATA / "hetrec_lastfm").tables)
    assert dict(zip(v.tables["items"]["item_id"], v.tables["items"]["category"])) == {
        "51": "new wave", "52": "électronique", "53": "unknown", "54": "pop", "55": "unknown"}
    assert (DATA / "hetrec_lastfm" / "tags.dat").read_bytes().count(b"\xe9lectronique") == 1  # really Latin-1


def test_hetrec_bad_play_count_is_rejected_on_its_line(tmp_path):
    folder = _copy("hetrec_lastfm", tmp_path)
    write_text(folder, "user_artists.dat", "userID\tartistID\tweight\n2\t51\t3\n2\t52\t0\n")
    v = validate_tables(read_format("hetrec-lastfm", folder).tables)
    assert rejects_as_tuples(v.rejects["purchases"]) == [
        (3, "quantity", "0", "quantity must be an integer >= 1. Got '0' instead.")]


def test_hetrec_only_user_artists(tmp_path):
    write_text(tmp_path, "user_artists.dat", "userID\tartistID\tweight\n2\t51\t3\n")
    result = read_format("hetrec-lastfm", tmp_path)
    assert list(result.tables) == ["purchases"]
    assert "user_friends.dat: absent, so no friendships" in result.notes


def test_hetrec_wrong_header_and_bad_bytes(tmp_path):
    write_text(tmp_path, "user_artists.dat", "user\tartistID\tweight\n2\t51\t3\n")
    with pytest.raises(InputError, match=r"user_artists\.dat: required column 'userID' is missing "
                                         r"\(found: user, artistID, weight\)"):
        read_format("hetrec-lastfm", tmp_path)
    write_text(tmp_path, "user_artists.dat", b"userID\tartistID\tweight\n2\t51\t3\n2\t5\xe92\t3\n")
    with pytest.raises(InputError, match=r"user_artists\.dat: must be utf-8 text\. Got bytes that are not utf-8 "
                                         r"on line 3") as info:
        read_format("hetrec-lastfm", tmp_path)
    assert info.value.row == 3


def test_hetrec_extra_field_names_its_line(tmp_path):
    write_text(tmp_path, "user_artists.dat", "userID\tartistID\tweight\n2\t51\t3\n2\t52\t3\t9\n")
    with pytest.raises(InputError, match=r"every line must have 3 fields \(userID, artistID, weight; "
                                         r"tab-separated\)\. Got 4 on line 3"):
        read_format("hetrec-lastfm", tmp_path)


# ------------------------------------------------------------------------------------------- movielens
def test_movielens_exact_tables():
    folder = DATA / "movielens"
    result = read_format("movielens", folder)
    assert result.sources == [folder / "u.data", folder / "u.user", folder / "u.item"]
    assert set(result.tables) == {"purchases", "users", "items"}  # no friendships in MovieLens
    purchases = result.tables["purchases"]
    assert purchases.path == folder / "u.data"
    assert list(purchases.df.columns) == ["user_id", "item_id", "rating", "timestamp", ROW]
    # no header: the first record is line 1
    assert _records(purchases)[:2] == [("1", "1", "5", "874965758", 1), ("1", "2", "3", "876893171", 2)]
    assert purchases.df[ROW].tolist() == list(range(1, 11))
    users = result.tables["users"]
    assert list(users.df.columns) == ["user_id", "age_band", "gender", "occupation", ROW]  # no zip code
    assert _records(users) == [
        ("1", "18-24", "M", "technician", 1), ("2", "50-55", "F", "other", 2), ("3", "18-24", "M", "writer", 3),
        ("4", "<18", "M", "student", 4), ("5", "25-34", "F", "other", 5), ("6", "45-49", "F", "librarian", 6),
        ("7", "56+", "M", "retired", 7), ("8", "50-55", "F", "educator", 8)]
    items = result.tables["items"]
    assert list(items.df.columns) == ["item_id", "category", ROW]
    # first genre flagged; item 4's title is Latin-1 ('Cité'); 5 flags only 'unknown'; 6 flags nothing
    assert _records(items) == [("1", "Animation", 1), ("2", "Action", 2), ("3", "Thriller", 3),
                               ("4", "Adventure", 4), ("5", "unknown", 5), ("6", "unknown", 6)]
    assert "MovieLens has no friendships: the graph has no social edges" in result.notes


def test_movielens_item_file_is_latin1():
    raw = (DATA / "movielens" / "u.item").read_bytes()
    assert b"Cit\xe9 des enfants perdus" in raw  # not valid UTF-8: a UTF-8 read would fail
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_age_band_edges():
    ages = pd.Series(["0", "17", "18", "24", "25", "34", "35", "44", "45", "49", "50", "55", "56", "90", "x", None])
    assert age_band(ages).tolist()[:14] == ["<18", "<18", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44",
                                            "45-49", "45-49", "50-55", "50-55", "56+", "56+"]
    assert age_band(ages).isna().tolist()[14:] == [True, True]


def test_movielens_rejects_point_at_the_physical_line(tmp_path):
    folder = _copy("movielens", tmp_path)
    with open(folder / "u.data", "a") as fh:
        fh.write("9\t1\t-1\t880000000\n")  # line 11
    v = validate_tables(read_format("movielens", folder).tables)
    assert rejects_as_tuples(v.rejects["purchases"]) == [
        (11, "rating", "-1", "rating must be a finite number >= 0. Got '-1' instead.")]
    assert v.rejects["purchases"]["source_file"].tolist() == [str(folder / "u.data")]


def test_movielens_wrong_field_count(tmp_path):
    write_text(tmp_path, "u.data", "1\t1\t5\n")
    with pytest.raises(InputError, match=r"u\.data: every line must have 4 fields \(user id, item id, rating, "
                                         r"timestamp; tab-separated\)\. Got 3 on line 1"):
        read_format("movielens", tmp_path)


# ------------------------------------------------------------------------------------------ build()
def _manifest(work: Path) -> dict:
    return json.loads((work / workdir.MANIFEST).read_text())


@pytest.mark.parametrize(("fmt", "folder", "nodes", "edges"), [
    ("feather", "feather", {"user": 4, "item": 3}, {"buys": 6, "friend": 6}),
    ("hetrec-lastfm", "hetrec_lastfm", {"user": 4, "item": 5, "category": 4}, {"buys": 5, "friend": 6, "in": 5}),
    ("movielens", "movielens", {"user": 8, "item": 6, "category": 5}, {"buys": 10, "in": 6}),
])
def test_build_each_format_end_to_end(tmp_path, fmt, folder, nodes, edges):
    data = DATA / folder
    result = build(tmp_path / "work", data=data, format=fmt)
    graph = result.graph
    assert graph["nodes"] == nodes
    assert {t.split("__")[1]: n for t, n in graph["edges"].items() if "rev_" not in t} == edges
    adapted = read_format(fmt, data)
    manifest = _manifest(tmp_path / "work")
    assert sorted(manifest["inputs"]) == sorted(p.name for p in adapted.sources)
    for p in adapted.sources:
        assert manifest["inputs"][p.name] == {"path": str(p.resolve()), "bytes": p.stat().st_size,
                                              "mtime_ns": p.stat().st_mtime_ns, "sha256": workdir.sha256_file(p)}
    assert manifest["config"]["build-graph"]["format"] == fmt
    assert manifest["input_notes"] == result.notes == adapted.notes
    assert result.to_json()["notes"] == result.notes and result.to_json()["format"] == fmt
    lines = result.summary_lines()
    assert [ln for ln in lines if ln.startswith("note")] == [f"note ({fmt}): {n}" for n in result.notes]
    assert lines[0].startswith("purchases: read ")


def test_build_movielens_has_no_friendships(tmp_path):
    result = build(tmp_path / "work", data=DATA / "movielens", format="movielens")
    assert "friendships" not in result.accounting
    assert not workdir.table_path(tmp_path / "work", "friendships").exists()
    users = pd.read_parquet(workdir.table_path(tmp_path / "work", "users"))
    assert users.columns.tolist() == ["user_id", "age_band", "gender", "occupation"]


def test_build_rebuild_replaces_the_manifest_inputs(tmp_path):
    work = tmp_path / "work"
    build(work, data=DATA / "hetrec_lastfm", format="hetrec-lastfm")
    build(work, data=DATA / "movielens", format="movielens")
    manifest = _manifest(work)
    assert sorted(manifest["inputs"]) == ["u.data", "u.item", "u.user"]
    assert sorted(manifest["rows"]) == ["items", "purchases", "users"]


def test_build_generic_keeps_one_input_per_table(tmp_path):
    write_text(tmp_path / "d", "purchases.csv", "user_id,item_id\nu,i\nv,i\n")
    result = build(tmp_path / "work", data=tmp_path / "d")
    assert result.format == "generic" and result.notes == []
    assert list(_manifest(tmp_path / "work")["inputs"]) == ["purchases"]


def test_build_format_errors(tmp_path):
    work = tmp_path / "work"
    with pytest.raises(ConfigError, match=r"^--format must be one of generic, feather, hetrec-lastfm, movielens\. "
                                          r"Got 'snap' instead$"):
        build(work, data=DATA / "feather", format="snap")
    with pytest.raises(ConfigError, match=r"^--format movielens needs --data DIR \(the folder in that format\)\. "
                                          r"Got no --data$"):
        build(work, format="movielens")
    with pytest.raises(ConfigError, match=r"^--format feather must be given a folder with --data DIR, not per-table "
                                          r"flags\. Got --purchases$"):
        build(work, purchases=DATA / "feather" / "tiny_edges.csv", format="feather")
    assert not work.exists()  # arguments are checked before the work directory is touched


# ------------------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_realdata_feather_deezer_europe():
    from graphprof.graph import build_graph

    result = read_format("feather", SHARED / "deezer_europe")
    v = validate_tables(result.tables)
    acc = v.accounting
    assert (acc["purchases"]["kept"], acc["purchases"]["rejected"]) == (958_475, 0)
    assert (acc["friendships"]["kept"], acc["friendships"]["rejected"]) == (92_752, 0)
    assert (acc["users"]["kept"], acc["users"]["rejected"]) == (28_281, 0)
    assert v.tables["users"]["target"].value_counts().to_dict() == {"0": 15_743, "1": 12_538}
    assert "deezer_europe_features.json: 6159 users liked nothing; they stay users through the other files" \
        in result.notes
    graph = build_graph(v)
    assert graph.num_users == 28_281
    assert len(graph.item_ids) == 30_978


@pytest.mark.realdata
def test_realdata_hetrec_lastfm_build(tmp_path):
    result = build(tmp_path / "work", data=SHARED / "hetrec_lastfm_2k", format="hetrec-lastfm")
    acc = result.accounting
    assert (acc["purchases"]["kept"], acc["purchases"]["rejected"]) == (92_834, 0)
    assert (acc["friendships"]["read"], acc["friendships"]["kept"]) == (12_717, 12_717)
    assert (acc["items"]["kept"], acc["items"]["rejected"]) == (17_632, 0)
    assert result.graph["nodes"]["user"] == 1_892
    assert result.graph["nodes"]["item"] == 17_632
    assert any("collapsed 12717 reverse copies of 25434 rows" in n for n in result.notes)
    assert any("12133 of 17632 artists get a category" in n for n in result.notes)
    assert len(_manifest(tmp_path / "work")["inputs"]) == 5
