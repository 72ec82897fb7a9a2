"""Analysis-ready tables of one tenant/study partition, read from its bronze Parquet.

Shared by the missingness, imputation and synthesis assets so they all see the same matrix.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

from models.tables import observations_long, subject_baseline_table, visit_matrix
from orchestration.resources import LakeResource

SCHEDULED_SHARE = 0.5  # a variable is scheduled at a visit when at least half its attendees have it


@dataclass
class StudyData:
    long: pl.DataFrame
    matrix: pd.DataFrame  # subject x visit rows (index USUBJID, SITEID, ARM, VISITNUM, VISIT), variables
    scheduled: pd.DataFrame  # same shape, True where the protocol collects that variable at that visit
    baseline: pd.DataFrame  # one row per randomized subject
    dropped: dict[str, str]  # variable -> why it was left out of the matrix

    @property
    def scheduled_missing(self) -> pd.DataFrame:
        return self.matrix.isna() & self.scheduled


def load_study_data(lake: LakeResource, partition_key: str) -> StudyData:
    dm, vs, lb, sv = (lake.read_bronze(partition_key, d) for d in ("dm", "vs", "lb", "sv"))
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
    return StudyData(long, matrix[keep], scheduled[keep], subject_baseline_table(dm, long), dropped)
