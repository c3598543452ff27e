"""What the format adapters share: :class:`AdapterResult`, the reader of the quote-free ``.dat`` files, the
check that a required file is there, and cell stripping."""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof.errors import InputError
from graphprof.ingest.io import ROW, RawTable

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
