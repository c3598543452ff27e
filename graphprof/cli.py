"""The command line: parsing, progress and exit codes. No business logic: each command calls one library
function with the same keyword arguments a notebook would use.

Progress bars (:mod:`graphprof.runtime.progress`) go to stderr, and only where stderr is a terminal and neither
``-q`` nor ``--json`` is given: piped and JSON output stay byte for byte the same.

Exit codes: 0 success; 2 bad usage or bad input (one clear message, no traceback); 1 a bug (with traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from graphprof import __version__
from graphprof.errors import GraphprofError
from graphprof.ingest.adapters import FORMATS
from graphprof.runtime.threads import set_torch_threads

EXAMPLES = """examples:
  graphprof build-graph && graphprof train          # the bundled sample, end to end
  graphprof build-graph --data shop/ && graphprof train --target gender --seeds 5 --json
"""


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--workdir", default="work", metavar="DIR", help="work directory for artifacts (default: ./work)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0); same seed, same numbers")
    g.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: $GRAPHPROF_THREADS, else every core this process may run "
                        "on, fewer where other processes already keep cores busy, since torch's threads busy-wait; "
                        "a model's numbers are reproducible for a given count)")
    return p


def _command(sub, name: str, common: argparse.ArgumentParser, summary: str, description: str):
    """One sub-command: ``summary`` is its line in ``graphprof --help``, ``description`` opens its own --help."""
    return sub.add_parser(name, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                          help=summary, description=description)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="graphprof", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=EXAMPLES + "\nGraph-based customer profiling: purchases + friendships -> a user-item-friend "
                    "graph -> features -> GNN and baseline profiles, side by side.",
        epilog="Run 'graphprof COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"graphprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_build_graph, _add_train, _add_communities, _add_predict, _add_export_embeddings,
                _add_recommend_similar, _add_forget, _add_report, _add_generate):
        add(sub, common)
    return parser


def _add_build_graph(sub, common) -> None:
    b = _command(sub, "build-graph", common, "read and validate tables, build the graph and the features",
                 "examples:\n  graphprof build-graph                       # the bundled sample\n"
                 "  graphprof build-graph --data shop/ --workdir work/shop\n"
                 "  graphprof build-graph --format feather --data ../shared/datasets/deezer_europe\n\n"
                 "Reads purchases, friendships, users and items (CSV, TSV or Parquet), writes validated tables, "
                 "rejects/<table>.csv for bad rows (with source row, column and reason), the graph and the "
                 "user features into the work directory.")
    b.add_argument("--data", metavar="DIR",
                   help="directory with purchases.*, friendships.*, users.*, items.* (default: datasets/sample)")
    for table, req in (("purchases", "required with per-table flags"), ("friendships", "optional"),
                       ("users", "optional"), ("items", "optional")):
        b.add_argument(f"--{table}", metavar="FILE", help=f"the {table} table ({req}); instead of --data")
    b.add_argument("--format", default="generic", choices=list(FORMATS),
                   help="layout of --data (default: generic, the schema in docs/input.md); feather = SNAP "
                        "*_edges.csv + *_features.json + *_target.csv; hetrec-lastfm = HetRec 2011 Last.fm .dat "
                        "files; movielens = MovieLens 100K u.data/u.user/u.item")

    b.add_argument("--keep-pii", metavar="COLS", default="",
                   help="comma-separated users columns that look like personal data (email, phone, name, address, "
                        "ip, ...) to keep in the work directory anyway (default: dropped); never used as features")


def _add_train(sub, common) -> None:
    from graphprof.training import DEFAULT_MODELS, PROTOCOLS

    t = _command(sub, "train", common, "train and compare models per target on the same seeded splits",
                 "examples:\n  graphprof train                              # every usable target, lr + sage\n"
                 "  graphprof train --target gender --models lr,sage --seeds 5 --json\n"
                 "  graphprof train --target gender --models lr,sign --nproc 2\n\n"
                 "For each target, makes --seeds stratified 60/20/20 splits of the labelled users and fits every "
                 "model on each; prints accuracy, macro-F1 and AUC on the test users, mean ± std over seeds.")
    t.add_argument("--target", action="append", metavar="COL",
                   help="users-table column to predict (repeatable; default: every categorical column with "
                        "enough labels)")
    t.add_argument("--models", default=",".join(DEFAULT_MODELS), metavar="LIST",
                   help="comma-separated models among lr (baseline), sage, gat (GNNs; full batch or neighbour-"
                        "sampled mini-batches by graph size), sign (precomputed neighbourhood aggregates + MLP "
                        "on mini-batches: the one for item-heavy data and millions of users) (default: %(default)s)")
    t.add_argument("--seeds", type=int, default=3, metavar="N", help="number of seeded splits (default: 3)")
    t.add_argument("--epochs", type=int, default=None, metavar="N", help="maximum epochs for GNN models (default: 200)")
    t.add_argument("--protocol", default="transductive", choices=list(PROTOCOLS),
                   help="transductive: the whole graph is seen while fitting, test labels hidden (default); "
                        "inductive: the test users and their edges are removed while fitting, then added back to "
                        "predict (the cold-start profile)")
    t.add_argument("--no-cache", action="store_true",
                   help="compute the label-free arrays (sign's bag of items and its hops) in every fit instead of "
                        "reusing them from the work directory's cache/ (the numbers are the same either way)")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same settings from its last finished (model, seed)")
    t.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train data parallel on N processes of this machine (torch.distributed, gloo; started "
                        "with torchrun): sign shards its mini-batches over them, lr / sage / gat run on one; "
                        "the metric is the same within the seeds' spread, and it is faster only where every "
                        "process has cores of its own. On several machines, run torchrun yourself on each (see "
                        "docs/distributed.md)")


def _add_communities(sub, common) -> None:
    from graphprof.communities import GRAPHS, METHODS

    c = _command(sub, "communities", common, "detect communities and profile each one",
                 "examples:\n  graphprof communities                        # Leiden on the social graph\n"
                 "  graphprof communities --method louvain --graph combined --resolution 1.5 --json\n\n"
                 "Writes communities/<method>/assignments.parquet (user_id, community), profiles.parquet (size, "
                 "top categories and items with lift, spend and frequency, attribute mix with lift) and "
                 "summary.json (modularity, sizes). Afterwards 'graphprof train --target community' predicts them.")
    c.add_argument("--method", default="leiden", choices=list(METHODS),
                   help="leiden (igraph, fast, connected communities; default) or louvain (networkx, the reference)")
    c.add_argument("--resolution", type=float, default=1.0, help="modularity resolution; higher = smaller (default 1)")
    c.add_argument("--graph", default="social", choices=list(GRAPHS),
                   help="social ties only, or social + co-purchase ties (default: social)")
    c.add_argument("--copurchase-weight", type=float, default=0.5, metavar="W",
                   help="weight of co-purchase ties in the combined graph (default: 0.5)")


def _add_predict(sub, common) -> None:
    pr = _command(sub, "predict", common, "profile users the models never saw, with the saved models",
                  "examples:\n  graphprof predict --data new_customers/\n"
                  "  graphprof predict --data new_customers/ --out profiles.parquet --json\n\n"
                  "DIR holds purchases.* (and optionally friendships.*, users.*) of new users in the generic "
                  "schema, pointing at known items and users. Each trained target's picked model predicts their "
                  "attributes (no retraining); unknown items and rows of known users are counted, not used.")
    pr.add_argument("--data", metavar="DIR", help="folder with the new users' tables")
    for table in ("purchases", "friendships", "users"):
        pr.add_argument(f"--{table}", metavar="FILE", help=f"the new users' {table} table; instead of --data")
    pr.add_argument("--out", metavar="FILE", help="output Parquet (default: WORKDIR/predictions/new_users.parquet)")


def _add_export_embeddings(sub, common) -> None:
    from graphprof.embeddings.export import SOURCES

    e = _command(sub, "export-embeddings", common, "write user (and item) embeddings for recommenders",
                 "examples:\n  graphprof export-embeddings                  # social LightGCN, every user and item\n"
                 "  graphprof export-embeddings --model sage --target gender --out users.parquet\n\n"
                 "Writes embeddings/users.parquet (user_id + e_0..e_d), users.npy + users_ids.csv, the same for "
                 "items, and meta.json (model, dim, seed). lightgcn needs no labels (trained here on purchases and "
                 "friendships if the work directory has none); sage and lr come from 'graphprof train'.")
    e.add_argument("--model", default="lightgcn", choices=list(SOURCES),
                   help="source of the vectors (default: lightgcn)")
    e.add_argument("--target", metavar="COL", help="for sage/gat/sign/lr: whose trained model (default: the first trained)")
    e.add_argument("--out", metavar="FILE", help="also write FILE.parquet or FILE.npy (+ FILE_ids.csv)")
    e.add_argument("--pseudonymize", action="store_true",
                   help="replace user ids by HMAC-SHA256 keyed hashes (key: $GRAPHPROF_PSEUDONYM_KEY or --key-file)")
    e.add_argument("--key-file", metavar="FILE", help="pseudonymisation key file (chmod 600, outside --workdir)")


def _add_recommend_similar(sub, common) -> None:
    for name, what in (("recommend", "items the user has not bought, best scored first"),
                       ("similar", "the nearest users in the embedding space (cosine)")):
        r = _command(sub, name, common, what,
                     f"examples:\n  graphprof {name} C00042\n  graphprof {name} C00042 -k 20 --json\n\n"
                     f"{what[0].upper() + what[1:]}, from the embeddings written by 'graphprof export-embeddings'.")
        r.add_argument("user_id", metavar="USER_ID", help="a user id as in your data")
        r.add_argument("-k", type=int, default=10, help="how many (default: 10)")
        r.add_argument("--key-file", metavar="FILE", help="the key, where the export was pseudonymized")


def _add_forget(sub, common) -> None:
    fg = _command(sub, "forget", common, "erase users from every artifact of the work directory",
                  "examples:\n  graphprof forget --forget-file erase_requests.txt\n  graphprof forget C00042 C00043\n\n"
                  "Removes the users from the tables, rejects, graph, features, predictions, communities and "
                  "embeddings; records the erasure in manifest.json (counts, never the ids) and marks models "
                  "trained on them as needing retraining. Input files outside the work directory are not touched: "
                  "erase the users there too, or a rebuild brings them back. Ids typed on the command line stay "
                  "in your shell history: prefer --forget-file.")
    fg.add_argument("user_ids", nargs="*", metavar="USER_ID", help="user ids to erase")
    fg.add_argument("--forget-file", metavar="FILE", help="file with one user id per line (or a CSV with user_id)")
    fg.add_argument("--key-file", metavar="FILE", help="pseudonymisation key, where embeddings were pseudonymized")


def _add_report(sub, common) -> None:
    rp = _command(sub, "report", common, "write one self-contained HTML report of the work directory",
                  "examples:\n  graphprof report                             # work/report.html\n"
                  "  graphprof report --workdir work/shop --out shop.html\n\n"
                  "Input accounting, graph size, the metrics table, confusion matrices, training curves, "
                  "community sizes and profiles, and a 2-D map of the user embeddings, with images embedded: "
                  "one file to open instead of reading JSON. Sections whose artifacts are missing say which "
                  "command makes them.")
    rp.add_argument("--out", metavar="FILE", help="output .html (default: WORKDIR/report.html)")


def _add_generate(sub, common) -> None:
    from graphprof.ingest.generate import FILE_FORMATS, TIME_FORMATS

    gen = _command(sub, "generate", common, "write a generated shop (planted communities) in the generic schema",
                   "examples:\n  graphprof generate --out shop/\n"
                   "  graphprof generate --users 1000000 --purchases-per-user 10 --file-format parquet --time-format epoch --out big/")
    gen.add_argument("--out", required=True, metavar="DIR", help="output directory")
    gen.add_argument("--users", type=int, default=3000, help="number of users (default: 3000)")
    gen.add_argument("--purchases-per-user", type=float, default=3.0, help="mean purchases per user (default: 3)")
    gen.add_argument("--friends-per-user", type=float, default=8.0, help="mean friends per user (default: 8)")
    gen.add_argument("--bad-rows", type=int, default=0, help="deliberately bad rows to mix in (default: 0)")
    gen.add_argument("--file-format", dest="file_format", choices=list(FILE_FORMATS), default="csv",
                     help="file format (default: csv)")
    gen.add_argument("--time-format", choices=list(TIME_FORMATS), default="iso", help="timestamps (default: iso)")


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

    result = build(args.workdir, args.data, purchases=args.purchases, friendships=args.friendships,
                   users=args.users, items=args.items, seed=args.seed, format=args.format,
                   keep_pii=[c.strip() for c in args.keep_pii.split(",") if c.strip()])
    _emit(args, "\n".join(result.summary_lines()), result.to_json())


def _cmd_train(args) -> int | None:
    from graphprof.runtime import distributed
    from graphprof.training.train import preflight, train

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.nproc is not None and args.nproc < 1:
        from graphprof.errors import ConfigError

        raise ConfigError(f"--nproc must be >= 1. Got {args.nproc} instead")
    if distributed.is_worker() and not distributed.is_main():
        logging.getLogger("graphprof").setLevel(max(logging.getLogger("graphprof").level, logging.WARNING))
    elif (args.nproc or 1) > 1 and "RANK" not in os.environ:  # not under torchrun: start the workers
        preflight(args.workdir, models, args.seeds, args.epochs, args.protocol)
        return distributed.launch(args.argv, args.nproc)
    result = train(args.workdir, targets=args.target, models=models, seeds=args.seeds, epochs=args.epochs,
                   seed=args.seed, resume=args.resume, protocol=args.protocol, cache=not args.no_cache)
    if distributed.is_main():  # the other workers print nothing
        _emit(args, "\n".join(result.summary_lines()), result.to_json())
    return None


def _cmd_generate(args) -> None:
    from graphprof.ingest.generate import generate, write_tables

    if args.users < 10:
        from graphprof.errors import ConfigError

        raise ConfigError(f"--users must be >= 10. Got {args.users} instead")
    tables = generate(args.users, purchases_per_user=args.purchases_per_user,
                      friends_per_user=args.friends_per_user, bad_rows=args.bad_rows,
                      time_format=args.time_format, seed=args.seed)
    paths = write_tables(tables, args.out, args.file_format)
    _emit(args, "\n".join(f"{p}: {len(tables[n])} rows" for n, p in paths.items()),
          {"files": {n: {"path": str(p), "rows": len(tables[n])} for n, p in paths.items()}})


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


def _cmd_forget(args) -> None:
    from graphprof.privacy.forget import forget

    result = forget(args.workdir, args.user_ids or None, forget_file=args.forget_file, key_file=args.key_file)
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
            "predict": _cmd_predict, "export-embeddings": _cmd_export_embeddings, "recommend": _cmd_recommend,
            "similar": _cmd_similar, "report": _cmd_report, "forget": _cmd_forget, "generate": _cmd_generate}


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


def _run(args) -> int:
    """The command, with its exit code: 2 for a user's mistake, 130 when interrupted, 1 for a bug."""
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
        hint = "; the previous results are intact, 'graphprof train --resume' continues" \
            if args.command == "train" else ""
        if distributed.is_main():
            print(f"interrupted{hint}", file=sys.stderr)
        distributed.exit_worker(130)
        return 130
    except Exception as exc:
        if distributed.lost_peer(exc):  # another data-parallel worker stopped first; it says why
            print(f"error: training process {distributed.rank()} stopped: another one stopped first", file=sys.stderr)
            distributed.exit_worker(1, note=False)
        traceback.print_exc()
        print("graphprof hit an internal error (a bug): please report it with the traceback above.", file=sys.stderr)
        distributed.exit_worker(1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
