"""Table schemas and row rules: raw tables -> validated tables + rejects.

A bad row is not an exception: it goes to the rejects with its source row, the column at fault, the value and a
reason phrased ``<column> must <rule>. Got '<value>' instead.``. A bad *file* (a required column missing)
raises :class:`~graphprof.errors.InputError`. Everything here is vectorised: no Python loop over rows.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from graphprof.errors import InputError
from graphprof.ingest.io import ROW, RawTable

REQUIRED = {
    "purchases": ("user_id", "item_id"),
    "friendships": ("user_id", "friend_id"),
    "users": ("user_id",),
    "items": ("item_id",),
}
OPTIONAL = {
    "purchases": ("timestamp", "quantity", "price", "rating"),
    "friendships": ("weight", "since"),
    "users": (),
    "items": ("category", "price"),
}
REJECT_COLUMNS = ["source_file", "source_row", "column", "value", "reason"]
UNKNOWN_CATEGORY = "unknown"
# Epoch seconds accepted for timestamps: 1970-01-01 .. 2100-01-01.
TIME_MIN, TIME_MAX = 0.0, 4102444800.0
#: epoch units a numeric timestamp column may be in, with their number per second (a clock in seconds reads
#: 1.7e9 today, in milliseconds 1.7e12)
TIME_UNITS = (("seconds", 1.0), ("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))
#: the dates a shop's purchase plausibly has, 1990 .. 2100, which :func:`time_unit` judges a unit by
PLAUSIBLE_TIME = (631152000.0, TIME_MAX)
_UNIT_SAMPLE = 1_000_000  # numbers of a column that judge its unit, evenly spaced
MAX_QUANTITY = 1e9  # beyond this a quantity is a typo, and beyond 2**63 it cannot even be stored
_PII = re.compile(r"e[-_]?mail|phone|mobile|address|street|name|ssn|passport|(^|[_\W])ip($|[_\W])|ip_?addr",
                  re.IGNORECASE)


def is_pii_column(name: str) -> bool:
    """True for column names that look like personal data (email, phone, name, address, ip, ...)."""
    return bool(_PII.search(name))


@dataclass
class ValidatedTables:
    """The four tables after validation, with what was rejected.

    Columns (kept tables):
        purchases: user_id (str), item_id (str), timestamp (float, epoch s, NaN = unknown), quantity (int >= 1),
            price (float, NaN = unknown), weight (float), __row__ (int)
        friendships: user_id, friend_id (str), weight (float), __row__
        users: user_id (str), one str column per attribute (NA = unknown), __row__
        items: item_id (str), category (str, if given), price (float, if given), __row__
    """

    tables: dict[str, pd.DataFrame]
    rejects: dict[str, pd.DataFrame]
    accounting: dict[str, dict]
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)
    #: the friendship ids as factorized for the duplicate check, reused by ``build_graph`` rather than hashing
    #: the 2 x ties strings again: ``(uniques, user_id codes, friend_id codes)``, codes aligned with the kept rows
    friend_codes: tuple[pd.Series, np.ndarray, np.ndarray] | None = None

    def summary_lines(self) -> list[str]:
        lines = []
        for name, acc in self.accounting.items():
            lines.append(f"{name}: read {acc['read']} = kept {acc['kept']} + rejected {acc['rejected']}"
                         f"  ({acc['source']})")
        return lines


class _Checker:
    """Collects rejects for one table; each row is rejected for its first failing rule only."""

    def __init__(self, raw: RawTable):
        self.raw = raw
        self.df = raw.df
        self.bad = np.zeros(len(raw.df), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def reject(self, mask, column: str, rule: str, values: pd.Series | None = None) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        if not mask.any():
            return
        vals = (values if values is not None else self.df[column])[mask]
        text = vals.astype("object").where(vals.notna(), "").astype(str)
        self.parts.append(pd.DataFrame({
            "source_file": str(self.raw.path),
            "source_row": self.df[ROW].to_numpy()[mask],
            "column": column,
            "value": text.to_numpy(),
            "reason": (f"{column} must {rule}. Got '" + text + "' instead.").to_numpy(),
        }))
        self.bad |= mask

    def require_columns(self) -> None:
        name = self.raw.name
        present = [c for c in self.df.columns if c != ROW]
        missing = [c for c in REQUIRED[name] if c not in present]
        if missing:
            raise InputError(f"{self.raw.path}: required column '{missing[0]}' is missing (found: "
                             f"{', '.join(present) or 'no columns'})", path=str(self.raw.path), row=1,
                             column=missing[0])

    def result(self, kept: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        rejects = (pd.concat(self.parts, ignore_index=True).sort_values("source_row", kind="stable")
                   if self.parts else pd.DataFrame(columns=REJECT_COLUMNS))
        acc = {"read": int(len(self.df)), "kept": int(len(kept)), "rejected": int(len(rejects)),
               "source": str(self.raw.path)}
        if acc["read"] != acc["kept"] + acc["rejected"]:  # an invariant of this module, not a user error
            raise AssertionError(f"row accounting broken for {self.raw.name}: {acc}")
        return kept.reset_index(drop=True), rejects.reset_index(drop=True), acc


def _rows(df: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """``df[keep]``, without copying every column when every row is kept (the usual clean input: the
    copy would duplicate the whole table)."""
    return df if keep.all() else df[keep]


# ----------------------------------------------------------------------------------------- value parsers
def normalize_ids(s: pd.Series) -> pd.Series:
    """Ids as stripped strings; blank -> NA. Integral floats (from Parquet with nulls) lose their '.0'."""
    if pd.api.types.is_float_dtype(s):
        integral = s.notna() & np.isfinite(s) & (s == np.round(s))
        fits = integral & (s.abs() < 2.0**63)
        out = s.astype("object").where(s.notna(), None)
        out[fits] = s[fits].astype(np.int64).astype(str)
        huge = integral & ~fits  # rare: beyond int64, written out in full rather than overflowing
        out[huge] = [np.format_float_positional(v, trim="-") for v in s[huge]]
        s = out
    elif pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        if not pd.api.types.is_bool_dtype(s):  # unsigned: uint64 ids above 2**63 do not fit Int64
            s = s.astype("UInt64" if pd.api.types.is_unsigned_integer_dtype(s) else "Int64")
    s = s.astype("string").str.strip()
    return s.mask(s == "")


def _numbers(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):  # True / False is not a quantity, price or time (to_numeric says 1 / 0)
        return pd.Series(np.nan, index=s.index)
    return pd.to_numeric(s, errors="coerce").astype("float64")


def time_unit(s: pd.Series) -> tuple[str, float]:
    """The epoch unit of a timestamp column's numbers, judged from the column as a whole: the unit of
    :data:`TIME_UNITS` under which most of its numbers are plausible dates (:data:`PLAUSIBLE_TIME`; ties go to
    the smaller unit, seconds first), and how many of it make a second. Seconds where no unit makes any number a
    plausible date (the out-of-range rows are then rejected as such)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return TIME_UNITS[0]
    numbers = _numbers(s.iloc[::max(1, len(s) // _UNIT_SAMPLE)]).to_numpy()  # parse the sample only
    lo, hi = PLAUSIBLE_TIME
    counts = [int(((numbers >= lo * k) & (numbers < hi * k)).sum()) for _, k in TIME_UNITS]
    best = int(np.argmax(counts))  # the first of the largest: seconds on a tie
    return TIME_UNITS[best] if counts[best] > 0 else TIME_UNITS[0]


def parse_timestamps(s: pd.Series, per_second: float = 1.0) -> pd.Series:
    """Epoch numbers in a unit with ``per_second`` of it a second (:func:`time_unit`), or ISO-8601 text (with or
    without zone; naive = UTC) -> float epoch seconds."""
    if pd.api.types.is_datetime64_any_dtype(s):
        ts = pd.to_datetime(s, utc=True)
        out = pd.Series(np.nan, index=s.index)
        ok = ts.notna()
        out[ok] = _epoch_seconds(ts[ok])
        return out
    out = _numbers(s)
    if per_second != 1.0:
        out = out / per_second
    text = s.notna() & out.isna()
    if text.any():
        ts = pd.to_datetime(s[text].astype(str), format="ISO8601", utc=True, errors="coerce")
        ok = ts.notna()
        out.loc[ts.index[ok]] = _epoch_seconds(ts[ok])
    return out


def _epoch_seconds(ts: pd.Series) -> pd.Series:
    """UTC datetimes -> float epoch seconds, in the series' own unit: pandas parses dates in s or us, and the
    nanosecond epoch it would cast to ends in 2262, so year 9999 must not pass through it."""
    return (ts - pd.Timestamp(0, tz="UTC").as_unit(ts.dt.unit)) / pd.Timedelta(seconds=1)


# ---------------------------------------------------------------------------------------------- tables
def _id_columns(c: _Checker, columns: tuple[str, ...]) -> pd.DataFrame:
    """The id ``columns`` normalised, each row with an empty one rejected (in the order given)."""
    out = pd.DataFrame({col: normalize_ids(c.df[col]) for col in columns})
    for col in columns:
        c.reject(out[col].isna(), col, "be a non-empty id")
    return out


def _validate_purchases(raw: RawTable, unit: tuple[str, float] | None = None):
    """``unit``: the timestamp column's epoch unit, where it was judged from more rows than ``raw`` has (a table
    validated a slice at a time); judged from ``raw`` otherwise."""
    c = _Checker(raw)
    c.require_columns()
    df = c.df
    out = _id_columns(c, ("user_id", "item_id"))
    if "timestamp" in df:
        unit = unit or time_unit(df["timestamp"])
        ts = parse_timestamps(df["timestamp"], unit[1])
        given = df["timestamp"].notna()
        c.reject(given & ts.isna(), "timestamp", "be epoch seconds or an ISO-8601 date")
        read_as = "" if unit[1] == 1.0 else f" (read as epoch {unit[0]}, the unit of the column as a whole)"
        c.reject(given & ((ts < TIME_MIN) | (ts >= TIME_MAX)), "timestamp", f"lie between 1970 and 2100{read_as}")
        out["timestamp"] = ts
    else:
        unit = TIME_UNITS[0]
        out["timestamp"] = np.nan
    if "quantity" in df:
        q = _numbers(df["quantity"])
        given = df["quantity"].notna()
        bad = given & ~(np.isfinite(q) & (q >= 1) & (q == np.round(q)))
        c.reject(bad, "quantity", "be an integer >= 1")
        c.reject(given & (q > MAX_QUANTITY), "quantity", f"be at most {MAX_QUANTITY:.0f}")
        out["quantity"] = q.fillna(1.0).where(~c.bad, 1.0).astype(np.int64)
    else:
        out["quantity"] = np.int64(1)
    for col in ("price", "rating"):
        if col in df:
            v = _numbers(df[col])
            given = df[col].notna()
            c.reject(given & ~(np.isfinite(v) & (v >= 0)), col, "be a finite number >= 0")
            out[col] = v
    if "price" not in out:
        out["price"] = np.nan
    # rating-style data: the rating is the edge weight; otherwise every purchase weighs 1
    out["weight"] = out["rating"].fillna(1.0) if "rating" in out else 1.0
    out = out.drop(columns=["rating"], errors="ignore")
    out[ROW] = df[ROW].to_numpy()
    kept, rejects, acc = c.result(_rows(out, ~c.bad))
    if unit[1] != 1.0:  # said in the accounting and by build-graph: the numbers were converted
        acc["timestamp_unit"] = unit[0]
    return kept, rejects, acc


def _validate_friendships(raw: RawTable):
    c = _Checker(raw)
    c.require_columns()
    df = c.df
    out = _id_columns(c, ("user_id", "friend_id"))
    c.reject((out["user_id"] == out["friend_id"]).fillna(False), "friend_id",
             "differ from user_id (self ties are not friendships)")
    if "weight" in df:
        w = _numbers(df["weight"])
        given = df["weight"].notna()
        c.reject(given & ~(np.isfinite(w) & (w > 0)), "weight", "be a finite number > 0")
        out["weight"] = w.fillna(1.0)
    else:
        out["weight"] = 1.0
    # undirected: (a, b) and (b, a) are one tie; later copies are rejected, naming the line of the first
    a, b = out["user_id"], out["friend_id"]
    # the unordered pair as one int64 (ids factorized together): hashing integers, not pairs of strings
    codes, uniques = pd.factorize(pd.concat([a, b], ignore_index=True))
    ca, cb = codes[:len(a)].astype(np.int64), codes[len(a):].astype(np.int64)
    pair = np.minimum(ca, cb) * np.int64(len(uniques) + 1) + np.maximum(ca, cb)
    copies = _later_copies(c, pair)
    if copies is not None:
        mask, first_rows = copies
        vals = pd.Series("", index=df.index, dtype=object)
        vals[mask] = (a[mask].astype(str) + "," + b[mask].astype(str)).to_numpy()
        _reject_duplicates(c, mask, "friend_id", vals, first_rows, "a tie listed once (undirected)")
    out[ROW] = df[ROW].to_numpy()
    kept = ~c.bad
    return (*c.result(_rows(out, kept)), (pd.Series(uniques), ca[kept], cb[kept]))


def _later_copies(c: _Checker, key) -> tuple[np.ndarray, pd.Series] | None:
    """Among the rows not yet rejected, those whose ``key`` repeats an earlier row's: a mask over every row and,
    on those rows, the line of the first copy (as text); None where no key repeats."""
    frame = pd.DataFrame({"key": key, "row": c.df[ROW].to_numpy()})[~c.bad]
    dup = frame.duplicated("key", keep="first")
    if not dup.any():
        return None
    first = frame.groupby("key", sort=False)["row"].transform("first")
    mask = np.zeros(len(c.df), dtype=bool)
    mask[np.flatnonzero(~c.bad)[dup.to_numpy()]] = True
    first_rows = pd.Series("", index=c.df.index, dtype=object)
    first_rows[mask] = first[dup].astype(str).to_numpy()
    return mask, first_rows


def _reject_duplicates(c: _Checker, mask, column: str, vals: pd.Series, first_rows: pd.Series, what: str):
    """Reject duplicates with a reason naming the line of the first copy."""
    mask = np.asarray(mask) & ~c.bad
    if not mask.any():
        return
    text = vals[mask].astype(str)
    c.parts.append(pd.DataFrame({
        "source_file": str(c.raw.path),
        "source_row": c.df[ROW].to_numpy()[mask],
        "column": column,
        "value": text.to_numpy(),
        "reason": (f"{column} must be {what}. Got a duplicate of line " + first_rows[mask].astype(str)
                   + " instead.").to_numpy(),
    }))
    c.bad |= mask


def _validate_keyed(raw: RawTable, key: str):
    """users / items: one row per id; later duplicates are rejected."""
    c = _Checker(raw)
    c.require_columns()
    df = c.df
    ids = normalize_ids(df[key])
    c.reject(ids.isna(), key, "be a non-empty id")
    copies = _later_copies(c, ids)
    if copies is not None:
        mask, first_rows = copies
        _reject_duplicates(c, mask, key, ids.astype(object), first_rows, f"unique (one row per {key})")
    return c, ids


def _validate_users(raw: RawTable, keep_pii: tuple[str, ...] = ()):
    c, ids = _validate_keyed(raw, "user_id")
    dropped = [col for col in c.df.columns
               if col not in ("user_id", ROW) and is_pii_column(col) and col not in keep_pii]
    out = pd.DataFrame({"user_id": ids})
    for col in c.df.columns:
        if col in ("user_id", ROW) or col in dropped:
            continue
        s = c.df[col].astype("string").str.strip()
        out[col] = s.mask(s == "")
    out[ROW] = c.df[ROW].to_numpy()
    kept, rejects, acc = c.result(_rows(out, ~c.bad))
    return kept, rejects, acc, dropped


def _validate_items(raw: RawTable):
    c, ids = _validate_keyed(raw, "item_id")
    df = c.df
    out = pd.DataFrame({"item_id": ids})
    if "category" in df:
        cat = df["category"].astype("string").str.strip()
        out["category"] = cat.mask(cat == "").fillna(UNKNOWN_CATEGORY)
    if "price" in df:
        v = _numbers(df["price"])
        c.reject(df["price"].notna() & ~(np.isfinite(v) & (v >= 0)), "price", "be a finite number >= 0")
        out["price"] = v
    out[ROW] = df[ROW].to_numpy()
    return c.result(_rows(out, ~c.bad))


def validate_tables(raw: dict[str, RawTable], keep_pii: tuple[str, ...] | list[str] = ()) -> ValidatedTables:
    """Validate raw tables (see :func:`graphprof.ingest.io.read_tables`).

    Users-table columns that look like personal data (:func:`is_pii_column`) are dropped, except those named in
    ``keep_pii``; kept ones stay in ``tables/users.parquet`` but are never features or default targets.

    Raises:
        InputError: a required table or column is missing.
    """
    if "purchases" not in raw:
        raise InputError("purchases: a purchases table is required. Got none")
    return validate_other_tables(raw, keep_pii)


def validate_other_tables(raw: dict[str, RawTable], keep_pii: tuple[str, ...] | list[str] = ()) -> ValidatedTables:
    """:func:`validate_tables` for the tables in ``raw``, which need not hold the purchases (a caller that
    validates those a slice at a time, :func:`validate_purchase_slice`)."""
    tables, rejects, accounting, dropped = {}, {}, {}, {}
    friend_codes = None
    unknown = [name for name in raw if name not in REQUIRED]
    if unknown:
        raise InputError(f"{unknown[0]}: table name must be one of {', '.join(REQUIRED)}. Got '{unknown[0]}'")
    # the ties are validated beside the other tables: most of the work is Arrow's and numpy's, which release the
    # GIL, so the two overlap; every table's result and error are still taken in the tables' order
    with ThreadPoolExecutor(max_workers=1) as pool:
        ties = pool.submit(_validate_friendships, raw["friendships"]) if "friendships" in raw else None
        for name, table in raw.items():
            if name == "purchases":
                kept, rej, acc = _validate_purchases(table)
            elif name == "friendships":
                kept, rej, acc, friend_codes = ties.result()
            elif name == "users":
                kept, rej, acc, pii = _validate_users(table, tuple(keep_pii))
                if pii:
                    dropped["users"] = pii
            else:
                kept, rej, acc = _validate_items(table)
            tables[name], rejects[name], accounting[name] = kept, rej, acc
    return ValidatedTables(tables=tables, rejects=rejects, accounting=accounting, dropped_columns=dropped,
                           friend_codes=friend_codes)


def validate_purchase_slice(raw: RawTable, unit: tuple[str, float]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One slice of a purchases table validated by the rules of :func:`validate_tables`, with the timestamp
    unit judged from the whole column (:func:`time_unit`): kept rows, rejects and the slice's accounting."""
    return _validate_purchases(raw, unit)
