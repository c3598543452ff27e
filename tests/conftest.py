import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


# One thread per process, for the tests and every CLI subprocess they start (they inherit the environment):
# the graphs here are small, a second OpenMP thread buys no speed, and on a busy machine with few cores the
# spinning threads of several processes compete for the cores and slow every test down.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("GRAPHPROF_THREADS", "1")  # torch's count in every CLI subprocess (the default follows the load)


@pytest.fixture(autouse=True)
def _single_thread_torch():
    import torch

    torch.set_num_threads(1)
    yield


def pytest_collection_modifyitems(config, items):
    if SHARED_DATASETS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real datasets not found at {SHARED_DATASETS} (only in the dev sandbox)")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)
