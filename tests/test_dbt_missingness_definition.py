"""One definition of "scheduled visit" and of "% missing" across Dagster and the dbt marts (issue 14).

A variable is scheduled at a visit number when at least half of that visit's expected cells,
study-wide, are observed: the Dagster asset ``study_matrix`` (``assets/study_data.py``,
``build_study_data``) computes it in pandas, ``mart_missingness.is_scheduled`` in SQL, and
``mart_missingness_trend`` reads it from ``mart_missingness`` (never computes it again). The tests
build both from the same bronze and compare them: a hand-made study whose share boundaries are known
by hand, and the 40-subject demo study.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl
import pytest

from tests.test_clickhouse_same_numbers import _small_demo
from tests.test_dbt_project import _lb, _sv, _vs, assert_success, query, run_dbt, write_bronze
from tests.test_marts_clinical_ops import DEMO

if TYPE_CHECKING:
    from assets.study_data import StudyData

HAND = ("hand", "SCHED-01")
VISIT_DATES = {1: "2024-02-05", 2: "2024-02-19", 3: "2024-03-04"}


def hand_rows() -> dict[str, list[dict[str, Any]]]:
    """Five randomized subjects (sites 01: S-1..S-3, 02: S-4, S-5); S-5 skips visit 2, S-4 and S-5
    skip visit 3. Share of observed cells among the visit's attendees, by hand:

    ======  ==============================  ==============================  =====================
    test    visit 1                         visit 2                         visit 3
    ======  ==============================  ==============================  =====================
    SYSBP   5/5 scheduled                   2/4 scheduled (exactly 1/2;     1/3 not scheduled
                                            S-5's record has no SV visit)
    DIABP   3/5 scheduled (S-4 NOT DONE)    0/4 not scheduled (all NOT      2/3 scheduled (2/5 if
                                            DONE)                           absent subjects counted)
    ALT     5/5 scheduled                   no record: not collected        1/3 not scheduled
    ======  ==============================  ==============================  =====================

    Scheduled cells: 5 + 4 + 5 + 3 + 5 = 22, of which 0 + 2 + 2 + 1 + 0 = 5 missing.
    """
    subjects = ["S-1", "S-2", "S-3", "S-4", "S-5"]
    dm = [{"USUBJID": s, "SITEID": "01" if s <= "S-3" else "02", "AGE": 40.0 + i, "SEX": "FM"[i % 2],
           "ARMCD": "TRT", "ARM": "Treatment", "COUNTRY": "USA", "RFICDTC": "2024-01-29", "RFSTDTC": "2024-02-05"}
          for i, s in enumerate(subjects)]
    attended = {1: subjects, 2: subjects[:4], 3: subjects[:3]}
    sv = [_sv(s, v, VISIT_DATES[v]) for v, who in attended.items() for s in who]
    vs: list[dict[str, Any]] = []
    lb: list[dict[str, Any]] = []

    def add(rows: list[dict[str, Any]], make, test: str, visit: int, results: dict[str, float | None | str]) -> None:
        for s, result in results.items():
            kind = {"stat": "NOT DONE"} if result == "NOT DONE" else {}
            value = None if result == "NOT DONE" else result
            rows.append(make(s, len(rows) + 1, test, float(visit), VISIT_DATES[visit], value, **kind))

    add(vs, _vs, "SYSBP", 1, {"S-1": 120.0, "S-2": 124.0, "S-3": 131.0, "S-4": 118.0, "S-5": 140.0})
    add(vs, _vs, "SYSBP", 2, {"S-1": 122.0, "S-2": 127.0, "S-4": "NOT DONE", "S-5": 150.0})  # S-5: no SV visit 2
    add(vs, _vs, "SYSBP", 3, {"S-1": 119.0, "S-2": None})
    add(vs, _vs, "DIABP", 1, {"S-1": 80.0, "S-2": 84.0, "S-3": 77.0, "S-4": "NOT DONE"})
    add(vs, _vs, "DIABP", 2, dict.fromkeys(subjects[:4], "NOT DONE"))
    add(vs, _vs, "DIABP", 3, {"S-1": 79.0, "S-2": 86.0})
    add(lb, _lb, "ALT", 1, {"S-1": 20.0, "S-2": 31.0, "S-3": 24.0, "S-4": 18.0, "S-5": 27.0})
    add(lb, _lb, "ALT", 3, {"S-1": 22.0, "S-2": None, "S-3": "NOT DONE"})
    return {"dm": dm, "sv": sv, "vs": vs, "lb": lb}


HAND_SCHEDULED = {("VS", "SYSBP", 1.0), ("VS", "SYSBP", 2.0), ("VS", "DIABP", 1.0), ("VS", "DIABP", 3.0), ("LB", "ALT", 1.0)}
HAND_NOT_SCHEDULED = {("VS", "SYSBP", 3.0), ("VS", "DIABP", 2.0), ("LB", "ALT", 3.0)}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Both studies' bronze in one lake, both missingness marts (and their YAML tests) built by dbt."""
    root = tmp_path_factory.mktemp("missingness_definition")
    write_bronze(root / "lake", *HAND, hand_rows())
    _small_demo(root / "lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        assert_success(run_dbt(["build", "--select", "+mart_missingness_trend", "--indirect-selection", "buildable"],
                               root / "target"))
    yield root


def dagster_study_data(lake: Path, partition: tuple[str, str]) -> StudyData:
    """What the Dagster asset study_matrix builds from the partition's bronze."""
    from assets.study_data import BRONZE_DOMAINS, build_study_data

    bronze = lake.joinpath(*partition, "bronze")
    return build_study_data(*(pl.read_parquet(bronze / f"{d}.parquet") for d in BRONZE_DOMAINS))


def dagster_schedule(data: StudyData) -> dict[tuple[str, str, float], bool]:
    """(domain, variable, visitnum) -> scheduled, from the study_matrix tables."""
    by_visit = data.scheduled.groupby(level="VISITNUM").agg(["min", "max"])
    out = {}
    for column in data.scheduled.columns:
        domain, variable = column.split("_", 1)
        lowest, highest = by_visit[(column, "min")], by_visit[(column, "max")]
        assert (lowest == highest).all(), f"{column}: scheduled differs between subjects of one visit"
        out.update({(domain, variable, float(v)): bool(s) for v, s in highest.items()})
    return out


def dbt_schedule(root: Path, partition: tuple[str, str]) -> dict[tuple[str, str, float], bool]:
    rows = query(root / "warehouse.duckdb", f"""
        select distinct domain, variable, visitnum, is_scheduled from mart_missingness
        where tenant_id = '{partition[0]}' and study_id = '{partition[1]}'""")
    keys = [r[:3] for r in rows]
    assert len(keys) == len(set(keys)), "is_scheduled differs between sites of one visit"
    return {(d, v, float(n)): bool(s) for d, v, n, s in rows}


def dagster_counts(data: StudyData) -> pd.DataFrame:
    """Scheduled cells and missing scheduled cells per domain, variable, visit and site, as the
    missingness asset counts them (StudyData.scheduled and .scheduled_missing)."""
    frames = {"n_expected": data.scheduled, "n_missing": data.scheduled_missing}
    long = pd.concat({name: f.groupby(level=["SITEID", "VISITNUM"]).sum().stack(future_stack=True) for name, f in frames.items()}, axis=1)
    long = long[long["n_expected"] > 0].reset_index()
    long.columns = ["site_id", "visitnum", "column", "n_expected", "n_missing"]
    long[["domain", "variable"]] = long.pop("column").str.split("_", n=1, expand=True)
    return long.astype({"visitnum": float}).set_index(["domain", "variable", "visitnum", "site_id"]).sort_index()


def dbt_counts(root: Path, partition: tuple[str, str], variables: set[str] | None = None) -> pd.DataFrame:
    rows = query(root / "warehouse.duckdb", f"""
        select domain, variable, visitnum, site_id, n_expected, n_missing from mart_missingness
        where is_scheduled and tenant_id = '{partition[0]}' and study_id = '{partition[1]}'""")
    frame = pd.DataFrame(rows, columns=["domain", "variable", "visitnum", "site_id", "n_expected", "n_missing"])
    if variables is not None:
        frame = frame[(frame["domain"] + "_" + frame["variable"]).isin(variables)]
    return frame.astype({"visitnum": float}).set_index(["domain", "variable", "visitnum", "site_id"]).sort_index()


def assert_frame_equal_counts(dagster: pd.DataFrame, dbt: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(dagster.astype("int64"), dbt.astype("int64"), check_names=False)


def pct_missing_scheduled(counts: pd.DataFrame) -> float:
    return float(100 * counts["n_missing"].sum() / counts["n_expected"].sum())


def test_hand_study_scheduled_visits_are_the_same_in_dagster_and_dbt(warehouse: Path) -> None:
    data = dagster_study_data(warehouse / "lake", HAND)
    dagster, dbt = dagster_schedule(data), dbt_schedule(warehouse, HAND)
    assert {k for k, s in dbt.items() if s} == HAND_SCHEDULED
    assert {k for k, s in dbt.items() if not s} == HAND_NOT_SCHEDULED
    assert dagster == {**dbt, ("LB", "ALT", 2.0): False}  # not collected at visit 2: no dbt cell, never scheduled
    # "% missing" as the missingness asset reports it (metadata pct_missing_scheduled) and as the
    # dashboards compute it from the mart, cell counts per site included
    assert_frame_equal_counts(dagster_counts(data), dbt_counts(warehouse, HAND))
    asset_pct = float(100 * data.scheduled_missing.to_numpy().sum() / data.scheduled.to_numpy().sum())
    assert asset_pct == pytest.approx(100 * 5 / 22)
    assert pct_missing_scheduled(dbt_counts(warehouse, HAND)) == pytest.approx(asset_pct)


def test_demo_study_scheduled_visits_are_the_same_in_dagster_and_dbt(warehouse: Path) -> None:
    data = dagster_study_data(warehouse / "lake", DEMO)
    dagster, dbt = dagster_schedule(data), dbt_schedule(warehouse, DEMO)
    shared = dagster.keys() & dbt.keys()
    assert {k: dagster[k] for k in shared} == {k: dbt[k] for k in shared}
    assert not any(dagster[k] for k in dagster.keys() - dbt.keys())  # Dagster-only cells: never collected
    # dbt keeps what the matrix leaves out by design (models.tables.visit_matrix: variables measured
    # at fewer than half the visits, e.g. HEIGHT at screening; visits fewer than half the subjects
    # attended); on the variables the matrix keeps, the counts and "% missing" are the same.
    kept = set(data.matrix.columns)
    assert {f"{d}_{v}" for d, v, _ in dbt.keys() - dagster.keys()}.isdisjoint(kept)
    dagster_cells, dbt_cells = dagster_counts(data), dbt_counts(warehouse, DEMO, kept)
    assert_frame_equal_counts(dagster_cells, dbt_cells)
    assert dagster_cells["n_missing"].sum() > 0


@pytest.mark.parametrize("partition", [HAND, DEMO], ids=["hand", "demo"])
def test_trend_counts_the_scheduled_cells_of_mart_missingness(warehouse: Path, partition: tuple[str, str]) -> None:
    """The trend's last week holds every dated cell; every cell here has a date (the SV visit date
    at least), so its cumulative counts are the heatmap mart's totals, scheduled and all."""
    where = f"tenant_id = '{partition[0]}' and study_id = '{partition[1]}'"
    mart = query(warehouse / "warehouse.duckdb", f"""
        select domain, variable, sum(n_expected), sum(n_missing),
               sum(case when is_scheduled then n_expected else 0 end),
               sum(case when is_scheduled then n_missing else 0 end)
        from mart_missingness where {where} group by all order by all""")
    trend = query(warehouse / "warehouse.duckdb", f"""
        select domain, variable, cum_expected, cum_missing, cum_expected_scheduled, cum_missing_scheduled
        from mart_missingness_trend where {where}
        qualify week_start = max(week_start) over (partition by domain, variable) order by all""")
    assert mart and trend == mart  # the hand study has unscheduled cells in both marts (HAND_NOT_SCHEDULED)


def test_the_trend_reads_is_scheduled_from_mart_missingness_in_the_same_dagster_step() -> None:
    """One definition: the trend mart depends on mart_missingness (dbt and the Dagster graph alike),
    never on the share var, and both marts are built by the same per-partition dbt step."""
    import dagster as dg

    from assets.warehouse import dbt_steps

    sql = (Path(__file__).resolve().parents[1] / "dbt_project" / "models" / "marts" / "mart_missingness_trend.sql").read_text()
    assert "missingness_scheduled_share" not in sql and "ref('mart_missingness')" in sql
    trend, mart = dg.AssetKey("mart_missingness_trend"), dg.AssetKey("mart_missingness")
    [step] = [s for s in dbt_steps if trend in s.keys]
    assert mart in step.keys and mart in step.asset_deps[trend]
