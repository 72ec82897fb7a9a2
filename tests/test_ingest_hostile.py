"""Hostile and careless drops beyond issue 9's list: each ends with every row in bronze or in
quarantine with a reason, or with the drop refused naming the file (and the column where one is to
blame) — never a silent loss, never a silent change of a value."""

from __future__ import annotations

import polars as pl
import pytest

from tests.test_ingest_integrity import AE, DM, DM_OK, reasons, run

GOOD_DM = DM + "".join(DM_OK)


def _accounted(report) -> None:
    """Every row read is in bronze or in quarantine."""
    for name, outcome in report.domains.items():
        assert outcome.rows_in == outcome.rows_passed + outcome.rows_quarantined, (name, outcome)


def _bronze(lake, name: str) -> pl.DataFrame:
    return pl.read_parquet(lake / "bronze" / f"{name}.parquet")


def test_a_quoted_field_holding_a_line_break_stays_one_row(tmp_path):
    ae = AE + 'S1,AE,S1-001,1,"HEAD\nACHE",2024-02-01\r\nS1,AE,S1-002,1,NAUSEA,2024-02-03\r\n'
    _raw, report, lake = run(tmp_path, {"dm.csv": GOOD_DM, "ae.csv": ae})
    assert not report.failures
    _accounted(report)
    assert sorted(_bronze(lake, "ae")["AETERM"].to_list()) == ["HEAD\nACHE", "NAUSEA"]


def test_a_header_only_file_is_a_domain_with_no_rows(tmp_path):
    _raw, report, lake = run(tmp_path, {"dm.csv": GOOD_DM, "ae.csv": AE})
    assert not report.failures
    assert report.domains["ae"].rows_in == 0 and _bronze(lake, "ae").height == 0


def test_an_empty_file_refuses_the_drop_naming_it(tmp_path):
    _raw, report, _lake = run(tmp_path, {"dm.csv": GOOD_DM, "ae.csv": b""})
    assert "ae.csv" in report.failures and not report.bronze_written


def test_a_repeated_column_name_refuses_the_drop_naming_the_column(tmp_path):
    dm = "STUDYID,DOMAIN,USUBJID,SITEID,AGE,AGE,SEX,RFSTDTC\nS1,DM,S1-001,701,63,64,F,2024-01-05\n"
    _raw, report, _lake = run(tmp_path, {"dm.csv": dm})
    assert "dm.csv" in report.failures and "AGE" in report.failures["dm.csv"]


def test_a_semicolon_separated_file_is_not_taken_as_one_column(tmp_path):
    dm = GOOD_DM.replace(",", ";")
    _raw, report, _lake = run(tmp_path, {"dm.csv": dm})
    assert "dm.csv" in report.failures and not report.bronze_written
    assert "USUBJID" in report.failures["dm.csv"]


def test_a_required_column_missing_refuses_the_drop_naming_it(tmp_path):
    ae = "STUDYID,DOMAIN,AESEQ,AETERM,AESTDTC\nS1,AE,1,NAUSEA,2024-02-03\n"
    _raw, report, _lake = run(tmp_path, {"dm.csv": GOOD_DM, "ae.csv": ae})
    assert "ae.csv" in report.failures and "USUBJID" in report.failures["ae.csv"]


def test_lower_case_headers_and_file_names_are_not_lost(tmp_path):
    dm = GOOD_DM.split("\n", 1)
    _raw, report, lake = run(tmp_path, {"DM.CSV": dm[0].lower() + "\n" + dm[1]})
    # Either read as DM with its rows, or refused naming the file: never an empty DM.
    if report.failures:
        assert "DM.CSV" in report.failures
    else:
        _accounted(report)
        assert report.domains["dm"].rows_passed == 3


@pytest.mark.parametrize("value", ["1,5", "63 years", "  "])
def test_a_number_that_is_not_a_number_is_quarantined_naming_row_and_column(tmp_path, value):
    """A decimal comma, a unit in the cell, a cell of spaces (not empty): the row is quarantined with the
    column named, never read as another number or as missing."""
    dm = GOOD_DM + f'S1,DM,S1-004,702,"{value}",M,2024-02-02\n'
    _raw, report, _lake = run(tmp_path, {"dm.csv": dm})
    assert not report.failures
    _accounted(report)
    assert report.domains["dm"].rows_quarantined == 1
    (reason,) = reasons(report, "dm").rows(named=True)
    assert (reason["file"], reason["row"], reason["column"]) == ("dm.csv", 4, "AGE")


def test_the_same_domain_sent_twice_in_two_formats_is_refused(tmp_path):
    import io

    import pandas as pd
    import pyreadstat  # noqa: F401  (the XPT writer below needs it)

    frame = pd.read_csv(io.StringIO(GOOD_DM))
    xpt = tmp_path / "dm.xpt"
    pyreadstat.write_xport(frame, str(xpt), table_name="DM", file_format_version=5)
    _raw, report, _lake = run(tmp_path, {"dm.csv": GOOD_DM, "dm.xpt": xpt.read_bytes()})
    assert report.failures and not report.bronze_written


def test_a_stray_readme_is_reported_not_silently_set_aside(tmp_path):
    _raw, report, _lake = run(tmp_path, {"dm.csv": GOOD_DM, "README.txt": "sent by the CRO\n"})
    assert "README.txt" in report.placements or "README.txt" in report.failures


def test_surrounding_spaces_in_a_code_do_not_pass_as_another_value(tmp_path):
    dm = GOOD_DM + "S1,DM,S1-004,702,61, F ,2024-02-02\n"
    _raw, report, lake = run(tmp_path, {"dm.csv": dm})
    assert not report.failures
    _accounted(report)
    sexes = set(_bronze(lake, "dm")["SEX"].to_list())
    assert sexes <= {"F", "M"}, sexes  # stripped to F, or the row is quarantined
