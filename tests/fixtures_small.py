"""A small generated shop, built into a work directory, for the model / train tests.

300 users with planted communities build quickly, so each test module builds its own
(module-scoped) copy rather than sharing mutable state with another module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from graphprof.features import load_features
from graphprof.graph import build, load_graph
from graphprof.ingest import generate
from graphprof.models import ModelInput

N_USERS = 300


def build_shop(root: Path, *, n_users: int = N_USERS, seed: int = 0,
               edit_users: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Path:
    """Generate a shop into ``root/data`` (optionally editing its users table), run ``build`` into
    ``root/work`` and return the work directory."""
    root = Path(root)
    tables = generate.generate(n_users=n_users, seed=seed)
    if edit_users is not None:
        tables["users"] = edit_users(tables["users"].copy())
    generate.write_tables(tables, root / "data")
    work = root / "work"
    build.build(work, data=root / "data")
    return work


def load_inputs(work: Path) -> tuple[ModelInput, pd.DataFrame]:
    """The model input (graph + features) and the validated users table of a built work directory."""
    graph = load_graph(work)
    inputs = ModelInput(graph=graph, features=load_features(work))
    return inputs, build.load_tables(work, "users")


def split_shop(root: Path, target: str):
    """A shop built into ``root``, with ``target``'s labels and its seed-0 split: ``(inputs, target, split)``."""
    from graphprof.training import evaluate

    inputs, users = load_inputs(build_shop(root))
    labels = evaluate.make_target(users, inputs.graph.user_ids, target)
    return inputs, labels, evaluate.split(labels, seed=0)


def small_kwargs(cls) -> dict:
    """Keyword arguments that keep a model quick in tests: few epochs where the model has epochs."""
    return {"epochs": 5} if "epochs" in cls().params else {}
