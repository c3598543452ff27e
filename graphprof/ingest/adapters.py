"""Format adapters: a folder in a public dataset's own layout -> the four generic tables as :class:`RawTable`.

Each adapter returns the same raw tables :func:`graphprof.io.read_tables` would (``purchases``, ``friendships``,
``users``, ``items``; only purchases is always there), with the generic column names as text and ``__row__`` the
1-based physical line of the source file (header = 1; files without a header start at 1), so validation, rejects
and everything downstream work unchanged. ``RawTable.path`` is the real source file.

Formats (:data:`FORMATS`):

``generic``
    ``purchases.*``, ``friendships.*``, ``users.*``, ``items.*`` (see :mod:`graphprof.io`).
``feather``
    SNAP FEATHER / MUSAE, found by suffix: ``*_features.json`` (node id -> list of feature ids; for music services
    the liked artists) -> purchases, one row per (user, item), where ``__row__`` is the 1-based position of the
    user's key in the JSON object (the file is one line, so a line number would say nothing);
    ``*_edges.csv`` (two node id columns, e.g. ``node_1,node_2``) -> friendships; ``*_target.csv`` (an id column
    ``new_id``, ``id`` or the first one, plus label columns, names kept) -> users.
``hetrec-lastfm``
    HetRec 2011 Last.fm (tab-separated, one header line): ``user_artists.dat`` -> purchases (play count =
    quantity); ``user_friends.dat`` -> friendships, where the reverse copy of each tie (every tie is listed in both
    directions) is collapsed by the adapter and counted in the notes; ``artists.dat`` -> items (id only: names
    and URLs are not carried); ``user_taggedartists.dat`` + ``tags.dat`` (Latin-1) -> each artist's category is
    its most often assigned tag, ties going to the smallest tag id. No user attributes: no users table.
``movielens``
    MovieLens 100K (no header lines): ``u.data`` (tab) -> purchases with rating and timestamp; ``u.user`` (pipe)
    -> users with ``age_band`` (the MovieLens 1M bands), ``gender``, ``occupation`` (the zip code is dropped);
    ``u.item`` (pipe, Latin-1) -> items with category = the first genre flagged. No friendships.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from graphprof.errors import ConfigError, InputError
from graphprof.ingest.io import ROW, RawTable, find_tables, read_table, read_tables

FORMATS = ("generic", "feather", "hetrec-lastfm", "movielens")
_TEXT = pd.StringDtype("pyarrow")


@dataclass
class AdapterResult:
    """What an adapter read.

    Attributes:
        tables: table name -> :class:`RawTable` (generic columns as text, plus ``__row__``).
        sources: every file actually read, in reading order (the manifest hashes each one).
        notes: human-readable lines on what the adapter did beyond renaming (collapsed rows, derived columns).
    """

    tables: dict[str, RawTable]
    sources: list[Path]
    notes: list[str] = field(default_factory=list)


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is a known format.

    Raises:
        ConfigError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}. Got '{fmt}' instead")
    return fmt


def read_format(fmt: str, data_dir: str | Path) -> AdapterResult:
    """Read the folder ``data_dir`` laid out as format ``fmt`` into the generic raw tables.

    Raises:
        ConfigError: an unknown format.
        InputError: the folder is missing, lacks the format's required file, or a file is unreadable.
    """
    reader = _READERS[check_format(fmt)]
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: --data must be a directory. Got a path that does not exist or is a file",
                         path=str(data_dir))
    return reader(data_dir)


# ------------------------------------------------------------------------------------------------ helpers
def _listing(data_dir: Path) -> str:
    names = sorted(p.name for p in data_dir.iterdir())
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "nothing"


def _need(data_dir: Path, name: str, fmt: str, layout: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        raise InputError(f"{data_dir}: --format {fmt} needs {name} in the folder ({layout}). "
                         f"Got: {_listing(data_dir)}", path=str(data_dir))
    return path


def _read_delimited(path: Path, *, sep: str, names: list[str], header: bool, encoding: str = "utf-8",
                    layout: str) -> pd.DataFrame:
    """Read a delimited text file without quoting (the .dat files quote nothing and hold '"' in names).

    Every cell stays text; ``__row__`` is the physical line (header = 1 when ``header``, else the first record
    is line 1). Blank lines are kept as empty rows so the numbering stays physical.

    Raises:
        InputError: empty file, bytes not in ``encoding``, a header lacking ``names``, or a wrong field count.
    """
    if path.stat().st_size == 0:
        raise InputError(f"{path}: must hold {layout}. Got an empty file", path=str(path))
    try:
        with warnings.catch_warnings():
            # pandas only warns ("loss of data") and drops the extra fields where the first line after the
            # header is longer than the header: an error, like any later line with too many fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=sep, header=0 if header else None, dtype=str, keep_default_na=False,
                             na_values=[""], skip_blank_lines=False, quoting=csv.QUOTE_NONE, index_col=False,
                             encoding="utf-8-sig" if encoding == "utf-8" else encoding)
    except pd.errors.ParserWarning as exc:
        long = _first_long_line(path, sep, encoding)
        if long is None:
            raise InputError(f"{path}: must be {layout}. Got: {exc}", path=str(path)) from None
        expected, got, line = long
        raise InputError(f"{path}: every line must have {expected} fields ({layout}). Got {got} on line {line}",
                         path=str(path), row=line) from None
    except UnicodeDecodeError:
        data = path.read_bytes()
        try:
            data.decode(encoding)
            line = 1
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: must be {encoding} text. Got bytes that are not {encoding} on line {line}",
                         path=str(path), row=line) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise InputError(f"{path}: every line must have {m[1]} fields ({layout}). Got {m[3]} on line {m[2]}",
                             path=str(path), row=int(m[2])) from None
        raise InputError(f"{path}: must be {layout}. Got: {exc}", path=str(path)) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: must hold {layout}. Got no data", path=str(path)) from None
    first = 2 if header else 1
    if header:
        df.columns = [str(c).strip() for c in df.columns]
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise InputError(f"{path}: required column '{missing[0]}' is missing (found: "
                             f"{', '.join(df.columns)})", path=str(path), row=1, column=missing[0])
    else:
        if df.shape[1] != len(names):
            raise InputError(f"{path}: every line must have {len(names)} fields ({layout}). Got {df.shape[1]} "
                             f"on line 1", path=str(path), row=1)
        df.columns = names
    df[ROW] = np.arange(first, len(df) + first, dtype=np.int64)
    return df


def _first_long_line(path: Path, sep: str, encoding: str) -> tuple[int, int, int] | None:
    """(fields of line 1, fields found, physical line) of the first line with more fields than line 1."""
    with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as fh:
        expected = None
        for line, text in enumerate(fh, start=1):
            n = text.rstrip("\r\n").count(sep) + 1
            if expected is None:
                expected = n
            elif n > expected:
                return expected, n, line
    return None


def _strip(s: pd.Series) -> pd.Series:
    s = s.astype("string").str.strip()
    return s.mask(s == "")


# ---------------------------------------------------------------------------------------------- generic
def _read_generic(data_dir: Path) -> AdapterResult:
    paths = find_tables(data_dir)
    return AdapterResult(tables=read_tables(paths), sources=list(paths.values()))


# ---------------------------------------------------------------------------------------------- feather
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
    # arrow's int -> text cast and take are ~20x faster than numpy's astype(str) on a million ids
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


# ---------------------------------------------------------------------------------------- hetrec-lastfm
_HETREC_LAYOUT = "HetRec 2011 Last.fm: user_artists.dat, user_friends.dat, artists.dat, tags.dat, user_taggedartists.dat"


def _read_hetrec(data_dir: Path) -> AdapterResult:
    fmt, notes, tables = "hetrec-lastfm", [], {}
    ua_path = _need(data_dir, "user_artists.dat", fmt, _HETREC_LAYOUT)
    ua = _read_delimited(ua_path, sep="\t", names=["userID", "artistID", "weight"], header=True,
                         layout="userID, artistID, weight; tab-separated")
    tables["purchases"] = RawTable("purchases", ua_path, pd.DataFrame({
        "user_id": ua["userID"], "item_id": ua["artistID"], "quantity": ua["weight"], ROW: ua[ROW]}))
    sources = [ua_path]
    notes.append("user_artists.dat: weight (play count) -> purchases quantity")

    uf_path = data_dir / "user_friends.dat"
    if uf_path.is_file():
        uf = _read_delimited(uf_path, sep="\t", names=["userID", "friendID"], header=True,
                             layout="userID, friendID; tab-separated")
        sources.append(uf_path)
        reverse = _reverse_copies(uf["userID"], uf["friendID"])
        tables["friendships"] = RawTable("friendships", uf_path, pd.DataFrame({
            "user_id": uf["userID"], "friend_id": uf["friendID"], ROW: uf[ROW]})[~reverse].reset_index(drop=True))
        notes.append(f"user_friends.dat: each tie is listed in both directions; the adapter collapsed "
                     f"{int(reverse.sum())} reverse copies of {len(uf)} rows, so friendships read counts only the "
                     f"{len(uf) - int(reverse.sum())} rows passed on")
    else:
        notes.append("user_friends.dat: absent, so no friendships")

    art_path = data_dir / "artists.dat"
    if art_path.is_file():
        art = _read_delimited(art_path, sep="\t", names=["id"], header=True,
                              layout="id, name, url, pictureURL; tab-separated")
        sources.append(art_path)
        items = pd.DataFrame({"item_id": art["id"], ROW: art[ROW]})
        category, tag_sources = _hetrec_categories(data_dir, notes)
        sources += tag_sources
        if category is not None:
            ids = _strip(art["id"])
            items.insert(1, "category", ids.map(category))
            tagged = int(items["category"].notna().sum())
            outside = int((~category.index.isin(ids.dropna())).sum())
            notes.append(f"artists.dat: {tagged} of {len(items)} artists get a category (their most frequent tag, "
                         f"ties to the smallest tag id); {len(items) - tagged} never tagged -> 'unknown'; "
                         f"{outside} tagged artists not in artists.dat are ignored")
        notes.append("artists.dat: only the id is carried (name, url, pictureURL are not features)")
        tables["items"] = RawTable("items", art_path, items)
    else:
        notes.append("artists.dat: absent, so no items table (every artist's category is 'unknown')")
    notes.append("HetRec Last.fm has no user attributes: no users table")
    return AdapterResult(tables=tables, sources=sources, notes=notes)


def _reverse_copies(a: pd.Series, b: pd.Series) -> np.ndarray:
    """True for a row (a, b) whose reverse (b, a) was listed earlier and which is the first listing in its own
    direction. Exact repeats (a, b), (a, b) are left for validation to reject as duplicates."""
    a, b = _strip(a).fillna(""), _strip(b).fillna("")
    forward = (a <= b).to_numpy()
    key = pd.DataFrame({"lo": a.where(forward, b), "hi": b.where(forward, a), "fwd": forward,
                        "row": np.arange(len(a))})
    first_in_direction = ~key.duplicated(["lo", "hi", "fwd"]).to_numpy()
    first_of_pair = key.groupby(["lo", "hi"], sort=False)["row"].transform("min").to_numpy()
    return first_in_direction & (key["row"].to_numpy() > first_of_pair) & (a != b).to_numpy()


def _hetrec_categories(data_dir: Path, notes: list[str]) -> tuple[pd.Series | None, list[Path]]:
    """artist id -> its most frequently assigned tag's text (ties: smallest tag id), or None without tags."""
    ta_path, tags_path = data_dir / "user_taggedartists.dat", data_dir / "tags.dat"
    if not (ta_path.is_file() and tags_path.is_file()):
        missing = " and ".join(p.name for p in (ta_path, tags_path) if not p.is_file())
        notes.append(f"{missing}: absent, so artists get no category ('unknown')")
        return None, []
    ta = _read_delimited(ta_path, sep="\t", names=["artistID", "tagID"], header=True,
                         layout="userID, artistID, tagID, day, month, year; tab-separated")
    tags = _read_delimited(tags_path, sep="\t", names=["tagID", "tagValue"], header=True, encoding="latin-1",
                           layout="tagID, tagValue; tab-separated, Latin-1")
    pairs = pd.DataFrame({"artist": _strip(ta["artistID"]), "tag": _strip(ta["tagID"])}).dropna()
    counts = pairs.groupby(["artist", "tag"], sort=False).size().rename("n").reset_index()
    counts["tag_num"] = pd.to_numeric(counts["tag"], errors="coerce")
    best = (counts.sort_values(["artist", "n", "tag_num", "tag"], ascending=[True, False, True, True])
            .drop_duplicates("artist"))
    names = pd.Series(_strip(tags["tagValue"]).to_numpy(), index=_strip(tags["tagID"]).to_numpy())
    names = names[~names.index.duplicated()]
    category = pd.Series(best["tag"].map(names).to_numpy(), index=best["artist"].to_numpy(), dtype="string")
    unknown_tags = int(category.isna().sum())
    if unknown_tags:
        notes.append(f"user_taggedartists.dat: {unknown_tags} artists' top tag id is not in tags.dat -> 'unknown'")
    notes.append(f"tags.dat read as Latin-1; {len(pairs)} tag assignments from user_taggedartists.dat")
    return category, [ta_path, tags_path]


# -------------------------------------------------------------------------------------------- movielens
_ML_LAYOUT = "MovieLens 100K: u.data, u.user, u.item"
#: MovieLens 1M's age groups, applied to MovieLens 100K's exact ages: [lower bound, label).
AGE_BANDS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"),
             (np.inf, "56+"))
#: The 19 genre flags of u.item, in order (u.genre).
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def age_band(age: pd.Series) -> pd.Series:
    """Ages -> MovieLens 1M bands ('<18', '18-24', ..., '56+'); NA where the age is not a number >= 0."""
    years = pd.to_numeric(age, errors="coerce")
    bins = [0.0] + [float(upper) for upper, _ in AGE_BANDS]
    out = pd.cut(years, bins=bins, right=False, labels=[label for _, label in AGE_BANDS])
    return out.astype("string")


def _read_movielens(data_dir: Path) -> AdapterResult:
    fmt, notes, tables = "movielens", [], {}
    data_path = _need(data_dir, "u.data", fmt, _ML_LAYOUT)
    ratings = _read_delimited(data_path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"],
                              header=False, layout="user id, item id, rating, timestamp; tab-separated")
    tables["purchases"] = RawTable("purchases", data_path, ratings)
    sources = [data_path]
    notes.append("u.data: rating -> purchases rating (the edge weight), timestamp (epoch s)")

    user_path = data_dir / "u.user"
    if user_path.is_file():
        u = _read_delimited(user_path, sep="|", names=["user_id", "age", "gender", "occupation", "zip_code"],
                            header=False, layout="user id|age|gender|occupation|zip code")
        tables["users"] = RawTable("users", user_path, pd.DataFrame({
            "user_id": u["user_id"], "age_band": age_band(u["age"]), "gender": u["gender"],
            "occupation": u["occupation"], ROW: u[ROW]}))
        sources.append(user_path)
        notes.append("u.user: age -> age_band (MovieLens 1M bands " + ", ".join(b for _, b in AGE_BANDS)
                     + "), gender, occupation; zip code dropped (personal data)")
    else:
        notes.append("u.user: absent, so no user attributes")

    item_path = data_dir / "u.item"
    if item_path.is_file():
        names = ["item_id", "title", "release_date", "video_release_date", "imdb_url"] + [f"g{k}" for k in
                                                                                          range(len(GENRES))]
        it = _read_delimited(item_path, sep="|", names=names, header=False, encoding="latin-1",
                             layout="movie id|title|release date|video release date|IMDb URL|19 genre flags")
        flags = np.column_stack([pd.to_numeric(it[f"g{k}"], errors="coerce").to_numpy() == 1
                                 for k in range(len(GENRES))])
        first = np.where(flags.any(axis=1), flags.argmax(axis=1), 0)  # no flag: genre 0, which is 'unknown'
        tables["items"] = RawTable("items", item_path, pd.DataFrame({
            "item_id": it["item_id"], "category": np.asarray(GENRES, dtype=object)[first], ROW: it[ROW]}))
        sources.append(item_path)
        notes.append("u.item (Latin-1): category = the first genre flagged, 'unknown' where none; title, dates "
                     "and URL are not carried")
    else:
        notes.append("u.item: absent, so every movie's category is 'unknown'")
    notes.append("MovieLens has no friendships: the graph has no social edges")
    return AdapterResult(tables=tables, sources=sources, notes=notes)


_READERS: dict[str, Callable[[Path], AdapterResult]] = {
    "generic": _read_generic,
    "feather": _read_feather,
    "hetrec-lastfm": _read_hetrec,
    "movielens": _read_movielens,
}

__all__ = ["FORMATS", "AdapterResult", "age_band", "check_format", "read_format"]
