"""What a ``build-graph`` or ``train`` run will cost, from the input sizes, before anything runs.

The estimate is a linear cost model per stage and model. The coefficients of ``build-graph``, ``lr`` and
``sign`` are fitted by ``benchmarks/estimate.py --calibrate`` on generated shops (one process per command, wall
seconds and peak RSS) on the project's 2-core machine; those of ``sage`` and ``gat`` are set from
``benchmarks/train.py``'s tables:

* ``build-graph``: seconds and peak memory grow with the rows read (purchases, friendships, users, items);
  CSV and TSV take longer to parse than Parquet.
* ``train``: loading the graph and features, then per model and fit: ``lr`` grows with the graph's size
  (users, purchase edges, ties) and the classes; ``sign`` with the size (its blocks and its scoring, charged
  every fit though the label-free cache makes later seeds cheaper) and with ``epochs x training users``;
  ``sage`` / ``gat`` per epoch with the training users (mini-batch) or the graph (full batch). Epochs are those
  of an early stop typical of the benchmarks, or ``--epochs`` where it is smaller.

Memory is the peak of the process: the loaded graph and features plus the largest model's working set, and
``lr``'s beside ``sign``'s where ``sign`` blends with an ``lr`` it holds (its grid route). Wall
time is for a machine like the calibration one: a machine with more cores is faster than its estimate. Each
estimate says what it was computed from, and a run whose estimate exceeds the memory available now stops before
it starts (:func:`check_memory`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphprof.errors import GraphprofError, InputError

GIB = 2 ** 30

#: build-graph: ``seconds = base_s + s_per_row * rows`` (times ``csv_factor`` for text input; at least
#: :data:`MIN_SECONDS`), ``peak = base_bytes + bytes_per_row * rows``; rows of every input table
BUILD = {"base_s": -0.396, "s_per_row": 2.45e-06, "csv_factor": 2.47, "base_bytes": 0.244 * GIB,
         "bytes_per_row": 304.0}
#: build-graph ``--engine duckdb`` (Parquet purchases streamed, out of core): the same form, fitted on
#: ``benchmarks/scale.py``'s builds of 1M and 10M users (3M within 7% of it)
BUILD_DUCKDB = {"base_s": 2.0, "s_per_row": 3.2e-06, "base_bytes": 2.0 * GIB, "bytes_per_row": 85.0}
#: train, loading the work directory: ``base_s + s_per_size * size``, size = users + purchase edges + ties
LOAD = {"base_s": 2.05, "s_per_size": 2.21e-07}
#: per model and fit: ``s_per_size * size + epoch_s * epochs * training users``; the process's peak memory with
#: that model: ``base_bytes + bytes_per_size * size``. ``sage`` / ``gat``: not calibrated by the benchmark (it
#: runs the default models); set from benchmarks/train.py's per-epoch seconds and peaks at 100k and 1M users.
#: ``lr``'s memory: through its peaks at 1M users (2.14 GiB) and 10M users (14.34 GiB), benchmarks/RESULTS.md
#: "Estimates"; its time stays the 100k / 1M calibration (at 10M, past its search sample, it took 0.6x of it)
MODELS = {
    "lr": {"s_per_size": 1.07e-05, "epoch_s": 0.0, "base_bytes": 0.787 * GIB, "bytes_per_size": 76.7},
    "sign": {"s_per_size": 6.49e-06, "epoch_s": 4.18e-05, "base_bytes": 2.39 * GIB, "bytes_per_size": 643.0},
    "sage": {"s_per_size": 1.0e-06, "epoch_s": 2.0e-04, "base_bytes": 0.71 * GIB, "bytes_per_size": 234.0},
    "gat": {"s_per_size": 5.0e-06, "epoch_s": 4.0e-04, "base_bytes": 1.0 * GIB, "bytes_per_size": 222.0},
}
#: ``sign`` on a graph of more users than its row-block setting (``train --block-rows``): every user's lower hops
#: and the training users' blocks go to memory-mapped files a row block at a time, so its peak is the loaded
#: graph and features, the whole-graph arrays its row blocks read (counts, adjacency, item profile), the net and
#: one row block's work: ``base_bytes + bytes_per_size * size + bytes_per_block_row * block_rows``, set through
#: ``train --models sign --epochs 1`` (or 3) peaks at 1M users (6.89 GiB) and 10M users (17.59 GiB, in its
#: scoring) with 250k-user row blocks: benchmarks/RESULTS.md "sign past its row-block setting: one million
#: users" and "Ten million users: train"
SIGN_BLOCKS = {"base_bytes": 4.75 * GIB, "bytes_per_size": 85.2, "bytes_per_block_row": 4096.0}
#: ``sage`` / ``gat`` on their full-batch route (a graph of at most FULL_BATCH_SIZE): seconds per epoch and
#: unit of size, and the epochs a full-batch fit typically runs (one optimiser step each)
FULL_EPOCH_S = {"sage": 7.5e-07, "gat": 1.5e-06}
FULL_EPOCHS = 120
FULL_BATCH_SIZE = 500_000
#: the epochs an early-stopped fit typically trains, its search's rounds included (``sign``: every grid point's
#: epochs on its grid route), where ``--epochs`` does not cap it lower
TYPICAL_EPOCHS = {"lr": 0, "sign": 31, "sage": 15, "gat": 15}
#: ``sign``'s epochs on its large route (one grid point): its winner's epochs on the grid route
SIGN_WINNER_EPOCHS = 19
#: the share of the labelled users a 60/20/20 split trains on
TRAIN_SHARE = 0.6
#: no estimate below this (the interpreter's start and imports)
MIN_SECONDS = 2.0


@dataclass
class Estimate:
    """A command's predicted wall seconds and peak memory (bytes), and the sizes they come from."""

    command: str
    seconds: float
    peak_bytes: float
    sizes: dict
    parts: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"command": self.command, "seconds": round(self.seconds, 1),
                "peak_gib": round(self.peak_bytes / GIB, 2), "sizes": self.sizes,
                "parts_seconds": {k: round(v, 1) for k, v in self.parts.items()},
                "available_gib": _gib_or_none(available_memory())}

    def summary_lines(self) -> list[str]:
        sizes = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in self.sizes.items() if isinstance(v, int))
        avail = available_memory()
        lines = [f"{self.command} estimate: about {_duration(self.seconds)} and {self.peak_bytes / GIB:.1f} GiB "
                 f"peak memory",
                 f"  from: {sizes}"]
        if self.parts:
            lines.append("  time: " + ", ".join(f"{k} {_duration(v)}" for k, v in self.parts.items()))
        lines.append("  memory available now: " + ("unknown" if avail is None else f"{avail / GIB:.1f} GiB"))
        lines.append("  (a cost model fitted on generated shops on a 2-core machine; more cores run faster)")
        return lines


class MemoryShortage(GraphprofError):
    """The estimate of a run exceeds the memory available: the user's machine, not a bug (exit code 2)."""


def _gib_or_none(n: int | None) -> float | None:
    return None if n is None else round(n / GIB, 2)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def available_memory() -> int | None:
    """Bytes this process may still use: ``MemAvailable``, capped by a cgroup (v2 or v1) limit; None if unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap = Path(limit).read_text().strip()
            if cap != "max" and int(cap) < 2 ** 60:
                found.append(int(cap) - int(Path(usage).read_text().strip()))
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def exceeds_memory(est: Estimate) -> bool:
    """Whether the estimated peak is more than the memory available now."""
    avail = available_memory()
    return avail is not None and est.peak_bytes > avail


def check_memory(est: Estimate, advice: str) -> None:
    """Stop before the run when its estimated peak exceeds the memory available now.

    Raises:
        MemoryShortage: with how much the run needs, how much there is, and ``advice`` (what to change).
    """
    avail = available_memory()
    if avail is not None and est.peak_bytes > avail:
        raise MemoryShortage(f"{est.command} needs about {est.peak_bytes / GIB:.1f} GiB of memory by its estimate, "
                             f"and {avail / GIB:.1f} GiB is available now. {advice}, free memory, or run it on a "
                             f"larger machine; --no-memory-check runs it anyway")


# ------------------------------------------------------------------------------------------- build-graph
def _count_rows(path: Path) -> int:
    """Data rows of one table file: Parquet from its metadata, text files (gzipped too) by counting lines."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if name.endswith(".gz"):
        import gzip

        opener = gzip.open
    else:
        opener = open
    lines, last = 0, b"\n"
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(lines + (last != b"\n") - 1, 0)  # a header; a last line without a newline


def _rows_or_error(path: Path) -> int:
    """:func:`_count_rows`, with a file that cannot be read said as an input error naming it."""
    import zlib

    try:
        return _count_rows(path)
    except (EOFError, zlib.error, OSError, ValueError) as exc:  # truncated or corrupt gzip / Parquet
        raise InputError(f"{path}: cannot be read to count its rows ({exc.__class__.__name__}: {exc})",
                         path=str(path)) from None


def build_sizes(data: str | Path | None, tables: dict[str, str | Path | None], format: str) -> tuple[dict, bool]:
    """Rows per input table and whether any is parsed as text: from Parquet metadata or line counts for the
    generic layout; other layouts are read through their adapter to count them."""
    from graphprof.graph.build import read_inputs, resolve_inputs

    if format == "generic":  # the files build-graph reads, by the same rules (and the same errors)
        paths = resolve_inputs(data, **tables)
        rows = {name: _rows_or_error(Path(p)) for name, p in paths.items()}
        text = any(not Path(p).name.lower().endswith((".parquet", ".pq")) for p in paths.values())
        return rows, text
    adapted = read_inputs(data, format=format)
    return {name: len(t.df) for name, t in adapted.tables.items()}, True


def estimate_build(rows: dict[str, int], text: bool, engine: str = "numpy") -> Estimate:
    """``build-graph``'s cost for ``rows`` per table (``text``: CSV/TSV input) on ``engine`` (``numpy``, in
    memory; ``duckdb``, out of core; ``dask``: charged as ``duckdb`` on one machine, an upper bound where the
    cluster's workers share the passes, while this process still holds the graph and the features)."""
    total = sum(rows.values())
    b = BUILD if engine == "numpy" else BUILD_DUCKDB
    factor = b.get("csv_factor", 1.0) if text else 1.0
    seconds = max(b["base_s"] + b["s_per_row"] * total * factor, MIN_SECONDS)
    peak = b["base_bytes"] + b["bytes_per_row"] * total
    sizes = {f"{name}_rows": int(n) for name, n in rows.items()}
    return Estimate("build-graph" if engine == "numpy" else f"build-graph --engine {engine}", seconds, peak, sizes)


# ------------------------------------------------------------------------------------------------ train
def train_sizes(root: str | Path, targets: list[str] | None) -> dict:
    """Users, items, purchase edges, ties and labelled users per target of a built work directory (read from
    the graph's description and the users table; nothing is loaded into the models)."""
    import json

    import numpy as np

    from graphprof.graph.build import load_tables
    from graphprof.training.evaluate import make_target
    from graphprof.training.train import COMMUNITY_TARGET, resolve_targets

    root = Path(root)
    meta = json.loads((root / "graph" / "meta.json").read_text())
    edges = {tuple(e["type"]): int(e["num_edges"]) for e in meta["edge_types"]}
    users = load_tables(root, "users")
    names = resolve_targets(users, targets)
    n_users = int(meta["node_types"].get("user", 0))
    labelled, classes = {}, {}
    for t in names:
        if users is not None and t in users.columns:
            labelled[t] = int(users[t].notna().sum())
            classes[t] = int(users[t].nunique())
        elif t == COMMUNITY_TARGET:  # every user with a community, as train takes them
            labelled[t], classes[t] = _communities(root, n_users)
        else:  # train's own message for a column the users table lacks
            make_target(users, np.empty(0, dtype=object), t)
    return {"users": n_users, "items": int(meta["node_types"].get("item", 0)),
            "purchase_edges": edges.get(("user", "buys", "item"), 0),
            "ties": edges.get(("user", "friend", "user"), 0), "labelled": labelled, "classes": classes}


def _communities(root: Path, n_users: int) -> tuple[int, int]:
    """Users and classes of ``--target community``: the detected communities of 10+ users, at most 50, as
    train takes them (every user and two classes where none are detected: train then says so itself)."""
    from graphprof import workdir
    from graphprof.communities.stage import load_assignments
    from graphprof.training.evaluate import MAX_CLASSES, MIN_CLASS_SIZE

    try:
        assignments, _ = load_assignments(root, workdir.load_manifest(root).get("graph_id"))
    except GraphprofError:
        return n_users, 2
    sizes = assignments["community"].value_counts()
    kept = sizes[sizes >= MIN_CLASS_SIZE].iloc[:MAX_CLASSES]
    return int(kept.sum()), max(len(kept), 2)


def model_seconds(model: str, size: int, train_users: int, epochs: int | None, classes: int = 2) -> float:
    """One fit of ``model`` (its scoring of every user included) on a graph of ``size`` with ``train_users``;
    ``lr``'s grows with the classes beyond two (one set of coefficients per class)."""
    c = MODELS.get(model, MODELS["gat"])
    typical = TYPICAL_EPOCHS.get(model, TYPICAL_EPOCHS["gat"])
    n_epochs = typical if epochs is None else min(epochs, typical)
    if model == "sign":
        from graphprof.models.sign.model import LARGE_TRAIN_USERS

        if train_users >= LARGE_TRAIN_USERS:  # one grid point
            n_epochs = SIGN_WINNER_EPOCHS if epochs is None else min(epochs, SIGN_WINNER_EPOCHS)
        elif epochs is not None:  # 4 points, each capped, halved every 3 epochs; the winner goes on
            capped = 4 * min(epochs, 3) + 2 * min(max(epochs - 3, 0), 3) + max(epochs - 6, 0)
            n_epochs = min(capped, typical)
    if model == "lr":
        return c["s_per_size"] * size * max(classes, 2) / 2
    if model in FULL_EPOCH_S and size <= FULL_BATCH_SIZE:
        return FULL_EPOCH_S[model] * size * (FULL_EPOCHS if epochs is None else min(epochs, FULL_EPOCHS))
    return c["s_per_size"] * size + c["epoch_s"] * n_epochs * train_users


def _sign_blends(sizes: dict) -> bool:
    """Whether ``sign`` takes its grid route (and so blends with an ``lr`` it holds) on some target."""
    from graphprof.models.sign.model import LARGE_TRAIN_USERS

    return any(TRAIN_SHARE * n < LARGE_TRAIN_USERS for n in sizes["labelled"].values())


def model_peak(model: str, size: int, users: int, block_rows: int | None = None) -> float:
    """The process's peak bytes with ``model`` on a graph of ``size`` (``users`` of them users); ``sign`` past
    its row-block setting (``block_rows``, default its own) takes its blocks-in-files route."""
    if model == "sign":
        from graphprof.models.sign.store import DEFAULT_BLOCK_ROWS

        per_block = block_rows or DEFAULT_BLOCK_ROWS
        if users > per_block:
            c = SIGN_BLOCKS
            return c["base_bytes"] + c["bytes_per_size"] * size + c["bytes_per_block_row"] * per_block
    c = MODELS.get(model, MODELS["gat"])
    return c["base_bytes"] + c["bytes_per_size"] * size


def estimate_train(sizes: dict, models: list[str], seeds: int, epochs: int | None, processes: int = 1,
                   block_rows: int | None = None) -> Estimate:
    """``train``'s cost for ``sizes`` (:func:`train_sizes`), ``models``, ``seeds`` per target and the epochs cap;
    with ``processes`` data-parallel workers (``--nproc``), each holds the whole graph: the memory is theirs
    together, and the time the one-process estimate (an upper bound). ``block_rows``: ``train --block-rows``."""
    size = sizes["users"] + sizes["purchase_edges"] + sizes["ties"]
    parts = {"load": LOAD["base_s"] + LOAD["s_per_size"] * size}
    peak = 0.0
    for model in models:
        parts[model] = sum(seeds * model_seconds(model, size, int(TRAIN_SHARE * n), epochs,
                                                 sizes.get("classes", {}).get(t, 2))
                           for t, n in sizes["labelled"].items())
        peak = max(peak, model_peak(model, size, sizes["users"], block_rows))
    if "sign" in models and _sign_blends(sizes):  # sign's blend holds an lr beside it
        peak += MODELS["lr"]["bytes_per_size"] * size
    shown = {k: v for k, v in sizes.items() if k not in ("labelled", "classes")}
    shown.update({f"labelled_{t}": n for t, n in sizes["labelled"].items()})
    shown["seeds"] = seeds
    if processes > 1:
        shown["processes"] = processes
    return Estimate("train", sum(parts.values()), peak * processes, shown, parts)
