"""Analysis tables built from bronze SDTM frames (polars in, pandas out for the estimators).

- :func:`observations_long`: VS + LB as one long table, one value per subject x visit x variable
  (tests with several time points per visit, e.g. blood pressure lying/standing, are averaged).
- :func:`visit_matrix`: subject x visit rows, one column per variable, for every visit the subject
  attended (SV) — so a value that was not collected is a NaN the imputers can see.
- :func:`subject_baseline_table`: one row per randomized subject: demographics, arm and baseline
  vitals/labs (the last value on or before the first-dose date, else the earliest visit's).
"""

from __future__ import annotations

import pandas as pd
import polars as pl

SCREEN_FAIL_ARMS = ("Screen Failure", "SCREEN FAILURE", "Not Assigned", "NOT ASSIGNED")
ID_COLUMNS = ["USUBJID", "SITEID", "ARM", "VISITNUM", "VISIT"]


def _domain_long(frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
    d = prefix.lower()
    return frame.select(
        pl.col("USUBJID"),
        pl.col("VISITNUM").cast(pl.Float64),
        pl.col("VISIT"),
        (pl.lit(f"{prefix}_") + pl.col(f"{prefix}TESTCD")).alias("VARIABLE"),
        pl.col(f"{prefix}STRESN").cast(pl.Float64).alias("VALUE"),
        pl.col(f"{prefix}DTC").str.slice(0, 10).str.to_date(strict=False).alias("DATE"),
    ).with_columns(pl.lit(d).alias("DOMAIN"))


def observations_long(vs: pl.DataFrame, lb: pl.DataFrame, dm: pl.DataFrame) -> pl.DataFrame:
    """Long table: USUBJID, SITEID, ARM, VISITNUM, VISIT, VARIABLE, VALUE (mean over time points), DATE."""
    parts = [f for f in (_domain_long(vs, "VS") if vs.height else None, _domain_long(lb, "LB") if lb.height else None) if f is not None]
    if not parts:
        raise ValueError("no VS or LB observations: the study has no vital signs or labs to analyse")
    long = pl.concat(parts).filter(pl.col("VISITNUM").is_not_null())
    long = long.group_by("USUBJID", "VISITNUM", "VARIABLE").agg(
        pl.col("VISIT").first(), pl.col("VALUE").mean(), pl.col("DATE").min()
    )
    subjects = dm.select("USUBJID", pl.col("SITEID").cast(pl.String), pl.col("ARM"))
    return long.join(subjects, on="USUBJID", how="inner").select(*ID_COLUMNS, "VARIABLE", "VALUE", "DATE")


def visit_matrix(long: pl.DataFrame, sv: pl.DataFrame | None = None, min_coverage: float = 0.5, *,
                 return_left_out: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, str]]:
    """Subject x visit rows (index ``ID_COLUMNS``), one float column per variable.

    Only visits where at least ``min_coverage`` of subjects have any observation are kept
    (unscheduled visits and one-off time points would otherwise be mostly-empty rows), and variables
    measured at fewer than half of those visits (e.g. HEIGHT, screening only) are dropped.
    With ``return_left_out``, also returns what was left out and why: ``"visit <VISITNUM:g>"`` or
    the variable name -> reason (the reported "% missing" still counts them, see
    :mod:`models.expected_cells`).
    """
    wide = long.pivot(on="VARIABLE", index=ID_COLUMNS, values="VALUE", aggregate_function="mean")
    if sv is not None and sv.height:
        # Visits that took place but have no observation row at all are missing too.
        attended = sv.select("USUBJID", pl.col("VISITNUM").cast(pl.Float64)).unique()
        keys = long.select("USUBJID", "SITEID", "ARM").unique()
        visit_names = long.group_by("VISITNUM").agg(pl.col("VISIT").first())
        frame = attended.join(keys, on="USUBJID").join(visit_names, on="VISITNUM")
        wide = frame.join(wide, on=ID_COLUMNS, how="left")
    n_subjects = wide["USUBJID"].n_unique()
    per_visit = wide.group_by("VISITNUM").agg(pl.col("USUBJID").n_unique().alias("n"))
    kept = per_visit["n"] >= min_coverage * n_subjects
    left_out = {f"visit {v:g}": f"attended by {n} of {n_subjects} subjects (fewer than {min_coverage:.0%})"
                for v, n in per_visit.filter(~kept).sort("VISITNUM").iter_rows()}
    wide = wide.filter(pl.col("VISITNUM").is_in(per_visit.filter(kept)["VISITNUM"].implode()))
    variables = [c for c in wide.columns if c not in ID_COLUMNS]
    measured = wide.group_by("VISITNUM").agg(pl.col(v).is_not_null().any() for v in variables)
    keep = [v for v in sorted(variables) if measured[v].mean() >= 0.5]
    left_out |= {v: f"numeric values at {measured[v].sum()} of {measured.height} visits (fewer than half)"
                 for v in sorted(variables) if v not in keep}
    matrix = wide.select(*ID_COLUMNS, *keep).sort("USUBJID", "VISITNUM").to_pandas().set_index(ID_COLUMNS)
    return (matrix, left_out) if return_left_out else matrix


def subject_baseline_table(dm: pl.DataFrame, long: pl.DataFrame, extra_dm_columns: tuple[str, ...] = ("BMKSTRAT",)) -> pd.DataFrame:
    """One row per randomized subject: demographics, ARM, baseline value of every variable."""
    subjects = dm.filter(pl.col("ARM").is_not_null() & ~pl.col("ARM").is_in(list(SCREEN_FAIL_ARMS)))
    if subjects.height == 0:
        raise ValueError("DM has no randomized subjects (all ARM values are screen failures or missing)")
    first_dose = subjects.select("USUBJID", pl.col("RFSTDTC").str.slice(0, 10).str.to_date(strict=False).alias("FIRST_DOSE"))
    obs = long.join(first_dose, on="USUBJID").filter(pl.col("VALUE").is_not_null())
    on_or_before = obs.filter(pl.col("DATE") <= pl.col("FIRST_DOSE")).sort("DATE", "VISITNUM").group_by("USUBJID", "VARIABLE").last()
    earliest = obs.sort("VISITNUM").group_by("USUBJID", "VARIABLE").first()
    baseline = earliest.join(on_or_before.select("USUBJID", "VARIABLE", pl.col("VALUE").alias("PRE")), on=["USUBJID", "VARIABLE"], how="left")
    baseline = baseline.with_columns(pl.coalesce("PRE", "VALUE").alias("VALUE"))
    wide = baseline.pivot(on="VARIABLE", index="USUBJID", values="VALUE")
    demo_cols = ["USUBJID", "SITEID", "ARM", "AGE", "SEX", "RACE", *[c for c in extra_dm_columns if c in dm.columns]]
    table = subjects.select([c for c in demo_cols if c in subjects.columns]).join(wide, on="USUBJID", how="left")
    variables = sorted(c for c in wide.columns if c != "USUBJID")
    return table.select([c for c in table.columns if c not in variables] + variables).sort("USUBJID").to_pandas().set_index("USUBJID")
