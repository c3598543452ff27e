"""The ``feather`` adapter: a SNAP FEATHER / MUSAE folder (``*_features.json``, ``*_edges.csv``,
``*_target.csv``) -> purchases, friendships and users (see :mod:`graphprof.ingest.adapters`)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from graphprof.errors import InputError
from graphprof.ingest.adapters.common import _TEXT, AdapterResult, _listing
from graphprof.ingest.io import ROW, RawTable, read_table

_FEATHER_LAYOUT = "SNAP FEATHER: *_features.json, *_edges.csv, *_target.csv"


def _by_suffix(data_dir: Path, suffix: str) -> Path | None:
    found = sorted(p for p in data_dir.iterdir() if p.is_file() and p.name.endswith(suffix))
    if len(found) > 1:
        raise InputError(f"{data_dir}: --format feather needs one *{suffix} file. Got {len(found)}: "
                         + ", ".join(p.name for p in found), path=str(data_dir))
    return found[0] if found else None


def _read_feather(data_dir: Path) -> AdapterResult:
    features = _by_suffix(data_dir, "_features.json")
    if features is None:
        raise InputError(f"{data_dir}: --format feather needs a *_features.json file ({_FEATHER_LAYOUT}). "
                         f"Got: {_listing(data_dir)}", path=str(data_dir))
    edges, target = _by_suffix(data_dir, "_edges.csv"), _by_suffix(data_dir, "_target.csv")
    notes: list[str] = []
    tables: dict[str, RawTable] = {}
    keys, lens, purchases = _feather_likes(features, notes)
    tables["purchases"] = RawTable("purchases", features, purchases)
    sources = [features]
    if edges is not None:
        raw = read_table(edges, "friendships")
        cols = [c for c in raw.df.columns if c != ROW]
        if len(cols) < 2:
            raise InputError(f"{edges}: must have two node id columns (like node_1,node_2). Got: "
                             f"{', '.join(cols) or 'no columns'}", path=str(edges), row=1)
        raw.df = raw.df.rename(columns=_renames(edges, cols, {cols[0]: "user_id", cols[1]: "friend_id"}))
        tables["friendships"] = raw
        sources.append(edges)
        notes.append(f"{edges.name}: columns {cols[0]}, {cols[1]} -> friendships user_id, friend_id")
    else:
        notes.append(f"{data_dir}: no *_edges.csv, so no friendships")
    if target is not None:
        raw = read_table(target, "users")
        cols = [c for c in raw.df.columns if c != ROW]
        # MUSAE Twitch: 'new_id' is the node id and 'id' the platform's own id
        id_col = next((c for c in ("new_id", "id") if c in cols), cols[0])
        raw.df = raw.df.rename(columns=_renames(target, cols, {id_col: "user_id"}))
        tables["users"] = raw
        sources.append(target)
        labels = [c for c in cols if c != id_col]
        notes.append(f"{target.name}: id column '{id_col}' -> user_id; label columns kept: "
                     f"{', '.join(labels) or 'none'}")
    else:
        # without a target file, the JSON keys still make every node a user (empty like lists included)
        tables["users"] = RawTable("users", features, pd.DataFrame({
            "user_id": pd.array(keys, dtype=_TEXT), ROW: np.arange(1, len(keys) + 1, dtype=np.int64)}))
        notes.append(f"{data_dir}: no *_target.csv; users are the {len(keys)} keys of {features.name}, no labels")
    empty = set(np.asarray(keys, dtype=object)[lens == 0].tolist())
    known = set().union(*(t.df[c].tolist() for t in tables.values() if t.name != "purchases"
                          for c in ("user_id", "friend_id") if c in t.df))
    lost = len(empty - known)
    notes.append(f"{features.name}: {len(empty)} users liked nothing; they stay users through the other files"
                 + (f", except {lost} found nowhere else (not in the graph)" if lost else ""))
    return AdapterResult(tables=tables, sources=sources, notes=notes)


def _renames(path: Path, cols: list[str], renames: dict[str, str]) -> dict[str, str]:
    """``renames``, unless a column left as it is already bears one of the new names (two columns of one name
    would follow): then a bad file, naming that column."""
    for old, new in renames.items():
        if old != new and new in cols and new not in renames:
            raise InputError(f"{path}: only the node id column '{old}' may become '{new}'. Got a second column "
                             f"named '{new}' (columns: {', '.join(cols)})", path=str(path), row=1, column=new)
    return renames


def _feather_likes(path: Path, notes: list[str]) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """``{"<node>": [feature, ...]}`` -> (keys, list lengths, purchases with user_id, item_id, __row__ = key
    position)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: must be UTF-8 JSON. Got bytes that are not UTF-8 ({exc.reason}) on line "
                         f"{line}", path=str(path), row=line) from None
    last: list = [[]]  # the pairs of the object parsed last: the outermost one

    def pairs_hook(pairs):
        last[0] = pairs
        return dict(pairs)

    try:
        doc = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: must be valid JSON. Got {exc.msg} on line {exc.lineno} column {exc.colno}",
                         path=str(path), row=exc.lineno) from None
    if isinstance(doc, dict) and len(doc) != len(last[0]):  # json keeps the last copy: the first would vanish
        seen: dict[str, int] = {}
        for pos, (key, _) in enumerate(last[0], start=1):
            if key in seen:
                raise InputError(f"{path}: every node id must be a key once. Got key '{key}' twice (keys "
                                 f"{seen[key]} and {pos})", path=str(path), row=pos)
            seen[key] = pos
    if not isinstance(doc, dict):
        raise InputError(f"{path}: must be a JSON object {{node id: [feature ids]}}. Got a "
                         f"{type(doc).__name__} instead", path=str(path))
    keys = list(doc)
    values = list(doc.values())
    bad = [k for k, v in zip(keys, values) if not isinstance(v, list)]
    if bad:
        pos = keys.index(bad[0]) + 1
        raise InputError(f"{path}: every value must be a list of feature ids. Got "
                         f"{type(doc[bad[0]]).__name__} for key '{bad[0]}' (key {pos})", path=str(path), row=pos)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    flat = list(itertools.chain.from_iterable(values))
    try:
        arr = np.array(flat) if flat else np.array([], dtype=np.int64)
    except ValueError:  # nested lists: kept as text, so validation shows them
        arr = np.array(flat, dtype=object)
    # arrow's int -> text cast and take, far faster than numpy's astype(str) on many ids
    if arr.dtype.kind in "iuU":
        items = pd.array(pa.array(arr).cast(pa.large_string()), dtype=_TEXT)
    else:  # floats, null, mixed: None -> NA (rejected as an empty id), anything else as text
        items = pd.Series(flat, dtype=object).astype(_TEXT).array
    pos = np.repeat(np.arange(len(keys), dtype=np.int64), lens)
    users = pa.array(keys, pa.large_string()).take(pa.array(pos))
    df = pd.DataFrame({"user_id": pd.array(users, dtype=_TEXT), "item_id": items, ROW: pos + 1})
    dup = pd.DataFrame({"p": pos, "i": arr if arr.dtype.kind in "iu" else items}).duplicated().to_numpy()
    if dup.any():
        df = df[~dup].reset_index(drop=True)
        notes.append(f"{path.name}: dropped {int(dup.sum())} repeated ids within a like list (a like is a set)")
    notes.append(f"{path.name}: {len(flat)} likes of {len(keys)} users -> purchases, one row per (user, item); "
                 f"source_row = the user's 1-based position among the JSON keys")
    return keys, lens, df
