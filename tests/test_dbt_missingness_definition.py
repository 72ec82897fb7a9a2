"""One definition of "scheduled visit" and of "% missing" across Dagster and the dbt marts (issue 14).

A cell is a subject's visit (SV) x a VS/LB test recorded at that visit number; it is scheduled when
at least half of that test x visit's cells, study-wide, are observed. The Dagster asset
``study_matrix`` computes the cells with ``models.expected_cells`` and reports their "% missing"
(metadata ``pct_missing_scheduled`` of study_matrix and missingness_profile), dbt's
``mart_missingness`` computes them in SQL (Superset's heatmaps and the trend mart read it). The tests
build both from the same bronze and compare every cell count and the dashboard metric itself: a
hand-made study whose share boundaries are known by hand, one with each way the imputation matrix
holds fewer cells than the reported profile (sparse variable, text-only result, subject without
records, sparse visit), one with a screen failure in each SDTM form (never randomized: no cell
counts), the 40-subject demo study and the CDISC pilot where ../shared has it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl
import pytest

from tests.conftest import CDISC_SDTM
from tests.test_clickhouse_same_numbers import _small_demo
from tests.test_dbt_project import _lb, _sv, _vs, query, run_dbt, write_bronze
from tests.test_marts_clinical_ops import CDISC, DEMO, cdisc_frames, write_bronze_frames

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


CAUSES = ("hand", "CAUSES-01")
CAUSE_DATES = {**VISIT_DATES, 4: "2024-03-18"}


def causes_rows() -> dict[str, list[dict[str, Any]]]:
    """Six randomized subjects (site 01: C-1..C-3, 02: C-4..C-6), each of the four ways the imputation
    matrix (models.tables.visit_matrix) holds fewer cells than dbt's mart_missingness counts:

    - sparse variable: HEIGHT at visit 1 only (1 of the matrix's 3 visits): left out of the matrix;
    - text-only result: C-2's visit-1 ALT is ``<5`` (no numeric value): observed, empty in the matrix;
    - subject without records: C-6 attended visits 1 and 2 but has no VS or LB record: no matrix row;
    - sparse visit: visit 4 attended by C-1 and C-2 only (2 of the 5 subjects with records): left out.

    Expected and missing cells, by hand (every test x visit here is scheduled):

    ===========  ===============  ================  ================  ==============
    test         visit 1          visit 2           visit 3           visit 4
    ===========  ===============  ================  ================  ==============
    SYSBP        6, 1 (C-6)       6, 1 (C-6)        5, 1 (C-5 NOT     2, 0
                                                    DONE)
    HEIGHT       6, 1 (C-6)       (not collected)   (not collected)   (not collected)
    ALT          6, 1 (C-6; C-2   (not collected)   5, 0              (not collected)
                 ``<5`` observed)
    ===========  ===============  ================  ================  ==============

    36 scheduled cells, 5 missing. The matrix (C-1..C-5 x visits 1-3, SYSBP and ALT) schedules 25
    cells, 2 of them empty (C-5's SYSBP at visit 3, C-2's text-only ALT).
    """
    subjects = [f"C-{i}" for i in range(1, 7)]
    dm = [{"USUBJID": s, "SITEID": "01" if i < 3 else "02", "AGE": 50.0 + i, "SEX": "FM"[i % 2], "ARMCD": "TRT",
           "ARM": "Treatment", "COUNTRY": "USA", "RFICDTC": "2024-01-29", "RFSTDTC": "2024-02-05"}
          for i, s in enumerate(subjects)]
    attended = {1: subjects, 2: subjects, 3: subjects[:5], 4: subjects[:2]}
    sv = [_sv(s, v, CAUSE_DATES[v]) for v, who in attended.items() for s in who]
    vs: list[dict[str, Any]] = []
    lb: list[dict[str, Any]] = []
    for v, who in attended.items():
        for i, s in enumerate(who[:5]):
            stat = "NOT DONE" if (s, v) == ("C-5", 3) else None
            vs.append(_vs(s, len(vs) + 1, "SYSBP", float(v), CAUSE_DATES[v], None if stat else 110.0 + 3 * i + v, stat=stat))
            if v == 1:
                vs.append(_vs(s, len(vs) + 1, "HEIGHT", 1.0, CAUSE_DATES[1], 160.0 + 4 * i))
            if v in (1, 3):
                text_only = (s, v) == ("C-2", 1)
                lb.append(_lb(s, len(lb) + 1, "ALT", float(v), CAUSE_DATES[v], None if text_only else 20.0 + i + v,
                              text="<5" if text_only else None))
    return {"dm": dm, "sv": sv, "vs": vs, "lb": lb}


SCREEN = ("hand", "SCREEN-01")
SCREEN_FAILURE_FORMS = {  # DM ARMCD, ARM of each screen failure, as sponsors send them
    "F-1": ("SCRNFAIL", "SCREEN FAILURE"),  # SDTMIG 3.1-3.2 controlled terms
    "F-2": ("Scrnfail", "Screen Failure"),  # the CDISC pilot's spelling
    "F-3": (None, " screen failed "),  # only the arm name, padded, another case and tense
}


def screen_rows() -> dict[str, list[dict[str, Any]]]:
    """Enrolled E-1..E-4 (E-4 without any VS or LB record), screen failures F-1..F-3 (one per form of
    ``SCREEN_FAILURE_FORMS``) and F-4 with ARMCD and ARM null and ARMNRS ``SCREEN FAILURE``
    (SDTMIG 3.3+; ARMNRS is not a bronze DM column, so F-4 counts as enrolled). Sites 01: E-1, E-2,
    F-1, F-2; 02: the others. Visit 1 is screening (everyone), 2 and 3 the enrolled only.

    Screen failures' records: F-1 SYSBP and ALT at visit 1, F-3 SYSBP at visit 1, F-2 none. Expected
    and missing cells, by hand (every test x visit here is scheduled):

    ======  =========================  ======================  =============
    test    visit 1                    visit 2                 visit 3
    ======  =========================  ======================  =============
    SYSBP   5, 2 (E-4, F-4)            4, 2 (E-3 NOT DONE,     4, 1 (E-4)
                                       E-4)
    ALT     5, 2 (E-4, F-4)            (not collected)         4, 1 (E-4)
    ======  =========================  ======================  =============

    22 scheduled cells, 8 missing (with the screen failures: 28 and 11).
    """
    dm = [{"USUBJID": s, "SITEID": site, "AGE": 60.0, "SEX": "F", "ARMCD": armcd, "ARM": arm, "COUNTRY": "USA",
           "RFICDTC": "2024-01-29", "ARMNRS": armnrs}
          for s, site, armcd, arm, armnrs in (
              ("E-1", "01", "TRT", "Treatment", None), ("E-2", "01", "PBO", "Placebo", None),
              ("E-3", "02", "TRT", "Treatment", None), ("E-4", "02", "PBO", "Placebo", None),
              ("F-1", "01", *SCREEN_FAILURE_FORMS["F-1"], None), ("F-2", "01", *SCREEN_FAILURE_FORMS["F-2"], None),
              ("F-3", "02", *SCREEN_FAILURE_FORMS["F-3"], None), ("F-4", "02", None, None, "SCREEN FAILURE"))]
    enrolled = ["E-1", "E-2", "E-3", "E-4"]
    sv = [_sv(r["USUBJID"], 1, VISIT_DATES[1]) for r in dm] + [_sv(s, v, VISIT_DATES[v]) for v in (2, 3) for s in enrolled]
    vs: list[dict[str, Any]] = []
    lb: list[dict[str, Any]] = []
    recorded = {  # (test, visit) -> subjects with a record (E-4 and F-2 never)
        **{("SYSBP", v): enrolled[:3] for v in (2, 3)}, ("SYSBP", 1): [*enrolled[:3], "F-1", "F-3"],
        ("ALT", 1): [*enrolled[:3], "F-1"], ("ALT", 3): enrolled[:3]}
    for (test, v), who in recorded.items():
        for i, s in enumerate(who):
            if test == "ALT":
                lb.append(_lb(s, len(lb) + 1, test, float(v), VISIT_DATES[v], 20.0 + i))
            else:
                stat = "NOT DONE" if (s, v) == ("E-3", 2) else None
                vs.append(_vs(s, len(vs) + 1, test, float(v), VISIT_DATES[v], None if stat else 120.0 + i, stat=stat))
    return {"dm": dm, "sv": sv, "vs": vs, "lb": lb}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The studies' bronze in one lake (the CDISC pilot too where ../shared has it), both missingness
    marts (and their YAML tests) built by dbt."""
    root = tmp_path_factory.mktemp("missingness_definition")
    write_bronze(root / "lake", *HAND, hand_rows())
    write_bronze(root / "lake", *CAUSES, causes_rows())
    write_bronze(root / "lake", *SCREEN, screen_rows(), extras=("ARMNRS",))
    _small_demo(root / "lake")
    if CDISC_SDTM.is_dir():
        write_bronze_frames(root / "lake", *CDISC, cdisc_frames())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        result = run_dbt(["build", "--select", "+mart_missingness_trend", "--indirect-selection", "buildable"], root / "target")
    # a test configured to warn may warn (the CDISC pilot repeats one SV visit); nothing else may
    failed = [f"{r.node.name}: {r.status} {r.message}" for r in result.result or [] if str(r.status) not in ("success", "pass", "warn")]
    assert result.success and not failed, failed or result.exception
    yield root


def dagster_study_data(lake: Path, partition: tuple[str, str]) -> StudyData:
    """What the Dagster asset study_matrix builds from the partition's bronze."""
    from assets.study_data import BRONZE_DOMAINS, build_study_data

    bronze = lake.joinpath(*partition, "bronze")
    return build_study_data(*(pl.read_parquet(bronze / f"{d}.parquet") for d in BRONZE_DOMAINS))


def dagster_schedule(data: StudyData) -> dict[tuple[str, str, float], bool]:
    """(domain, variable, visitnum) -> scheduled, from the study_matrix's matrix flags."""
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


COUNT_INDEX = ["domain", "variable", "visitnum", "site_id"]


def dagster_counts(data: StudyData) -> pd.DataFrame:
    """Scheduled and missing scheduled cells per domain, variable, visit and site, as the Dagster
    assets count them (StudyData.cells, written by study_matrix, read by missingness_profile)."""
    cells = data.cells[data.cells["SCHEDULED"]]
    counts = (cells.assign(n_missing=~cells["OBSERVED"]).groupby(["DOMAIN", "TESTCD", "VISITNUM", "SITEID"], dropna=False)
              .agg(n_expected=("n_missing", "size"), n_missing=("n_missing", "sum")))
    return counts.rename_axis(COUNT_INDEX).sort_index()


def profile_counts(data: StudyData) -> pd.DataFrame:
    """The same counts from the table the missingness_profile asset writes (missingness/profile.parquet)."""
    from assets.missingness import reported_profile

    profile = reported_profile(data.cells)
    profile[["domain", "variable"]] = profile.pop("variable").str.split("_", n=1, expand=True)
    profile = profile.rename(columns={"visit": "visitnum", "site": "site_id"})
    return profile.set_index(COUNT_INDEX)[["n_expected", "n_missing"]].sort_index()


def dbt_counts(root: Path, partition: tuple[str, str]) -> pd.DataFrame:
    rows = query(root / "warehouse.duckdb", f"""
        select domain, variable, visitnum, site_id, n_expected, n_missing from mart_missingness
        where is_scheduled and tenant_id = '{partition[0]}' and study_id = '{partition[1]}'""")
    frame = pd.DataFrame(rows, columns=[*COUNT_INDEX, "n_expected", "n_missing"])
    return frame.astype({"visitnum": float}).set_index(COUNT_INDEX).sort_index()


def assert_frame_equal_counts(dagster: pd.DataFrame, dbt: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(dagster.astype("int64"), dbt.astype("int64"), check_names=False, check_index_type=False)


def superset_pct_missing(root: Path, partition: tuple[str, str]) -> float:
    """The missingness dashboard's "% missing (scheduled visits)": its metric's own SQL over the mart, in %."""
    from infra.superset.spec import load_spec

    metric = load_spec().datasets["mart_missingness"].metrics["pct_missing_scheduled"]
    [(ratio,)] = query(root / "warehouse.duckdb", f"""
        select {metric} from mart_missingness where tenant_id = '{partition[0]}' and study_id = '{partition[1]}'""")
    return 100 * ratio


def assert_dagster_reports_the_superset_number(root: Path, partition: tuple[str, str], data: StudyData) -> dict[str, Any]:
    """The asset metadata (study_matrix and missingness_profile share missingness_metadata) against the mart."""
    from assets.study_data import missingness_metadata

    metadata = missingness_metadata(data)
    dbt = dbt_counts(root, partition)
    assert (metadata["scheduled_cells"], metadata["missing_scheduled_cells"]) == (dbt["n_expected"].sum(), dbt["n_missing"].sum())
    superset = superset_pct_missing(root, partition)
    assert metadata["pct_missing_scheduled"] == pytest.approx(superset, rel=1e-12)
    assert round(metadata["pct_missing_scheduled"], 2) == round(superset, 2)
    return metadata


def test_hand_study_scheduled_visits_are_the_same_in_dagster_and_dbt(warehouse: Path) -> None:
    data = dagster_study_data(warehouse / "lake", HAND)
    dagster, dbt = dagster_schedule(data), dbt_schedule(warehouse, HAND)
    assert {k for k, s in dbt.items() if s} == HAND_SCHEDULED
    assert {k for k, s in dbt.items() if not s} == HAND_NOT_SCHEDULED
    assert dagster == {**dbt, ("LB", "ALT", 2.0): False}  # not collected at visit 2: no dbt cell, never scheduled
    # "% missing" as the assets report it (metadata pct_missing_scheduled) and as the dashboard
    # computes it from the mart, cell counts per site included
    assert_frame_equal_counts(dagster_counts(data), dbt_counts(warehouse, HAND))
    metadata = assert_dagster_reports_the_superset_number(warehouse, HAND, data)
    assert (metadata["scheduled_cells"], metadata["missing_scheduled_cells"]) == (22, 5)


def test_demo_study_reports_the_superset_percentage_over_all_variables(warehouse: Path) -> None:
    data = dagster_study_data(warehouse / "lake", DEMO)
    dagster, dbt = dagster_schedule(data), dbt_schedule(warehouse, DEMO)
    shared = dagster.keys() & dbt.keys()
    assert {k: dagster[k] for k in shared} == {k: dbt[k] for k in shared}
    assert not any(dagster[k] for k in dagster.keys() - dbt.keys())  # Dagster-only cells: never collected
    # every variable and visit of the mart, also those the imputation matrix leaves out (HEIGHT)
    counts = dagster_counts(data)
    assert_frame_equal_counts(counts, dbt_counts(warehouse, DEMO))
    assert_frame_equal_counts(profile_counts(data), dbt_counts(warehouse, DEMO))
    assert counts["n_missing"].sum() > 0
    metadata = assert_dagster_reports_the_superset_number(warehouse, DEMO, data)
    left_out = {f"{d}_{v}" for d, v, _ in dbt.keys() - dagster.keys()}
    assert left_out, "the demo should show a variable the matrix leaves out"
    for variable in left_out:  # named, with the reason, in the metadata a data manager reads
        assert f"| {variable}: {data.dropped[variable]} |" in metadata["left_out_of_matrix"].value
    assert metadata["matrix_scheduled_cells"] < metadata["scheduled_cells"]


CAUSE_GAPS = {
    "sparse variable": ("variable left out of the imputation matrix", "VS_HEIGHT: numeric values at 1 of 3 visits (fewer than half)", 6, 1),
    "text-only result": ("observed as text only (empty in the matrix)", "LB_ALT", 1, 0),
    "subject without records": ("subject visit without a matrix row", "subject without any VS or LB record", 3, 3),
    "sparse visit": ("visit left out of the imputation matrix", "visit 4: attended by 2 of 5 subjects (fewer than 50%)", 2, 0),
}
CAUSE_CELLS = {  # (domain, variable, visitnum, site) -> (expected, missing), from causes_rows' table
    "sparse variable": {("VS", "HEIGHT", 1.0, "01"): (3, 0), ("VS", "HEIGHT", 1.0, "02"): (3, 1)},
    "text-only result": {("LB", "ALT", 1.0, "01"): (3, 0)},
    "subject without records": {("VS", "SYSBP", 2.0, "02"): (3, 1), ("LB", "ALT", 1.0, "02"): (3, 1)},
    "sparse visit": {("VS", "SYSBP", 4.0, "01"): (2, 0)},
}


@pytest.mark.parametrize("cause", CAUSE_GAPS)
def test_each_cell_the_matrix_leaves_out_is_counted_as_superset_does_and_explained(warehouse: Path, cause: str) -> None:
    data = dagster_study_data(warehouse / "lake", CAUSES)
    dagster, dbt = dagster_counts(data), dbt_counts(warehouse, CAUSES)
    for key, counts in CAUSE_CELLS[cause].items():
        assert tuple(dbt.loc[key]) == tuple(dagster.loc[key]) == counts, key
    metadata = assert_dagster_reports_the_superset_number(warehouse, CAUSES, data)
    assert (metadata["scheduled_cells"], metadata["missing_scheduled_cells"]) == (36, 5)
    assert (metadata["matrix_scheduled_cells"], metadata["matrix_missing_scheduled_cells"]) == (25, 2)
    reason, detail, n, missing = CAUSE_GAPS[cause]
    assert f"| {reason} | {detail} | {n} | {missing} |" in metadata["left_out_of_matrix"].value


def assert_matrix_and_left_out_cells_add_up(data: StudyData) -> pd.DataFrame:
    """Every reported scheduled cell is one of the matrix's scheduled cells or in one left-out row."""
    from models.expected_cells import matrix_gaps

    gaps = matrix_gaps(data.cells, data.matrix, data.dropped)
    outside = gaps[gaps["reason"] != "observed as text only (empty in the matrix)"]
    assert int(data.scheduled.to_numpy().sum()) + outside["scheduled_cells"].sum() == data.cells["SCHEDULED"].sum()
    return gaps


def test_the_matrix_and_its_left_out_cells_add_up_to_the_reported_cells(warehouse: Path) -> None:
    gaps = assert_matrix_and_left_out_cells_add_up(dagster_study_data(warehouse / "lake", CAUSES))
    assert set(gaps["reason"]) == {r for r, *_ in CAUSE_GAPS.values()}


def test_screen_failures_have_no_expected_cell_in_dagster_nor_in_dbt(warehouse: Path) -> None:
    """A screen failure in each SDTM form has no cell on either side (its recorded screening values
    neither), enrolled subjects do, with or without records; Dagster's metadata says how many
    subjects were left out, and the imputation matrix holds no screen failure either."""
    data = dagster_study_data(warehouse / "lake", SCREEN)
    counted = {"E-1", "E-2", "E-3", "E-4", "F-4"}
    assert set(data.cells["USUBJID"]) == counted
    assert {u for (u,) in query(warehouse / "warehouse.duckdb", f"""
        select distinct usubjid from fact_missingness_cell
        where tenant_id = '{SCREEN[0]}' and study_id = '{SCREEN[1]}'""")} == counted
    assert_frame_equal_counts(dagster_counts(data), dbt_counts(warehouse, SCREEN))
    metadata = assert_dagster_reports_the_superset_number(warehouse, SCREEN, data)
    assert (metadata["scheduled_cells"], metadata["missing_scheduled_cells"]) == (22, 8)
    assert metadata["screen_failures_excluded"] == len(SCREEN_FAILURE_FORMS) == len(data.screen_failures)
    assert not set(data.matrix.index.get_level_values("USUBJID")) & set(SCREEN_FAILURE_FORMS)
    assert_matrix_and_left_out_cells_add_up(data)


@pytest.mark.parametrize(("armcd", "arm", "failed"), [
    ("SCRNFAIL", "Screen Failure", True), ("scrnfail", None, True), (" Scrnfail ", "", True), (None, "SCREEN FAILURE", True),
    ("", "Screen Fail", True), ("TRT", "Treatment", False), (None, None, False), ("NOTASSGN", "Not Assigned", False),
    ("SCRNFAIL2", "Screening arm", False)])
def test_screen_failures_are_recognised_by_arm_code_or_name_in_any_case(armcd: str | None, arm: str | None, failed: bool) -> None:
    from models.expected_cells import screen_failures

    dm = pl.DataFrame({"USUBJID": ["X-1", "X-2"], "SITEID": ["01", "01"], "ARMCD": [armcd, "TRT"], "ARM": [arm, "Treatment"]},
                      schema_overrides={"ARMCD": pl.String, "ARM": pl.String})
    assert screen_failures(dm) == (["X-1"] if failed else [])
    with pytest.raises(ValueError, match="dm.USUBJID"):
        screen_failures(dm.drop("USUBJID"))


def test_cdisc_pilot_reports_the_superset_percentage_over_all_variables(warehouse: Path, cdisc_sdtm: Path) -> None:
    """The real study: unscheduled visits (x.1, x.2), text-only urinalysis, screening-only tests: the
    same cells and "% missing" as Superset; its 52 screen failures (a screening visit, no record)
    are the subjects DS records as SCREEN FAILURE, and none of their visits counts."""
    data = dagster_study_data(warehouse / "lake", CDISC)
    ds = cdisc_frames()["ds"]
    failed = set(ds.filter(pl.col("DSDECOD").str.to_uppercase() == "SCREEN FAILURE")["USUBJID"])
    assert set(data.screen_failures) == failed and len(failed) == 52
    assert not failed & set(data.cells["USUBJID"])
    assert not failed & set(data.matrix.index.get_level_values("USUBJID"))
    assert_frame_equal_counts(dagster_counts(data), dbt_counts(warehouse, CDISC))
    assert_frame_equal_counts(profile_counts(data), dbt_counts(warehouse, CDISC))
    metadata = assert_dagster_reports_the_superset_number(warehouse, CDISC, data)
    assert metadata["screen_failures_excluded"] == len(failed)
    gaps = assert_matrix_and_left_out_cells_add_up(data)
    assert {"variable left out of the imputation matrix", "visit left out of the imputation matrix"} <= set(gaps["reason"])
    assert metadata["matrix_scheduled_cells"] < metadata["scheduled_cells"]


@pytest.mark.parametrize("partition", [HAND, CAUSES, DEMO], ids=["hand", "causes", "demo"])
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


def test_a_study_without_sv_reports_no_percentage_and_still_has_a_matrix(warehouse: Path) -> None:
    """No SV visit: no expected cell, in the mart as here, so no "% missing" (the dashboard's NULL,
    not 0 %); the imputation matrix is still scheduled, by its own observed share."""
    from assets.study_data import BRONZE_DOMAINS, build_study_data, missingness_metadata

    bronze = warehouse.joinpath("lake", *HAND, "bronze")
    dm, vs, lb, sv = (pl.read_parquet(bronze / f"{d}.parquet") for d in BRONZE_DOMAINS)
    metadata = missingness_metadata(build_study_data(dm, vs, lb, sv.clear()))
    assert (metadata["scheduled_cells"], metadata["pct_missing_scheduled"]) == (0, None)
    assert metadata["matrix_scheduled_cells"] > 0
    assert metadata["left_out_of_matrix"].value.startswith("No SV visit")
