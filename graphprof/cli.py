"""The command line: progress, threads and exit codes (its arguments: :mod:`graphprof.cli_args`). No business
logic: each command calls one library function with the same keyword arguments a notebook would use.

Progress bars (:mod:`graphprof.runtime.progress`) go to stderr, and only where stderr is a terminal and neither
``-q`` nor ``--json`` is given: piped and JSON output stay byte for byte the same.

Exit codes: 0 success; 2 bad usage or bad input (one clear message, no traceback); 1 a bug (with traceback).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
import traceback

from graphprof.cli_args import build_parser
from graphprof.errors import ConfigError, GraphprofError
from graphprof.runtime.threads import set_torch_threads

log = logging.getLogger("graphprof")


def _setup_logging(args) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("graphprof")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _emit(args, text: str, doc: dict) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, default=str, allow_nan=False))
    else:
        print(text)


def _cmd_build_graph(args) -> None:
    from graphprof.graph.build import build
    from graphprof.runtime import estimate

    tables = {t: getattr(args, t) for t in ("purchases", "friendships", "users", "items")}
    if args.estimate:
        sizes = estimate.build_sizes(args.data, tables, args.format)
        est = estimate.estimate_build(*sizes)
        if args.format == "generic" and _parquet_purchases(args.data, tables) and (
                args.engine in ("duckdb", "dask") or (args.engine == "auto" and estimate.exceeds_memory(est))):
            est = estimate.estimate_build(*sizes, engine="duckdb" if args.engine == "auto" else args.engine)
        _emit(args, "\n".join(est.summary_lines()), est.to_json())
        return
    engine = args.engine
    if args.format == "generic" and (engine == "auto" or (engine == "numpy" and not args.no_memory_check)):
        # an adapter's layout is sized only by reading it
        est = _quiet_estimate(lambda: estimate.estimate_build(*estimate.build_sizes(args.data, tables, "generic")))
        fits = est is None or not estimate.exceeds_memory(est)
        if engine == "auto":
            engine = "numpy" if fits or not _parquet_purchases(args.data, tables) else "duckdb"
            if engine == "duckdb":
                log.info("the in-memory build needs about %.1f GiB by its estimate, more than is available: the "
                         "purchases are processed out of core (--engine duckdb)", est.peak_bytes / 2**30)
        if engine == "numpy" and est is not None and not args.no_memory_check:
            estimate.check_memory(est, "Build with --engine duckdb from a Parquet purchases table, or from fewer "
                                       "rows (split the purchases by period)")
    elif engine == "auto":
        engine = "numpy"
    if args.scheduler and engine != "dask":
        raise ConfigError(f"--scheduler is for --engine dask. Got --engine {args.engine}")
    if engine in ("duckdb", "dask") and not args.no_memory_check:
        est = _quiet_estimate(lambda: estimate.estimate_build(*estimate.build_sizes(args.data, tables, "generic"),
                                                              engine=engine))
        if est is not None:
            estimate.check_memory(est, "Build from fewer rows (split the purchases by period)")
    result = build(args.workdir, args.data, purchases=args.purchases, friendships=args.friendships,
                   users=args.users, items=args.items, seed=args.seed, format=args.format,
                   keep_pii=[c.strip() for c in args.keep_pii.split(",") if c.strip()], engine=engine,
                   scheduler=args.scheduler)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _parquet_purchases(data, tables: dict) -> bool:
    from graphprof.graph.build import resolve_inputs
    from graphprof.ingest.io import PARQUET_SUFFIXES

    try:
        return resolve_inputs(data, **tables)["purchases"].name.lower().endswith(PARQUET_SUFFIXES)
    except GraphprofError:
        return False  # the build itself says what is wrong with the inputs


def _cmd_train(args) -> int | None:
    from graphprof.runtime import distributed
    from graphprof.training.train import preflight, train

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1. Got {args.nproc} instead")
    if not distributed.is_worker() and (args.estimate or not args.no_memory_check):
        from graphprof import workdir
        from graphprof.runtime import estimate

        def _train_estimate():
            workdir.require_built(args.workdir)
            return estimate.estimate_train(estimate.train_sizes(args.workdir, args.target), models, args.seeds,
                                           args.epochs, processes=args.nproc or 1, block_rows=args.block_rows)

        if args.estimate:
            est = _train_estimate()
            _emit(args, "\n".join(est.summary_lines()), est.to_json())
            return None
        est = _quiet_estimate(_train_estimate)
        if est is not None:
            estimate.check_memory(est, "Train fewer models at a time (--models), or lr alone, or on fewer "
                                       "processes (--nproc)")
    if distributed.is_worker() and not distributed.is_main():
        logging.getLogger("graphprof").setLevel(max(logging.getLogger("graphprof").level, logging.WARNING))
    elif (args.nproc or 1) > 1 and "RANK" not in os.environ:  # not under torchrun: start the workers
        preflight(args.workdir, models, args.seeds, args.epochs, args.protocol)
        return distributed.launch(args.argv, args.nproc)
    result = train(args.workdir, targets=args.target, models=models, seeds=args.seeds, epochs=args.epochs,
                   seed=args.seed, resume=args.resume, protocol=args.protocol, cache=not args.no_cache,
                   audit=args.audit, block_rows=args.block_rows)
    if distributed.is_main():  # the other workers print nothing
        _emit(args, "\n".join(result.summary_lines()), result.to_json())
    return None


def _quiet_estimate(compute):
    """The estimate before a run, or None where the inputs cannot be sized: the run itself then says what is
    wrong with them, in its own words."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 - a best-effort check: the run reads the inputs and says what is wrong
        log.debug("no estimate before the run: %s", exc)
        return None


def _cmd_generate(args) -> None:
    from graphprof.ingest.generate import write_generated

    if args.users < 10:
        raise ConfigError(f"--users must be >= 10. Got {args.users} instead")
    if args.items is not None and args.items < 1:
        raise ConfigError(f"--items must be >= 1. Got {args.items} instead")
    written = write_generated(args.out, args.file_format, n_users=args.users, n_items=args.items,
                              purchases_per_user=args.purchases_per_user, friends_per_user=args.friends_per_user,
                              bad_rows=args.bad_rows, time_format=args.time_format, seed=args.seed)
    _emit(args, "\n".join(f"{p}: {n} rows" for p, n in written.values()),
          {"files": {name: {"path": str(p), "rows": n} for name, (p, n) in written.items()}})


def _cmd_communities(args) -> None:
    from graphprof.communities.stage import detect_communities

    result = detect_communities(args.workdir, method=args.method, resolution=args.resolution, on=args.graph,
                             copurchase_weight=args.copurchase_weight, seed=args.seed)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_predict(args) -> None:
    from graphprof.prediction.predict import predict

    result = predict(args.workdir, args.data, purchases=args.purchases, friendships=args.friendships,
                     users=args.users, out=args.out)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_update(args) -> None:
    from graphprof.updating.stage import update

    result = update(args.workdir, args.data, purchases=args.purchases, friendships=args.friendships,
                    users=args.users, items=args.items, key_file=args.key_file)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_serve(args) -> None:
    from graphprof.serving.server import serve

    serve(args.workdir, host=args.host, port=args.port, key_file=args.key_file, events=not args.no_events,
          interval=args.apply_every, store=args.store)


def _cmd_keys(args) -> None:
    from graphprof.serving import keys

    if args.action == "create":
        token = keys.create(args.workdir, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()])
        _emit(args, f"key '{args.name}' created; it is shown this once, keep it secret:\n{token}",
              {"name": args.name, "key": token, "scopes": sorted(set(args.scopes.split(",")))})
    elif args.action == "revoke":
        n = keys.revoke(args.workdir, args.name)
        _emit(args, f"key '{args.name}' revoked ({n})", {"name": args.name, "revoked": n})
    else:
        rows = keys.listing(args.workdir)
        text = "\n".join(f"{k['name']}: {', '.join(k['scopes'])}; created {k['created']}"
                         + (f"; revoked {k['revoked']}" if k["revoked"] else "") for k in rows) or "no keys yet"
        _emit(args, text, {"keys": rows})


def _cmd_publish(args) -> None:
    from graphprof.serving.redis_store import publish

    doc = publish(args.workdir, args.redis, prefix=args.prefix)
    _emit(args, f"published {doc['users']} profiles to {args.redis} (prefix {doc['prefix']}); removed "
                f"{doc['removed']} stale or erased users' hashes", doc)


def _cmd_audit(args) -> None:
    from graphprof.serving.audit import summarize

    doc = summarize(args.workdir)
    lines = [f"{doc['file']}:"]
    for name, k in sorted(doc["keys"].items()):
        routes = ", ".join(f"{r} {n}" for r, n in sorted(k["routes"].items()))
        lines.append(f"  {name}: {k['requests']} requests, {k['users']} user profiles, {k['refused']} refused; "
                     f"{k['first']} .. {k['last']}; {routes}")
    _emit(args, "\n".join(lines), doc)


def _cmd_forget(args) -> None:
    from graphprof.privacy.forget import forget

    result = forget(args.workdir, args.user_ids or None, forget_file=args.forget_file, key_file=args.key_file)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_explain(args) -> None:
    from graphprof.explaining.explain import explain

    result = explain(args.workdir, args.user_id, target=args.target, top=args.top)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_report(args) -> None:
    from graphprof.reporting.report import write_report

    result = write_report(args.workdir, out=args.out)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_export_embeddings(args) -> None:
    from graphprof.embeddings.export import export_embeddings

    result = export_embeddings(args.workdir, model=args.model, target=args.target, out=args.out,
                               pseudonymize=args.pseudonymize, key_file=args.key_file, seed=args.seed)
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _frame_out(args, frame, title: str) -> None:
    _emit(args, title + "\n" + frame.to_string(index=False), {"results": frame.to_dict(orient="records")})


def _cmd_recommend(args) -> None:
    from graphprof.embeddings.query import recommend

    frame = recommend(args.workdir, args.user_id, k=args.k, key_file=args.key_file)
    _frame_out(args, frame, f"top {len(frame)} items for user {args.user_id} (not yet bought):")


def _cmd_similar(args) -> None:
    from graphprof.embeddings.query import similar

    frame = similar(args.workdir, args.user_id, k=args.k, key_file=args.key_file)
    _frame_out(args, frame, f"the {len(frame)} users most similar to {args.user_id}:")


COMMANDS = {"build-graph": _cmd_build_graph, "train": _cmd_train, "communities": _cmd_communities,
            "predict": _cmd_predict, "update": _cmd_update, "serve": _cmd_serve, "keys": _cmd_keys,
            "audit": _cmd_audit, "publish": _cmd_publish, "export-embeddings": _cmd_export_embeddings, "recommend": _cmd_recommend,
            "similar": _cmd_similar, "explain": _cmd_explain, "report": _cmd_report, "forget": _cmd_forget, "generate": _cmd_generate}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    if argv is None:  # a command-line process (cli.py, the graphprof script, a torchrun worker), not a caller's
        from graphprof.runtime.memory import keep_freed_memory

        keep_freed_memory()
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc runs it again in each worker
    _setup_logging(args)
    from graphprof.runtime import distributed, progress

    args.threads = _threads(parser, args.threads)
    quiet = distributed.is_worker() and not distributed.is_main()  # a data-parallel run says it once
    # when torch is imported: build-graph and lr's predict never import it
    set_torch_threads(args.threads, note=None if quiet else lambda why: logging.getLogger("graphprof").info("note: %s", why))

    # bars for a person at a terminal only, and from one process (rank 0) of a data-parallel run
    shown = progress.wanted(args.quiet, args.json) and not (distributed.is_worker() and not distributed.is_main())
    previous = progress.enabled()
    progress.enable(shown)
    try:
        with progress.logging_to_bars(logging.getLogger("graphprof")):
            return _run(args)
    finally:
        progress.enable(previous)  # a caller's process keeps its own setting


def _threads(parser: argparse.ArgumentParser, given: int | None) -> int | None:
    """``--threads``, else ``$GRAPHPROF_THREADS``, else None: the default for this machine, decided when torch
    is imported (:func:`graphprof.runtime.threads.default_threads`)."""
    from graphprof.runtime.threads import ENV, threads_from_env

    if given is None:
        try:
            given = threads_from_env()
        except ValueError:
            parser.error(f"${ENV} must be an integer >= 1. Got {os.environ.get(ENV)!r} instead")
    if given is not None and given < 1:
        parser.error(f"--threads must be >= 1. Got {given} instead")
    return given


#: what the machine said, in words, and what to do: the failures of the user's environment, not of graphprof
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space and run the command again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota, and run the command again"),
    errno.EACCES: ("permission denied", "give this user write access, or choose another --workdir"),
    errno.EPERM: ("operation not permitted", "give this user write access, or choose another --workdir"),
    errno.EROFS: ("the file system is read-only", "choose a --workdir on a writable file system"),
    errno.EADDRINUSE: ("the address is in use", "choose another --port, or stop the process that holds it"),
    errno.EADDRNOTAVAIL: ("the address is not this machine's", "choose a --host of this machine"),
}


def environment_message(exc: OSError, workdir: str | None) -> str | None:
    """One line for a failure of the machine (disk full, permission denied, read-only), naming the path and
    saying that the previous artifacts are intact; None for any other OSError."""
    code = exc.errno
    if code is None:  # Arrow's writers say it in the message only: "[errno 28] No space left on device"
        found = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    what = ENVIRONMENT_ERRORS.get(code)
    if what is None:
        return None
    where = exc.filename or workdir or "the work directory"
    return (f"{what[0]} while writing {where}: {what[1]}. Every file is replaced only once it is complete (a "
            "build, an update or a train run as a whole), so the previous artifacts are intact")


def _run(args) -> int:
    """The command, with its exit code: 2 for a user's mistake or the environment (a full disk, a permission
    denied), 130 when interrupted, 1 for a bug."""
    from graphprof.runtime import distributed

    # a failed data-parallel worker exits inside the handler (distributed.exit_worker): freeing the traceback
    # would tear down its process group, which can block while a peer still waits in a collective
    try:
        return COMMANDS[args.command](args) or 0
    except GraphprofError as exc:
        if distributed.is_main() or not getattr(exc, "shown_by_main", False):  # an error of every rank: once
            print(f"error: {exc}", file=sys.stderr)
        distributed.exit_worker(2)
        return 2
    except KeyboardInterrupt:
        hint = {"train": "; the previous results are intact, 'graphprof train --resume' continues",
                "update": "; the batch was not applied (the work directory is as it was): run it again"}.get(
                    args.command, "")
        if distributed.is_main():
            print(f"interrupted{hint}", file=sys.stderr)
        distributed.exit_worker(130)
        return 130
    except Exception as exc:
        # the machine failing (disk full, permission denied) is said plainly; any other OSError is a bug of ours
        said = environment_message(exc, getattr(args, "workdir", None)) if isinstance(exc, OSError) else None
        if said is not None:
            if distributed.is_main():
                print(f"error: {said}", file=sys.stderr)
            distributed.exit_worker(2)
            return 2
        if distributed.lost_peer(exc):  # another data-parallel worker stopped first; it says why
            print(f"error: training process {distributed.rank()} stopped: another one stopped first", file=sys.stderr)
            distributed.exit_worker(1, note=False)
        traceback.print_exc()
        print("graphprof hit an internal error (a bug): please report it with the traceback above.", file=sys.stderr)
        distributed.exit_worker(1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
