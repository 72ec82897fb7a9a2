"""The dbt project on a two-tenant bronze fixture.

One tenant/study sends every domain; the other (shaped like the CDISC pilot) has no DV, query log,
site table or CRF page log. The tests build everything with dbt-duckdb in-process, check the marts
against values computed by hand from the fixture rows below, rebuild one partition incrementally
while the other's bronze changed underneath, and run the ClickHouse dialect of the same models on
chDB over the same Parquet files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dbt.cli.main import dbtRunner, dbtRunnerResult

from trialsynth.domains import DOMAINS

DBT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "date": pa.string()}
ACME = ("acme", "ACME-001")
PILOT = ("pilot", "PILOT-01")
STAR_AND_MARTS = [
    "dim_study", "dim_subject", "dim_site", "dim_visit", "fact_observation", "fact_ae", "fact_query",
    "fact_missingness_cell", "mart_missingness", "mart_missingness_trend", "mart_data_availability",
]


# --------------------------------------------------------------------------- bronze fixture
def write_bronze(
    lake: Path, tenant: str, study: str, rows: dict[str, list[dict[str, Any]]], extras: tuple[str, ...] = ()
) -> None:
    """Write ``<lake>/<tenant>/<study>/bronze/`` as the ingest's bronze contract says.

    Every domain of ``DOMAINS`` gets a file: ``tenant_id, study_id``, the canonical columns typed
    (dates as ISO strings), ``extras`` (sponsor columns, strings), then ``_drop_id, _source_file,
    _source_row``. A domain absent from ``rows`` is written with 0 rows and marked not present in
    ``_domains.parquet``.
    """
    out = lake / tenant / study / "bronze"
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in DOMAINS.items():
        records = rows.get(name, [])
        fields = [pa.field("tenant_id", pa.string()), pa.field("study_id", pa.string())]
        fields += [pa.field(c.name, ARROW_TYPES[c.type]) for c in spec.columns]
        fields += [pa.field(x, pa.string()) for x in extras]
        fields += [pa.field("_drop_id", pa.string()), pa.field("_source_file", pa.string()),
                   pa.field("_source_row", pa.int64())]
        defaults = {"tenant_id": tenant, "study_id": study, "STUDYID": study, "DOMAIN": name.upper(),
                    "_drop_id": "drop-1", "_source_file": f"{name}.csv"}
        columns = {
            f.name: [
                i + 1 if f.name == "_source_row" else r.get(f.name, defaults.get(f.name))
                for i, r in enumerate(records)
            ]
            for f in fields
        }
        pq.write_table(pa.table(columns, schema=pa.schema(fields)), out / f"{name}.parquet")
    index = {
        "tenant_id": [tenant] * len(DOMAINS),
        "study_id": [study] * len(DOMAINS),
        "domain": list(DOMAINS),
        "present": [d in rows for d in DOMAINS],
        "rows": [len(rows.get(d, [])) for d in DOMAINS],
    }
    pq.write_table(pa.table(index), out / "_domains.parquet")


def _vs(usubjid: str, seq: int, test: str, visitnum: float, dtc: str | None, value: float | None,
        stat: str | None = None) -> dict[str, Any]:
    return {"USUBJID": usubjid, "VSSEQ": float(seq), "VSTESTCD": test, "VISITNUM": visitnum,
            "VISIT": f"VISIT {visitnum:g}", "VSDTC": dtc, "VSSTRESN": value,
            "VSSTRESC": None if value is None else f"{value:g}", "VSSTAT": stat}


def _lb(usubjid: str, seq: int, test: str, visitnum: float, dtc: str, value: float | None,
        text: str | None = None, stat: str | None = None) -> dict[str, Any]:
    return {"USUBJID": usubjid, "LBSEQ": float(seq), "LBTESTCD": test, "LBCAT": "CHEMISTRY",
            "VISITNUM": visitnum, "VISIT": f"VISIT {visitnum:g}", "LBDTC": dtc, "LBSTRESN": value,
            "LBSTRESC": text if text is not None else (None if value is None else f"{value:g}"),
            "LBSTNRLO": 0.0, "LBSTNRHI": 40.0, "LBSTAT": stat}


def _sv(usubjid: str, visitnum: float, dtc: str) -> dict[str, Any]:
    return {"USUBJID": usubjid, "VISITNUM": visitnum, "VISIT": f"VISIT {visitnum:g}",
            "VISITDY": 1.0 if visitnum == 1 else 15.0, "SVSTDTC": dtc, "SVENDTC": dtc}


def acme_rows() -> dict[str, list[dict[str, Any]]]:
    """Sponsor with every domain: 4 subjects on sites 01 and 02 (A-004 a screen failure)."""
    dm = [
        {"USUBJID": "A-001", "SITEID": "01", "AGE": 45.0, "SEX": "F", "ARMCD": "TRT", "ARM": "Treatment",
         "COUNTRY": "USA", "RFICDTC": "2024-01-02", "RFSTDTC": "2024-01-10", "RFENDTC": "2024-03-01"},
        {"USUBJID": "A-002", "SITEID": "01", "AGE": 52.0, "SEX": "M", "ARMCD": "PBO", "ARM": "Placebo",
         "COUNTRY": "USA", "RFICDTC": "2024-01-03", "RFSTDTC": "2024-01-11"},
        {"USUBJID": "A-003", "SITEID": "02", "AGE": 38.0, "SEX": "F", "ARMCD": "TRT", "ARM": "Treatment",
         "COUNTRY": "CAN", "RFICDTC": "2024-01", "RFSTDTC": "2024-01-15"},
        {"USUBJID": "A-004", "SITEID": "02", "AGE": 61.0, "SEX": "M", "ARMCD": "SCRNFAIL",
         "ARM": "Screen Failure", "COUNTRY": "CAN", "RFICDTC": "2024-01-05"},
    ]
    sv = [_sv("A-001", 1, "2024-01-08"), _sv("A-001", 2, "2024-01-22"), _sv("A-002", 1, "2024-01-09"),
          _sv("A-002", 2, "2024-01-23"), _sv("A-003", 1, "2024-01-15"), _sv("A-004", 1, "2024-01-06")]
    vs = [
        _vs("A-001", 1, "SYSBP", 1, "2024-01-08", 120), _vs("A-001", 2, "DIABP", 1, "2024-01-08", 80),
        _vs("A-001", 3, "SYSBP", 2, "2024-01-22T09:30", 118),
        _vs("A-002", 1, "SYSBP", 1, "2024-01-09", 130),
        _vs("A-002", 2, "DIABP", 1, "2024-01-09", None, stat="NOT DONE"),
        _vs("A-003", 1, "SYSBP", 1, "2024-01-15", None),  # a record without a result
        _vs("A-003", 2, "SYSBP", 2, "2024-01-29", 140),  # visit 2 is not in A-003's SV: not expected
        _vs("A-004", 1, "SYSBP", 1, "2024-01-06", 125), _vs("A-004", 2, "DIABP", 1, "2024-01-06", 85),
    ]
    lb = [
        _lb("A-001", 1, "ALT", 1, "2024-01-08", 22), _lb("A-001", 2, "ALT", 2, "2024-01-22", 55),
        _lb("A-002", 1, "ALT", 1, "2024-01-09", None, text="<5"),  # a text-only result is observed
        _lb("A-003", 1, "ALT", 1, "2024-01-15", None, stat="NOT DONE"),
    ]
    ae = [
        {"USUBJID": "A-001", "AESEQ": 1.0, "AETERM": "headache", "AEDECOD": "Headache",
         "AEBODSYS": "Nervous system disorders", "AESEV": "MILD", "AESER": "N",
         "AESTDTC": "2024-01-12", "AEENTDTC": "2024-01-20"},
        {"USUBJID": "A-002", "AESEQ": 1.0, "AETERM": "nausea", "AEDECOD": "Nausea",
         "AEBODSYS": "Gastrointestinal disorders", "AESEV": "SEVERE", "AESER": "Y",
         "AESTDTC": "2024-01-15", "AEENTDTC": "2024-01-16"},
    ]
    ds = [
        {"USUBJID": "A-001", "DSSEQ": 1.0, "DSDECOD": "COMPLETED", "DSCAT": "DISPOSITION EVENT", "DSSTDTC": "2024-03-01"},
        {"USUBJID": "A-002", "DSSEQ": 1.0, "DSDECOD": "INFORMED CONSENT OBTAINED", "DSCAT": "PROTOCOL MILESTONE",
         "DSSTDTC": "2024-01-03"},
        {"USUBJID": "A-002", "DSSEQ": 2.0, "DSDECOD": "ADVERSE EVENT", "DSCAT": "DISPOSITION EVENT", "DSSTDTC": "2024-02-01"},
        {"USUBJID": "A-004", "DSSEQ": 1.0, "DSDECOD": "SCREEN FAILURE", "DSCAT": "DISPOSITION EVENT", "DSSTDTC": "2024-01-06"},
    ]
    dv = [{"USUBJID": "A-002", "DVSEQ": 1.0, "DVTERM": "visit out of window", "DVSCAT": "IMPORTANT", "DVSTDTC": "2024-01-23"}]
    sites = [
        {"SITEID": "01", "SITENAME": "Boston", "COUNTRY": "USA", "CRO": "CRO-A", "ACTIVATION_DATE": "2023-12-01", "TARGET_ENROLLMENT": 10},
        {"SITEID": "02", "SITENAME": "Toronto", "COUNTRY": "CAN", "CRO": "CRO-B", "ACTIVATION_DATE": "2023-12-15", "TARGET_ENROLLMENT": 8},
        {"SITEID": "03", "SITENAME": "Denver", "COUNTRY": "USA", "CRO": "CRO-A", "TARGET_ENROLLMENT": 5},
    ]
    queries = [
        {"QUERYID": "Q1", "SITEID": "01", "USUBJID": "A-001", "QUERY_TYPE": "AUTO", "OPENED_DTC": "2024-01-20",
         "CLOSED_DTC": "2024-01-25", "STATUS": "CLOSED"},
        {"QUERYID": "Q2", "SITEID": "02", "USUBJID": "A-003", "QUERY_TYPE": "MANUAL", "OPENED_DTC": "2024-01-20",
         "STATUS": "OPEN"},
        {"QUERYID": "Q3", "SITEID": "01", "USUBJID": "A-002", "QUERY_TYPE": "MANUAL", "OPENED_DTC": "2024-02-25",
         "ANSWERED_DTC": "2024-02-26", "STATUS": "ANSWERED"},
    ]
    pages = [("A-001", 1, "VS", "2024-01-10"), ("A-001", 1, "LB", "2024-01-18"), ("A-001", 2, "VS", "2024-01-29"),
             ("A-002", 1, "VS", "2024-01-12"), ("A-003", 1, "VS", "2024-01-30"), ("A-003", 1, "LB", "2024-01-30"),
             ("A-004", 1, "VS", "2024-01-08")]
    crf_pages = [{"SITEID": "01" if u < "A-003" else "02", "USUBJID": u, "CRFPAGE": p, "VISITNUM": float(v),
                  "ENTRY_DATE": d} for u, v, p, d in pages]
    return {"dm": dm, "sv": sv, "vs": vs, "lb": lb, "ae": ae, "ds": ds, "dv": dv, "sites": sites,
            "queries": queries, "crf_pages": crf_pages}


def pilot_rows() -> dict[str, list[dict[str, Any]]]:
    """A study shaped like the CDISC pilot: no DV, query log, site table or CRF page log."""
    dm = [
        {"USUBJID": "P-1", "SITEID": "701", "AGE": 70.0, "SEX": "F", "ARMCD": "Pbo", "ARM": "Placebo",
         "COUNTRY": "USA", "RFSTDTC": "2014-01-06", "DMDTC": "2014-01-01"},
        {"USUBJID": "P-2", "SITEID": "701", "AGE": 75.0, "SEX": "M", "ARMCD": "Xan_Hi", "ARM": "Xanomeline High Dose",
         "COUNTRY": "USA", "RFSTDTC": "2014-01-07", "DMDTC": "2014-01-02"},
        {"USUBJID": "P-3", "SITEID": "702", "AGE": 80.0, "SEX": "F", "ARMCD": "Scrnfail", "ARM": "Screen Failure",
         "COUNTRY": "USA", "DMDTC": "2014-01-03"},
    ]
    sv = [_sv("P-1", 1, "2014-01-06"), _sv("P-1", 2, "2014-01-20"), _sv("P-2", 1, "2014-01-07"),
          _sv("P-2", 2, "2014-01-21"), _sv("P-3", 1, "2014-01-08")]
    vs = [_vs("P-1", 1, "WEIGHT", 1, "2014-01-06", 70), _vs("P-2", 1, "WEIGHT", 1, "2014-01-07", 80),
          _vs("P-3", 1, "WEIGHT", 1, "2014-01-08", 60), _vs("P-1", 2, "WEIGHT", 2, "2014-01-20", 71),
          _vs("P-2", 2, "WEIGHT", 2, "2014-01", None, stat="NOT DONE")]  # partial date: counts at the visit date
    lb = [_lb("P-1", 1, "ALB", 1, "2014-01-06T08:00", 38)]
    ae = [{"USUBJID": "P-1", "AESEQ": 1.0, "AETERM": "rash", "AEDECOD": "Rash", "AEBODSYS": "Skin disorders",
           "AESEV": "MILD", "AESER": "N", "AESTDTC": "2014-01"}]
    ds = [{"USUBJID": "P-1", "DSSEQ": 1.0, "DSDECOD": "COMPLETED", "DSCAT": "DISPOSITION EVENT", "DSSTDTC": "2014-01-20"},
          {"USUBJID": "P-3", "DSSEQ": 1.0, "DSDECOD": "SCREEN FAILURE", "DSCAT": "DISPOSITION EVENT", "DSSTDTC": "2014-01-08"}]
    return {"dm": dm, "sv": sv, "vs": vs, "lb": lb, "ae": ae, "ds": ds}


def write_fixture_lake(lake: Path) -> None:
    write_bronze(lake, *ACME, acme_rows())
    write_bronze(lake, *PILOT, pilot_rows(), extras=("DMDTC",))


# --------------------------------------------------------------------------- running dbt
def run_dbt(args: list[str], target_path: Path) -> dbtRunnerResult:
    """dbt in-process on this project, with artefacts and logs under ``target_path``."""
    return dbtRunner().invoke([
        *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
        "--target-path", str(target_path), "--log-path", str(target_path / "logs"), "--quiet",
    ])


def assert_success(result: dbtRunnerResult) -> None:
    failed = [f"{r.node.name}: {r.status} {r.message}" for r in (result.result or [])
              if str(r.status) not in ("success", "pass")]
    assert result.success and not failed, failed or result.exception


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse)) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tmp folder holding lake/ and the environment dbt reads (restored afterwards)."""
    root = tmp_path_factory.mktemp("dbt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        write_fixture_lake(root / "lake")
        yield root


@pytest.fixture(scope="module")
def built(env: Path) -> tuple[Path, dbtRunnerResult]:
    result = run_dbt(["build"], env / "target")
    return env / "warehouse.duckdb", result


# --------------------------------------------------------------------------- tests
def test_domain_list_matches_the_domain_contract() -> None:
    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())
    assert project["vars"]["trialsynth_domains"] == list(DOMAINS)
    sources = yaml.safe_load((DBT_DIR / "models" / "sources.yml").read_text())["sources"][0]["tables"]
    documented = {t.get("identifier", t["name"]): [c["name"] for c in t["columns"]] for t in sources}
    for name, spec in DOMAINS.items():
        assert documented[name] == ["tenant_id", "study_id", *spec.column_names, "_drop_id", "_source_file", "_source_row"]


def test_build_runs_every_model_and_test(built: tuple[Path, dbtRunnerResult]) -> None:
    _, result = built
    assert_success(result)
    names = {r.node.name for r in result.result if r.node.resource_type == "model"}
    assert {*STAR_AND_MARTS, "stg_domains", *(f"stg_{d}" for d in DOMAINS)} <= names
    n_tests = sum(r.node.resource_type == "test" for r in result.result)
    assert n_tests > 80


def test_missingness_matches_hand_count(built: tuple[Path, dbtRunnerResult]) -> None:
    warehouse, _ = built
    rows = query(warehouse, """
        select tenant_id, site_id, domain, variable, visitnum, n_expected, n_observed, n_missing, pct_missing
        from mart_missingness order by all""")
    # By hand from acme_rows()/pilot_rows(): expected = SV visits x tests collected at that visit.
    expected = {
        ("acme", "01", "LB", "ALT", 1.0): (2, 2, 0),   # A-002's text-only '<5' counts as a result
        ("acme", "01", "LB", "ALT", 2.0): (2, 1, 1),   # A-002 has no ALT record at visit 2
        ("acme", "01", "VS", "DIABP", 1.0): (2, 1, 1),  # A-002 NOT DONE
        ("acme", "01", "VS", "SYSBP", 1.0): (2, 2, 0),
        ("acme", "01", "VS", "SYSBP", 2.0): (2, 1, 1),  # A-002 no record
        # A-004 is a screen failure: none of its cells is expected, not even its recorded screening vitals
        ("acme", "02", "LB", "ALT", 1.0): (1, 0, 1),   # A-003 NOT DONE
        ("acme", "02", "VS", "DIABP", 1.0): (1, 0, 1),  # A-003 no record
        ("acme", "02", "VS", "SYSBP", 1.0): (1, 0, 1),  # A-003 record without result; its visit-2 record is not expected
        ("pilot", "701", "LB", "ALB", 1.0): (2, 1, 1),
        ("pilot", "701", "VS", "WEIGHT", 1.0): (2, 2, 0),
        ("pilot", "701", "VS", "WEIGHT", 2.0): (2, 1, 1),
        # site 702's only subject, P-3, is a screen failure (ARMCD Scrnfail): no cell
    }
    got = {r[:5]: r[5:8] for r in rows}
    assert got == expected
    for r in rows:
        assert r[8] == pytest.approx(100 * r[7] / r[5])


def test_missingness_trend_by_entry_week(built: tuple[Path, dbtRunnerResult]) -> None:
    warehouse, _ = built
    rows = query(warehouse, """
        select tenant_id, variable, time_basis, cast(week_start as varchar), n_expected_week, n_missing_week,
               cum_expected, cum_missing, cum_pct_missing
        from mart_missingness_trend where variable in ('SYSBP', 'WEIGHT') order by all""")
    # acme has a CRF page log: SYSBP cells count at their VS page entry (A-002 visit 2 has no page
    # and no record -> its visit date 2024-01-23); pilot has none: WEIGHT counts at the measurement
    # date (P-2's partial '2014-01' -> visit date 2014-01-21). Screen failures A-004 and P-3 have no cell.
    assert [r[:8] for r in rows] == [
        ("acme", "SYSBP", "crf_entry_date", "2024-01-08", 2, 0, 2, 0),
        ("acme", "SYSBP", "crf_entry_date", "2024-01-22", 1, 1, 3, 1),
        ("acme", "SYSBP", "crf_entry_date", "2024-01-29", 2, 1, 5, 2),
        ("pilot", "WEIGHT", "observation_date", "2014-01-06", 2, 0, 2, 0),
        ("pilot", "WEIGHT", "observation_date", "2014-01-20", 2, 1, 4, 1),
    ]
    assert [r[8] for r in rows] == pytest.approx([0, 100 / 3, 100 * 2 / 5, 0, 25])


def test_absent_domains_are_reported_not_available(built: tuple[Path, dbtRunnerResult]) -> None:
    warehouse, _ = built
    rows = query(warehouse, "select tenant_id, domain, is_present, row_count, availability from mart_data_availability")
    got = {(t, d): (p, n, a) for t, d, p, n, a in rows}
    assert len(got) == 2 * len(DOMAINS)
    for domain in ("dv", "queries", "sites", "crf_pages"):
        assert got["pilot", domain] == (False, 0, "not available for this study")
        assert got["acme", domain][0] is True
    assert got["pilot", "vs"] == (True, 5, "available")
    assert got["acme", "queries"] == (True, 3, "available")


def test_dimensions_and_facts(built: tuple[Path, dbtRunnerResult]) -> None:
    warehouse, _ = built
    subjects = {r[0]: r[1:] for r in query(warehouse, """
        select usubjid, is_randomized, is_screen_failure, cast(informed_consent_date as varchar),
               cast(last_known_date as varchar), disposition_status from dim_subject""")}
    assert subjects["A-001"] == (True, False, "2024-01-02", "2024-03-01", "COMPLETED")
    assert subjects["A-002"] == (True, False, "2024-01-03", "2024-02-01", "ADVERSE EVENT")
    assert subjects["A-003"] == (True, False, None, "2024-01-15", "ONGOING")  # partial RFICDTC -> NULL date
    assert subjects["A-004"][:2] == (False, True) and subjects["A-004"][4] == "SCREEN FAILURE"
    assert subjects["P-3"][:2] == (False, True)
    sites = {r[0]: r[1:] for r in query(warehouse, """
        select tenant_id || '/' || site_id, has_site_table, cro, target_enrollment, n_subjects_screened,
               n_subjects_randomized from dim_site""")}
    assert sites == {"acme/01": (True, "CRO-A", 10, 2, 2), "acme/02": (True, "CRO-B", 8, 2, 1),
                     "acme/03": (True, "CRO-A", 5, 0, 0), "pilot/701": (False, None, None, 2, 2),
                     "pilot/702": (False, None, None, 1, 0)}
    # data cut of acme = its latest date (DS 2024-03-01): Q2 open 41 days, Q3 answered but open 5 days
    queries = query(warehouse, "select query_id, is_open, age_days, is_open_over_30_days from fact_query order by 1")
    assert queries == [("Q1", False, 5, False), ("Q2", True, 41, True), ("Q3", True, 5, False)]
    aes = query(warehouse, "select usubjid, site_id, is_serious, days_onset_to_entry from fact_ae order by 1")
    assert aes == [("A-001", "01", False, 8), ("A-002", "01", True, 1), ("P-1", "701", False, None)]


def test_partition_rebuild_leaves_other_study_untouched(built: tuple[Path, dbtRunnerResult], tmp_path: Path) -> None:
    warehouse, result = built
    assert_success(result)
    shutil.copytree(warehouse.parent / "lake", tmp_path / "lake")
    query(warehouse, "checkpoint")  # dbt-duckdb keeps the database open in-process: flush its WAL first
    shutil.copy(warehouse, tmp_path / "warehouse.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(tmp_path / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
        before = {m: query(tmp_path / "warehouse.duckdb", f"select * from {m} where tenant_id = 'pilot' order by all")
                  for m in STAR_AND_MARTS}
        # Re-drop of acme without AEs and with A-002's visit-2 SYSBP; pilot's bronze changes too,
        # but only acme is rebuilt.
        acme = acme_rows()
        del acme["ae"]
        acme["vs"].append(_vs("A-002", 9, "SYSBP", 2, "2024-01-23", 121))
        write_bronze(tmp_path / "lake", *ACME, acme)
        pilot = pilot_rows()
        pilot["ae"].append({**pilot["ae"][0], "AESEQ": 2.0})
        write_bronze(tmp_path / "lake", *PILOT, pilot, extras=("DMDTC",))

        partition = json.dumps({"tenant": ACME[0], "study": ACME[1]})
        assert_success(run_dbt(["run", "--vars", partition], tmp_path / "target"))
        wh = tmp_path / "warehouse.duckdb"
        assert query(wh, "select count(*) from fact_ae where tenant_id = 'acme'") == [(0,)]
        assert query(wh, """select n_missing from mart_missingness
                            where tenant_id = 'acme' and variable = 'SYSBP' and visitnum = 2""") == [(0,)]
        after = {m: query(wh, f"select * from {m} where tenant_id = 'pilot' order by all") for m in STAR_AND_MARTS}
        assert after == before

        # an incremental run without vars rebuilds every partition (with the all-partition staging
        # view too: the copied warehouse's one still reads the first lake, and a partition-scoped
        # run builds its own views beside it, macros/partition.sql)
        assert_success(run_dbt(["run", "--select", "stg_ae", "fact_ae"], tmp_path / "target"))
        assert query(wh, "select count(*) from fact_ae where tenant_id = 'pilot'") == [(2,)]


def test_unsafe_partition_vars_are_refused(env: Path) -> None:
    result = run_dbt(["compile", "--select", "dim_study", "--vars", json.dumps({"tenant": "x' or 1=1 --", "study": "S"})],
                     env / "target_bad_vars")
    assert not result.success
    assert "invalid tenant var" in str(result.exception)


# --------------------------------------------------------------------------- ClickHouse dialect on chDB
def _normalise(value: Any) -> Any:
    """One comparable form for both engines' Python/pandas values (dates, bools, NaN, 3 vs 3.0)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10]
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return int(value)
    if isinstance(value, int | float) or type(value).__module__ == "numpy":
        number = float(value)
        return int(number) if number.is_integer() else round(number, 9)
    return str(value)


def _rows(records: list[tuple]) -> list[tuple]:
    return sorted((tuple(_normalise(v) for v in r) for r in records), key=repr)


def test_clickhouse_sql_matches_duckdb_on_chdb(built: tuple[Path, dbtRunnerResult], env: Path) -> None:
    chdb_session = pytest.importorskip("chdb.session")
    warehouse, result = built
    assert_success(result)
    target = env / "target_clickhouse"
    assert_success(run_dbt(["compile", "--target", "clickhouse", "--no-populate-cache"], target))
    manifest = json.loads((target / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    session = chdb_session.Session()
    session.query("CREATE DATABASE IF NOT EXISTS trialsynth")
    session.query("SET join_use_nulls = 1")  # as the clickhouse profile's custom_settings

    created: set[str] = set()

    def create(name: str) -> None:
        if name in created:
            return
        node = models[name]
        for parent in node["depends_on"]["nodes"]:
            if parent.startswith("model."):
                create(parent.split(".")[-1])
        kind = "VIEW" if node["config"]["materialized"] == "view" else "TABLE"
        engine = "" if kind == "VIEW" else " ENGINE = Memory"
        session.query(f"CREATE {kind} trialsynth.{name}{engine} AS {node['compiled_code']}")
        created.add(name)

    for name in STAR_AND_MARTS:
        create(name)
        ch = session.query(f"SELECT * FROM trialsynth.{name}", "DataFrame")
        with duckdb.connect(str(warehouse)) as con:
            cur = con.execute(f"select * from {name}")
            dk = cur.fetchall()
            columns = [d[0] for d in cur.description]
        assert list(ch.columns) == columns, name
        assert _rows(list(ch.itertuples(index=False, name=None))) == _rows(dk), name
