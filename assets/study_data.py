"""The analysis-ready tables of one tenant/study partition, built once per run from its bronze Parquet
by the ``study_matrix`` asset and read by the missingness, imputation and synthesis assets, so they all
see the same matrix and none of them rebuilds it.

Files, under ``<lake>/<tenant>/<study>/study_data/`` (each table prefixed with tenant_id, study_id):

- ``matrix.parquet``: one row per subject x attended visit (USUBJID, SITEID, ARM, VISITNUM, VISIT),
  one float column per variable (``VS_<test>``, ``LB_<test>``);
- ``scheduled.parquet``: the same rows and variables, True where the protocol collects that variable
  at that visit (at least :data:`SCHEDULED_SHARE` of the visit's expected cells are observed);
- ``cells.parquet``: every expected subject x visit x variable cell with its observed and scheduled
  flags (:func:`models.expected_cells.expected_cells`, the rules of dbt's ``mart_missingness``):
  the reported "% missing", also of what the matrix leaves out;
- ``screen_failures.json``: USUBJIDs of the screen failures (:func:`models.expected_cells.screen_failures`),
  left out of the expected cells and of the matrix: their study data is not expected;
- ``baseline.parquet``: one row per randomized subject (demographics, arm, baseline vitals and labs);
- ``dropped.json``: variable (or ``visit <VISITNUM>``) -> why it was left out of the matrix.
"""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl

from models.expected_cells import (
    expected_cells,
    matrix_gaps,
    missingness_summary,
    scheduled_flags,
    screen_failures,
)
from models.tables import ID_COLUMNS, observations_long, subject_baseline_table, visit_matrix
from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.markdown import md_table
from trialsynth.version import code_version

SCHEDULED_SHARE = 0.5  # a variable is scheduled at a visit when at least half its expected cells are observed
BRONZE_DOMAINS = ("dm", "vs", "lb", "sv")
FOLDER = "study_data"
PARTITION_COLUMNS = ["tenant_id", "study_id"]


@dataclass
class StudyData:
    matrix: pd.DataFrame  # subject x visit rows (index USUBJID, SITEID, ARM, VISITNUM, VISIT), variables
    scheduled: pd.DataFrame  # same shape, True where the protocol collects that variable at that visit
    baseline: pd.DataFrame  # one row per randomized subject (index USUBJID)
    dropped: dict[str, str]  # variable or "visit <VISITNUM>" -> why it was left out of the matrix
    cells: pd.DataFrame  # every expected cell (models.expected_cells.CELL_COLUMNS): what "% missing" counts
    screen_failures: list[str]  # USUBJIDs left out of the cells and the matrix: no study data expected

    @property
    def scheduled_missing(self) -> pd.DataFrame:
        return self.matrix.isna() & self.scheduled


def build_study_data(dm: pl.DataFrame, vs: pl.DataFrame, lb: pl.DataFrame, sv: pl.DataFrame) -> StudyData:
    """The analysis tables from bronze DM, VS, LB and SV: the expected cells (what "% missing"
    counts, as dbt's mart_missingness does) and the visit matrix, scheduled where the cells are,
    without the variables nothing can be learned from (sparse, never numeric where scheduled,
    constant, infinite). Screen failures are in neither: their study data is not expected."""
    long = observations_long(vs, lb, dm)
    cells = expected_cells(dm, vs, lb, sv, scheduled_share=SCHEDULED_SHARE)
    failed = screen_failures(dm)
    matrix, dropped = visit_matrix(long.filter(~pl.col("USUBJID").is_in(failed)), sv, return_left_out=True)
    if sv.height:
        scheduled = scheduled_flags(cells, matrix)
    else:  # no SV, so no expected cells (in dbt's mart neither): the matrix is scheduled by its own observed share
        by_visit = matrix.notna().groupby(level="VISITNUM").mean().reindex(matrix.index.get_level_values("VISITNUM"))
        scheduled = pd.DataFrame(by_visit.to_numpy() >= SCHEDULED_SHARE, index=matrix.index, columns=matrix.columns)
    for col in list(matrix.columns):
        observed = matrix[col].where(scheduled[col]).dropna()
        if observed.empty:
            dropped[col] = "no numeric value where scheduled"
        elif observed.nunique() < 2:
            dropped[col] = f"constant ({float(observed.iloc[0]):g}) where scheduled: nothing to impute from"
        elif not np.isfinite(observed.to_numpy()).all():
            dropped[col] = "contains infinite values"
    keep = [c for c in matrix.columns if c not in dropped]
    return StudyData(matrix[keep], scheduled[keep], subject_baseline_table(dm, long), dropped, cells, failed)


def missingness_metadata(data: StudyData) -> dict[str, object]:
    """Dagster metadata of the reported "% missing" (scheduled cells of :attr:`StudyData.cells`, the
    number Superset's missingness dashboard shows) and of what the imputation matrix leaves out of it."""
    gaps = matrix_gaps(data.cells, data.matrix, data.dropped)
    if data.cells.empty:
        note = "No SV visit, so no expected cell and no % missing (nor in Superset)."
    elif gaps.empty:
        note = "The imputation matrix holds every scheduled cell."
    else:
        note = ("Scheduled cells counted in % missing (as in Superset) that the imputation matrix does not hold as "
                f"values:\n\n{md_table(gaps.to_dict('records'))}")
    return {
        **missingness_summary(data.cells),
        "screen_failures_excluded": len(data.screen_failures),
        "matrix_scheduled_cells": int(data.scheduled.to_numpy().sum()),
        "matrix_missing_scheduled_cells": int(data.scheduled_missing.to_numpy().sum()),
        "left_out_of_matrix": dg.MetadataValue.md(note),
        "dropped_variables": dg.MetadataValue.json({k: v for k, v in data.dropped.items() if not k.startswith("visit ")}),
        "dropped_visits": dg.MetadataValue.json({k: v for k, v in data.dropped.items() if k.startswith("visit ")}),
    }


TABLES = ("matrix", "scheduled", "baseline", "cells")
DROPPED = f"{FOLDER}/dropped.json"
SCREEN_FAILURES = f"{FOLDER}/screen_failures.json"


def write_study_data(lake: LakeResource, partition_key: str, data: StudyData) -> dict[str, tuple[str, str]]:
    """Write the tables (atomically, as every lake table); returns name -> (uri, sha256)."""
    out = {name: lake.write_table(partition_key, f"{FOLDER}/{name}.parquet", frame.reset_index() if any(frame.index.names) else frame)
           for name, frame in zip(TABLES, (data.matrix, data.scheduled, data.baseline, data.cells), strict=True)}
    out["dropped"] = lake.write_json(partition_key, DROPPED, data.dropped)
    out["screen_failures"] = lake.write_json(partition_key, SCREEN_FAILURES, data.screen_failures)
    return out


def load_study_data(lake: LakeResource, partition_key: str) -> StudyData:
    """The tables the ``study_matrix`` asset wrote for the partition (it must have been materialized)."""
    keys = [f"{FOLDER}/{name}.parquet" for name in TABLES] + [DROPPED, SCREEN_FAILURES]
    missing = [lake.uri(partition_key, k) for k in keys if not lake.exists(partition_key, k)]
    if missing:
        raise dg.Failure(f"the study matrix of {partition_key} is not materialized ({', '.join(missing)} missing): "
                         "materialize the asset study_matrix of this partition first")

    def read(name: str, index: list[str] | None = None) -> pd.DataFrame:
        frame = lake.read_table(partition_key, f"{FOLDER}/{name}.parquet").drop(columns=PARTITION_COLUMNS)
        return frame.set_index(index) if index else frame

    return StudyData(read("matrix", ID_COLUMNS), read("scheduled", ID_COLUMNS), read("baseline", ["USUBJID"]),
                     lake.read_json(partition_key, DROPPED), read("cells"), lake.read_json(partition_key, SCREEN_FAILURES))


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="imputation",
    deps=[["bronze", d] for d in BRONZE_DOMAINS],
    kinds={"python", "parquet"},
    description="Builds the study's analysis tables once per run from bronze DM, VS, LB and SV: every expected "
    "subject x visit x variable cell (a visit the subject had x a test recorded at that visit number; a variable "
    f"counts as scheduled at a visit when at least {SCHEDULED_SHARE:.0%} of its expected cells are observed, so "
    "unscheduled cells are never 'missing'; screen failures (DM ARMCD SCRNFAIL or ARM 'Screen Failure', metadata "
    "`screen_failures_excluded`) have no expected cell and no matrix row; `pct_missing_scheduled` is the % "
    "missing of the scheduled cells, by the rules of dbt's mart_missingness, i.e. the number Superset shows); "
    "the subject x visit matrix of vital "
    "signs and labs used to impute and synthesize (visits at least half the subjects attended, variables "
    "measured at least at half of them, never numeric or constant where scheduled left out: metadata "
    "`dropped_variables`, `dropped_visits` and `left_out_of_matrix` say which cells and why); and one baseline "
    "row per randomized subject. Missingness, imputation and synthesis all read these files (study_data/ in "
    "the study's lake folder).",
)
def study_matrix(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource) -> dg.MaterializeResult:
    pk = context.partition_key
    data = build_study_data(*(lake.read_bronze(pk, d) for d in BRONZE_DOMAINS))
    out = write_study_data(lake, pk, data)
    lineage.record(pk, asset_key="study_matrix",
                   input_sha256s={f"bronze/{d}": lake.sha256(pk, f"bronze/{d}.parquet") for d in BRONZE_DOMAINS},
                   output_sha256=out["matrix"][1], output_path=out["matrix"][0], code_version=code_version(),
                   parameters={"scheduled_share": SCHEDULED_SHARE, "outputs": {k: v[1] for k, v in out.items()}})
    return dg.MaterializeResult(metadata={
        "subjects": int(data.matrix.index.get_level_values("USUBJID").nunique()),
        "subject_visits": len(data.matrix),
        "visits": int(data.matrix.index.get_level_values("VISITNUM").nunique()),
        "variables": data.matrix.shape[1],
        "randomized_subjects": len(data.baseline),
        **missingness_metadata(data),
        "matrix": dg.MetadataValue.path(out["matrix"][0]),
    })
