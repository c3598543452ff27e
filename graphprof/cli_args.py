"""The command line's arguments: one function per command adds its sub-parser, every choice read from the
registry that owns it (models, formats, community methods, embedding sources, ...), never typed twice."""

from __future__ import annotations

import argparse

from graphprof import __version__
from graphprof.ingest.adapters import FORMATS

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
    for add in (_add_build_graph, _add_train, _add_communities, _add_predict, _add_update, _add_serve, _add_export_embeddings,
                _add_recommend_similar, _add_explain, _add_forget, _add_report, _add_generate):
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

    b.add_argument("--engine", default="auto", choices=["auto", "numpy", "duckdb", "dask"],
                   help="how the purchases are processed: numpy holds every table in memory (the faster where it "
                        "fits); duckdb streams a Parquet purchases table through validation a slice at a time and "
                        "codes and reduces it out of core (for shops larger than memory); dask runs those passes "
                        "as tasks on a Dask cluster (--scheduler; the work directory on storage the workers share); "
                        "auto (default): numpy where the build's estimated peak fits the memory available, else "
                        "duckdb. Every engine gives the same work directory")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --engine dask: the Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local "
                        "cluster of one worker process per core)")
    b.add_argument("--keep-pii", metavar="COLS", default="",
                   help="comma-separated users columns that look like personal data (email, phone, name, address, "
                        "ip, ...) to keep in the work directory anyway (default: dropped); never used as features")
    _add_estimate(b, "build-graph")


def _add_estimate(p, command: str) -> None:
    p.add_argument("--estimate", action="store_true",
                   help=f"print the predicted wall time and peak memory of this {command} (from the input sizes; "
                        "a cost model calibrated on the project's benchmarks) and stop without running it")
    p.add_argument("--no-memory-check", action="store_true",
                   help=f"run even when the estimated peak memory exceeds the memory available (by default "
                        f"{command} stops before it starts, saying how much it needs)")


def _add_train(sub, common) -> None:
    from graphprof.training import DEFAULT_MODELS, PROTOCOLS

    t = _command(sub, "train", common, "train and compare models per target on the same seeded splits",
                 "examples:\n  graphprof train                              # every usable target, lr + sign\n"
                 "  graphprof train --target gender --models lr,sage --seeds 5 --json\n"
                 "  graphprof train --target gender --models lr,sign --nproc 2\n\n"
                 "For each target, makes --seeds stratified 60/20/20 splits of the labelled users and fits every "
                 "model on each; prints accuracy, balanced accuracy, macro-F1, AUC and the calibration of the "
                 "probabilities (ECE, Brier) on the test users, mean ± std over seeds, and the model picked on "
                 "validation.")
    t.add_argument("--target", action="append", metavar="COL",
                   help="users-table column to predict (repeatable; default: every categorical column with "
                        "enough labels)")
    t.add_argument("--models", default=",".join(DEFAULT_MODELS), metavar="LIST",
                   help="comma-separated models among lr (baseline: logistic regression on the user's features "
                        "and bag of items), sign (precomputed neighbourhood aggregates + MLP on mini-batches: "
                        "the one for item-heavy data and millions of users), sage, gat (GNNs; full batch or "
                        "neighbour-sampled mini-batches by graph size). The graph models blend their "
                        "probabilities with an lr, weighted on validation (default: %(default)s)")
    t.add_argument("--seeds", type=int, default=3, metavar="N", help="number of seeded splits (default: 3)")
    t.add_argument("--epochs", type=int, default=None, metavar="N", help="maximum epochs for GNN models (default: 200)")
    t.add_argument("--protocol", default="transductive", choices=list(PROTOCOLS),
                   help="transductive: the whole graph is seen while fitting, test labels hidden (default); "
                        "inductive: the test users and their edges are removed while fitting, then added back to "
                        "predict (the cold-start profile)")
    t.add_argument("--block-rows", type=int, default=None, metavar="N",
                   help="users per row block for sign on large graphs: past N users, its neighbourhood blocks "
                        "are computed N users at a time into memory-mapped files under the work directory's "
                        ".scratch/ (removed after) and read a mini-batch at a time, and every user is scored N "
                        "at a time, so its memory follows N rather than the number of users; the numbers are "
                        "the same (default: 250000)")
    t.add_argument("--no-cache", action="store_true",
                   help="compute the label-free arrays (sign's bag of items and its hops) in every fit instead of "
                        "reusing them from the work directory's cache/ (the numbers are the same either way)")
    t.add_argument("--audit", default=None, metavar="COL",
                   help="fairness audit by a users-table column that is not a target of the run (e.g. gender, "
                        "age_band): per group of COL on the test users, the picked model's support, accuracy, "
                        "selection rate, true- and false-positive rates, and the demographic-parity and "
                        "equalized-odds differences (fairlearn's definitions), mean ± std over the seeds")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same settings from its last finished (model, seed)")
    t.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train data parallel on N processes of this machine (torch.distributed, gloo; started "
                        "with torchrun): sign shards its mini-batches over them, lr / sage / gat run on one; "
                        "the metric is the same within the seeds' spread, and it is faster only where every "
                        "process has cores of its own. On several machines, run torchrun yourself on each (see "
                        "docs/distributed.md)")
    _add_estimate(t, "train")


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


def _add_update(sub, common) -> None:
    u = _command(sub, "update", common, "apply new purchases, ties, users and items without a rebuild",
                 "examples:\n  graphprof update --data events/2026-12-07/\n"
                 "  graphprof update --data events/2026-12-07/ --workdir work/shop --json\n\n"
                 "DIR holds purchases.* (and optionally friendships.*, users.*, items.*) in the generic schema, "
                 "validated as build-graph validates them (bad rows: rejects/updates/<n>/<table>.csv). Known "
                 "users' purchases merge into their (user, item) edges; new users, items and ties are added; a "
                 "users table sets or changes labels (the next train sees them). The touched users' features are "
                 "recomputed in the saved feature space, every saved model re-scores the users whose inputs "
                 "changed, and new users get communities. The batch is journaled in manifest.json (its files' "
                 "sha256): applying it again is refused, and a batch cut off half-way leaves the work directory "
                 "as it was. Prints how far the features moved since training and whether to retrain.")
    u.add_argument("--data", metavar="DIR", help="folder with the batch's tables")
    for table in ("purchases", "friendships", "users", "items"):
        u.add_argument(f"--{table}", metavar="FILE", help=f"the batch's {table} table; instead of --data")
    u.add_argument("--key-file", metavar="FILE", help="pseudonymisation key (chmod 600), where the exported "
                   "embeddings are pseudonymised (default: $GRAPHPROF_PSEUDONYM_KEY)")


def _add_serve(sub, common) -> None:
    sv = _command(sub, "serve", common, "serve profiles over HTTP (API keys, audit trail, events applied live)",
                  "examples:\n  graphprof keys create crm --scopes profiles:read\n"
                  "  GRAPHPROF_PSEUDONYM_KEY=... graphprof serve --workdir work/shop --port 8000\n"
                  "  curl -H 'Authorization: Bearer gpk_...' localhost:8000/v1/users/C0001\n\n"
                  "A JSON API (OpenAPI at /docs) over the work directory: profiles, batches of profiles, similar "
                  "users, recommendations, new customers' profiles, and events (journaled with fsync, applied by "
                  "'graphprof update' every few seconds). Every route but /healthz and /metrics needs an API key "
                  "with its scope. Every request that touches customer data appends a line to "
                  "serving/audit.jsonl with the user ids pseudonymised, so the server needs the pseudonymisation "
                  "key ($GRAPHPROF_PSEUDONYM_KEY or --key-file). New artifacts (train, update, forget) are picked "
                  "up without a restart. Binds to loopback unless --host says otherwise.")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    sv.add_argument("--key-file", metavar="FILE", help="pseudonymisation key (chmod 600, outside --workdir; "
                    "default $GRAPHPROF_PSEUDONYM_KEY)")
    sv.add_argument("--store", metavar="URL", help="answer profiles from Redis (redis://HOST:PORT/DB, written "
                    "by 'graphprof publish') instead of the work directory")
    sv.add_argument("--apply-every", type=float, default=2.0, metavar="S",
                    help="seconds between micro-batches of posted events (default 2)")
    sv.add_argument("--no-events", action="store_true", help="refuse POST /v1/events (a read-only server)")
    k = _command(sub, "keys", common, "create, list and revoke the API keys of 'graphprof serve'",
                 "examples:\n  graphprof keys create crm --scopes profiles:read\n"
                 "  graphprof keys create shop --scopes events:write\n  graphprof keys list\n"
                 "  graphprof keys revoke crm\n\n"
                 "A key is shown once, when created; the work directory keeps only a salted hash "
                 "(serving/keys.json). Scopes: profiles:read, embeddings:read, events:write, admin (all of them). "
                 "A revoked key is refused from the next request on.")
    k.add_argument("action", choices=["create", "list", "revoke"], help="what to do")
    k.add_argument("name", nargs="?", default=None, help="the key's name (create, revoke)")
    k.add_argument("--scopes", default="profiles:read", help="comma-separated scopes (create; default "
                   "profiles:read)")
    a = _command(sub, "audit", common, "summarise the audit trail of 'graphprof serve'",
                 "examples:\n  graphprof audit\n  graphprof audit --json\n\n"
                 "Per API key: requests, user profiles read, refused requests, routes, first and last time, from "
                 "serving/audit.jsonl (whose user ids are pseudonymised).")
    del a
    pb = _command(sub, "publish", common, "write every user's current profile to Redis (the online store)",
                  "examples:\n  graphprof publish --redis redis://localhost:6379/0\n"
                  "  graphprof serve --store redis://localhost:6379/0\n\n"
                  "One hash per user (<prefix>:user:<id>: a field per target with its class, probabilities and "
                  "model version, and the community), a version hash (<prefix>:version: graph id, users, time); "
                  "every other user hash under the prefix (erased users among them) is deleted. Run it after "
                  "train, update or forget; a server started with --store publishes after each batch of events.")
    pb.add_argument("--redis", required=True, metavar="URL", help="redis://HOST:PORT/DB")
    pb.add_argument("--prefix", default="graphprof", help="key prefix (default graphprof)")


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


def _add_explain(sub, common) -> None:
    ex = _command(sub, "explain", common, "why the picked models gave a user their profile",
                  "examples:\n  graphprof explain C00042\n  graphprof explain C00042 --target gender --top 5 --json\n\n"
                  "Per target, the picked model's prediction and the signed contributions of the user's features, "
                  "items bought and friends, largest first, each with its share. lr: exact (coefficient x value; "
                  "with the intercept they sum to its logit). sign: integrated gradients (Captum) of the "
                  "calibrated probability from the average training user with no items and no friends; they sum "
                  "to the distance between the two. sage and gat are not explained. Reads only.")
    ex.add_argument("user_id", metavar="USER_ID", help="a user id as in your data")
    ex.add_argument("--target", metavar="COL", help="one trained target (default: every one)")
    ex.add_argument("--top", type=int, default=10, metavar="K", help="contributions shown per target (default: 10)")


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
    gen.add_argument("--items", type=int, default=None,
                     help="number of items, with heavy-tailed popularity (default: a fifth of the users, at least 50)")
    gen.add_argument("--purchases-per-user", type=float, default=3.0, help="mean purchases per user (default: 3)")
    gen.add_argument("--friends-per-user", type=float, default=8.0, help="mean friends per user (default: 8)")
    gen.add_argument("--bad-rows", type=int, default=0, help="deliberately bad rows to mix in (default: 0)")
    gen.add_argument("--file-format", dest="file_format", choices=list(FILE_FORMATS), default="csv",
                     help="file format (default: csv)")
    gen.add_argument("--time-format", choices=list(TIME_FORMATS), default="iso", help="timestamps (default: iso)")
