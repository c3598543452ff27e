"""Names taken from the data never form a path: a users-table column named ``../../escaped`` (or ``/``, ``\\``,
NUL, 300 characters, a device name) trains, predicts and reports inside the work directory, under a safe folder,
with its real name kept in the JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from graphprof import workdir
from graphprof.graph.build import build
from graphprof.ingest.generate import generate, write_tables
from graphprof.prediction.predict import picked_model, trained_targets
from graphprof.reporting.report import write_report
from graphprof.training.train import train
from graphprof.workdir import folder_name

HOSTILE = ["../../escaped", "..", "a/b", "a\\b", "x\x00y", "L" * 300, "CON", "con.txt", "_lightgcn", ".hidden",
           "ends.", "gender "]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", HOSTILE + ["gender", "age_band", "x.y-z_1"])
def test_folder_name_is_one_plain_component(name):
    folder = folder_name(name)
    assert folder not in ("", ".", "..") and not folder.startswith((".", "_"))
    assert "/" not in folder and "\\" not in folder and "\x00" not in folder and len(folder) <= 64
    assert folder.split(".")[0].lower() not in {"con", "prn", "aux", "nul"}
    assert Path(folder).name == folder
    assert folder_name(name) == folder  # the same name, the same folder


def test_plain_names_keep_their_folder_and_distinct_names_get_distinct_folders():
    assert [folder_name(n) for n in ("gender", "age_band", "spend_level")] == ["gender", "age_band", "spend_level"]
    folders = [folder_name(n) for n in HOSTILE + ["a_b", "a-b", "L" * 299]]
    assert len(set(folders)) == len(folders)


@pytest.fixture(scope="module")
def hostile_shop(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root = base / "inside"
    tables = generate(n_users=300, seed=0)
    users = tables["users"]
    for name in ("../../escaped", "a\\b", "L" * 300, "CON"):
        users[name] = users["gender"]
    write_tables(tables, root / "data", fmt="parquet")  # parquet keeps any column name as written
    build(root / "work", data=root / "data")
    return base, root / "work"


def test_hostile_targets_train_report_and_stay_inside_the_work_directory(hostile_shop):
    base, work = hostile_shop
    def outside():  # everything under base but the work directory and the input data
        return {p for p in _files(base) if not p.startswith(("inside/work", "inside/data")) and p != "inside"}

    assert outside() == set()
    names = ["../../escaped", "a\\b", "L" * 300, "CON"]
    result = train(work, targets=names, models=["lr"], seeds=1)
    assert set(result.targets) == set(names)
    assert outside() == set()
    assert not (base / "escaped").exists() and not (base.parent / "escaped").exists()
    models = work / workdir.MODELS_DIR
    assert sorted(d.name for d in models.iterdir() if d.is_dir()) == sorted(folder_name(n) for n in names)
    for name in names:
        config = json.loads((workdir.model_dir(work, name, "lr") / workdir.MODEL_CONFIG).read_text())
        assert config["target"] == name
        assert picked_model(work, name) == "lr"
    assert sorted(trained_targets(work)) == sorted(names)
    assert not (work / workdir.PARTIAL_TRAIN).exists()
    report = write_report(work)
    assert report.path.parent == work
    text = report.path.read_text(encoding="utf-8")
    assert "../../escaped" in text and "L" * 300 in text   # shown by its real name (escaped as HTML)
    for p in work.rglob("*"):  # every path the run wrote resolves inside the work directory
        assert os.path.commonpath([p.resolve(), work.resolve()]) == str(work.resolve())
