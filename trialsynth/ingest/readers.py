"""Readers for CSV, Parquet and SAS transport (XPT) into a frame of canonical column names.

Every reader returns a polars DataFrame with upper-case column names and a ``_source_row`` column
(1-based data row number in the file, header excluded), plus structural row problems it found (a
truncated last row). A file that cannot be parsed at all raises :class:`UnreadableFileError`
naming the file and the problem; its raw bytes stay in the raw zone regardless.

XPT goes through pyreadstat: pandas' ``read_sas(format="xport")`` was seen to read 0 as 5.4e-79.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

SOURCE_ROW = "_source_row"
SUPPORTED = (".csv", ".parquet", ".xpt")


class UnreadableFileError(ValueError):
    """The file as a whole cannot be parsed (empty, binary, not UTF-8, corrupt)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class RowProblem:
    row: int  # 1-based data row
    column: str | None
    rule: str
    detail: str


def read_file(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Read one source file; the reader is chosen by extension."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UnreadableFileError(path, f"unsupported file type {suffix!r}; expected one of {', '.join(SUPPORTED)}")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFileError(path, "empty file (0 bytes)")
    reader = {".csv": _read_csv, ".parquet": _read_parquet, ".xpt": _read_xpt}[suffix]
    df, problems = reader(path)
    df = df.rename({c: c.strip().upper() for c in df.columns})
    dupes = sorted({c for c in df.columns if df.columns.count(c) > 1})
    if dupes:
        raise UnreadableFileError(path, f"duplicate column names after upper-casing: {dupes}")
    return df.with_columns(pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(SOURCE_ROW)), problems


def _read_csv(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    data = path.read_bytes()
    head = data[:8192]
    if b"\x00" in head:
        raise UnreadableFileError(path, "binary content (NUL bytes) in a file named .csv; not a text CSV export")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableFileError(
            path,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
            "re-export the file as UTF-8",
        ) from exc
    if not data.strip():
        raise UnreadableFileError(path, "no header row (file holds only whitespace)")
    problems: list[RowProblem] = []
    header = next(csv.reader(io.StringIO(data[: data.find(b"\n") if b"\n" in data else len(data)].decode())))
    if not data.endswith(b"\n"):
        # A file cut off mid-write: the last row may be incomplete even if it parses.
        last_line = data[data.rfind(b"\n") + 1 :].decode()
        fields = next(csv.reader(io.StringIO(last_line)), [])
        n_rows = data.count(b"\n")  # data rows before the unterminated last line
        if len(fields) != len(header) and n_rows >= 1:
            problems.append(RowProblem(n_rows, None, "truncated_row",
                                       f"file ends mid-row: last row has {len(fields)} of {len(header)} fields"))
    try:
        df = pl.read_csv(
            io.BytesIO(data), infer_schema=False, has_header=True, empty_string_is_null=True,
            null_values=[""], truncate_ragged_lines=False,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ShapeError) as exc:
        raise UnreadableFileError(path, f"CSV cannot be parsed: {str(exc).splitlines()[0]}") from exc
    return df, problems


def _read_parquet(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    try:
        return pl.read_parquet(path), []
    except Exception as exc:  # pyarrow/polars raise several types for corrupt files
        raise UnreadableFileError(path, f"not a readable Parquet file: {str(exc).splitlines()[0]}") from exc


def _read_xpt(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    import pyreadstat  # imported here: only XPT drops need it

    try:
        pdf, _meta = pyreadstat.read_xport(str(path))
    except UnicodeDecodeError:
        # XPORT v5 carries no encoding; SAS on Windows writes WLATIN1 (cp1252) text, as the CDISC
        # pilot's ts.xpt does. Decode as cp1252 rather than reject a valid transport file.
        try:
            pdf, _meta = pyreadstat.read_xport(str(path), encoding="cp1252")
        except Exception as exc:
            raise UnreadableFileError(path, f"not a readable SAS transport (XPT) file: {exc}") from exc
    except Exception as exc:  # pyreadstat.ReadstatError and friends
        raise UnreadableFileError(path, f"not a readable SAS transport (XPT) file: {exc}") from exc
    df = pl.from_pandas(pdf)
    # pyreadstat returns blank character values as "", which SDTM means as missing.
    return df.with_columns(pl.col(pl.String).replace("", None)), []
