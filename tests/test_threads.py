"""--threads without importing torch: build-graph never imports torch or PyG; torch gets the thread count when a
later import loads it (graphprof.runtime.threads). The default: the cores this process may use (its affinity, a
cgroup quota), fewer where other processes keep cores busy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphprof.runtime import threads

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from graphprof.cli import main
assert main(["build-graph", "--workdir", sys.argv[1], "-q", "--threads", "3"]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torch_geometric", "sklearn"))
assert not loaded, loaded[:5]
import inspect
import torch
assert torch.get_num_threads() == 3, torch.get_num_threads()
assert "def is_tensor" in inspect.getsource(torch)  # the wrapped loader still serves sources
from graphprof.runtime.threads import set_torch_threads
set_torch_threads(1)  # torch imported: at once
assert torch.get_num_threads() == 1
print("ok")
"""


def test_build_graph_never_imports_torch_and_torch_gets_the_threads_when_imported(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "work")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("ok")


# ------------------------------------------------------------------------------------------ the default
DEFAULT_UNDER_TASKSET = """
import sys
from graphprof.cli import main
from graphprof.runtime.threads import default_threads, usable_cores
assert main(["build-graph", "--workdir", sys.argv[1], "-q"]) == 0
import torch
print(usable_cores(), default_threads()[0], torch.get_num_threads())
"""


def _env_without_threads() -> dict:
    return {k: v for k, v in os.environ.items() if k not in (threads.ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_the_default_follows_the_cpu_affinity(tmp_path):
    """Under ``taskset -c <one core>`` the command line gives torch one thread; with the whole affinity the
    usable cores are the affinity's (lowered only by a cgroup quota)."""
    one = str(min(os.sched_getaffinity(0)))
    r = subprocess.run(["taskset", "-c", one, sys.executable, "-c", DEFAULT_UNDER_TASKSET, str(tmp_path / "w")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env_without_threads())
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].split() == ["1", "1", "1"]
    quota = threads._cgroup_quota()
    expected = len(os.sched_getaffinity(0)) if quota is None else min(len(os.sched_getaffinity(0)), max(1, int(quota)))
    assert threads.usable_cores() == expected


@pytest.mark.parametrize("cores, busy, machine, expected", [
    (2, 0.0, 2, 2),    # alone: every usable core
    (2, 0.4, 2, 2),    # half a core of other work is noise
    (2, 1.0, 2, 1),    # another process keeps a core busy: back off to the idle one
    (4, 3.8, 4, 1),    # at least one thread
    (2, 1.0, 8, 2),    # others busy elsewhere on a larger machine: our cores are idle
    (64, 0.0, 64, threads.MAX_DEFAULT_THREADS),
])
def test_the_default_backs_off_only_where_cores_are_busy(cores, busy, machine, expected):
    count, why = threads.default_threads(cores=cores, busy=busy, machine=machine)
    assert count == expected
    backed_off = expected < min(cores, threads.MAX_DEFAULT_THREADS)
    assert (why is not None) == backed_off
    if backed_off:
        assert f"torch uses {expected} thread" in why and threads.ENV in why


def test_the_back_off_is_said_once(monkeypatch):
    import torch

    monkeypatch.setattr(threads, "default_threads", lambda: (1, "busy machine"))
    said = []
    threads.set_torch_threads(None, note=said.append)
    assert torch.get_num_threads() == 1 and said == ["busy machine"]
    threads.set_torch_threads(1, note=said.append)  # a count given: nothing to say
    assert said == ["busy machine"]


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads._cgroup_quota(tmp_path) == expected


@pytest.mark.parametrize("env, flag, message", [
    ("x", [], "$GRAPHPROF_THREADS must be an integer >= 1. Got 'x' instead"),
    ("0", [], "--threads must be >= 1. Got 0 instead"),
    ("2", ["--threads", "0"], "--threads must be >= 1. Got 0 instead"),
])
def test_bad_thread_counts_are_usage_errors(tmp_path, env, flag, message):
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "build-graph", "--workdir", str(tmp_path / "w"), *flag],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**_env_without_threads(), threads.ENV: env})
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
