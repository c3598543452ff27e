"""Format adapters: a folder in a public dataset's own layout -> the four generic tables as :class:`RawTable`.

Each adapter returns the same raw tables :func:`graphprof.ingest.io.read_tables` would (``purchases``, ``friendships``,
``users``, ``items``; only purchases is always there), with the generic column names as text and ``__row__`` the
1-based physical line of the source file (header = 1; files without a header start at 1), so validation, rejects
and everything downstream work unchanged. ``RawTable.path`` is the real source file.

One module per format (``feather``, ``hetrec``, ``movielens``); ``common`` holds what they share.

Formats (:data:`FORMATS`):

``generic``
    ``purchases.*``, ``friendships.*``, ``users.*``, ``items.*`` (see :mod:`graphprof.ingest.io`).
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

from collections.abc import Callable
from pathlib import Path

from graphprof.errors import ConfigError, InputError
from graphprof.ingest.adapters.common import AdapterResult
from graphprof.ingest.adapters.feather import _read_feather
from graphprof.ingest.adapters.hetrec import _read_hetrec
from graphprof.ingest.adapters.movielens import AGE_BANDS, GENRES, _read_movielens, age_band
from graphprof.ingest.io import find_tables, read_tables

FORMATS = ("generic", "feather", "hetrec-lastfm", "movielens")


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


def _read_generic(data_dir: Path) -> AdapterResult:
    paths = find_tables(data_dir)
    return AdapterResult(tables=read_tables(paths), sources=list(paths.values()))


_READERS: dict[str, Callable[[Path], AdapterResult]] = {
    "generic": _read_generic,
    "feather": _read_feather,
    "hetrec-lastfm": _read_hetrec,
    "movielens": _read_movielens,
}

__all__ = ["AGE_BANDS", "FORMATS", "GENRES", "AdapterResult", "age_band", "check_format", "read_format"]
