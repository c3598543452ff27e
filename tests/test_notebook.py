"""notebooks/communities.ipynb runs headless, top to bottom, without an error, on an empty work directory
(so it builds the bundled sample, detects communities and exports embeddings itself).

The kernel is this interpreter (``sys.executable``): the test writes its own kernelspec into a temporary
folder and hands nbclient a kernel manager that looks only there, so neither a ``python`` on PATH nor a
``python3`` kernelspec installed elsewhere on the machine can swap in another environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "communities.ipynb"
KERNEL = "graphprof-test-python"
CELL_TIMEOUT = 300  # seconds per cell; the LightGCN export is the longest, with room for a slow machine


def _kernel_manager(tmp_path: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "graphprof tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def test_the_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code) - 2  # steps are explained


@pytest.mark.slow
def test_the_notebook_runs_on_an_empty_work_directory(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    work = tmp_path / "work"
    monkeypatch.setenv("GRAPHPROF_WORKDIR", str(work))  # the kernel inherits this process's environment
    monkeypatch.delenv("MPLBACKEND", raising=False)     # the kernel's inline backend renders every figure
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT,
                                     kernel_name=KERNEL, allow_errors=False,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError (with the cell and its traceback) on any error

    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.get("output_type") == "stream")
    assert "no graph yet; building the bundled sample" in text
    assert "detecting communities now" in text and "exporting LightGCN embeddings" in text
    assert "ties inside" in text
    pngs = [c.id for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert pngs == ["sizes", "map", "mix", "subgraph"]
    for name in ("graph/meta.json", "communities/leiden/summary.json", "embeddings/meta.json"):
        assert (work / name).is_file(), name
    assert not (ROOT / "notebooks" / "work").exists()
