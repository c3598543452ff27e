"""A seeded generator of shop-like tables in the generic schema, with planted structure.

How the data is planted (see ``datasets/README.md``):

* **Communities.** Every user belongs to one of ``n_communities`` hidden communities (sizes vary).
* **Friendships.** Each user starts Poisson(``friends_per_user`` / 2) ties; a tie stays inside the community
  with probability ``homophily``, otherwise it goes to a random user. Self ties and repeats are dropped.
* **Attributes.** ``gender`` leans strongly per community (P(f) is 0.15 or 0.85); ``age_band`` has one dominant
  band per community (probability ``age_dominance``); ``spend_level`` is a per-user trait that drives how many
  units a user buys per purchase: it shows in the user's *own* purchases, not in their friends'.
* **Tastes.** Each community has a Dirichlet taste over categories and a log-normal boost over items; gender
  tilts the choice of "gendered" items a little. Each user makes only a few purchases (1 + Poisson), so one
  user's own history says little about their community, while their friends' histories say a lot: the
  situation of real shops with sparse histories, where the graph adds what the user's own rows lack.
* **Labels.** Each attribute is observed for a random ``label_rate`` share of users (empty cell = unknown).

Vectorised numpy throughout, so the same code writes millions of rows for the benchmarks.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import numpy as np
import pandas as pd

#: file formats and timestamp formats ``write_tables`` and ``generate`` offer
FILE_FORMATS = ("csv", "parquet")
TIME_FORMATS = ("iso", "epoch")
CATEGORIES = ["books", "electronics", "fashion", "beauty", "sports", "toys", "grocery", "home", "garden",
              "music", "games", "pets", "auto", "health", "office", "baby"]
AGE_BANDS = ["18-24", "25-34", "35-49", "50+"]
SPEND_LEVELS = ["low", "mid", "high"]
START = 1735689600  # 2025-01-01T00:00:00Z
YEAR = 365 * 86400


def generate(n_users: int = 3000, *, n_items: int | None = None, n_communities: int = 8,
             n_categories: int = 12, purchases_per_user: float = 3.0, friends_per_user: float = 8.0,
             homophily: float = 0.85, age_dominance: float = 0.7, label_rate: float = 0.4,
             time_format: str = "iso", bad_rows: int = 0, seed: int = 0,
             return_truth: bool = False) -> dict[str, pd.DataFrame] | tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Generate ``purchases``, ``friendships``, ``users`` and ``items`` tables in the generic schema.

    Args:
        bad_rows: how many deliberately bad rows to mix in (negative quantity, bad timestamp, missing id,
            self tie, repeated tie, duplicate user...), to show the rejects at work.
        time_format: ``"iso"`` (ISO-8601 text) or ``"epoch"`` (integer seconds, faster at scale).
        return_truth: also return the planted community of every user, ``{user_id: community}`` (for
            evaluating community detection). It is never written to any file, and asking for it changes
            nothing else: the tables are the same with or without it.

    Returns:
        the tables by name; with ``return_truth``, the pair ``(tables, truth)``.
    """
    codes = _generate_codes(n_users, n_items, n_communities, n_categories, purchases_per_user, friends_per_user,
                            homophily, age_dominance, label_rate, time_format, seed)
    tables = {name: codes.frame(name) for name in TABLES}
    if bad_rows:
        _add_bad_rows(tables, bad_rows, codes.rng)
    if return_truth:  # drawn from no random stream, so the tables stay identical
        return tables, dict(zip(codes.user_ids.tolist(), codes.community.tolist()))
    return tables


TABLES = ("purchases", "friendships", "users", "items")


class _Codes:
    """A generated shop with its id columns still as integer codes (``user`` / ``item`` / ``a`` / ``b`` index
    ``user_ids`` / ``item_ids``): tens of millions of rows fit, and their id text is made a slice at a time."""

    def __init__(self, rng, user_ids, item_ids, community, purchases: dict, ties: np.ndarray, users: dict,
                 items: dict, time_format: str):
        self.time_format = time_format
        self.rng, self.user_ids, self.item_ids, self.community = rng, user_ids, item_ids, community
        self.purchases, self.ties, self.users, self.items = purchases, ties, users, items

    def rows(self, name: str) -> int:
        return len({"purchases": self.purchases["user"], "friendships": self.ties, "users": self.user_ids,
                    "items": self.item_ids}[name])

    def frame(self, name: str, lo: int = 0, hi: int | None = None) -> pd.DataFrame:
        """Rows ``lo:hi`` of table ``name`` in the generic schema."""
        s = slice(lo, hi)
        if name == "purchases":
            p = self.purchases
            return pd.DataFrame({"user_id": self.user_ids[p["user"][s]], "item_id": self.item_ids[p["item"][s]],
                                 "timestamp": _format_time(p["timestamp"][s], self.time_format),
                                 "quantity": p["quantity"][s],
                                 "price": p["price"][s]})
        if name == "friendships":
            return pd.DataFrame({"user_id": self.user_ids[self.ties[s, 0]],
                                 "friend_id": self.user_ids[self.ties[s, 1]]})
        if name == "users":
            return pd.DataFrame({"user_id": self.user_ids[s], **{k: v[s] for k, v in self.users.items()}})
        return pd.DataFrame({"item_id": self.item_ids[s], **{k: v[s] for k, v in self.items.items()}})


def _generate_codes(n_users: int, n_items: int | None, n_communities: int, n_categories: int,
                    purchases_per_user: float, friends_per_user: float, homophily: float, age_dominance: float,
                    label_rate: float, time_format: str, seed: int) -> _Codes:
    rng = np.random.default_rng(seed)
    n_items = n_items or max(50, n_users // 5)
    n_categories = min(n_categories, len(CATEGORIES))
    k = n_communities
    # the helpers draw from ``rng`` in this order, which fixes the tables a seed gives
    community, female, age, spend = _plant_users(rng, n_users, k, age_dominance)
    user_ids = np.char.add("C", np.char.zfill(np.arange(n_users).astype(str), len(str(n_users)) + 1))
    item_cat, item_price, popularity, lean = _plant_items(rng, n_items, n_categories)
    item_ids = np.char.add("SKU-", np.char.zfill(np.arange(n_items).astype(str), len(str(n_items)) + 1))
    purchases = _purchases(rng, k, n_categories, community, female, spend, item_cat, item_price, popularity,
                           lean, purchases_per_user)
    ties = _friendships(rng, community, k, friends_per_user, homophily)
    users = _users_columns(rng, n_users, female, age, spend, label_rate)
    items = {"category": np.array(CATEGORIES)[item_cat], "price": item_price}
    _format_time(np.zeros(0, dtype=np.int64), time_format)  # an unknown format fails before any row is made
    return _Codes(rng, user_ids, item_ids, community, purchases, ties, users, items, time_format)


def _plant_users(rng: np.random.Generator, n_users: int, k: int,
                 age_dominance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's community, gender (True = female), age band and spend level, as indices."""
    community = rng.choice(k, size=n_users, p=rng.dirichlet(np.full(k, 5.0)))
    p_female = np.where(np.arange(k) % 2 == 0, 0.85, 0.15)
    female = rng.random(n_users) < p_female[community]
    dominant = rng.permutation(np.arange(k) % len(AGE_BANDS))
    age = np.where(rng.random(n_users) < age_dominance, dominant[community],
                   rng.integers(0, len(AGE_BANDS), n_users))
    spend = rng.choice(len(SPEND_LEVELS), size=n_users, p=[0.45, 0.35, 0.2])
    return community, female, age, spend


def _plant_items(rng: np.random.Generator, n_items: int,
                 n_categories: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each item's category, price, popularity and gender lean."""
    item_cat = rng.integers(0, n_categories, n_items)
    cat_price = rng.lognormal(3.0, 0.6, n_categories)
    item_price = np.round(cat_price[item_cat] * rng.lognormal(0, 0.4, n_items), 2)
    popularity = rng.pareto(1.5, n_items) + 1
    lean = rng.choice([-1.0, 0.0, 1.0], size=n_items, p=[0.25, 0.5, 0.25])
    return item_cat, item_price, popularity, lean


def _purchases(rng: np.random.Generator, k: int, n_categories: int, community: np.ndarray, female: np.ndarray,
               spend: np.ndarray, item_cat: np.ndarray, item_price: np.ndarray, popularity: np.ndarray,
               lean: np.ndarray, purchases_per_user: float) -> dict[str, np.ndarray]:
    """Few purchases per user, items drawn from their community's taste (``k`` communities, ``n_categories``
    categories), rows in random order."""
    n_users, n_items = len(community), len(item_cat)
    n_buy = 1 + rng.poisson(max(purchases_per_user - 1, 0), n_users)
    buyer = np.repeat(np.arange(n_users), n_buy)
    taste = rng.dirichlet(np.full(n_categories, 0.3), size=k)            # [k, n_categories]
    boost = rng.lognormal(0.0, 1.0, size=(k, n_items))                   # [k, n_items]
    item = np.empty(len(buyer), dtype=np.int64)
    for c in range(k):
        for g in (False, True):
            rows = np.flatnonzero((community[buyer] == c) & (female[buyer] == g))
            if len(rows) == 0:
                continue
            w = popularity * boost[c] * taste[c, item_cat] * np.exp(0.7 * lean * (1 if g else -1))
            item[rows] = rng.choice(n_items, size=len(rows), p=w / w.sum())
    quantity = 1 + rng.poisson(np.array([0.1, 0.8, 2.5])[spend[buyer]])
    price = np.round(item_price[item] * rng.uniform(0.85, 1.0, len(item)), 2)
    ts = START + rng.integers(0, YEAR, len(item))
    order = rng.permutation(len(item))
    return {"user": buyer[order], "item": item[order], "timestamp": ts[order],
            "quantity": quantity[order], "price": price[order]}


def _friendships(rng: np.random.Generator, community: np.ndarray, k: int, friends_per_user: float,
                 homophily: float) -> np.ndarray:
    """Homophilous ties ``[n, 2]`` (user codes) in random order and direction, no self ties, no repeats."""
    n_users = len(community)
    n_start = rng.poisson(friends_per_user / 2, n_users)
    a = np.repeat(np.arange(n_users), n_start)
    order = np.argsort(community, kind="stable")
    sizes = np.bincount(community, minlength=k)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    same = order[offsets[community[a]] + (rng.random(len(a)) * sizes[community[a]]).astype(np.int64)]
    b = np.where(rng.random(len(a)) < homophily, same, rng.integers(0, n_users, len(a)))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(np.stack([lo[lo != hi], hi[lo != hi]], axis=1), axis=0)
    flip = rng.random(len(pairs)) < 0.5
    pairs[flip] = pairs[flip][:, ::-1]
    return pairs[rng.permutation(len(pairs))]


def _users_columns(rng: np.random.Generator, n_users: int, female: np.ndarray, age: np.ndarray,
                   spend: np.ndarray, label_rate: float) -> dict[str, np.ndarray]:
    """The users table's attributes: each observed for a random ``label_rate`` share of users (None elsewhere)."""

    def observed(values: np.ndarray) -> np.ndarray:
        out = values.astype(object)
        out[rng.random(n_users) >= label_rate] = None
        return out

    return {"gender": observed(np.where(female, "f", "m")),
            "age_band": observed(np.array(AGE_BANDS)[age]),
            "spend_level": observed(np.array(SPEND_LEVELS)[spend])}


def _format_time(ts: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "epoch":
        return ts
    if fmt == "iso":
        return np.datetime_as_string(ts.astype("datetime64[s]"), unit="s").astype(object) + "Z"
    raise ValueError(f"time_format must be 'iso' or 'epoch'. Got {fmt!r} instead")


def _add_bad_rows(tables: dict[str, pd.DataFrame], n: int, rng: np.random.Generator) -> None:
    """Mix in rows that validation must reject, each of a known kind, at random places."""
    p, f, u = tables["purchases"], tables["friendships"], tables["users"]
    ok_p, ok_f = p.iloc[0], f.iloc[0]
    kinds = [
        ("purchases", {**ok_p, "quantity": -2}),
        ("purchases", {**ok_p, "timestamp": "yesterday"}),
        ("purchases", {**ok_p, "user_id": None}),
        ("purchases", {**ok_p, "price": -5.0}),
        ("friendships", {"user_id": ok_f["user_id"], "friend_id": ok_f["user_id"]}),
        ("friendships", {"user_id": ok_f["friend_id"], "friend_id": ok_f["user_id"]}),
        ("friendships", {"user_id": ok_f["user_id"], "friend_id": None}),
        ("users", {**u.iloc[1].to_dict()}),
    ]
    for j in range(n):
        name, row = kinds[j % len(kinds)]
        df = tables[name]
        at = int(rng.integers(1, len(df)))
        tables[name] = pd.concat([df.iloc[:at], pd.DataFrame([row]), df.iloc[at:]], ignore_index=True)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write tables as ``<name>.csv`` or ``<name>.parquet`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in tables.items():
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        elif fmt == "parquet":
            df.to_parquet(path, index=False)
        else:
            raise ValueError(f"fmt must be 'csv' or 'parquet'. Got {fmt!r} instead")
        paths[name] = path
    return paths


def write_generated(out_dir: str | Path, fmt: str = "csv", chunk_rows: int = 2_000_000,
                    **kwargs) -> dict[str, tuple[Path, int]]:
    """``generate(**kwargs)`` written as ``<name>.<fmt>`` into ``out_dir``, ``chunk_rows`` rows at a time: the
    same files as ``write_tables(generate(...))``, with only a slice of the id text in memory at once (a shop of
    ten million users and a hundred million purchases is written in a few GiB). Returns each table's path and
    rows."""
    if fmt not in FILE_FORMATS:
        raise ValueError(f"fmt must be 'csv' or 'parquet'. Got {fmt!r} instead")
    if kwargs.get("bad_rows") or kwargs.get("return_truth"):  # small shops: the whole tables at once
        tables = generate(**kwargs)
        return {n: (p, len(tables[n])) for n, p in write_tables(tables, out_dir, fmt).items()}
    import pyarrow as pa
    import pyarrow.parquet as pq

    defaults = {k: v.default for k, v in inspect.signature(generate).parameters.items()
                if v.default is not inspect.Parameter.empty}
    a = {**defaults, **kwargs}
    codes = _generate_codes(a["n_users"], a["n_items"], a["n_communities"], a["n_categories"],
                            a["purchases_per_user"], a["friends_per_user"], a["homophily"], a["age_dominance"],
                            a["label_rate"], a["time_format"], a["seed"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in TABLES:
        path, n = out_dir / f"{name}.{fmt}", codes.rows(name)
        writer, schema = None, None
        try:
            for lo in range(0, max(n, 1), chunk_rows):
                df = codes.frame(name, lo, min(n, lo + chunk_rows))
                if fmt == "csv":
                    df.to_csv(path, index=False, header=lo == 0, mode="w" if lo == 0 else "a")
                    continue
                table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(path, schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        out[name] = (path, n)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a generated shop in the generic schema.")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ap.add_argument("--purchases-per-user", type=float, default=3.0)
    ap.add_argument("--friends-per-user", type=float, default=8.0)
    ap.add_argument("--bad-rows", type=int, default=0)
    ap.add_argument("--time-format", choices=["iso", "epoch"], default="iso")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    tables = generate(a.users, purchases_per_user=a.purchases_per_user, friends_per_user=a.friends_per_user,
                      bad_rows=a.bad_rows, time_format=a.time_format, seed=a.seed)
    for name, path in write_tables(tables, a.out, a.format).items():
        print(f"{path}: {len(tables[name])} rows")


if __name__ == "__main__":
    main()
