"""Purchases reduced to one edge per (user, item): sorted runs, reduced over the cores.

``build_graph`` and ``predict`` (:mod:`graphprof.prediction.extend`) both call :func:`aggregate_pairs`. The rows are sorted
once by (pair, row); the sorted rows are then cut into as many parts as there are workers, each cut at the start
of a pair's run, and each part's runs are put in canonical order and reduced in its own thread (numpy's sorts,
gathers and ``reduceat`` release the GIL). A pair's numbers do not depend on the cut: each run is reduced whole.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: rows below which the reduction runs in one part (threads cost more than they save)
PARALLEL_MIN_ROWS = 1 << 20


def aggregate_pairs(u, i, n_items: int, columns: dict[str, np.ndarray], reducers: dict[str, str],
                    workers: int | None = None):
    """One row per (user, item): ``columns`` reduced (``sum``, ``max`` or ``count``: rows) over the purchases of the pair.

    The rows are put in a canonical order first (pair, then the values), so float sums do not depend on the
    order of the input rows; then each run of a pair is reduced with ``np.add.reduceat`` (sequential, hence
    deterministic). Returns ``(u, i, values)`` with pairs sorted by (u, i) and ``values`` one float64 array
    ``[pairs, len(reducers)]``, a column per reducer in ``reducers``' order (written in place: a stack of
    separate columns would be a second copy of every value). ``workers``: parts reduced at once (default: the
    CPUs, at most 4; one below ``PARALLEL_MIN_ROWS`` rows); the result is the same for any number.
    """
    key = u * np.int64(n_items) + i
    n = len(key)
    packed = None
    if n and int(key.max()) < np.iinfo(np.int64).max // n:
        # (pair, row) packed into one int64 and sorted by value: the stable order, cheaper than an indirect argsort
        packed = key * np.int64(n) + np.arange(n, dtype=np.int64)
        packed.sort()
        del key

        def sorted_part(lo: int, hi: int):
            return np.divmod(packed[lo:hi], n)

        def run_end(p: int) -> int:  # the first sorted row after the run that row p - 1 is in
            return int(np.searchsorted(packed, (packed[p - 1] // n + 1) * n))
    else:
        order = np.argsort(key, kind="stable")
        key = key[order]

        def sorted_part(lo: int, hi: int):
            return key[lo:hi], order[lo:hi]

        def run_end(p: int) -> int:
            return int(np.searchsorted(key, key[p - 1], side="right"))

    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if n >= PARALLEL_MIN_ROWS else 1
    cuts = [0]
    for k in range(1, max(workers, 1)):
        target = n * k // workers
        if target > cuts[-1]:
            cuts.append(run_end(target) if target < n else n)
    cuts.append(n)
    spans = [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo] or [(0, 0)]
    plan = _plan(columns, reducers)
    with ThreadPoolExecutor(max_workers=len(spans)) as pool:
        parts = list(pool.map(lambda span: _runs(*sorted_part(*span), columns), spans))
        packed = key = None  # the parts hold what is needed: the sorted keys go before the output is allocated
        pairs = sum(len(starts) for _, _, starts, _ in parts)
        values = np.empty((pairs, len(reducers)), dtype=np.float64)
        pair = np.empty(pairs, dtype=np.int64)
        offsets = np.cumsum([0] + [len(starts) for _, _, starts, _ in parts])
        list(pool.map(lambda k: _reduce(*parts[k], plan, values[offsets[k]:offsets[k + 1]],
                                        pair[offsets[k]:offsets[k + 1]]), range(len(parts))))
    return pair // n_items, pair % n_items, values


def _runs(key: np.ndarray, order: np.ndarray, columns: dict[str, np.ndarray]):
    """A part of the sorted rows: its runs' starts and lengths, its rows of pairs bought more than once put in
    the canonical (value) order."""
    new_run = np.r_[True, key[1:] != key[:-1]] if len(key) else np.array([], bool)
    starts = np.flatnonzero(new_run)
    # only rows of pairs bought more than once need the canonical (value) order: sort just those, in place
    run_len = np.diff(np.r_[starts, len(key)])
    multi = np.repeat(run_len > 1, run_len)
    if multi.any():
        pos = np.flatnonzero(multi)
        rows = order[pos]
        order[pos] = rows[np.lexsort(tuple(columns[c][rows] for c in sorted(columns)) + (key[pos],))]
    return key, order, starts, run_len


def _plan(columns: dict[str, np.ndarray], reducers: dict[str, str]) -> list[tuple]:
    """How each output column is made, decided once for every part: ``("count",)`` the run lengths;
    ``("copy", j)`` a column equal to one already reduced the same way (quantity and priced_quantity where every
    purchase has a price); ``("const", how, value)`` one constant value (weight 1): no gather over the rows;
    ``(how, column)`` otherwise."""
    plan: list[tuple] = []
    done: list[tuple[np.ndarray, str, int]] = []
    for j, (name, how) in enumerate(reducers.items()):
        if how == "count":
            plan.append(("count",))
            continue
        col = columns[name]
        same = next((k for c, h, k in done if h == how and np.array_equal(c, col)), None)
        if same is not None:
            plan.append(("copy", same))
            continue
        done.append((col, how, j))
        if len(col) and not np.isnan(col[0]) and (col == col[0]).all():
            plan.append(("const", how, col[0]))
        else:
            plan.append((how, col))
    return plan


def _reduce(key, order, starts, run_len, plan: list[tuple], values: np.ndarray, pair: np.ndarray) -> None:
    """A part's runs reduced into its rows of ``values`` (and its pairs into ``pair``)."""
    pair[:] = key[starts]
    for j, step in enumerate(plan):
        out = values[:, j]
        if step[0] == "count":  # rows per pair: the run lengths, no values to gather
            out[:] = run_len
        elif step[0] == "copy":
            out[:] = values[:, step[1]]
        elif step[0] == "const":
            if step[1] == "sum":
                np.multiply(run_len, step[2], out=out)
            else:
                out[:] = step[2]
        elif not len(starts):
            continue
        else:
            v = step[1][order]
            if step[0] == "sum":
                np.add.reduceat(v, starts, out=out)
            else:  # max, NaN where every value of the pair is NaN (unknown time)
                np.copyto(v, -np.inf, where=np.isnan(v))
                m = np.maximum.reduceat(v, starts)
                m[np.isneginf(m)] = np.nan
                out[:] = m
