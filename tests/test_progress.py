"""Progress bars (graphprof.runtime.progress): on stderr only where it is a terminal, never with -q or --json,
never on stdout, and never changing a computed number."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import pytest
from fixtures_small import build_shop, load_inputs

from graphprof.runtime import progress

ROOT = Path(__file__).resolve().parents[1]
BAR_MARKS = ("%|", " stages [")  # tqdm's bar edge, and the count of a stages bar


@pytest.fixture(autouse=True)
def _bars_off_after():
    yield
    progress.enable(False)


# ---------------------------------------------------------------------------------------- the policy
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty, quiet, json, shown", [
    (True, False, False, True), (True, True, False, False), (True, False, True, False), (False, False, False, False),
])
def test_bars_only_for_a_terminal_without_quiet_or_json(tty, quiet, json, shown):
    assert progress.wanted(quiet, json, _Stream(tty)) is shown


def test_off_by_default_and_silent_objects_when_off(capsys):
    assert not progress.enabled()  # the library default: a notebook or a test sees no bar
    with progress.bar(total=3, desc="x") as b:
        b.set_postfix(val_f1="0.5", refresh=False)
        b.set_postfix_str("y")
        b.update()
    with progress.stages("s", ("a", "b")) as stage:
        stage("a")
        stage("b")
    items = [1, 2]
    assert progress.track(items) is items
    assert capsys.readouterr() == ("", "")


def test_on_writes_to_stderr_only(capsys):
    progress.enable()
    with progress.stages("demo-stages", ("a", "b")) as stage:
        stage("a")
        stage("b")
    out, err = capsys.readouterr()
    assert out == ""
    assert "demo-stages" in err and "2/2" in err


def test_bars_change_no_number(tmp_path):
    """The same seeded fits with bars on and off give identical numbers (the bars read no random generator)."""
    from graphprof.graph import load_graph
    from graphprof.models.gnn import HeteroSAGE
    from graphprof.models.lightgcn import LightGCNConfig, fit_lightgcn
    from graphprof.training.evaluate import make_target, split

    work = build_shop(tmp_path)
    inputs, users = load_inputs(work)
    target = make_target(users, inputs.graph.user_ids, "gender")
    parts = split(target, 0)

    def fits():
        sage = HeteroSAGE(seed=3, epochs=4).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
        gcn = fit_lightgcn(load_graph(work), LightGCNConfig(dim=8, epochs=4, eval_every=2), seed=3)
        return sage.proba(inputs), gcn.users

    off = fits()
    progress.enable()
    on = fits()
    np.testing.assert_array_equal(off[0], on[0])
    np.testing.assert_array_equal(off[1], on[1])


# ------------------------------------------------------------------------------- the command line
def _run(args: list[str], tty: bool) -> tuple[int, str, str]:
    """``cli.py ARGS`` with stdout a pipe and stderr a pseudo-terminal (``tty``) or a pipe; returns (exit
    code, stdout, stderr)."""
    cmd = [sys.executable, str(ROOT / "cli.py"), *args]
    if not tty:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 wide
    chunks: list[bytes] = []

    def drain():  # read the terminal while the child runs, so it never blocks on a full buffer
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        out, _ = proc.communicate(timeout=120)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    code, _, err = _run(["generate", "--out", str(folder / "data"), "--users", "300", "-q"], tty=False)
    assert code == 0, err
    return folder


def _build(shop, *extra, tty):
    return _run(["build-graph", "--data", str(shop / "data"), "--workdir", str(shop / "work"), *extra], tty)


def test_build_graph_shows_stages_on_a_terminal_and_the_same_stdout(shop):
    code, tty_out, tty_err = _build(shop, tty=True)
    assert code == 0, tty_err
    assert "build-graph" in tty_err and any(mark in tty_err for mark in BAR_MARKS), tty_err
    code, pipe_out, pipe_err = _build(shop, tty=False)
    assert code == 0, pipe_err
    assert pipe_out == tty_out  # stdout is the same with or without a terminal on stderr
    assert "\r" not in pipe_err and not any(mark in pipe_err for mark in BAR_MARKS)
    assert "features:" in pipe_err  # the log lines are still there


@pytest.mark.parametrize("flag", ["-q", "--json"])
def test_no_bars_with_quiet_or_json(shop, flag):
    code, out, err = _build(shop, flag, tty=True)
    assert code == 0, err
    assert "build-graph:" not in err and not any(mark in err for mark in BAR_MARKS), err
    if flag == "--json":
        assert out.lstrip().startswith("{")
