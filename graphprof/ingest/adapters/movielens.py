"""The ``movielens`` adapter: a MovieLens 100K folder (``u.data``, ``u.user``, ``u.item``) -> purchases, users
with age bands and items with their first genre (see :mod:`graphprof.ingest.adapters`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphprof.ingest.adapters.common import AdapterResult, _need, _read_delimited
from graphprof.ingest.io import ROW, RawTable

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
