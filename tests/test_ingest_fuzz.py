"""Fuzzing the readers (issue 9): truncations at any byte, bit flips and odd encodings of small CSV,
XPT and Parquet files built here. The property: ``read_file`` returns exactly the original rows or
raises ``UnreadableFileError``; never another exception, never silently fewer rows.

The two cases the bytes cannot reveal are asserted as the only exceptions, so a third would fail:
a cut exactly between two records (CSV, and XPT v5 where an observation ends on an 80-byte record
boundary: neither format stores a row count), which returns exactly the rows before the cut; and a
bit flip in the length of the last (character) variable of an XPT v5 file, which can re-slice the
data into a different, still consistent, number of observations (v5 has no count or checksum).

The default run is derandomized and takes ~20 s; ``pytest -m slow tests/test_ingest_fuzz.py`` runs
a longer random campaign.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pyreadstat
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trialsynth.ingest.readers import SOURCE_ROW, UnreadableFileError, read_file


def quick(examples: int):
    """The default-suite profile: deterministic (derandomized), no example database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


LONG = settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

CSV_ROWS = [
    ("S1", "S1-001", "plain", "63"),
    ("S1", "S1-002", "with, comma", "71.5"),
    ("S1", "S1-003", 'say "hi"', None),
    ("S1", "S1-004", "two\nlines", "58"),
    ("S1", "S1-005", "Café 中文 ß", "-3"),
    ("S1", "S1-006", None, "0"),
    ("S1", "S1-007", "crlf\r\ninside", "1e3"),
    ("S1", "S1-008", "last", "123.45"),
]
PLAIN_ROWS = [("S1", f"S1-{i:03d}", f"{i * 7.25:.2f}", str(i % 3) if i % 4 else None) for i in range(1, 13)]
CSV_COLUMNS = ["STUDYID", "USUBJID", "COVAL", "AVAL"]


@dataclass(frozen=True)
class Original:
    name: str
    data: bytes
    rows: list[tuple]
    record_ends: tuple[tuple[int, int], ...] = ()  # CSV: (content end, end after the terminator) per record
    obs: tuple[int, int] | None = None  # XPT v5: (first data byte, bytes per observation)
    last_char_length_field: range = range(0)  # XPT v5: bytes of the last variable's length, if character


def rows_of(df: pl.DataFrame) -> list[tuple]:
    return df.drop(SOURCE_ROW).rows()


def build_csv(name: str, rows: list[tuple], terminator: str) -> Original:
    """Write header and rows with the csv module, recording where each record's content ends."""
    buffer, ends = io.StringIO(), []
    writer = csv.writer(buffer, lineterminator=terminator)
    for record in [CSV_COLUMNS, *rows]:
        writer.writerow(["" if v is None else v for v in record])
        end = len(buffer.getvalue().encode())
        ends.append((end - len(terminator), end))
    return Original(name, buffer.getvalue().encode(), rows, tuple(ends))


def build_xpt(directory: Path, version: int) -> Original:
    frame = pd.DataFrame({
        "USUBJID": [f"S1-{i:03d}" for i in range(1, 10)],
        "AVAL": [1.5, None, 0.0, -7.0, 1e10, 3.25, None, 42.0, 0.125],
        "COVAL": ["x", "", "long comment here", "", "Q", "y", "", "z z", "end"],
    })
    path = directory / f"v{version}.xpt"
    pyreadstat.write_xport(frame, str(path), table_name="FZ", file_format_version=version)
    data = path.read_bytes()
    rows = [(u, a if a == a else None, c or None) for u, a, c in frame.itertuples(index=False)]
    if version == 8:
        return Original("fz.xpt", data, rows)
    start = data.index(b"HEADER RECORD*******OBS     HEADER RECORD") + 80
    _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
    last = 640 + (len(frame.columns) - 1) * 140 + 4
    return Original("fz.xpt", data, rows, obs=(start, sum(meta.variable_storage_width.values())),
                    last_char_length_field=range(last, last + 2))


def build_parquet(directory: Path) -> Original:
    frame = pl.DataFrame({"USUBJID": [f"S1-{i:03d}" for i in range(40)],
                          "AVAL": [i * 0.5 if i % 5 else None for i in range(40)],
                          "COVAL": [["a", "bb", None, "Café"][i % 4] for i in range(40)]})
    path = directory / "src.parquet"
    frame.write_parquet(path, row_group_size=10, compression="zstd")
    return Original("fz.parquet", path.read_bytes(), frame.rows())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def originals(workdir) -> dict[str, Original]:
    made = {
        "csv quoted": build_csv("fz.csv", CSV_ROWS, "\n"),
        "csv plain": build_csv("fz.csv", PLAIN_ROWS, "\n"),
        "csv plain crlf": build_csv("fz.csv", PLAIN_ROWS, "\r\n"),
        "xpt v5": build_xpt(workdir, 5),
        "xpt v8": build_xpt(workdir, 8),
        "parquet": build_parquet(workdir),
    }
    for original in made.values():  # the whole files read back exactly: the reference for the properties
        assert rows_of(read(workdir, original.name, original.data)) == original.rows
    return made


def read(workdir: Path, name: str, data: bytes) -> pl.DataFrame:
    path = workdir / name
    path.write_bytes(data)
    return read_file(path)[0]


def attempt(workdir: Path, name: str, data: bytes) -> pl.DataFrame | None:
    """The frame, or None for UnreadableFileError; any other exception fails the test."""
    try:
        return read(workdir, name, data)
    except UnreadableFileError as exc:
        assert str(exc).startswith(f"{name}: ")
        return None


# --- truncation --------------------------------------------------------------------------------------

def check_truncation(originals: dict[str, Original], workdir: Path, kind: str, data: st.DataObject) -> None:
    original = originals[kind]
    cut = data.draw(st.integers(0, len(original.data) - 1), label="cut")
    df = attempt(workdir, original.name, original.data[:cut])
    if df is None:
        return
    got = rows_of(df)
    m = len(got)
    assert got == original.rows[:m], "a cut file returned rows that differ from the original's"
    # Only a cut that lost no byte of any returned record's content, at a record boundary, can pass:
    if original.record_ends:
        content_end, record_end = original.record_ends[m]
        assert content_end <= cut <= record_end, f"cut at {cut} returned {m} rows silently"
    elif original.obs:
        start, width = original.obs
        assert cut == start + m * width and cut % 80 == 0, f"cut at {cut} returned {m} rows silently"
    else:
        pytest.fail(f"a {kind} file cut at byte {cut} was read ({m} rows)")


KINDS = st.sampled_from(["csv quoted", "csv plain", "csv plain crlf", "xpt v5", "xpt v8", "parquet"])


@quick(500)
@given(kind=KINDS, data=st.data())
def test_truncated_files_are_rejected_or_exact(originals, workdir, kind, data):
    check_truncation(originals, workdir, kind, data)


@pytest.mark.slow
@LONG
@given(kind=KINDS, data=st.data())
def test_truncated_files_are_rejected_or_exact_long(originals, workdir, kind, data):
    check_truncation(originals, workdir, kind, data)


# --- bit flips ---------------------------------------------------------------------------------------

def check_bit_flip(originals: dict[str, Original], workdir: Path, kind: str, data: st.DataObject) -> None:
    original = originals[kind]
    at = data.draw(st.integers(0, len(original.data) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(original.data)
    damaged[at] ^= 1 << bit
    df = attempt(workdir, original.name, bytes(damaged))
    if df is not None and at not in original.last_char_length_field:
        assert df.height == len(original.rows), f"a flip of bit {bit} at byte {at} changed the row count silently"


@quick(500)
@given(kind=KINDS, data=st.data())
def test_bit_flips_are_rejected_or_keep_the_row_count(originals, workdir, kind, data):
    check_bit_flip(originals, workdir, kind, data)


@pytest.mark.slow
@LONG
@given(kind=KINDS, data=st.data())
def test_bit_flips_are_rejected_or_keep_the_row_count_long(originals, workdir, kind, data):
    check_bit_flip(originals, workdir, kind, data)


# --- odd encodings and layouts of valid files ----------------------------------------------------------

VALUES = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                      max_size=12))
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252", "latin-1"]


@quick(250)
@given(rows=st.lists(st.tuples(VALUES, VALUES, VALUES), max_size=6), encoding=st.sampled_from(ENCODINGS),
       terminator=st.sampled_from(["\n", "\r\n"]), quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       final_newline=st.booleans())
def test_csv_in_any_encoding_and_layout_reads_exactly_or_is_rejected(workdir, rows, encoding, terminator, quoting,
                                                                     final_newline):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator, quoting=quoting)
    writer.writerows([["STUDYID", "USUBJID", "COVAL"], *[["" if v is None else v for v in r] for r in rows]])
    text = buffer.getvalue() if final_newline else buffer.getvalue()[: -len(terminator)]
    # A CR in a value is quoted only when it is part of the line terminator: written bare, it cannot
    # be told from a CRLF line end, by any reader.
    assume(terminator == "\r\n" or quoting == csv.QUOTE_ALL or not any("\r" in (v or "") for row in rows for v in row))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    df = attempt(workdir, "fz.csv", data)
    expected = [tuple(v or None for v in r) for r in rows]
    if encoding in ("utf-8", "utf-8-sig") and (final_newline or quoting == csv.QUOTE_ALL):
        assert df is not None, "a whole UTF-8 CSV was rejected"
    if df is not None:
        assert df.columns[:3] == ["STUDYID", "USUBJID", "COVAL"] and rows_of(df) == expected


ASCII = st.text(string.ascii_letters + string.digits + "-_.,;:'\"()/ ", max_size=20).map(str.strip)


@quick(60)
@given(rows=st.lists(st.tuples(ASCII.filter(bool), st.one_of(st.none(), st.integers(-10**9, 10**9).map(lambda i: i / 64)),
                               ASCII), max_size=25),
       version=st.sampled_from([5, 8]))
def test_whole_xpt_files_of_any_width_read_every_row(workdir, rows, version):
    frame = pd.DataFrame(rows, columns=["USUBJID", "AVAL", "COVAL"]).astype({"USUBJID": object, "AVAL": float,
                                                                             "COVAL": object})
    path = workdir / "rt.xpt"
    pyreadstat.write_xport(frame, str(path), table_name="RT", file_format_version=version)
    df = read_file(path)[0]
    assert rows_of(df) == [(u, a, c or None) for u, a, c in rows]


@quick(80)
@given(n=st.integers(0, 60), group=st.integers(1, 25), compression=st.sampled_from(["zstd", "snappy", "gzip", "none"]),
       dictionary=st.booleans(), writer=st.sampled_from(["pyarrow", "polars"]))
def test_whole_parquet_files_of_any_layout_read_every_row(workdir, n, group, compression, dictionary, writer):
    frame = pl.DataFrame({"USUBJID": [f"S-{i}" for i in range(n)], "AVAL": [i / 4 if i % 3 else None for i in range(n)]},
                         schema={"USUBJID": pl.String, "AVAL": pl.Float64})
    path = workdir / "rt.parquet"
    if writer == "polars":
        frame.write_parquet(path, row_group_size=group, compression="uncompressed" if compression == "none" else compression)
    else:
        pq.write_table(pa.Table.from_pydict(frame.to_dict(as_series=False)), path, row_group_size=group,
                       compression=compression, use_dictionary=dictionary)
    assert rows_of(read_file(path)[0]) == frame.rows()
