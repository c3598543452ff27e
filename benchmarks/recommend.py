"""Do graphprof's embeddings serve a recommender? Leave-one-out recall@10 and NDCG@10.

For every user with 2+ distinct items, one item is held out: the last bought (by time) where the data has
timestamps, else one drawn at random (seeded; HetRec Last.fm has no listening times). Every row of that
(user, item) pair leaves the training tables; the work directory is built from what remains; each method ranks
the items the user has not bought in training, and a hit is the held-out item in the top 10.

Methods: ``lightgcn`` (graphprof's default embeddings: social LightGCN on purchases + friendships),
``lightgcn-nosocial`` (the same without friendships: what the social graph adds), ``most-popular`` (items by
number of buyers), ``item-knn`` (cosine item–item similarity on the binary user×item matrix, summed over the
user's items).

Run: ``python benchmarks/recommend.py`` (the bundled sample, and HetRec Last.fm where ../shared/datasets has it).
Appends its table to benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _results import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphprof.graph import BUYS, load_graph  # noqa: E402
from graphprof.graph.build import build, read_inputs  # noqa: E402
from graphprof.ingest.schema import validate_tables  # noqa: E402
from graphprof.models.lightgcn import LightGCNConfig, fit_lightgcn  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
K = 10


def holdout(purchases: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out (user_id, item_id) pairs)."""
    rng = np.random.default_rng(seed)
    p = purchases.reset_index(drop=True)
    pairs = p.groupby(["user_id", "item_id"], sort=False).agg(t=("timestamp", "max")).reset_index()
    pairs["r"] = rng.random(len(pairs))
    n_items = pairs.groupby("user_id")["item_id"].transform("size")
    pairs = pairs[n_items >= 2]
    key = "t" if pairs["t"].notna().all() else "r"
    held = pairs.sort_values([key, "r"]).groupby("user_id").tail(1)[["user_id", "item_id"]]
    drop = p.merge(held.assign(_h=1), on=["user_id", "item_id"], how="left")["_h"].notna().to_numpy()
    return p[~drop], held, key


def rank_metrics(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """recall@K and NDCG@K for one held-out item per row (scores of seen items already -inf)."""
    true_score = scores[np.arange(len(truth)), truth][:, None]
    rank = (scores > true_score).sum(axis=1)  # 0-based rank of the held-out item
    hit = rank < K
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(rank + 2), 0.0).mean())


def evaluate(name: str, score_fn, users: np.ndarray, truth: np.ndarray, seen: sp.csr_matrix) -> dict:
    recalls, ndcgs, t0 = [], [], time.perf_counter()
    for s in range(0, len(users), 1024):
        u = users[s:s + 1024]
        scores = np.asarray(score_fn(u), dtype=np.float64)
        scores[seen[u].nonzero()] = -np.inf
        r, n = rank_metrics(scores, truth[s:s + 1024])
        recalls.append(r * len(u))
        ndcgs.append(n * len(u))
    return {"method": name, f"recall@{K}": sum(recalls) / len(users), f"ndcg@{K}": sum(ndcgs) / len(users),
            "seconds": time.perf_counter() - t0}


def run(dataset: str, data: Path, fmt: str) -> list[dict]:
    adapted = read_inputs(data, format=fmt)
    tables = validate_tables(adapted.tables).tables
    train_p, held, key = holdout(tables["purchases"])
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "data"
        src.mkdir()
        train_p.drop(columns=["__row__"]).to_parquet(src / "purchases.parquet")
        for name in ("friendships", "users", "items"):
            if name in tables:
                tables[name].drop(columns=["__row__"]).to_parquet(src / f"{name}.parquet")
        build(Path(tmp) / "work", data=src)
        graph = load_graph(Path(tmp) / "work")
    ei = graph.edge(BUYS)
    n_u, n_i = graph.num_users, len(graph.item_ids)
    seen = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n_u, n_i))
    users = graph.user_index(held["user_id"].to_numpy())
    truth = graph.item_index(held["item_id"].to_numpy())
    ok = (users >= 0) & (truth >= 0)
    users, truth = users[ok], truth[ok]
    print(f"{dataset}: {n_u} users, {n_i} items, {ei.shape[1]} training user-item pairs; {len(users)} users "
          f"evaluated (held-out item: {'last by time' if key == 't' else 'random, no timestamps'})")
    results = []
    for label, cfg in (("lightgcn", LightGCNConfig()), ("lightgcn-nosocial", LightGCNConfig(social_weight=0.0))):
        t0 = time.perf_counter()
        model = fit_lightgcn(graph, cfg, seed=0)
        fit_s = time.perf_counter() - t0
        res = evaluate(label, lambda u, m=model: m.users[u] @ m.items.T, users, truth, seen)
        res["fit_seconds"] = fit_s
        results.append(res)
    popularity = np.asarray(seen.sum(axis=0)).ravel()
    results.append(evaluate("most-popular", lambda u: np.tile(popularity, (len(u), 1)), users, truth, seen))
    t0 = time.perf_counter()
    norms = np.sqrt(popularity)
    norms[norms == 0] = 1
    xn = seen @ sp.diags(1.0 / norms)
    sim = (xn.T @ xn).tocsr()
    sim.setdiag(0)
    fit_s = time.perf_counter() - t0
    res = evaluate("item-knn", lambda u: (seen[u] @ sim).toarray(), users, truth, seen)
    res["fit_seconds"] = fit_s
    results.append(res)
    for r in results:
        r["dataset"] = dataset
        print(f"  {r['method']:<18} recall@{K} {r[f'recall@{K}']:.4f}  ndcg@{K} {r[f'ndcg@{K}']:.4f}  "
              f"(fit {r.get('fit_seconds', 0):.1f}s, score {r['seconds']:.1f}s)")
    return results


def main() -> None:
    runs = [("sample", ROOT / "datasets" / "sample", "generic")]
    if (SHARED / "hetrec_lastfm_2k").is_dir():
        runs.append(("hetrec_lastfm_2k", SHARED / "hetrec_lastfm_2k", "hetrec-lastfm"))
    else:
        print(f"skipping HetRec Last.fm: {SHARED / 'hetrec_lastfm_2k'} not found")
    results = [r for name, path, fmt in runs for r in run(name, path, fmt)]
    lines = ["", "## Recommendations from the embeddings (leave-one-out)", "",
             f"Command: `python benchmarks/recommend.py`. Machine: {machine()}. One held-out item per user with 2+ items (last by time on the sample; random, seed 0, on "
             "HetRec, which has no listening times); items bought in training are excluded from the ranking.", "",
             f"| dataset | method | recall@{K} | NDCG@{K} | fit s |", "|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['dataset']} | {r['method']} | {r[f'recall@{K}']:.4f} | {r[f'ndcg@{K}']:.4f} | "
                     f"{r.get('fit_seconds', 0):.1f} |")
    out = ROOT / "benchmarks" / "RESULTS.md"
    with open(out, "a", encoding="utf-8") as fh:
        if fh.tell() == 0:
            fh.write("# Benchmark results\n")
        fh.write("\n".join(lines) + "\n")
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
