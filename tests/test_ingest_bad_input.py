"""Bad input: each case gets a clear error naming the file (and row/column) or a quarantine, and
the raw bytes are never lost."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.conftest import make_drop
from trialsynth.domains import DOMAINS
from trialsynth.ingest.landing import IncompleteDropError, open_drop, scan_ready_drops
from trialsynth.ingest.pipeline import ingest_raw_version, read_quarantine
from trialsynth.ingest.raw_zone import land_drop
from trialsynth.ingest.readers import UnreadableFileError, read_file
from trialsynth.names import partition_key, validate_name

DM_HEADER = "STUDYID,DOMAIN,USUBJID,SUBJID,SITEID,AGE,SEX,ARMCD,ARM,RFSTDTC\n"
DM_ROWS = [
    "S1,DM,S1-001,001,701,63,F,PBO,Placebo,2024-01-05\n",
    "S1,DM,S1-002,002,701,71,M,XAN,Xanomab,2024-01-09\n",
    "S1,DM,S1-003,003,702,58,F,PBO,Placebo,2024-02-01\n",
]


def ingest(tmp_path: Path, files: dict[str, bytes]):
    landing, raw, lake = tmp_path / "landing", tmp_path / "raw", tmp_path / "lake"
    make_drop(landing, "t1", "S1", "d1", files)
    version = land_drop(open_drop(landing, "t1", "S1", "d1"), raw)
    return version, ingest_raw_version(version, lake, log=lambda _m: None), lake


def test_good_csv_lands_all_rows(tmp_path):
    _, report, lake = ingest(tmp_path, {"dm.csv": (DM_HEADER + "".join(DM_ROWS)).encode()})
    assert report.domains["dm"].rows_passed == 3 and report.rows_quarantined == 0
    bronze = pl.read_parquet(lake / "t1" / "S1" / "bronze" / "dm.parquet")
    assert bronze["AGE"].dtype == pl.Float64 and bronze["AGE"].to_list() == [63.0, 71.0, 58.0]
    assert bronze["tenant_id"].unique().to_list() == ["t1"]
    # every other domain exists, empty, with its full schema, so SQL never breaks on an absent domain
    for domain, spec in DOMAINS.items():
        frame = pl.read_parquet(lake / "t1" / "S1" / "bronze" / f"{domain}.parquet")
        assert set(spec.column_names) <= set(frame.columns)
    index = pl.read_parquet(lake / "t1" / "S1" / "bronze" / "_domains.parquet")
    assert index.filter(pl.col("present"))["domain"].to_list() == ["dm"]


def test_wrong_type_and_out_of_range_go_to_quarantine_with_row_and_column(tmp_path):
    rows = [DM_ROWS[0], "S1,DM,S1-002,002,701,seventy,M,XAN,Xanomab,2024-01-09\n",
            "S1,DM,S1-003,003,702,250,F,PBO,Placebo,2024-02-31x\n"]
    version, report, lake = ingest(tmp_path, {"dm.csv": (DM_HEADER + "".join(rows)).encode()})
    dm = report.domains["dm"]
    assert (dm.rows_in, dm.rows_passed, dm.rows_quarantined) == (3, 1, 2)
    reasons = read_quarantine(dm.reasons_path, "t1")
    got = {(r["row"], r["column"], r["rule"]) for r in reasons.to_dicts()}
    assert (2, "AGE", "type:float") in got
    assert (3, "AGE", "expect_column_values_to_be_between") in got
    assert (3, "RFSTDTC", "expect_column_values_to_match_regex") in got
    assert set(reasons["file"]) == {"dm.csv"}
    quarantined = read_quarantine(dm.quarantine_path, "t1")
    assert quarantined.filter(pl.col("_source_row") == 2)["AGE"].item() == "seventy"  # original text kept
    assert version.read_bytes("dm.csv").count(b"\n") == 4  # raw bytes untouched


def test_duplicate_keys_are_quarantined(tmp_path):
    _, report, _ = ingest(tmp_path, {"dm.csv": (DM_HEADER + DM_ROWS[0] + DM_ROWS[0] + DM_ROWS[1]).encode()})
    assert report.domains["dm"].rows_quarantined == 2 and report.domains["dm"].rows_passed == 1


def test_truncated_csv_is_rejected_whole(tmp_path):
    data = (DM_HEADER + "".join(DM_ROWS)).encode()[:-25]  # cut mid-row, no final newline
    version, report, lake = ingest(tmp_path, {"dm.csv": data})
    assert report.failures["dm.csv"].startswith(f"dm.csv: truncated at byte {len(data)}: ")
    assert "has 7 of 10 fields" in report.failures["dm.csv"]
    assert "dm" not in report.domains and not (lake / "t1" / "S1" / "bronze" / "dm.parquet").exists()
    assert version.read_bytes("dm.csv") == data  # the raw zone keeps the bytes as sent


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("dm.csv", b"", "empty file (0 bytes)"),
        ("dm.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "binary content"),
        ("dm.csv", (DM_HEADER + "S1,DM,S1-001,001,701,63,F,PBO,Plac\xe9bo,2024-01-05\n").encode("latin-1"), "not valid UTF-8"),
        ("dm.xpt", b"", "empty file (0 bytes)"),
        ("dm.xpt", b"HEADER RECORD*******LIBRARY garbage", "not a readable SAS transport"),
        ("dm.csv", b"STUDYID,DOMAIN\nS1,DM\n", "required column(s) USUBJID, SITEID missing"),
    ],
)
def test_unreadable_file_fails_with_clear_error_and_keeps_raw_bytes(tmp_path, name, data, message):
    version, report, lake = ingest(tmp_path, {name: data, "ae.csv": b"STUDYID,USUBJID,AESEQ,AETERM\nS1,S1-001,1,Headache\n"})
    assert name in report.failures
    assert report.failures[name].startswith(f"{name}: ") and message in report.failures[name]
    assert version.read_bytes(name) == data  # the raw zone keeps the bytes as sent
    # the drop is not taken: nothing of it reaches bronze (a study's bronze is always one whole drop)
    assert not report.bronze_written and not (lake / "t1" / "S1" / "bronze").exists()
    assert report.domains["ae"].rows_in == 1  # the other files were still checked, for the report


def test_non_utf8_error_names_line(tmp_path):
    path = tmp_path / "dm.csv"
    path.write_bytes((DM_HEADER + DM_ROWS[0] + "S1,DM,S1-002,002,701,71,M,XAN,Caf\xe9,2024-01-09\n").encode("latin-1"))
    with pytest.raises(UnreadableFileError, match=r"dm.csv: not valid UTF-8: byte 0xe9 .*\(line 3\)"):
        read_file(path)


def test_drop_without_ready_marker_is_not_read(tmp_path):
    make_drop(tmp_path, "t1", "S1", "half", {"dm.csv": DM_HEADER.encode()}, ready=False)
    with pytest.raises(IncompleteDropError, match="no _READY marker"):
        open_drop(tmp_path, "t1", "S1", "half")
    drops, skipped = scan_ready_drops(tmp_path)
    assert drops == [] and "incomplete" in skipped[0]


@pytest.mark.parametrize("bad", ["../evil", "a b", "x;drop table", "o'brien", "", "a|b", "..", "/abs", "a\nb"])
def test_unsafe_tenant_and_study_names_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid tenant"):
        validate_name(bad, "tenant")
    with pytest.raises(ValueError, match="invalid study"):
        partition_key("acme", bad)


def test_unsafe_names_in_landing_zone_are_skipped_with_reason(tmp_path):
    make_drop(tmp_path, "bad tenant", "S1", "d1", {"dm.csv": DM_HEADER.encode()})
    drops, skipped = scan_ready_drops(tmp_path)
    assert drops == [] and "invalid tenant 'bad tenant'" in skipped[0]


def test_xpt_zeros_stay_zeros(cdisc_sdtm):
    ex, _ = read_file(cdisc_sdtm / "ex.xpt")
    assert ex["EXDOSE"].min() == 0.0  # pandas' xport reader gives 5.4e-79 here
    assert (ex["EXDOSE"] == 0).sum() > 0
