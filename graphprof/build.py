"""The ``build-graph`` stage: input files -> validated tables + rejects -> graph -> features, in a work directory.

This is the one function the command line calls; a notebook calls it the same way.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from graphprof import workdir
from graphprof.errors import InputError
from graphprof.features import build_features, save_features
from graphprof.graph import ProfileGraph, build_graph, describe, save_graph
from graphprof.io import ROW, TABLES, find_tables, read_tables
from graphprof.schema import ValidatedTables, validate_tables

log = logging.getLogger("graphprof")
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "datasets" / "sample"


@dataclass
class BuildResult:
    """What ``build-graph`` did: row accounting per table, graph size, where things went, timings."""

    workdir: Path
    accounting: dict[str, dict]
    graph: dict
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = []
        for name, acc in self.accounting.items():
            where = f", see {self.workdir / workdir.REJECTS_DIR / (name + '.csv')}" if acc["rejected"] else ""
            lines.append(f"{name}: read {acc['read']} = kept {acc['kept']} + rejected {acc['rejected']}{where}")
        nodes = ", ".join(f"{n} {t}" for t, n in self.graph["nodes"].items())
        edges = ", ".join(f"{n} {t.split('__')[1]}" for t, n in self.graph["edges"].items()
                          if not t.split("__")[1].startswith("rev_"))
        lines.append(f"graph: {nodes}; edges: {edges}")
        for table, cols in self.dropped_columns.items():
            lines.append(f"{table}: dropped personal-data columns (never features): {', '.join(cols)}")
        return lines

    def to_json(self) -> dict:
        return {"workdir": str(self.workdir), "tables": self.accounting, "graph": self.graph,
                "dropped_columns": self.dropped_columns, "seconds": self.seconds}


def resolve_inputs(data: str | Path | None = None, purchases=None, friendships=None, users=None,
                   items=None) -> dict[str, Path]:
    """Table name -> file, from ``--data DIR`` or one flag per table (default: the bundled sample)."""
    explicit = {"purchases": purchases, "friendships": friendships, "users": users, "items": items}
    given = {k: Path(v) for k, v in explicit.items() if v is not None}
    if given and data is not None:
        raise InputError("--data and the per-table flags (--purchases ...) must not be combined. Got both")
    if given:
        if "purchases" not in given:
            raise InputError("--purchases is required when tables are given one by one. Got "
                             + ", ".join(f"--{k}" for k in given))
        return given
    if data is None:
        data = SAMPLE_DIR
        if not data.is_dir():
            raise InputError(f"{data}: the bundled sample is missing; pass --data DIR")
    return find_tables(data)


def build(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, data: str | Path | None = None, *,
          purchases=None, friendships=None, users=None, items=None, seed: int = 0) -> BuildResult:
    """Read, validate, build the graph and the features, and write them all into the work directory.

    Raises:
        InputError: a table cannot be read, lacks a required column, or keeps no purchase.
    """
    root = Path(workdir_path)
    paths = resolve_inputs(data, purchases, friendships, users, items)
    seconds = {}
    with workdir.locked(root, "build-graph"):
        t0 = time.perf_counter()
        raw = read_tables(paths)
        log.info("read %s", ", ".join(f"{k} ({len(v.df)} rows)" for k, v in raw.items()))
        validated = validate_tables(raw)
        seconds["read_validate"] = time.perf_counter() - t0
        _write_tables(root, validated)
        if validated.accounting["purchases"]["kept"] == 0:
            acc = validated.accounting["purchases"]
            raise InputError(f"{acc['source']}: must have at least one valid purchase. Got all {acc['read']} rows "
                             f"rejected; see {root / workdir.REJECTS_DIR / 'purchases.csv'}",
                             path=acc["source"])
        if "friendships" not in validated.tables:
            log.warning("no friendships table: the graph has no social edges")
        t0 = time.perf_counter()
        graph = build_graph(validated)
        save_graph(graph, root)
        seconds["graph"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        features = build_features(graph, seed=seed)
        save_features(features, root, seed)
        seconds["features"] = time.perf_counter() - t0
        log.info("features: %d users x %d columns", *features.frame.shape)
        _clear_stale(root)
        result = BuildResult(workdir=root, accounting=validated.accounting, graph=describe(graph),
                             dropped_columns=validated.dropped_columns, seconds=seconds)
        inputs = {name: {"path": str(p), "bytes": p.stat().st_size, "sha256": workdir.sha256_file(p)}
                  for name, p in paths.items()}
        graph_id = workdir.sha256_file(root / workdir.GRAPH_TENSORS)
        workdir.update_manifest(root, inputs=inputs, rows=validated.accounting, graph_id=graph_id,
                                config={"build-graph": {"seed": seed}}, stages={"build-graph": seconds},
                                dropped_columns=validated.dropped_columns)
    return result


def _write_tables(root: Path, validated: ValidatedTables) -> None:
    for name in TABLES:
        rej = workdir.rejects_path(root, name)
        if name in validated.tables:
            workdir.write_csv(rej, validated.rejects[name])
            workdir.write_parquet(workdir.table_path(root, name),
                                  validated.tables[name].drop(columns=[ROW]).astype(
                                      {c: "string" for c in validated.tables[name].columns
                                       if pd.api.types.is_string_dtype(validated.tables[name][c])}))
        else:
            rej.unlink(missing_ok=True)
            workdir.table_path(root, name).unlink(missing_ok=True)


def _clear_stale(root: Path) -> None:
    """A new graph makes models trained on the old one meaningless: remove them rather than mix them up."""
    models = root / workdir.MODELS_DIR
    if models.exists():
        log.info("removing models trained on the previous graph (%s)", models)
        shutil.rmtree(models)
    manifest = workdir.load_manifest(root)
    if "train" in manifest.get("stages", {}):
        manifest["stages"].pop("train")
        workdir.write_json(root / workdir.MANIFEST, manifest)


def load_tables(root: str | Path, name: str) -> pd.DataFrame | None:
    """A validated table from the work directory, or None where the input had no such table."""
    path = workdir.table_path(root, name)
    return workdir.read_parquet(path, missing="run 'graphprof build-graph' first") if path.exists() else None


__all__ = ["BuildResult", "build", "load_tables", "resolve_inputs", "ProfileGraph"]
