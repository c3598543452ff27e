"""--threads without importing torch: build-graph never imports torch or PyG; torch gets the thread count when a
later import loads it (graphprof.threads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
