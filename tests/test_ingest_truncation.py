"""Truncated and damaged files are rejected whole, with the file and the byte offset named, and never
land a row: XPT, CSV and Parquet cut the ways transfers cut them (issue 9, item 1)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import polars as pl
import pyreadstat
import pytest

from tests.conftest import make_drop
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.ingest.bronze import bronze_dir
from trialsynth.ingest.landing import open_drop
from trialsynth.ingest.pipeline import ingest_raw_version
from trialsynth.ingest.raw_zone import land_drop
from trialsynth.ingest.readers import UnreadableFileError, read_file

STUDY = "TRUNC-001"
OBS_HEADER = b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!"


@pytest.fixture(scope="module")
def drops(tmp_path_factory) -> dict[str, Path]:
    """The demo study written as a csv, an xpt and a parquet drop: fmt -> drop folder."""
    tables = generate_study("t1", STUDY, n_subjects=200, n_sites=4, seed=5)
    landing = tmp_path_factory.mktemp("landing")
    return {fmt: write_drop(tables, landing, "t1", STUDY, drop_id=f"d-{fmt}", fmt=fmt) for fmt in ("csv", "xpt", "parquet")}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rejected(path: Path, *fragments: str) -> str:
    """read_file refuses ``path``; the message names the file and contains every fragment."""
    with pytest.raises(UnreadableFileError) as info:
        read_file(path)
    message = str(info.value)
    assert message.startswith(f"{path.name}: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


def assert_drop_lands_nothing_from(tmp_path: Path, study: str, files: dict[str, bytes], name: str, domain: str,
                                   *fragments: str) -> None:
    """Through the ingest pipeline: the file fails with the message, its raw bytes stay, and the
    domain's bronze holds nothing from it."""
    landing, raw_dir, lake = tmp_path / "landing", tmp_path / "raw", tmp_path / "lake"
    make_drop(landing, "t1", study, "d1", files)
    raw = land_drop(open_drop(landing, "t1", study, "d1"), raw_dir)
    report = ingest_raw_version(raw, lake, log=lambda _m: None)
    assert report.failures[name].startswith(f"{name}: ")
    for fragment in fragments:
        assert fragment in report.failures[name]
    assert raw.read_bytes(name) == files[name]
    assert not (bronze_dir(lake, "t1", study) / f"{domain}.parquet").exists()


def obs_layout(path: Path) -> tuple[int, int, int]:
    """(first data byte, bytes per observation, rows) from the OBS header and pyreadstat's metadata,
    independent of the reader under test."""
    data = path.read_bytes()
    _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
    rows = len(pyreadstat.read_xport(str(path), encoding="latin1")[0])
    return data.index(OBS_HEADER) + 80, sum(meta.variable_storage_width.values()), rows


def boundary_cut_inside_data(path: Path) -> tuple[int, int]:
    """An 80-byte record boundary near the middle of the data that is not an observation boundary,
    and the offset of the observation it cuts."""
    start, width, _ = obs_layout(path)
    size = path.stat().st_size
    cut = start + (size - start) // 160 * 80
    while (cut - start) % width == 0:
        cut += 80
    return cut, start + (cut - start) // width * width


# --- XPT ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["half", "one byte short", "record boundary inside the data"])
def test_cut_demo_vs_xpt_is_rejected_with_offset(drops, tmp_path, how):
    original = drops["xpt"] / "vs.xpt"
    data = original.read_bytes()
    cut = {"half": len(data) // 2, "one byte short": len(data) - 1,
           "record boundary inside the data": boundary_cut_inside_data(original)[0]}[how]
    message = rejected(write(tmp_path, "vs.xpt", data[:cut]), f"truncated at byte {cut}:")
    if how == "record boundary inside the data":
        assert f"starts at byte {boundary_cut_inside_data(original)[1]}" in message
    dm = (drops["csv"] / "dm.csv").read_bytes()
    assert_drop_lands_nothing_from(tmp_path / "pipe", STUDY, {"dm.csv": dm, "vs.xpt": data[:cut]}, "vs.xpt", "vs",
                                   f"truncated at byte {cut}")


@pytest.mark.parametrize("how", ["half", "one byte short", "record boundary inside the data"])
def test_cut_cdisc_pilot_xpt_is_rejected_with_offset(cdisc_sdtm, tmp_path, how):
    original = cdisc_sdtm / "ae.xpt"
    data = original.read_bytes()
    cut = {"half": len(data) // 2, "one byte short": len(data) - 1,
           "record boundary inside the data": boundary_cut_inside_data(original)[0]}[how]
    rejected(write(tmp_path, "ae.xpt", data[:cut]), f"truncated at byte {cut}:")
    dm = (cdisc_sdtm / "dm.xpt").read_bytes()
    assert_drop_lands_nothing_from(tmp_path / "pipe", "CDISCPILOT01", {"dm.xpt": dm, "ae.xpt": data[:cut]},
                                   "ae.xpt", "ae", f"truncated at byte {cut}")


def test_every_complete_cdisc_pilot_xpt_reads_all_rows(cdisc_sdtm):
    for path in sorted(cdisc_sdtm.glob("*.xpt")):
        start, width, rows = obs_layout(path)
        df, _ = read_file(path)
        assert df.height == rows
        assert start + math.ceil(rows * width / 80) * 80 == path.stat().st_size  # whole observations + padding


def test_xpt_with_a_second_member_is_rejected(drops, tmp_path):
    first, second = (drops["xpt"] / "dm.xpt").read_bytes(), (drops["xpt"] / "ds.xpt").read_bytes()
    rejected(write(tmp_path, "dm.xpt", first + second[240:]), f"a second member (dataset) starts at byte {len(first)}")


def test_xpt_cut_inside_the_headers_is_rejected(drops, tmp_path):
    data = (drops["xpt"] / "dm.xpt").read_bytes()
    rejected(write(tmp_path, "dm.xpt", data[:700]), "truncated at byte 700")
    rejected(write(tmp_path, "dm.xpt", data[: data.index(OBS_HEADER)]), f"truncated at byte {data.index(OBS_HEADER)}")


def test_xpt_sent_through_ascii_ftp_is_rejected(drops, tmp_path):
    """LF -> CRLF conversion, the classic damage to binary transport files."""
    data = (drops["xpt"] / "dm.xpt").read_bytes()
    assert b"\n" in data
    with pytest.raises(UnreadableFileError, match="dm.xpt: "):
        read_file(write(tmp_path, "dm.xpt", data.replace(b"\n", b"\r\n")))


def test_xpt_v8_cut_on_an_observation_and_record_boundary_is_rejected(tmp_path):
    """v5 cannot tell this cut (it stores no count); v8's OBSV8 header announces the count."""
    frame = pd.DataFrame({"USUBJID": [f"S-{i:03d}".ljust(72, "x") for i in range(12)], "AVAL": [float(i) for i in range(12)]})
    path = tmp_path / "adxx.xpt"
    pyreadstat.write_xport(frame, str(path), table_name="ADXX", file_format_version=8)
    assert read_file(path)[0].height == 12
    data = path.read_bytes()
    cut = data.index(b"HEADER RECORD*******OBSV8") + 80 + 5 * 80  # 5 of 12 observations of 80 bytes
    rejected(write(tmp_path, "adxx.xpt", data[:cut]), f"truncated at byte {cut}", "announces 12 observations")


# --- CSV ---------------------------------------------------------------------------------------------

def cut_inside_last_field(data: bytes) -> int:
    """An offset inside the multi-digit last field of a record near the middle of ``data``."""
    line_start = data.index(b"\n", len(data) // 2) + 1
    while True:
        line_end = data.index(b"\n", line_start)
        last = data.rindex(b",", line_start, line_end) + 1
        if line_end - last >= 2 and data[last: line_end].isdigit():
            return last + 1
        line_start = line_end + 1


def test_csv_cut_inside_its_last_field_is_rejected(drops, tmp_path):
    data = (drops["csv"] / "lb.csv").read_bytes()
    cut = cut_inside_last_field(data)
    line = data.count(b"\n", 0, cut) + 1
    rejected(write(tmp_path, "lb.csv", data[:cut]), f"truncated at byte {cut}:", f"line {line}", "may be cut")
    assert_drop_lands_nothing_from(tmp_path / "pipe", STUDY, {"lb.csv": data[:cut]}, "lb.csv", "lb",
                                   f"truncated at byte {cut}")


def test_csv_cut_mid_record_is_rejected_with_field_count(drops, tmp_path):
    data = (drops["csv"] / "vs.csv").read_bytes()
    header = data[: data.index(b"\n")].count(b",") + 1
    start = data.index(b"\n", len(data) // 2) + 1
    cut = data.index(b",", start) + 1  # the record keeps its first field only
    rejected(write(tmp_path, "vs.csv", data[:cut]), f"truncated at byte {cut}:", f"has 2 of {header} fields")


def test_csv_cut_inside_a_quoted_field_is_rejected(drops, tmp_path):
    data = (drops["csv"] / "ae.csv").read_bytes()
    opened = data.index(b',"', len(data) // 3) + 1
    for cut in (opened + 1, opened + 12):
        rejected(write(tmp_path, "ae.csv", data[:cut]), f"truncated at byte {cut}:",
                 f"inside a quoted field opened at byte {opened}")
    assert_drop_lands_nothing_from(tmp_path / "pipe", STUDY, {"ae.csv": data[: opened + 12]}, "ae.csv", "ae",
                                   f"truncated at byte {opened + 12}")


def test_csv_cut_after_a_newline_inside_a_quoted_field_is_rejected(tmp_path):
    data = b'STUDYID,USUBJID,COVAL\nS1,S1-001,"first line\nsecond line"\nS1,S1-002,"note\n'
    opened = data.rindex(b'"')
    rejected(write(tmp_path, "co.csv", data), f"truncated at byte {len(data)}:",
             f"quoted field opened at byte {opened}", "line 4")


def test_cut_cdisc_pilot_csv_is_rejected(cdisc_sdtm, tmp_path):
    data = (cdisc_sdtm / "lb.csv").read_bytes()
    cut = cut_inside_last_field(data)
    rejected(write(tmp_path, "lb.csv", data[:cut]), f"truncated at byte {cut}:")
    rejected(write(tmp_path, "lb.csv", data[: len(data) // 2]), f"truncated at byte {len(data) // 2}:")


def test_csv_ragged_row_in_the_middle_is_rejected_with_its_line(tmp_path):
    """A record with too few fields (a stray line break) is refused, not padded with nulls."""
    data = b"STUDYID,USUBJID,AGE\nS1,S1-001,63\nS1,S1-\n002,71\nS1,S1-003,58\n"
    rejected(write(tmp_path, "dm.csv", data), "record 2 (line 3, byte 33) has 2 of 3 fields")


def test_csv_variants_that_are_whole_read_every_row(tmp_path):
    rows = [("S1", "S1-001", "Café, \"au lait\"\nsecond line"), ("S1", "S1-002", None), ("S1", "S1-003", "plain")]
    body = 'STUDYID,USUBJID,COVAL\nS1,S1-001,"Café, ""au lait""\nsecond line"\nS1,S1-002,\nS1,S1-003,plain\n'
    variants = {
        "lf": body.encode(),
        "crlf": body.replace("\n", "\r\n").encode(),
        "utf-8 bom": b"\xef\xbb\xbf" + body.encode(),
        "crlf cut before its last LF": body.replace("\n", "\r\n").encode()[:-1],
        "no final newline after a closed quoted field": body.replace("plain\n", '"plain"').encode(),
        "blank lines": body.replace("\nS1,S1-003", "\n\nS1,S1-003").encode() + b"\n\n",
    }
    for name, data in variants.items():
        df, _ = read_file(write(tmp_path, "co.csv", data))
        assert df.columns[:3] == ["STUDYID", "USUBJID", "COVAL"], name
        got = [(a, b, c.replace("\r\n", "\n") if c else c) for a, b, c in df.select("STUDYID", "USUBJID", "COVAL").rows()]
        assert got == rows, name


def test_csv_with_a_zero_filled_block_is_rejected(drops, tmp_path):
    """What a crash leaves of a file whose size was already allocated."""
    data = bytearray((drops["csv"] / "vs.csv").read_bytes())
    data[20000:24096] = bytes(4096)
    rejected(write(tmp_path, "vs.csv", bytes(data)), "NUL byte at offset 20000")


def test_csv_without_final_newline_after_an_unquoted_field_is_rejected(tmp_path):
    data = b"STUDYID,USUBJID,AGE\nS1,S1-001,63\nS1,S1-002,71"  # "71" may be what is left of "71.5"
    rejected(write(tmp_path, "dm.csv", data), f"truncated at byte {len(data)}:", "'71' may be cut")


@pytest.mark.parametrize(("encoding", "bom"), [("utf-16", "FF FE"), ("utf-16-be", None), ("utf-16-le", None)])
def test_csv_in_utf16_asks_for_utf8(tmp_path, encoding, bom):
    data = "STUDYID,USUBJID\nS1,S1-001\n".encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    message = rejected(write(tmp_path, "dm.csv", data), "re-export")
    assert ("UTF-16" in message) and (bom is None or bom in message)


# --- Parquet -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["middle", "footer missing", "last byte missing"])
def test_cut_parquet_is_rejected_with_offset(drops, tmp_path, how):
    data = (drops["parquet"] / "vs.parquet").read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    cut = {"middle": len(data) // 2, "footer missing": len(data) - 8 - footer, "last byte missing": len(data) - 1}[how]
    rejected(write(tmp_path, "vs.parquet", data[:cut]), f"truncated at byte {cut}:", "no Parquet footer")
    assert_drop_lands_nothing_from(tmp_path / "pipe", STUDY, {"vs.parquet": data[:cut]}, "vs.parquet", "vs",
                                   f"truncated at byte {cut}")


def test_parquet_with_a_row_group_past_its_footer_is_rejected(tmp_path):
    """A footer that survived while the data before it was cut (bytes removed from the middle)."""
    path = tmp_path / "vs.parquet"
    pl.DataFrame({"USUBJID": [f"S-{i}" for i in range(5000)], "VSSTRESN": list(range(5000))}).write_parquet(
        path, row_group_size=1000, compression="uncompressed")
    data = path.read_bytes()
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    damaged = data[:4] + data[4 + 4000: footer_start] + data[footer_start:]
    rejected(write(tmp_path, "vs.parquet", damaged), "corrupt Parquet file (the file is")


def test_whole_files_of_every_format_read_identically(drops):
    for name in ("dm", "vs", "ae"):
        frames = [read_file(drops[fmt] / f"{name}.{fmt}")[0] for fmt in ("csv", "xpt", "parquet")]
        assert len({f.height for f in frames}) == 1
        assert frames[0]["USUBJID"].to_list() == frames[1]["USUBJID"].to_list() == frames[2]["USUBJID"].to_list()
