import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _single_thread_torch():
    """Tests run on 2 cores in CI; keep torch from oversubscribing them when pytest runs things in parallel."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


def pytest_collection_modifyitems(config, items):
    if SHARED_DATASETS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real datasets not found at {SHARED_DATASETS} (only in the dev sandbox)")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)
