"""SAS transport (XPORT) file structure, checked before any of its rows is trusted.

readstat (under pyreadstat) stops silently at a cut observation and treats every trailing blank
observation as padding, so a file cut in half reads as a smaller, valid dataset. This module proves
the structure instead. An XPORT file is a sequence of 80-byte records:

==========  ====================================================================================
offset      record
==========  ====================================================================================
0           library header ``HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000...`` (v8: LIBV8)
80, 160     ``SAS     SAS     SASLIB  <version><os>`` + created / modified timestamps
240         member header ``...MEMBER  HEADER RECORD!!!!!!!...0140``: the NAMESTR length, 140
            (136 on VAX/VMS) (v8: MEMBV8)
320         descriptor header ``...DSCRPTR HEADER RECORD...`` (v8: DSCPTV8)
400, 480    ``SAS     <dataset name>SASDATA ...``, timestamps, dataset label and type
560         namestr header ``...NAMESTR HEADER RECORD!!!!!!!000000xxxx000...``, xxxx = variables (v8: NAMSTV8)
640         one NAMESTR per variable (big-endian: type at byte 0, 1 numeric / 2 character; length at
            byte 4; position in the observation at byte 84), blank-padded to a multiple of 80 bytes
(v8 only)   optional LABELV8 / LABELV9 records with long names and labels
next        observation header ``...OBS     HEADER RECORD...`` (v8: OBSV8, with the observation count)
then        the observations, ``obs_length`` = sum of the variable lengths each, back to back; the
            last record is padded with blanks (0x20) to 80 bytes
==========  ====================================================================================

Checked: every header record above at its offset; variable types, lengths (numeric 2-8 bytes) and
positions (contiguous from 0); the file length is a multiple of 80; the data after the observation
header is a whole number of observations plus fewer than 80 bytes of blank padding (v8: exactly the
announced count); no second member (dataset) follows. The reader then checks that pyreadstat
returned exactly :attr:`XportLayout.n_obs` rows.

Not detectable: XPORT v5 stores no observation count, so a v5 file cut exactly where an observation
ends on an 80-byte record boundary (every ``lcm(80, obs_length)`` bytes of data) is byte-for-byte a
complete smaller file; only a size, checksum or row count from the sender can tell. Trailing
observations that are entirely blank and lie in the last record are padding by the SAS definition;
a damaged byte in that padding makes an extra observation, refused when it leaves a number of
blank bytes or text with NUL bytes (a zero-filled block); a damaged text byte in the padding of an
all-character dataset, or zeros over the numbers only, cannot be told from a real observation. A damaged
length of the last variable (the only one no later position checks) can re-slice the data into a
different, still consistent, number of observations.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from trialsynth.ingest.integrity import FileStructureError

RECORD = 80
BLANK = 0x20
_PREFIX, _SUFFIX = b"HEADER RECORD*******", b"HEADER RECORD!!!!!!!"
# record kind -> its 8-byte name in v5 and in v8
_NAMES = {
    "library": (b"LIBRARY ", b"LIBV8   "),
    "member": (b"MEMBER  ", b"MEMBV8  "),
    "descriptor": (b"DSCRPTR ", b"DSCPTV8 "),
    "namestr": (b"NAMESTR ", b"NAMSTV8 "),
    "observation": (b"OBS     ", b"OBSV8   "),
}
_LABELS = {b"LABELV8 ": 6, b"LABELV9 ": 10}  # v8 label record name -> bytes of its per-label length fields


@dataclass(frozen=True)
class XportLayout:
    """What the headers of one XPORT member say, and the observation count its data bytes hold."""

    version: int  # 5 or 8
    n_variables: int
    obs_length: int  # bytes per observation
    data_start: int  # byte offset of the first observation
    n_obs: int


def xport_layout(path: Path) -> XportLayout:
    """Parse and check the structure of the XPORT file ``path``; raise FileStructureError if it is
    not exactly one complete member. Reads the headers and the last records only (memory-mapped)."""
    if path.stat().st_size == 0:
        raise FileStructureError("empty file (0 bytes)")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _Parser(buf).layout()


class _Parser:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.size = len(buf)
        self.version = 5
        self.variables: list[tuple[int, int, int]] = []  # (type, position in the observation, length)

    def record(self, offset: int, what: str) -> bytes:
        if offset + RECORD > self.size:
            raise FileStructureError(f"truncated at byte {self.size}: expected the {what} record at bytes "
                                     f"{offset}-{offset + RECORD} (a SAS transport file is 80-byte records)")
        return self.buf[offset: offset + RECORD]

    def header(self, offset: int, kind: str) -> bytes:
        names = _NAMES[kind]
        found = self.buf[offset: offset + len(_PREFIX) + 8 + len(_SUFFIX)]
        expected = _PREFIX + names[self.version != 5] + _SUFFIX
        if kind == "library" and (_PREFIX + names[1] + _SUFFIX).startswith(found):
            self.version = 8
        elif not expected.startswith(found):
            raise FileStructureError(f"not a readable SAS transport (XPT) file: byte {offset}: expected the {kind} "
                                     f"header record {expected.decode()!r}, found {found!r}")
        return self.record(offset, f"{kind} header")

    def layout(self) -> XportLayout:
        self.header(0, "library")
        if not self.record(80, "library (SAS SASLIB)").startswith(b"SAS     SAS     SASLIB  "):
            raise FileStructureError("not a readable SAS transport (XPT) file: byte 80: expected "
                                     "'SAS     SAS     SASLIB  ' after the library header")
        namestr_length = _number(self.header(240, "member")[74:78], 240 + 74, "NAMESTR length")
        if namestr_length not in (136, 140):
            raise FileStructureError(f"corrupt XPT member header at byte 240: NAMESTR length {namestr_length}, "
                                     "expected 140 (or 136)")
        self.header(320, "descriptor")
        if not self.record(400, "member (SAS dataset name)").startswith(b"SAS     "):
            raise FileStructureError("corrupt XPT member header at byte 400: expected 'SAS     ' and the dataset name")
        n_vars = _number(self.header(560, "namestr")[48:58], 560 + 48, "variable count")
        if n_vars == 0:
            raise FileStructureError("XPT member has no variables (NAMESTR header at byte 560 says 0)")
        obs_length = self._variables(640, n_vars, namestr_length)
        offset = 640 + math.ceil(n_vars * namestr_length / RECORD) * RECORD
        offset = self._skip_labels(offset)
        obs_header = self.header(offset, "observation")
        data_start = offset + RECORD
        announced = obs_header[48:].split()[0] if self.version == 8 and obs_header[48:].split() else b""
        n_obs = self._observations(data_start, obs_length, int(announced) if announced.isdigit() else None)
        return XportLayout(self.version, n_vars, obs_length, data_start, n_obs)

    def _variables(self, start: int, n_vars: int, namestr_length: int) -> int:
        end = start + n_vars * namestr_length
        if end > self.size:
            raise FileStructureError(f"truncated at byte {self.size}: the {n_vars} variable descriptors (NAMESTR) "
                                     f"need bytes {start}-{end}")
        position = 0
        for i in range(n_vars):
            at = start + i * namestr_length
            kind, _, length = struct.unpack(">hhh", self.buf[at: at + 6])
            (npos,) = struct.unpack(">i", self.buf[at + 84: at + 88])
            name = self.buf[at + 8: at + 16].decode("latin-1").strip()
            if kind not in (1, 2) or length < 1 or (kind == 1 and not 2 <= length <= 8) or npos != position:
                raise FileStructureError(
                    f"corrupt XPT variable descriptor {i + 1} ({name!r}) at byte {at}: type {kind}, length {length}, "
                    f"position {npos}; expected type 1 (numeric, 2-8 bytes) or 2 (character) at position {position}")
            self.variables.append((kind, position, length))
            position += length
        return position

    def _skip_labels(self, offset: int) -> int:
        """v8/v9 long-name and label records: a count, then per label its length fields and texts."""
        rec = self.record(offset, "observation header")
        name = rec[len(_PREFIX): len(_PREFIX) + 8]
        if self.version == 5 or not rec.startswith(_PREFIX) or name not in _LABELS:
            return offset
        count = _number((rec[48:].split() or [b""])[0], offset + 48, "label count")
        at, width = offset + RECORD, _LABELS[name]
        for _ in range(count):
            fields = self.buf[at: at + width]
            if len(fields) < width:
                raise FileStructureError(f"truncated at byte {self.size}: inside the XPT label records")
            at += width + sum(struct.unpack(f">{width // 2}H", fields)[1:])
        return math.ceil(at / RECORD) * RECORD

    def _observations(self, start: int, length: int, announced: int | None) -> int:
        if self.size % RECORD:
            raise FileStructureError(
                f"truncated at byte {self.size}: the file length is not a multiple of the 80-byte XPT record "
                f"(the last record has {self.size % RECORD} bytes)")
        self._no_second_member(start)
        data = self.size - start
        if announced is not None:  # v8 says how many observations follow
            if announced * length > data:
                raise FileStructureError(
                    f"truncated at byte {self.size}: the observation header announces {announced} observations "
                    f"of {length} bytes, so the data should end at byte {start + announced * length}")
            n = announced
        else:
            n = data // length
            while n and data - (n - 1) * length < RECORD and self._blank(start + (n - 1) * length, start + n * length):
                n -= 1  # an all-blank observation inside the last record is padding (SAS definition)
            self._no_damaged_padding(start, length, n)
        rest = data - n * length
        if rest >= RECORD or not self._blank(start + n * length, self.size):
            cut = start + n * length
            raise FileStructureError(
                f"truncated at byte {self.size}: observation {n + 1} starts at byte {cut} but only {rest} bytes "
                f"follow (an observation is {length} bytes); a complete file ends with whole observations "
                "and fewer than 80 bytes of blank padding")
        return n

    def _no_damaged_padding(self, start: int, length: int, n: int) -> None:
        """v5: an observation where the padding could be (less than 80 bytes before the end) is
        damaged padding, not data, if a number in it is blanks but one byte (SAS writes a missing
        number as '.' and zeros; a blank-patterned number is a magnitude near 1e-39) or a text value
        holds NUL bytes (text is blank-padded; NULs are a zero-filled block)."""
        k = n - 1
        while k >= 0 and self.size - (start + k * length) < RECORD:
            at = start + k * length
            for kind, position, width in self.variables:
                value = self.buf[at + position: at + position + width]
                if (value.count(BLANK) >= width - 1) if kind == 1 else (b"\x00" in value):
                    raise FileStructureError(
                        f"corrupt XPT: observation {k + 1} at byte {at} lies in the last record, where the blank "
                        f"padding is, and its value at byte {at + position} is damaged padding "
                        f"({'a number of blank bytes' if kind == 1 else 'text with NUL bytes'})")
            k -= 1

    def _blank(self, start: int, end: int) -> bool:
        return self.buf[start:end].count(BLANK) == end - start

    def _no_second_member(self, start: int) -> None:
        """A header record (80-byte aligned) inside the data is a second member or a corrupt file."""
        hit = self.buf.find(_PREFIX, start)
        while hit != -1:
            if hit % RECORD == 0 and self.buf[hit + 28: hit + 48] == _SUFFIX:
                kind = self.buf[hit + 20: hit + 28].decode("latin-1").strip()
                if kind in ("MEMBER", "MEMBV8"):
                    raise FileStructureError(
                        f"a second member (dataset) starts at byte {hit}; send one dataset per XPT file")
                raise FileStructureError(f"corrupt XPT: a {kind} header record at byte {hit} inside the data")
            hit = self.buf.find(_PREFIX, hit + 1)


def _number(field: bytes, offset: int, what: str) -> int:
    if not field.isdigit():
        raise FileStructureError(f"corrupt XPT header: the {what} at byte {offset} is {field!r}, not a number")
    return int(field)
