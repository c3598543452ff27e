"""The purchase reduction (graphprof.aggregate): each pair's numbers, whatever the parts and the row order."""

from __future__ import annotations

import numpy as np
import pytest

from graphprof.graph import BUY_REDUCERS
from graphprof.graph.aggregate import aggregate_pairs

N_ITEMS = 13


def _purchases(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, max(n // 6, 1), n), rng.integers(0, N_ITEMS, n)
    qty = rng.integers(1, 4, n).astype(np.float64)
    price = np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 10)
    last = np.where(rng.random(n) < 0.3, np.nan, rng.random(n) * 1e9)
    return u, i, {"quantity": qty, "spend": np.nan_to_num(qty * price), "last_time": last,
                  "weight": np.ones(n), "priced_quantity": np.where(np.isnan(price), 0.0, qty)}


def _reference(u, i, columns) -> dict[tuple[int, int], list[float]]:
    """Pair by pair: the rows in canonical order (the values, by column name), then reduced."""
    out = {}
    for pair in sorted(set(zip(u.tolist(), i.tolist()))):
        rows = np.flatnonzero((u == pair[0]) & (i == pair[1]))
        rows = rows[np.lexsort(tuple(columns[c][rows] for c in sorted(columns)))]
        vals = []
        for name, how in BUY_REDUCERS.items():
            if how == "count":
                vals.append(float(len(rows)))
            elif how == "sum":
                vals.append(float(np.add.reduceat(columns[name][rows], [0])[0]))  # sequential, as reduceat sums
            else:
                v = columns[name][rows]
                vals.append(float(np.nanmax(v)) if np.isfinite(v).any() else np.nan)
        out[pair] = vals
    return out


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_each_pair_is_reduced_as_by_hand(workers):
    u, i, cols = _purchases(600)
    bu, bi, values = aggregate_pairs(u, i, N_ITEMS, cols, BUY_REDUCERS, workers=workers)
    ref = _reference(u, i, cols)
    assert list(zip(bu.tolist(), bi.tolist())) == list(ref)  # sorted by (user, item), one row per pair
    np.testing.assert_array_equal(values, np.array(list(ref.values())))


def test_parts_and_row_order_do_not_change_a_bit():
    u, i, cols = _purchases(5000, seed=1)
    one = aggregate_pairs(u, i, N_ITEMS, cols, BUY_REDUCERS, workers=1)
    perm = np.random.default_rng(2).permutation(len(u))
    for workers in (2, 3, 7):
        for args in ((u, i, cols), (u[perm], i[perm], {k: v[perm] for k, v in cols.items()})):
            other = aggregate_pairs(*args[:2], N_ITEMS, args[2], BUY_REDUCERS, workers=workers)
            for a, b in zip(one, other):
                assert a.tobytes() == b.tobytes()


def test_one_long_run_and_the_unpacked_path():
    """A pair bought by most rows (the cuts cannot split it), and item counts too large to pack (row, pair)."""
    u, i, cols = _purchases(400, seed=3)
    u[:300], i[:300] = 5, 7
    ref = aggregate_pairs(u, i, N_ITEMS, cols, BUY_REDUCERS, workers=1)
    for workers in (2, 4):
        got = aggregate_pairs(u, i, N_ITEMS, cols, BUY_REDUCERS, workers=workers)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(ref, got))
    huge = 2**40  # u * n_items * n rows overflows int64: the argsort route
    bu, bi, values = aggregate_pairs(u, i, huge, cols, BUY_REDUCERS, workers=3)
    assert (bu == ref[0]).all() and (bi == ref[1]).all() and values.tobytes() == ref[2].tobytes()


def test_no_purchases():
    u = i = np.zeros(0, np.int64)
    cols = {k: np.zeros(0) for k in BUY_REDUCERS}
    bu, bi, values = aggregate_pairs(u, i, N_ITEMS, cols, BUY_REDUCERS, workers=2)
    assert len(bu) == len(bi) == 0 and values.shape == (0, len(BUY_REDUCERS))
