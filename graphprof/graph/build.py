"""The ``build-graph`` stage: input files -> validated tables + rejects -> graph -> features, in a work directory.

This is the one function the command line calls; a notebook calls it the same way.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from graphprof import workdir
from graphprof.errors import ConfigError, InputError
from graphprof.ingest.adapters import AdapterResult, check_format, read_format
from graphprof.ingest.io import ROW, TABLES, find_tables, read_tables
from graphprof.ingest.schema import ValidatedTables, validate_tables
from graphprof.runtime import progress

log = logging.getLogger("graphprof")
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "datasets" / "sample"
STAGES = ("read", "validate", "graph", "features", "write")  # of ``build``, shown as a progress bar


@dataclass
class BuildResult:
    """What ``build-graph`` did: row accounting per table, graph size, where things went, timings."""

    workdir: Path
    accounting: dict[str, dict]
    graph: dict
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    format: str = "generic"
    notes: list[str] = field(default_factory=list)  # what the format adapter did (collapsed rows, mappings)
    engine: str = "numpy"

    def summary_lines(self) -> list[str]:
        lines = []
        for name, acc in self.accounting.items():
            where = f", see {workdir.rejects_path(self.workdir, name)}" if acc["rejected"] else ""
            lines.append(f"{name}: read {acc['read']} = kept {acc['kept']} + rejected {acc['rejected']}{where}")
            if acc.get("timestamp_unit"):
                lines.append(f"{name}: timestamps are epoch {acc['timestamp_unit']} (judged from the column as a "
                             "whole); converted to seconds")
        nodes = ", ".join(f"{n} {t}" for t, n in self.graph["nodes"].items())
        edges = ", ".join(f"{n} {t.split('__')[1]}" for t, n in self.graph["edges"].items()
                          if not t.split("__")[1].startswith("rev_"))
        lines.append(f"graph: {nodes}; edges: {edges}")
        for table, cols in self.dropped_columns.items():
            lines.append(f"{table}: dropped personal-data columns (never features): {', '.join(cols)}")
        lines.extend(f"note ({self.format}): {note}" for note in self.notes)
        return lines

    def to_json(self) -> dict:
        return {"workdir": str(self.workdir), "tables": self.accounting, "graph": self.graph,
                "dropped_columns": self.dropped_columns, "seconds": self.seconds, "format": self.format,
                "notes": self.notes, "engine": self.engine}


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


def read_inputs(data: str | Path | None = None, purchases=None, friendships=None, users=None, items=None, *,
                format: str = "generic") -> AdapterResult:
    """The raw tables, the files read and the adapter's notes, for ``--data DIR [--format NAME]`` or the
    per-table flags (generic format only).

    Raises:
        ConfigError: an unknown format, or a format other than generic without ``--data`` / with per-table flags.
        InputError: see :func:`resolve_inputs` and :func:`graphprof.ingest.adapters.read_format`.
    """
    check_format(format)
    if format == "generic":
        paths = resolve_inputs(data, purchases, friendships, users, items)
        return AdapterResult(tables=read_tables(paths), sources=list(paths.values()))
    flags = [f"--{k}" for k, v in (("purchases", purchases), ("friendships", friendships), ("users", users),
                                   ("items", items)) if v is not None]
    if flags:
        raise ConfigError(f"--format {format} must be given a folder with --data DIR, not per-table flags. Got "
                          + ", ".join(flags))
    if data is None:
        raise ConfigError(f"--format {format} needs --data DIR (the folder in that format). Got no --data")
    return read_format(format, data)


ENGINES = ("numpy", "duckdb", "dask")


def build(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, data: str | Path | None = None, *,
          purchases=None, friendships=None, users=None, items=None, seed: int = 0,
          format: str = "generic", keep_pii: list[str] | tuple[str, ...] = (), engine: str = "numpy",
          scheduler: str | None = None) -> BuildResult:
    """Read, validate, build the graph and the features, and write them all into the work directory.

    ``format`` names the layout of ``data`` (:data:`graphprof.ingest.adapters.FORMATS`); formats other than
    ``generic`` need ``data`` and are turned into the generic tables by :mod:`graphprof.ingest.adapters`.

    ``engine``: ``numpy`` holds every table in memory; ``duckdb`` (generic format, purchases in Parquet) streams
    the purchases through validation a slice at a time and codes and reduces them out of core
    (:mod:`graphprof.graph.outofcore`), for shops larger than memory; ``dask`` runs those passes as tasks on the
    Dask cluster at ``scheduler`` (a local cluster of one worker process per core where None;
    :mod:`graphprof.graph.dask_build`). Every engine gives the same work directory.

    Raises:
        ConfigError: an unknown format or engine, a non-generic format without ``data``, a streaming engine
            (duckdb, dask) on inputs it does not read, or a Dask scheduler that does not answer.
        InputError: a table cannot be read, lacks a required column, or keeps no purchase.
    """
    root = Path(workdir_path)
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}. Got {engine!r} instead")
    streamed = engine in ("duckdb", "dask")
    with contextlib.ExitStack() as cluster, progress.stages("build-graph", STAGES) as stage:
        stage("read")
        seconds = {}
        t0 = time.perf_counter()
        if streamed:
            paths = _streamed_inputs(data, purchases, friendships, users, items, format, engine)
            adapted = AdapterResult(tables=read_tables({k: p for k, p in paths.items() if k != "purchases"}),
                                    sources=list(paths.values()))
            named = dict(paths)
        else:
            adapted = read_inputs(data, purchases, friendships, users, items, format=format)  # reads only: no lock
            # generic: one entry per table; an adapter: one entry per file it read (by file name)
            named = ({t.name: t.path for t in adapted.tables.values()} if format == "generic"
                     else {p.name: p for p in adapted.sources})
        raw = adapted.tables
        # Writing files and hashing them run beside the computing (Arrow's writer and hashlib release the GIL),
        # so the build does not wait for them. Each task writes its own files; all are awaited before the
        # manifest is written and the lock released, and their errors raised here.
        # written into .partial-build/ first; its folders replace the previous build's only once all are
        # written, so a build that fails half-way (a bad file, a full disk) leaves the previous one whole
        staging = root / workdir.PARTIAL_BUILD
        with workdir.locked(root, "build-graph"), _staged(staging), ThreadPoolExecutor(max_workers=1) as io:
            hashes = io.submit(lambda: {name: workdir.sha256_file(p) for name, p in named.items()})
            log.info("read %s", ", ".join(f"{k} ({len(v.df)} rows)" for k, v in raw.items()))
            stage("validate")
            if streamed:
                from graphprof.graph.outofcore import validate_purchases
                from graphprof.ingest.schema import validate_other_tables

                client = None
                if engine == "dask":
                    from graphprof.graph import dask_build

                    client = cluster.enter_context(dask_build.client_for(scheduler))
                # the other tables are validated beside the purchases' slices (Arrow and numpy release the GIL)
                with ThreadPoolExecutor(max_workers=1) as side:
                    others = side.submit(validate_other_tables, raw, keep_pii=keep_pii)
                    if client is None:  # its error first, as in memory
                        acc = validate_purchases(paths["purchases"], staging)
                    else:
                        acc = dask_build.validate_purchases(client, paths["purchases"], staging)
                    validated = others.result()
                validated.accounting = {"purchases": acc, **validated.accounting}
            else:
                validated = validate_tables(raw, keep_pii=keep_pii)
            seconds["read_validate"] = time.perf_counter() - t0
            notes = adapted.notes
            del raw, adapted  # the tables as read, in Arrow memory: validation made its own
            tables_written = io.submit(_write_tables, staging, validated)
            if validated.accounting["purchases"]["kept"] == 0:
                tables_written.result()
                workdir.replace_dir(staging / workdir.REJECTS_DIR, root / workdir.REJECTS_DIR)  # why: for the user
                acc = validated.accounting["purchases"]
                got = ("no data rows" if acc["read"] == 0 else
                       f"all {acc['read']} rows rejected; see {workdir.rejects_path(root, 'purchases')}")
                raise InputError(f"{acc['source']}: must have at least one valid purchase. Got {got}",
                                 path=acc["source"])
            if "friendships" not in validated.tables:
                log.warning("no friendships table: the graph has no social edges")
            stage("graph")
            t0 = time.perf_counter()
            from graphprof.features.blocks import write_features
            from graphprof.graph import build_graph, describe

            if streamed:
                from graphprof.graph.outofcore import build_graph_out_of_core, other_tables

                others = other_tables(validated)
                _free_tables(validated, tables_written)  # before the purchases are coded: the ties' strings
                if client is None:
                    graph = build_graph_out_of_core(workdir.table_path(staging, "purchases"), others,
                                                    staging / "duckdb.tmp")
                else:
                    graph = dask_build.build_graph_on_cluster(client, workdir.table_path(staging, "purchases"),
                                                              others, staging / "dask.tmp")
                del others
            else:
                graph = build_graph(validated)
                _free_tables(validated, tables_written)
            seconds["graph"] = time.perf_counter() - t0
            graph_saved = io.submit(_save_graph_and_hash, graph, staging)
            stage("features")
            t0 = time.perf_counter()
            shape = write_features(graph, staging, seed)
            seconds["features"] = time.perf_counter() - t0
            log.info("features: %d users x %d columns", *shape)
            stage("write")
            tables_written.result()
            graph_id = graph_saved.result()
            _promote(staging, root)
            _clear_stale(root)
            result = BuildResult(workdir=root, accounting=validated.accounting, graph=describe(graph),
                                 dropped_columns=validated.dropped_columns, seconds=seconds, format=format,
                                 notes=notes, engine=engine)
            _record(root, named, hashes.result(), validated, graph_id, seed, format, keep_pii, seconds, notes,
                    engine)
    return result


def _streamed_inputs(data, purchases, friendships, users, items, format: str, engine: str) -> dict[str, Path]:
    """The input files of the streaming engines: the generic layout, with the purchases in Parquet."""
    from graphprof.ingest.io import PARQUET_SUFFIXES

    if format != "generic":
        raise ConfigError(f"--engine {engine} reads the generic layout. Got --format {format}: build it with "
                          "--engine numpy, or convert it to the generic tables first")
    paths = resolve_inputs(data, purchases, friendships, users, items)
    if not paths["purchases"].name.lower().endswith(PARQUET_SUFFIXES):
        raise ConfigError(f"{paths['purchases']}: --engine {engine} streams a Parquet purchases table. Got "
                          f"'{paths['purchases'].name}': convert it to Parquet, or build with --engine numpy")
    return paths


def _free_tables(validated: ValidatedTables, tables_written) -> None:
    """Once they are written, drop the validated tables (the graph holds what the build needs of them; at
    millions of rows their strings are GiB), and hand Arrow's freed memory back."""
    import pyarrow as pa

    tables_written.result()
    validated.tables.clear()
    validated.rejects.clear()
    validated.friend_codes = None
    pa.default_memory_pool().release_unused()


@contextlib.contextmanager
def _staged(staging: Path):
    """An empty staging folder for the build (a leftover of a cut-off build is removed), removed again however
    the build ends."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _promote(staging: Path, root: Path) -> None:
    """Replace the previous build's folders by the staged ones (each by two renames, :func:`workdir.replace_dir`;
    a folder the new build did not write is removed)."""
    for name in workdir.BUILD_DIRS:
        if (staging / name).exists():
            workdir.replace_dir(staging / name, root / name)
        elif (root / name).exists():
            shutil.rmtree(root / name)


def _record(root: Path, named: dict, sha: dict, validated: ValidatedTables, graph_id: str, seed: int,
            format: str, keep_pii, seconds: dict, notes: list[str], engine: str = "numpy") -> None:
    """The build in ``manifest.json``: the input files (path, size, mtime, hash), row accounting, graph id,
    settings and timings, replacing the previous build's input sections."""
    inputs = {name: {"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns,
                     "sha256": sha[name]} for name, p in named.items()}
    _warn_erased_inputs(root, inputs)
    _forget(root, ("inputs", "rows", "dropped_columns", workdir.NEEDS_RETRAINING))
    workdir.update_manifest(root, inputs=inputs, rows=validated.accounting, graph_id=graph_id,
                            config={"build-graph": {"seed": seed, "format": format, "keep_pii": list(keep_pii),
                                                    "engine": engine}},
                            stages={"build-graph": seconds}, dropped_columns=validated.dropped_columns,
                            input_notes=notes)


def _save_graph_and_hash(graph, root: Path) -> str:
    from graphprof.graph import save_graph

    save_graph(graph, root)
    return workdir.sha256_file(root / workdir.GRAPH_TENSORS)


def _warn_erased_inputs(root: Path, inputs: dict) -> None:
    """A rebuild from the very files a ``graphprof forget`` was run after brings the erased users back."""
    erased = {h for e in workdir.load_manifest(root).get(workdir.ERASURES, [])
              for h in (e.get("inputs_sha256") or {}).values()}
    again = [info["path"] for info in inputs.values() if info["sha256"] in erased]
    if again:
        log.warning("WARNING: users were erased from this work directory (graphprof forget), and these inputs are "
                    "the files they were erased from: %s. Erase them from the inputs too, or they are back.",
                    ", ".join(again))


def _forget(root: Path, keys: tuple[str, ...]) -> None:
    """update_manifest merges dict sections; these describe one build's input and must be replaced, not merged
    (a rebuild from other files would otherwise keep the old files' hashes and row counts)."""
    manifest = workdir.load_manifest(root)
    if any(k in manifest for k in keys):
        for k in keys:
            manifest.pop(k, None)
        workdir.write_json(root / workdir.MANIFEST, manifest)


def _write_tables(root: Path, validated: ValidatedTables) -> None:
    for name in TABLES:
        if name not in validated.tables and name in validated.accounting:
            continue  # streamed: written by the engine already
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


STALE_AFTER_BUILD = ("train", "communities", "export-embeddings", "predict", "report")


def _clear_stale(root: Path) -> None:
    """A new graph makes what was derived from the old one meaningless (models, communities, embeddings,
    predictions, the report): remove it rather than mix them up."""
    for name in (workdir.MODELS_DIR, workdir.PARTIAL_TRAIN, workdir.SCRATCH_DIR, workdir.CACHE_DIR, workdir.COMMUNITIES_DIR, workdir.EMBEDDINGS_DIR,
                 str(Path(workdir.PREDICTIONS_NEW).parent), workdir.REPORT):
        path = root / name
        if path.is_dir():
            log.info("removing %s, derived from the previous graph", path)
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    manifest = workdir.load_manifest(root)
    stages = manifest.get("stages", {})
    if any(s in stages for s in STALE_AFTER_BUILD):
        for s in STALE_AFTER_BUILD:
            stages.pop(s, None)
        workdir.write_json(root / workdir.MANIFEST, manifest)


def load_tables(root: str | Path, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A validated table from the work directory (with the rows updates appended,
    :func:`graphprof.workdir.table_parts`), or None where the input had no such table. ``columns``: those of
    them the table has, only (at millions of rows each string column is GiBs)."""
    path = workdir.table_path(root, name)
    hint = "run 'graphprof build-graph' first"
    parts = [workdir.read_parquet(p, missing=hint, columns=columns)
             for p in [path, *workdir.table_parts(root, name)] if p.exists()]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


__all__ = ["ENGINES", "BuildResult", "build", "load_tables", "read_inputs", "resolve_inputs"]
