"""Find and read input tables (CSV, TSV or Parquet) into raw DataFrames with their source row numbers.

Reading keeps every cell as written: id columns stay strings (leading zeros survive, a blank does not turn an
integer column into floats), and each row carries ``__row__``, its 1-based physical line in the file (header =
1) or, for Parquet, its 1-based record number. Validation of values is the job of :mod:`graphprof.ingest.schema`.
"""

from __future__ import annotations

import csv
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graphprof.errors import InputError

TABLES = ("purchases", "friendships", "users", "items")
REQUIRED_TABLES = ("purchases",)
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
ROW = "__row__"


@dataclass
class RawTable:
    """One table as read. ``df`` has the file's columns plus ``__row__`` (int64)."""

    name: str
    path: Path
    df: pd.DataFrame


def find_tables(data_dir: str | Path) -> dict[str, Path]:
    """Find ``purchases.*``, ``friendships.*``, ``users.*`` and ``items.*`` in ``data_dir``.

    Raises:
        InputError: the directory is missing, holds no purchases table, or holds two files for one table.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: --data must be a directory. Got a path that does not exist or is a file",
                         path=str(data_dir))
    found: dict[str, Path] = {}
    names = sorted(p.name for p in data_dir.iterdir())
    for table in TABLES:
        matches = [data_dir / n for n in names if _table_of(n) == table]
        if len(matches) > 1:
            raise InputError(f"{data_dir}: must hold one file per table. Got {len(matches)} for {table}: "
                             + ", ".join(m.name for m in matches), path=str(data_dir))
        if matches:
            found[table] = matches[0]
    for table in REQUIRED_TABLES:
        if table not in found:
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "nothing"
            raise InputError(f"{data_dir}: must contain {table}.csv or {table}.parquet. Got: {shown}",
                             path=str(data_dir))
    return found


def _table_of(name: str) -> str | None:
    lower = name.lower()
    for table in TABLES:
        for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
            if lower == table + suffix:
                return table
    return None


def read_table(path: str | Path, name: str) -> RawTable:
    """Read one table file. CSV/TSV (delimiter sniffed from the header) or Parquet, by file suffix.

    Raises:
        InputError: the file is missing, empty, not UTF-8, not parseable, or of an unknown format.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: the {name} file must be a file. Got a directory", path=str(path))
    if not path.is_file():
        raise InputError(f"{path}: the {name} file must exist. Got a path that does not", path=str(path))
    lower = path.name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        df = _read_parquet(path)
    elif lower.endswith(CSV_SUFFIXES):
        try:
            df = _read_csv(path)
        except (OSError, EOFError, zlib.error) as exc:  # a damaged .gz: truncated, not gzip, bad CRC or data
            kind = "gzip-compressed CSV" if lower.endswith(".gz") else "CSV"
            raise InputError(f"{path}: must be a readable {kind} file. Got: {exc}", path=str(path)) from None
    else:
        raise InputError(f"{path}: the format must be CSV, TSV or Parquet (by suffix: "
                         f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}). Got '{path.suffix or path.name}'",
                         path=str(path))
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise InputError(f"{path}: column names must be unique. Got duplicates: {', '.join(dup)}",
                         path=str(path), row=1, column=dup[0])
    return RawTable(name=name, path=path, df=df)


def read_tables(paths: dict[str, str | Path]) -> dict[str, RawTable]:
    """Read every table named in ``paths`` (table name -> file)."""
    unknown = set(paths) - set(TABLES)
    if unknown:
        raise InputError(f"table names must be among {', '.join(TABLES)}. Got {', '.join(sorted(unknown))}")
    return {name: read_table(p, name) for name, p in paths.items() if p is not None}


# --------------------------------------------------------------------------------------------------- CSV
def _sniff_delimiter(path: Path) -> str:
    if path.name.lower().endswith((".tsv", ".tsv.gz")):
        return "\t"
    opener = _open_text(path)
    with opener as fh:
        try:
            header = fh.readline()
        except UnicodeDecodeError:
            return ","  # the full read reports the bad bytes with their line
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _read_csv(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: must have a header line and data rows. Got an empty file", path=str(path))
    sep = _sniff_delimiter(path)
    _check_header(path, sep)
    try:
        with warnings.catch_warnings():
            # with index_col=False, pandas only warns ("loss of data") and drops the extra fields when the first
            # data line is longer than the header: an error, like any later line with too many fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=False,
                encoding="utf-8-sig", index_col=False, compression="infer",
            )
    except UnicodeDecodeError:
        line = _first_bad_utf8_line(path)
        raise InputError(f"{path}: must be UTF-8 text. Got bytes that are not UTF-8 on line {line}",
                         path=str(path), row=line) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: must have a header line and data rows. Got no columns", path=str(path)) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        bad = _first_ragged_record(path, sep)
        if bad is not None:
            expected, got, line = bad
            raise InputError(f"{path}: every line must have {expected} fields like the header. Got {got} "
                             f"on line {line}", path=str(path), row=line) from None
        if "EOF inside string" in str(exc):  # pandas counts records from 0, not lines: find the line
            line = _last_record_line(path, sep)
            raise InputError(f"{path}: every quoted field must end with a closing quote. Got a quote that never "
                             f"closes in the record starting on line {line}", path=str(path), row=line) from None
        raise InputError(f"{path}: must be a well-formed CSV file. Got: {exc}", path=str(path)) from None
    df.columns = [str(c).strip() for c in df.columns]
    df[ROW] = _csv_line_numbers(path, len(df), sep)
    return df


def _check_header(path: Path, sep: str) -> None:
    """pandas silently renames a repeated header ('user_id.1'); a repeated column is a bad file."""
    try:
        with _open_text(path) as fh:
            header = next(csv.reader(fh, delimiter=sep), [])
    except (UnicodeDecodeError, csv.Error):
        return  # the full read reports it with its line
    names = [h.strip() for h in header]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{path}: column names must be unique. Got duplicates: {', '.join(dup)}",
                         path=str(path), row=1, column=dup[0])


def _has_quote(path: Path) -> bool:
    if path.name.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                if b'"' in block:
                    return True
        return False
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            if b'"' in block:
                return True
    return False


def _record_starts(path: Path, sep: str):
    """(first physical line, number of fields) of every record after the header, by csv.reader."""
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=sep)
        prev_end = 0
        for k, record in enumerate(reader):
            if k > 0:
                yield prev_end + 1, len(record)
            prev_end = reader.line_num


def _csv_line_numbers(path: Path, n_rows: int, sep: str = ",") -> np.ndarray:
    """Physical line of each record (header = line 1). Only quoted fields can span lines, so the slow,
    exact count runs only where the file has a quote character."""
    simple = np.arange(2, n_rows + 2, dtype=np.int64)
    if n_rows == 0 or not _has_quote(path):
        return simple
    starts = np.fromiter((line for line, _ in _record_starts(path, sep)), dtype=np.int64)
    return starts if len(starts) == n_rows else simple


def _first_ragged_record(path: Path, sep: str) -> tuple[int, int, int] | None:
    """(header fields, fields found, physical line) of the first record with more fields than the header."""
    try:
        with _open_text(path) as fh:
            expected = len(next(csv.reader(fh, delimiter=sep), []))
        for line, n in _record_starts(path, sep):
            if n > expected:
                return expected, n, line
    except (UnicodeDecodeError, csv.Error):
        return None
    return None


def _last_record_line(path: Path, sep: str) -> int:
    """First physical line of the last record: where an unclosed quote swallows the rest of the file, the
    record that holds it is the last one csv.reader sees."""
    lines = [1]
    try:
        lines.extend(line for line, _ in _record_starts(path, sep))
    except (UnicodeDecodeError, csv.Error):
        pass
    return lines[-1]


def _first_bad_utf8_line(path: Path) -> int:
    if path.name.lower().endswith(".gz"):
        import gzip

        data = gzip.decompress(path.read_bytes())  # the line is a line of the text, not of the compressed bytes
    else:
        data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data[: exc.start].count(b"\n") + 1
    return 1


# ------------------------------------------------------------------------------------------------ Parquet
def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    parquet_names(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged or non-Parquet file
        raise InputError(f"{path}: must be a readable Parquet file. Got: {exc}", path=str(path)) from None
    return _parquet_frame(path, table, 1)


def parquet_names(path: Path) -> list[str]:
    """The file's column names (stripped); a damaged file or a repeated name is a bad file."""
    import pyarrow.parquet as pq

    try:
        names = [str(n).strip() for n in pq.read_schema(path).names]
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged or non-Parquet file
        raise InputError(f"{path}: must be a readable Parquet file. Got: {exc}", path=str(path)) from None
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # pyarrow would fail with an obscure "Multiple matches for FieldRef"
        raise InputError(f"{path}: column names must be unique. Got duplicates: {', '.join(dup)}",
                         path=str(path), column=dup[0])
    return names


def _parquet_frame(path: Path, table, first_record: int) -> pd.DataFrame:
    """An Arrow table read from ``path`` as the raw frame, its records numbered from ``first_record``."""
    import pyarrow as pa

    table = _flat_text_columns(path, table, first_record)
    # integers stay integers where a null is present (a float64 detour would change ids above 2**53)
    ints = {t: pd.Int64Dtype() for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
                                          pa.uint32())}
    ints[pa.uint64()] = pd.UInt64Dtype()  # ids up to 2**64 - 1 do not fit Int64
    ints[pa.bool_()] = pd.BooleanDtype()  # with a null, still booleans (not objects that read as 1 / 0)
    df = table.to_pandas(types_mapper=ints.get)
    df.columns = [str(c).strip() for c in df.columns]
    df[ROW] = np.arange(first_record, first_record + len(df), dtype=np.int64)
    return df


def parquet_slices(path: str | Path, name: str, rows: int, columns: list[str] | None = None):
    """A Parquet table as raw tables of at most ``rows`` records each, in file order, each record numbered as
    :func:`read_table` numbers it: for tables larger than memory, validated a slice at a time. ``columns``: only
    these (names as in the file).

    Raises:
        InputError: as :func:`read_table`, naming the file (and the record, for bytes that are not UTF-8).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    parquet_names(path)
    try:
        pf = pq.ParquetFile(path)
        first = 1
        for batch in pf.iter_batches(batch_size=min(rows, max(pf.metadata.num_rows, 1)), columns=columns):
            table = pa.Table.from_batches([batch])
            yield RawTable(name=name, path=path, df=_parquet_frame(path, table, first))
            first += len(table)
        if first == 1:  # no rows: one empty slice, so the table still has its columns
            empty = pf.schema_arrow.empty_table()
            yield RawTable(name=name, path=path, df=_parquet_frame(path, empty.select(columns) if columns else empty, 1))
    except InputError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged or non-Parquet file
        raise InputError(f"{path}: must be a readable Parquet file. Got: {exc}", path=str(path)) from None


def _flat_text_columns(path: Path, table, first_record: int = 1):
    """Nested columns (list, struct, map) hold no id, number or label: a bad file, naming the column. Binary
    columns become text, where they are UTF-8 (else a bad file, naming the column and the record)."""
    import pyarrow as pa

    for k, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            raise InputError(f"{path}: column '{f.name}' must hold text or numbers. Got {f.type}",
                             path=str(path), column=str(f.name))
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            try:
                text = table.column(k).cast(pa.large_string())
            except pa.ArrowInvalid:
                record = next(n for n, v in enumerate(table.column(k).to_pylist(), start=first_record)
                              if v is not None and not _is_utf8(v))
                raise InputError(f"{path}: column '{f.name}' must hold UTF-8 text. Got bytes that are not UTF-8 "
                                 f"in record {record}", path=str(path), row=record, column=str(f.name)) from None
            table = table.set_column(k, f.name, text)
    return table


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
