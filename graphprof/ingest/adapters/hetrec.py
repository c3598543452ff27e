"""The ``hetrec-lastfm`` adapter: a HetRec 2011 Last.fm folder (tab-separated ``.dat`` files) -> purchases,
friendships and items with each artist's top tag as category (see :mod:`graphprof.ingest.adapters`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof.ingest.adapters.common import AdapterResult, _need, _read_delimited, _strip
from graphprof.ingest.io import ROW, RawTable

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
