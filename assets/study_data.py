"""The analysis-ready tables of one tenant/study partition, built once per run from its bronze Parquet
by the ``study_matrix`` asset and read by the missingness, imputation and synthesis assets, so they all
see the same matrix and none of them rebuilds it.

Files, under ``<lake>/<tenant>/<study>/study_data/`` (each table prefixed with tenant_id, study_id):

- ``matrix.parquet``: one row per subject x attended visit (USUBJID, SITEID, ARM, VISITNUM, VISIT),
  one float column per variable (``VS_<test>``, ``LB_<test>``);
- ``scheduled.parquet``: the same rows and variables, True where the protocol collects that variable
  at that visit (at least :data:`SCHEDULED_SHARE` of the visit's attendees have it);
- ``baseline.parquet``: one row per randomized subject (demographics, arm, baseline vitals and labs);
- ``dropped.json``: variable -> why it was left out of the matrix.
"""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl

from models.tables import ID_COLUMNS, observations_long, subject_baseline_table, visit_matrix
from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.version import code_version

SCHEDULED_SHARE = 0.5  # a variable is scheduled at a visit when at least half its attendees have it
BRONZE_DOMAINS = ("dm", "vs", "lb", "sv")
FOLDER = "study_data"
PARTITION_COLUMNS = ["tenant_id", "study_id"]


@dataclass
class StudyData:
    matrix: pd.DataFrame  # subject x visit rows (index USUBJID, SITEID, ARM, VISITNUM, VISIT), variables
    scheduled: pd.DataFrame  # same shape, True where the protocol collects that variable at that visit
    baseline: pd.DataFrame  # one row per randomized subject (index USUBJID)
    dropped: dict[str, str]  # variable -> why it was left out of the matrix

    @property
    def scheduled_missing(self) -> pd.DataFrame:
        return self.matrix.isna() & self.scheduled


def build_study_data(dm: pl.DataFrame, vs: pl.DataFrame, lb: pl.DataFrame, sv: pl.DataFrame) -> StudyData:
    """The analysis tables from bronze DM, VS, LB and SV: the visit matrix without the variables
    nothing can be learned from (never observed where scheduled, constant, infinite)."""
    long = observations_long(vs, lb, dm)
    matrix = visit_matrix(long, sv)
    by_visit = matrix.notna().groupby(level="VISITNUM").mean()
    scheduled = pd.DataFrame(
        by_visit.reindex(matrix.index.get_level_values("VISITNUM")).to_numpy() >= SCHEDULED_SHARE,
        index=matrix.index, columns=matrix.columns,
    )
    dropped: dict[str, str] = {}
    for col in list(matrix.columns):
        observed = matrix[col].where(scheduled[col]).dropna()
        if observed.empty:
            dropped[col] = "no observed value"
        elif observed.nunique() < 2:
            dropped[col] = f"constant ({float(observed.iloc[0]):g}) where scheduled: nothing to impute from"
        elif not np.isfinite(observed.to_numpy()).all():
            dropped[col] = "contains infinite values"
    keep = [c for c in matrix.columns if c not in dropped]
    return StudyData(matrix[keep], scheduled[keep], subject_baseline_table(dm, long), dropped)


TABLES = ("matrix", "scheduled", "baseline")
DROPPED = f"{FOLDER}/dropped.json"


def write_study_data(lake: LakeResource, partition_key: str, data: StudyData) -> dict[str, tuple[str, str]]:
    """Write the tables (atomically, as every lake table); returns name -> (uri, sha256)."""
    out = {name: lake.write_table(partition_key, f"{FOLDER}/{name}.parquet", frame.reset_index())
           for name, frame in zip(TABLES, (data.matrix, data.scheduled, data.baseline), strict=True)}
    out["dropped"] = lake.write_json(partition_key, DROPPED, data.dropped)
    return out


def load_study_data(lake: LakeResource, partition_key: str) -> StudyData:
    """The tables the ``study_matrix`` asset wrote for the partition (it must have been materialized)."""
    keys = [f"{FOLDER}/{name}.parquet" for name in TABLES] + [DROPPED]
    missing = [lake.uri(partition_key, k) for k in keys if not lake.exists(partition_key, k)]
    if missing:
        raise dg.Failure(f"the study matrix of {partition_key} is not materialized ({', '.join(missing)} missing): "
                         "materialize the asset study_matrix of this partition first")

    def read(name: str, index: list[str]) -> pd.DataFrame:
        return lake.read_table(partition_key, f"{FOLDER}/{name}.parquet").drop(columns=PARTITION_COLUMNS).set_index(index)

    return StudyData(read("matrix", ID_COLUMNS), read("scheduled", ID_COLUMNS), read("baseline", ["USUBJID"]),
                     lake.read_json(partition_key, DROPPED))


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="imputation",
    deps=[["bronze", d] for d in BRONZE_DOMAINS],
    kinds={"python", "parquet"},
    description="Builds the study's analysis tables once per run from bronze DM, VS, LB and SV: the subject x "
    "visit matrix of vital signs and labs (visits at least half the subjects attended; a variable counts as "
    f"scheduled at a visit when at least {SCHEDULED_SHARE:.0%} of its attendees have it, so unscheduled cells "
    "are never 'missing'), variables that are never observed or constant where scheduled left out (metadata "
    "`dropped_variables` says which and why), and one baseline row per randomized subject. Missingness, "
    "imputation and synthesis all read these files (study_data/ in the study's lake folder).",
)
def study_matrix(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource) -> dg.MaterializeResult:
    pk = context.partition_key
    data = build_study_data(*(lake.read_bronze(pk, d) for d in BRONZE_DOMAINS))
    out = write_study_data(lake, pk, data)
    lineage.record(pk, asset_key="study_matrix",
                   input_sha256s={f"bronze/{d}": lake.sha256(pk, f"bronze/{d}.parquet") for d in BRONZE_DOMAINS},
                   output_sha256=out["matrix"][1], output_path=out["matrix"][0], code_version=code_version(),
                   parameters={"scheduled_share": SCHEDULED_SHARE, "outputs": {k: v[1] for k, v in out.items()}})
    scheduled = int(data.scheduled.to_numpy().sum())
    return dg.MaterializeResult(metadata={
        "subjects": int(data.matrix.index.get_level_values("USUBJID").nunique()),
        "subject_visits": len(data.matrix),
        "visits": int(data.matrix.index.get_level_values("VISITNUM").nunique()),
        "variables": data.matrix.shape[1],
        "randomized_subjects": len(data.baseline),
        "scheduled_cells": scheduled,
        "pct_missing_scheduled": round(100 * int(data.scheduled_missing.to_numpy().sum()) / scheduled, 2) if scheduled else 0.0,
        "dropped_variables": dg.MetadataValue.json(data.dropped),
        "matrix": dg.MetadataValue.path(out["matrix"][0]),
    })
