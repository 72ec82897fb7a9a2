"""Readers for CSV, Parquet and SAS transport (XPT) into a frame of canonical column names.

Every reader returns a polars DataFrame with upper-case column names and a ``_source_row`` column
(1-based data row number in the file, header excluded), plus row problems it found (none today:
structural problems reject the whole file). Before any row is returned the reader proves it read the
whole file (:mod:`trialsynth.ingest.integrity`, :mod:`trialsynth.ingest.xpt`): a file that is cut,
corrupt or cannot be parsed raises :class:`UnreadableFileError` naming the file, the byte offset and
what was expected; the caller rejects it whole and its raw bytes stay in the raw zone.

XPT goes through pyreadstat: pandas' ``read_sas(format="xport")`` was seen to read 0 as 5.4e-79.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from trialsynth.ingest.integrity import (
    FileStructureError,
    check_csv_text,
    csv_layout,
    first_line,
    read_parquet_whole,
    strip_csv_bom,
)
from trialsynth.ingest.xpt import xport_layout

SOURCE_ROW = "_source_row"
SUPPORTED = (".csv", ".parquet", ".xpt")


class UnreadableFileError(ValueError):
    """The file as a whole cannot be used (empty, binary, not UTF-8, truncated, corrupt)."""

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
    """Read one whole source file; the reader is chosen by extension.

    Returns ``(frame, row_problems)``: every column as read (CSV: all ``String``), names stripped and
    upper-cased, plus ``_source_row``. Raises :class:`UnreadableFileError` (and nothing else for any
    content of the file) when the file is empty, of an unsupported type, cut short, corrupt, or not
    proven complete; see :func:`~trialsynth.ingest.integrity.csv_layout`,
    :func:`~trialsynth.ingest.integrity.read_parquet_whole` and :mod:`trialsynth.ingest.xpt` for the rules.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UnreadableFileError(path, f"unsupported file type {suffix!r}; expected one of {', '.join(SUPPORTED)}")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFileError(path, "empty file (0 bytes)")
    reader = {".csv": _read_csv, ".parquet": _read_parquet, ".xpt": _read_xpt}[suffix]
    try:
        df, problems = reader(path)
        df.columns = _canonical_names(df.columns)
    except FileStructureError as exc:
        raise UnreadableFileError(path, str(exc)) from exc
    return df.with_columns(pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(SOURCE_ROW)), problems


def _read_csv(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    data, base = strip_csv_bom(path.read_bytes())
    check_csv_text(data, base)
    layout = csv_layout(data, base)
    _canonical_names(layout.header)  # the parser renames duplicates ("A_duplicated_0"): check the names as sent
    try:
        df = pl.read_csv(  # the checked bytes themselves (a BytesIO would be copied again)
            data, infer_schema=False, has_header=True, empty_string_is_null=True,
            null_values=[""], truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise FileStructureError(f"CSV cannot be parsed: {first_line(exc)}") from exc
    _check_rows_read(df.height, layout.records, "records")
    if layout.blank_rows:
        df = df.filter(~pl.int_range(pl.len()).is_in(layout.blank_rows))
    return df, []


def _read_parquet(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    table = read_parquet_whole(path)
    try:
        return pl.from_arrow(table), []
    except Exception as exc:  # a column type polars does not take
        raise FileStructureError(f"Parquet columns cannot be converted: {first_line(exc)}") from exc


def _read_xpt(path: Path) -> tuple[pl.DataFrame, list[RowProblem]]:
    import pyreadstat  # imported here: only XPT drops need it

    layout = xport_layout(path)
    try:
        try:
            pdf, _meta = pyreadstat.read_xport(str(path))
        except UnicodeDecodeError:
            # XPORT v5 carries no encoding; SAS on Windows writes WLATIN1 (cp1252) text, as the CDISC
            # pilot's ts.xpt does. Decode as cp1252 rather than reject a valid transport file.
            pdf, _meta = pyreadstat.read_xport(str(path), encoding="cp1252")
        df = pl.from_pandas(pdf)
    except Exception as exc:  # pyreadstat.ReadstatError and friends
        raise FileStructureError(f"not a readable SAS transport (XPT) file: {first_line(exc)}") from exc
    _check_rows_read(df.height, layout.n_obs, "observations in its structure")
    # pyreadstat returns blank character values as "", which SDTM means as missing.
    return df.with_columns(pl.col(pl.String).replace("", None)), []


def _canonical_names(names: list[str]) -> list[str]:
    canonical = [name.strip().upper() for name in names]
    dupes = sorted({c for c in canonical if canonical.count(c) > 1})
    if dupes:
        raise FileStructureError(f"duplicate column names after upper-casing: {dupes}")
    return canonical


def _check_rows_read(got: int, expected: int, what: str) -> None:
    if got != expected:
        raise FileStructureError(f"the parser returned {got} rows but the file holds {expected} {what}")
