"""graphprof.workdir: atomic writes, safe loads (never unpickle), the manifest checks and the lock."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphprof import workdir
from graphprof.errors import ArtifactError, GraphprofError, LockError
from graphprof.models import MODELS

# --------------------------------------------------------------------------------------------- paths


def test_artifact_paths_come_from_the_constants(tmp_path):
    assert workdir.table_path(tmp_path, "users") == tmp_path / "tables" / "users.parquet"
    assert workdir.ids_path(tmp_path, "user") == tmp_path / "tables" / "ids" / "user.parquet"
    assert workdir.rejects_path(tmp_path, "purchases") == tmp_path / "rejects" / "purchases.csv"
    assert workdir.model_dir(tmp_path, "gender", "lr") == tmp_path / "models" / "gender" / "lr"
    assert workdir.run_dir(tmp_path, "gender", "lr", 3) == tmp_path / "models" / "gender" / "lr" / "seed_3"


# ------------------------------------------------------------------------------------------- atomic_write
def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    assert workdir.atomic_write(target, lambda p: p.write_text("one")) == target
    assert workdir.atomic_write(target, lambda p: p.write_text("two")) == target
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def half_then_crash(p: Path) -> None:
        p.write_text("new but unfini")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        workdir.atomic_write(target, half_then_crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_failure_on_a_new_file_leaves_nothing(tmp_path):
    def crash(p: Path) -> None:
        p.write_text("partial")
        raise KeyboardInterrupt  # even a BaseException cleans up

    with pytest.raises(KeyboardInterrupt):
        workdir.atomic_write(tmp_path / "new.txt", crash)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------- json
def test_write_json_read_json_round_trip(tmp_path):
    obj = {"a": 1, "b": [1.5, None, "x"], "nested": {"k": True}, "ünï": "çødé"}
    path = workdir.write_json(tmp_path / "x.json", obj)
    assert workdir.read_json(path, missing="hint") == obj
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_write_json_converts_numpy_and_paths(tmp_path):
    obj = {"i": np.int64(3), "f": np.float32(0.5), "arr": np.array([[1, 2], [3, 4]]), "p": Path("/a/b")}
    workdir.write_json(tmp_path / "x.json", obj)
    assert workdir.read_json(tmp_path / "x.json", missing="hint") == {"i": 3, "f": 0.5, "arr": [[1, 2], [3, 4]],
                                                                      "p": "/a/b"}


def test_write_json_unserialisable_raises_and_keeps_the_old_file(tmp_path):
    path = workdir.write_json(tmp_path / "x.json", {"v": 1})
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        workdir.write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_read_json_missing_file_gives_the_hint(tmp_path):
    with pytest.raises(ArtifactError, match=r"nope\.json: not found; run 'graphprof build-graph' first") as info:
        workdir.read_json(tmp_path / "nope.json", missing="run 'graphprof build-graph' first")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, GraphprofError)


@pytest.mark.parametrize("content", [b'{"a": 1', b"", b"\xff\xfe\x00garbage"])
def test_read_json_damaged_file(tmp_path, content):
    path = tmp_path / "meta.json"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=r"meta\.json: must be valid JSON\. Got a damaged file .*; rebuild it"):
        workdir.read_json(path, missing="rebuild it")


# ---------------------------------------------------------------------------------- parquet / safetensors
def test_parquet_round_trip_and_damaged_file(tmp_path):
    df = pd.DataFrame({"user_id": ["007", "42"], "x": [1.5, 2.5]})
    path = workdir.write_parquet(tmp_path / "t.parquet", df)
    pd.testing.assert_frame_equal(workdir.read_parquet(path, missing="hint"), df)
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ArtifactError, match=r"t\.parquet: must be a readable Parquet file\. Got: .*; hint"):
        workdir.read_parquet(path, missing="hint")
    with pytest.raises(ArtifactError, match="not found; hint"):
        workdir.read_parquet(tmp_path / "none.parquet", missing="hint")


def test_safetensors_round_trip_and_damaged_file(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), "b": torch.tensor([1, 2])}
    path = workdir.write_safetensors(tmp_path / "w.safetensors", tensors)  # a transposed view is fine
    back = workdir.read_safetensors(path, missing="hint")
    assert set(back) == {"w", "b"}
    assert torch.equal(back["w"], tensors["w"]) and torch.equal(back["b"], tensors["b"])
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ArtifactError, match=r"w\.safetensors: must be a safetensors file\. Got: .*; hint"):
        workdir.read_safetensors(path, missing="hint")


def test_safetensors_as_numpy_are_mapped_from_the_file_and_match_safetensors_own_reader(tmp_path):
    from safetensors.numpy import load_file

    arrays = {"i": np.arange(10, dtype=np.int64).reshape(2, 5)[:, ::-1], "f": np.linspace(0, 1, 7),
              "h": np.ones(3, np.float32), "e": np.zeros((0, 4)), "s": np.array(3.5), "u": np.arange(5, dtype=np.uint8)}
    path = workdir.write_safetensors(tmp_path / "a.safetensors", arrays)  # a reversed view is fine
    back = workdir.read_safetensors(path, missing="hint", numpy=True)
    ref = load_file(str(path))
    assert set(back) == set(ref) == set(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == ref[k].dtype == a.dtype and back[k].shape == a.shape and np.array_equal(back[k], a), k
    before = path.read_bytes()
    back["f"][0] = 99.0  # copy-on-write: the file does not change
    assert path.read_bytes() == before
    assert workdir.read_safetensors(path, missing="", numpy=True)["f"][0] == 0.0


@pytest.mark.parametrize("damage", ["short", "header_past_end", "offsets_past_end", "dtype", "shape", "huge_shape",
                                    "not_json"])
def test_damaged_safetensors_as_numpy_is_an_artifact_error(tmp_path, damage):
    import json
    import struct

    path = workdir.write_safetensors(tmp_path / "w.safetensors", {"x": np.arange(4, dtype=np.int64)})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    if damage == "short":
        path.write_bytes(raw[:5])
    elif damage == "header_past_end":
        path.write_bytes(struct.pack("<Q", len(raw)) + raw[8:])
    elif damage == "not_json":
        path.write_bytes(raw[:8] + b"{" * n + raw[8 + n:])
    else:
        x = header["x"]
        if damage == "offsets_past_end":
            x["data_offsets"] = [0, 64]
            x["shape"] = [8]
        elif damage == "dtype":
            x["dtype"] = "C64"
        elif damage == "huge_shape":  # a product that overflows int64 must not pass for 32 bytes
            x["shape"] = [2**62, 2**62, 2]
        else:
            x["shape"] = [5]
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    with pytest.raises(ArtifactError, match=r"w\.safetensors: must be a safetensors file\. Got: .*; hint"):
        workdir.read_safetensors(path, missing="hint", numpy=True)


# ------------------------------------------------------------------------------------------------- npz
def test_npz_round_trip(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.int64), "b": np.eye(2)}
    path = workdir.write_npz(tmp_path / "x.npz", arrays)
    back = workdir.read_npz(path, missing="hint")
    assert set(back) == {"a", "b"}
    assert np.array_equal(back["a"], arrays["a"]) and np.array_equal(back["b"], arrays["b"])


class _Plant:
    """Unpickling this creates ``marker``: a stand-in for a malicious payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_planted_payload_really_runs_when_unpickled(tmp_path):
    # positive control: without it, "the marker was not created" below would prove nothing
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Plant(marker))).close()
    assert marker.exists()


def test_read_npz_refuses_an_object_array(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "x.npz"
    np.savez(path, ok=np.arange(3), evil=np.array([_Plant(marker), 1], dtype=object))
    with pytest.raises(ArtifactError, match=r"x\.npz: must hold plain numeric arrays \(no pickle\)"):
        workdir.read_npz(path, missing="hint")
    assert not marker.exists()


def test_read_npz_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match=r"x\.npz: not found; hint"):
        workdir.read_npz(tmp_path / "x.npz", missing="hint")


# ------------------------------------------------------------------------------- no pickle in Model.load
def _fake_model_dir(path: Path, name: str) -> None:
    cls = MODELS[name]
    path.mkdir(parents=True)
    (path / "model.json").write_text(json.dumps({"model": name, "seed": 0, "params": cls().params,
                                                 "classes": ["a", "b"], "config": {}}))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_load_refuses_a_pickle_planted_as_weights(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "model"
    _fake_model_dir(path, name)
    (path / "weights.safetensors").write_bytes(pickle.dumps({"w": _Plant(marker)}))
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: must be a safetensors file"):
        MODELS[name].load(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_load_refuses_a_torch_save_file_as_weights(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "model"
    _fake_model_dir(path, name)
    torch.save({"w": torch.zeros(2), "evil": _Plant(marker)}, path / "weights.safetensors")
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: must be a safetensors file"):
        MODELS[name].load(path)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- manifest
def test_require_built_on_an_empty_dir(tmp_path):
    with pytest.raises(ArtifactError, match=r"/: no graph found; run 'graphprof build-graph' first$"):
        workdir.require_built(tmp_path)
    with pytest.raises(ArtifactError, match=r"no graph found; run 'graphprof build-graph' first"):
        workdir.require_built(tmp_path / "does-not-exist")


def _fake_graph(root: Path, manifest: dict | None) -> None:
    (root / "graph").mkdir(parents=True)
    (root / workdir.GRAPH_META).write_text("{}")
    if manifest is not None:
        (root / workdir.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("version", [999, 0, "1", None])
def test_require_built_wrong_schema_version_says_to_rebuild(tmp_path, version):
    _fake_graph(tmp_path, {"schema_version": version})
    with pytest.raises(ArtifactError, match=rf"manifest\.json: schema_version must be {workdir.SCHEMA_VERSION}\. "
                                            rf"Got {version!r} instead; re-run 'graphprof build-graph'"):
        workdir.require_built(tmp_path)


def test_require_built_without_manifest_says_to_rebuild(tmp_path):
    _fake_graph(tmp_path, None)
    with pytest.raises(ArtifactError, match=r"Got None instead; re-run 'graphprof build-graph'"):
        workdir.require_built(tmp_path)


def test_require_built_with_a_damaged_manifest(tmp_path):
    _fake_graph(tmp_path, None)
    (tmp_path / workdir.MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"must be valid JSON.*run 'graphprof build-graph'"):
        workdir.require_built(tmp_path)


def test_require_built_returns_the_manifest(tmp_path):
    from graphprof import __version__

    _fake_graph(tmp_path, {"schema_version": workdir.SCHEMA_VERSION, "graph_id": "abc",
                           "graphprof_version": __version__})
    assert workdir.require_built(tmp_path)["graph_id"] == "abc"


def test_require_built_refuses_another_minor_version(tmp_path):
    _fake_graph(tmp_path, {"schema_version": workdir.SCHEMA_VERSION, "graphprof_version": "0.0.9"})
    with pytest.raises(ArtifactError, match=r"must be built by graphprof 0\.1\.x\. Got a work directory of "
                                            r"graphprof 0\.0\.9; re-run 'graphprof build-graph'"):
        workdir.require_built(tmp_path)


def test_update_manifest_merges_sections(tmp_path):
    from graphprof import __version__

    assert workdir.load_manifest(tmp_path) == {}
    workdir.update_manifest(tmp_path, stages={"build-graph": {"s": 1}}, seeds=[0])
    m = workdir.update_manifest(tmp_path, stages={"train": {"s": 2}}, seeds=[1, 2])
    assert m["schema_version"] == workdir.SCHEMA_VERSION
    assert m["graphprof_version"] == __version__
    assert m["stages"] == {"build-graph": {"s": 1}, "train": {"s": 2}}
    assert m["seeds"] == [1, 2]
    assert workdir.load_manifest(tmp_path) == m


def test_sha256_file(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert workdir.sha256_file(path, chunk=1024) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------- lock
HOLDER = textwrap.dedent("""
    import sys, types
    # import graphprof.workdir without the package's __init__ (which imports torch: seconds per process)
    pkg = types.ModuleType("graphprof")
    pkg.__path__ = [sys.argv[2]]
    sys.modules["graphprof"] = pkg
    from graphprof.workdir import locked
    with locked(sys.argv[1], "train"):
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin
""")


@pytest.fixture
def lock_holder(tmp_path):
    """A second process holding the lock on ``tmp_path/work`` with command 'train'."""
    root = tmp_path / "work"
    package_dir = str(Path(workdir.__file__).parents[1])
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), package_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # returns "" at once if the child dies
        assert line == "locked\n", proc.stderr.read()
        yield root, proc
    finally:
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_lock_held_by_another_process_names_its_pid_and_command(lock_holder):
    root, proc = lock_holder
    with pytest.raises(LockError, match=rf"the work directory must not be in use\. Got it locked by "
                                        rf"pid {proc.pid} on .* running 'train'; wait for that run") as info:
        with workdir.locked(root, "build-graph"):
            pytest.fail("acquired a lock that another process holds")
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, GraphprofError)


def test_a_refused_lock_attempt_keeps_the_holder_name(lock_holder):
    root, proc = lock_holder
    for _ in range(2):
        with pytest.raises(LockError, match=rf"locked by pid {proc.pid} on .* running 'train'"):
            with workdir.locked(root, "build-graph"):
                pytest.fail("acquired a lock that another process holds")


def test_lock_is_released_when_the_holder_ends(lock_holder):
    root, proc = lock_holder
    proc.stdin.close()
    assert proc.wait() == 0
    with workdir.locked(root, "train"):
        text = (root / workdir.LOCK).read_text()
        assert text.startswith(f"pid {os.getpid()} on ") and text.endswith("running 'train'")
    assert (root / workdir.LOCK).read_text() == ""


def test_lock_is_released_after_an_error_inside(tmp_path):
    with pytest.raises(ValueError, match="boom"), workdir.locked(tmp_path, "train"):
        raise ValueError("boom")
    with workdir.locked(tmp_path, "train"):
        pass
