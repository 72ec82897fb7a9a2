"""Structural proofs that a CSV or Parquet source file is complete, before any of its rows is trusted.

A file cut off in transfer (or by a full disk) usually still parses: a CSV cut inside its last field
gives one row with a shorter number, a Parquet cut anywhere loses its footer. The checks here prove
from the bytes that the file ends where its format says it must, with no second pass over big files
(only C-speed ``bytes.count``/``find`` scans; a full Python-level parse only for CSVs that contain
quote characters or blank lines). SAS transport files: :mod:`trialsynth.ingest.xpt`.

Every check raises :class:`FileStructureError` whose message gives the byte offset and what was
expected; ``read_file`` turns it into ``UnreadableFileError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (  # longest first: the UTF-32LE mark starts with the UTF-16LE one
    (b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"),
)
PARQUET_MAGIC = b"PAR1"


class FileStructureError(ValueError):
    """The bytes are not one complete file of the expected format (cut, corrupt, wrong encoding)."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (or its type when the message is empty)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# --- CSV -------------------------------------------------------------------------------------------

def strip_csv_bom(data: bytes) -> tuple[bytes, int]:
    """``(data without a UTF-8 byte-order mark, number of bytes removed)``.

    A UTF-16/UTF-32 byte-order mark is refused with a message asking for UTF-8: offsets in every
    later message then refer to the sender's own bytes.
    """
    if data.startswith(UTF8_BOM):
        return data[len(UTF8_BOM):], len(UTF8_BOM)
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            raise FileStructureError(f"{name} text (byte-order mark {bom.hex(' ').upper()} at byte 0); "
                                     "re-export the file as UTF-8 CSV")
    return data, 0


def check_csv_text(data: bytes, base: int = 0) -> None:
    """Refuse binary content, text that is not UTF-8 and whitespace-only files. ``base``: bytes
    stripped before ``data`` (a BOM), added to every offset reported."""
    head = data[:8192]
    if b"\x00" in head:
        hint = ("; it looks like UTF-16 text without a byte-order mark: re-export it as UTF-8"
                if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4 else "")
        raise FileStructureError(f"binary content (NUL bytes) in a file named .csv; not a text CSV export{hint}")
    nul = data.find(b"\x00")
    if nul != -1:
        raise FileStructureError(f"NUL byte at offset {base + nul} (line {_line_of(data, nul)}): a zero-filled or "
                                 "binary block inside the text; the file is damaged")
    try:
        if not data.isascii():  # ASCII is UTF-8; isascii is a fast scan, decoding copies
            data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == len(data) and exc.reason == "unexpected end of data":
            raise FileStructureError(f"truncated at byte {base + len(data)}: the file ends inside a multi-byte "
                                     f"UTF-8 character starting at byte {base + exc.start}") from exc
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileStructureError(f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {base + exc.start} "
                                 f"(line {line}); re-export the file as UTF-8") from exc
    if not data or data.isspace():  # isspace stops at the first other byte; strip() would copy the file
        raise FileStructureError("no header row (file holds only whitespace)")


@dataclass(frozen=True)
class CsvLayout:
    """What the structure check proved about a CSV: its header and its records."""

    header: list[str]
    records: int  # data records, blank lines included (the CSV parser returns them as all-null rows)
    blank_rows: list[int]  # 0-based data rows that are blank lines: not rows of the source


def csv_layout(data: bytes, base: int = 0) -> CsvLayout:
    """Prove that ``data`` (UTF-8, BOM stripped) is a whole CSV; raise FileStructureError if not.

    Rules (RFC 4180 quoting, ``"`` doubled inside quoted fields, LF or CRLF line ends):

    * every quote is closed: an odd number of ``"`` means the file ends inside a quoted field;
    * the file ends on a record boundary: a final newline (or the CR of a CRLF). Without one, the
      last field may be cut ("123.45" cut to "12" is still a number), so the file is refused unless
      the last record has the header's field count and its last field is a closed quoted field,
      which is provably whole;
    * every record has the header's field count: a cut record, or a line break inserted into a
      record, is refused with its line, never padded with nulls. Blank lines are not records (as in
      pandas, pyarrow and DuckDB); with a single column they cannot be told from an empty value and
      are kept as one.

    Cost: ``bytes.count`` scans for a file without quotes and blank lines inside it; otherwise one
    pass of the csv module over the text (about 70 MB/s).
    """
    size, quotes = len(data), data.count(b'"')
    if b"\n" not in data and b"\r" in data.rstrip(b"\r"):
        raise FileStructureError("CR-only line endings (classic Mac OS); re-export with LF or CRLF line endings")
    if quotes % 2:
        opened = _unclosed_quote(data)
        raise FileStructureError(
            f"truncated at byte {base + size}: the file ends inside a quoted field opened at byte "
            f"{base + opened} (line {_line_of(data, opened)}); every quoted field must be closed")
    header = _fields(data[: _header_end(data)], base)
    if not header:
        raise FileStructureError("line 1 is empty; the first line must be the header row")
    if not data.endswith((b"\n", b"\r")):
        _check_unterminated_last_record(data, len(header), base)
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    end = len(data)
    while end and data[end - 1] in b"\r\n":  # the run of line ends closing the file (no copy of the data)
        end -= 1
    trailing_blank = max(data.count(b"\n", end) - 1, 0)
    if not quotes and data.count(b",") == (n_lines - trailing_blank) * (len(header) - 1):
        # No quotes: fields = commas + 1 per line. The parser refuses lines with too many fields,
        # so the total being exactly right proves that no line has too few.
        blank = range(n_lines - 1 - trailing_blank, n_lines - 1) if len(header) > 1 else range(0)
        return CsvLayout(header, n_lines - 1, list(blank))
    return _layout_exactly(data, header, base)


def _text(data: bytes) -> str:
    """The text as the CSV parser splits it: only LF ends a record; a CR is data, or part of a CRLF
    (the csv module would end a record at a bare CR, the CSV parser does not)."""
    return data.decode().replace("\r", "")


def _fields(record: bytes, base: int) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(_text(record), newline=""), strict=True), [])
    except csv.Error as exc:
        raise FileStructureError(f"malformed CSV record starting at byte {base}: {exc}") from exc


def _header_end(data: bytes) -> int:
    """Offset of the newline that ends the header record (a quoted header name may hold one)."""
    pos = data.find(b"\n")
    quotes = data.count(b'"', 0, max(pos, 0))
    while pos != -1 and quotes % 2:  # that newline is inside a quoted field: look further on
        following = data.find(b"\n", pos + 1)
        quotes += data.count(b'"', pos, following if following != -1 else len(data))
        pos = following
    return len(data) if pos == -1 else pos


def _last_record_start(data: bytes) -> int:
    """Offset where the last record starts: after the last newline that is outside quotes."""
    pos = data.rfind(b"\n")
    quotes = data.count(b'"', pos + 1)
    while pos != -1 and quotes % 2:  # that newline is inside a quoted field: look further back
        previous = data.rfind(b"\n", 0, pos)
        quotes += data.count(b'"', previous + 1, pos)
        pos = previous
    return pos + 1


def _check_unterminated_last_record(data: bytes, n_header: int, base: int) -> None:
    start = _last_record_start(data)
    record = data[start:]
    where = f"the last record (line {_line_of(data, start)}, from byte {base + start})"
    prefix = f"truncated at byte {base + len(data)}: the file does not end on a record boundary: "
    fields = _fields(record, base + start)
    if len(fields) != n_header:
        raise FileStructureError(prefix + f"{where} has {len(fields)} of {n_header} fields and no final newline")
    quoted_tail = '"' + fields[-1].replace('"', '""') + '"'
    text = _text(record)
    if text != quoted_tail and not text.endswith("," + quoted_tail):
        raise FileStructureError(
            prefix + f"{where} has no final newline and its last field {fields[-1][-20:]!r} may be cut; "
            "a complete CSV ends with a newline")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _unclosed_quote(data: bytes) -> int:
    """Offset of the quote that opens the field left unclosed at the end of ``data`` (error path only)."""
    opened, pos = -1, data.find(b'"')
    while pos != -1:
        if opened < 0:
            opened = pos
        elif data[pos + 1: pos + 2] == b'"':  # a doubled quote inside a quoted field
            pos += 1
        else:
            opened = -1
        pos = data.find(b'"', pos + 1)
    return opened if opened >= 0 else data.rfind(b'"')


def _layout_exactly(data: bytes, header: list[str], base: int) -> CsvLayout:
    """Field count of every record with the csv module (C parser): quoted or irregular files only."""
    reader = csv.reader(io.StringIO(_text(data), newline=""), strict=True)
    try:
        lengths = np.fromiter(map(len, reader), dtype=np.int64)
    except csv.Error as exc:
        raise FileStructureError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    wrong = np.flatnonzero((lengths != len(header)) & (lengths != 0))
    if wrong.size:
        number = int(wrong[0])
        reader = csv.reader(io.StringIO(_text(data), newline=""), strict=True)
        fields = next(itertools.islice(reader, number, None))
        offset = 0
        for _ in range(reader.line_num - 1):  # start of the line where that record ends
            offset = data.find(b"\n", offset) + 1
        raise FileStructureError(
            f"record {number} (line {reader.line_num}, byte {base + offset}) has {len(fields)} of {len(header)} "
            f"fields; every record must have the header's {len(header)} fields (a cut record or a stray line break)")
    blank = np.flatnonzero(lengths[1:] == 0) if len(header) > 1 else np.array([], dtype=np.int64)
    return CsvLayout(header, len(lengths) - 1, blank.tolist())


# --- Parquet ---------------------------------------------------------------------------------------

def read_parquet_whole(path: Path) -> pa.Table:
    """Read ``path`` after proving its footer is whole; check the rows read against the footer.

    Checks: the magic ``PAR1`` at byte 0 and in the last 4 bytes (any cut loses them); the footer
    length (the 4 bytes before the final magic) fits the file; the footer's row count equals the sum
    of its row groups' and the rows read; string data is valid UTF-8. pyarrow, not polars, decodes
    the pages: in fuzzing, polars panicked (even aborted the process) on damaged pages where pyarrow
    raises. pyarrow also refuses column chunks that point outside the file.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 8, 0))
        tail = fh.read(8)
    if head != PARQUET_MAGIC:
        raise FileStructureError(f"not a Parquet file: byte 0 holds {head!r}, expected the magic {PARQUET_MAGIC!r}")
    if size < 12 or tail[4:] != PARQUET_MAGIC:
        raise FileStructureError(
            f"truncated at byte {size}: no Parquet footer (a Parquet file ends with its footer, the footer "
            f"length and the magic {PARQUET_MAGIC!r}; the last 4 bytes are {tail[-4:]!r})")
    footer_start = size - 8 - int.from_bytes(tail[:4], "little")
    if footer_start < 4:
        raise FileStructureError(f"corrupt Parquet footer: its length field says it starts at byte {footer_start}, "
                                 f"before the data (the file is {size} bytes)")
    where = f"(the file is {size} bytes, its footer starts at byte {footer_start})"
    try:
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
        in_groups = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        table = parquet.read()
        table.validate(full=True)
        # drop key-value metadata (already applied to the types): polars panics on damaged metadata
        table = pa.Table.from_arrays(table.columns, schema=pa.schema([f.remove_metadata() for f in table.schema]))
    except Exception as exc:  # pyarrow raises OSError, ArrowInvalid ... for a damaged file
        raise FileStructureError(f"corrupt Parquet file {where}: {first_line(exc)}") from exc
    if not meta.num_rows == in_groups == table.num_rows:
        raise FileStructureError(f"the Parquet footer says {meta.num_rows} rows, its row groups {in_groups}, "
                                 f"and {table.num_rows} were read {where}")
    return table
