"""Expected measurement cells of a study: the one definition of "% missing" (issue 14).

A cell is one subject x visit number x VS/LB test the study expects, by the same rules as the dbt
models ``fact_missingness_cell`` and ``mart_missingness`` (which Superset's heatmaps read), so the
"% missing" Dagster reports is the one the dashboards show:

- expected: every visit a subject had (SV) crossed with every test that has at least one record
  at that visit number (any subject, NOT DONE included); records at visits absent from SV are not
  expected. Subjects with visits but no VS/LB record, or absent from DM (site unknown), count too,
  except screen failures (:func:`screen_failures`): never randomized, their study data is not
  expected, so none of their cells is (not even a screening visit's);
- observed: at least one of the cell's records is not NOT DONE and has a numeric or a text result
  (a lab given only as text, e.g. ``<5``, is observed); a cell without records is missing;
- scheduled: at least ``scheduled_share`` of the expected cells of that test x visit number,
  study-wide, are observed. "% missing" counts scheduled cells only.

The subject x visit matrix of :func:`models.tables.visit_matrix` is a modelling table and may hold
fewer cells (sparse variables and visits left out, text results empty): :func:`matrix_gaps` says
which of the reported cells it leaves out and why.
"""

from __future__ import annotations

import pandas as pd
import polars as pl

CELL_COLUMNS = ["USUBJID", "SITEID", "DOMAIN", "TESTCD", "VARIABLE", "VISITNUM", "OBSERVED", "SCHEDULED"]
GAP_COLUMNS = ["reason", "detail", "scheduled_cells", "missing_cells"]
SCREEN_FAILURE_ARMCD = "SCRNFAIL"  # DM.ARMCD of a screen failure (upper-cased)
SCREEN_FAILURE_ARM = "SCREEN FAIL"  # start of DM.ARM of a screen failure (upper-cased): Screen Failure, SCREEN FAILED


def _text(frame: pl.DataFrame, column: str) -> pl.Expr:
    """dbt's ``text()`` macro: trimmed of spaces, empty as null (null when the column is absent)."""
    if column not in frame.columns:
        return pl.lit(None, dtype=pl.String)
    return pl.col(column).cast(pl.String).str.strip_chars(" ").replace("", None)


def screen_failures(dm: pl.DataFrame) -> list[str]:
    """USUBJIDs of DM's screen failures (sorted), as dbt's ``fact_missingness_cell`` recognises them:
    ARMCD ``SCRNFAIL`` or ARM starting ``SCREEN FAIL`` (SDTMIG 3.1-3.2, e.g. the CDISC pilot's
    ``Scrnfail`` / ``Screen Failure``), trimmed and case-insensitive. SDTMIG 3.3+ leaves ARMCD and ARM
    null and sets ARMNRS ``SCREEN FAILURE`` instead; ARMNRS is not a bronze DM column
    (:mod:`trialsynth.domains`), so such subjects count as enrolled until it is."""
    if "USUBJID" not in dm.columns:
        raise ValueError("bronze column dm.USUBJID missing")
    armcd = _text(dm, "ARMCD").str.to_uppercase() == SCREEN_FAILURE_ARMCD
    arm = _text(dm, "ARM").str.to_uppercase().str.starts_with(SCREEN_FAILURE_ARM)
    return sorted(dm.filter((armcd | arm).fill_null(False)).select(_text(dm, "USUBJID")).drop_nulls().to_series().unique())


def _records(frame: pl.DataFrame, domain: str) -> pl.DataFrame:
    """One row per VS or LB record with a test code and a visit number: whether it is observed
    (``fact_observation.is_missing`` negated)."""
    schema = {"USUBJID": pl.String, "DOMAIN": pl.String, "TESTCD": pl.String, "VISITNUM": pl.Float64, "OBSERVED": pl.Boolean}
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    numeric = pl.col(f"{domain}STRESN").cast(pl.Float64) if f"{domain}STRESN" in frame.columns else pl.lit(None, dtype=pl.Float64)
    not_done = _text(frame, f"{domain}STAT").fill_null("").str.to_uppercase() == "NOT DONE"
    return frame.select(
        _text(frame, "USUBJID").alias("USUBJID"),
        pl.lit(domain).alias("DOMAIN"),
        _text(frame, f"{domain}TESTCD").alias("TESTCD"),
        pl.col("VISITNUM").cast(pl.Float64),
        (~not_done & (numeric.is_not_null() | _text(frame, f"{domain}STRESC").is_not_null())).alias("OBSERVED"),
    ).filter(pl.col("VISITNUM").is_not_null() & pl.col("TESTCD").is_not_null()).cast(schema)


def expected_cells(dm: pl.DataFrame, vs: pl.DataFrame, lb: pl.DataFrame, sv: pl.DataFrame, *,
                   scheduled_share: float) -> pd.DataFrame:
    """Every expected cell of one study, from its bronze DM, VS, LB and SV.

    Parameters
    ----------
    dm, vs, lb, sv : bronze SDTM frames of one study (SDTM column names; VS/LB may have 0 rows).
    scheduled_share : share in [0, 1] of a test x visit number's expected cells that must be
        observed for it to count as scheduled.

    Returns
    -------
    DataFrame, one row per cell, none of a screen failure's (:func:`screen_failures`), columns
    ``CELL_COLUMNS``: USUBJID, SITEID (None when the subject is not in DM), DOMAIN (VS, LB), TESTCD,
    VARIABLE (``<DOMAIN>_<TESTCD>``, the matrix column name), VISITNUM (float), OBSERVED and
    SCHEDULED (bool); sorted by subject, visit, variable.
    """
    if not 0 <= scheduled_share <= 1:
        raise ValueError(f"scheduled_share must be in [0, 1], got {scheduled_share}")
    absent = [f"{name}.{col}" for name, frame, cols in (("dm", dm, ("USUBJID", "SITEID")), ("sv", sv, ("USUBJID", "VISITNUM")))
              for col in cols if col not in frame.columns]
    if absent:
        raise ValueError(f"bronze column(s) {', '.join(absent)} missing")
    records = pl.concat([_records(vs, "VS"), _records(lb, "LB")])
    collected = records.select("DOMAIN", "TESTCD", "VISITNUM").unique()
    per_cell = (records.filter(pl.col("USUBJID").is_not_null())
                .group_by("USUBJID", "DOMAIN", "TESTCD", "VISITNUM").agg(pl.col("OBSERVED").any()))
    visits = (sv.select(_text(sv, "USUBJID").alias("USUBJID"), pl.col("VISITNUM").cast(pl.Float64))
              .drop_nulls().unique().filter(~pl.col("USUBJID").is_in(screen_failures(dm))))
    sites = dm.select(_text(dm, "USUBJID").alias("USUBJID"), _text(dm, "SITEID").alias("SITEID"))
    cells = (visits.join(collected, on="VISITNUM")
             .join(per_cell, on=["USUBJID", "DOMAIN", "TESTCD", "VISITNUM"], how="left")
             .join(sites, on="USUBJID", how="left")
             .with_columns(pl.col("OBSERVED").fill_null(False),
                           (pl.col("DOMAIN") + "_" + pl.col("TESTCD")).alias("VARIABLE")))
    key = ["DOMAIN", "TESTCD", "VISITNUM"]
    cells = cells.with_columns(
        (pl.col("OBSERVED").sum().over(key).cast(pl.Float64) >= scheduled_share * pl.len().over(key)).alias("SCHEDULED"))
    return cells.select(CELL_COLUMNS).sort("USUBJID", "VISITNUM", "VARIABLE").to_pandas()


def missingness_summary(cells: pd.DataFrame) -> dict[str, int | float | None]:
    """The reported "% missing": scheduled_cells, missing_scheduled_cells and pct_missing_scheduled
    (0-100; None when nothing is scheduled, as the dashboard's NULL) of :func:`expected_cells`' table."""
    scheduled = cells["SCHEDULED"].to_numpy(dtype=bool)
    n, missing = int(scheduled.sum()), int((scheduled & ~cells["OBSERVED"].to_numpy(dtype=bool)).sum())
    return {"scheduled_cells": n, "missing_scheduled_cells": missing,
            "pct_missing_scheduled": 100 * missing / n if n else None}


def scheduled_flags(cells: pd.DataFrame, matrix: pd.DataFrame) -> pd.DataFrame:
    """The cells' SCHEDULED flag laid out as ``matrix`` (index with a VISITNUM level, one column
    per VARIABLE): True where that variable is scheduled at the row's visit number, False where it
    is not (or never collected there)."""
    by_visit = cells.drop_duplicates(["VISITNUM", "VARIABLE"]).pivot(index="VISITNUM", columns="VARIABLE", values="SCHEDULED")
    flags = by_visit.reindex(index=matrix.index.get_level_values("VISITNUM"), columns=matrix.columns)
    return pd.DataFrame(flags.fillna(False).to_numpy(dtype=bool), index=matrix.index, columns=matrix.columns)


def matrix_gaps(cells: pd.DataFrame, matrix: pd.DataFrame, left_out: dict[str, str]) -> pd.DataFrame:
    """Which reported (scheduled) cells the subject x visit ``matrix`` does not hold as values, and why.

    Parameters
    ----------
    cells : :func:`expected_cells`' table.
    matrix : subject x visit matrix (index levels USUBJID and VISITNUM, columns VARIABLE).
    left_out : variable or visit label -> why the matrix left it out; visit labels are
        ``"visit <VISITNUM:g>"``.

    Returns
    -------
    DataFrame, columns ``GAP_COLUMNS``, one row per reason (variable left out, visit left out,
    subject without a matrix row, observed as text only) and detail, largest first. The scheduled
    cells of the matrix plus these rows' (except text-only ones) are the reported scheduled cells.
    """
    scheduled = cells[cells["SCHEDULED"]]
    if scheduled.empty:
        return pd.DataFrame(columns=GAP_COLUMNS)
    rows = pd.MultiIndex.from_arrays([matrix.index.get_level_values("USUBJID"), matrix.index.get_level_values("VISITNUM")])
    in_rows = pd.MultiIndex.from_frame(scheduled[["USUBJID", "VISITNUM"]]).isin(rows)
    in_columns = scheduled["VARIABLE"].isin(matrix.columns).to_numpy()
    visit_label = "visit " + scheduled["VISITNUM"].map("{:g}".format)
    reason = pd.Series(None, index=scheduled.index, dtype=object)
    detail = pd.Series(None, index=scheduled.index, dtype=object)
    no_column = ~in_columns
    reason[no_column] = "variable left out of the imputation matrix"
    detail[no_column] = scheduled["VARIABLE"][no_column] + ": " + scheduled["VARIABLE"][no_column].map(left_out).fillna("not in the matrix")
    no_visit = in_columns & ~in_rows & visit_label.isin(left_out.keys()).to_numpy()
    reason[no_visit] = "visit left out of the imputation matrix"
    detail[no_visit] = visit_label[no_visit] + ": " + visit_label[no_visit].map(left_out)
    no_row = in_columns & ~in_rows & ~no_visit
    reason[no_row] = "subject visit without a matrix row"
    detail[no_row] = scheduled["SITEID"][no_row].isna().map({True: "subject not in DM", False: "subject without any VS or LB record"})
    held = scheduled[in_columns & in_rows]
    values = matrix.reset_index(level=[n for n in matrix.index.names if n not in ("USUBJID", "VISITNUM")], drop=True)
    empty = values.stack(future_stack=True).isna().reindex(pd.MultiIndex.from_frame(held[["USUBJID", "VISITNUM", "VARIABLE"]])).to_numpy()
    text_only = held.index[empty & held["OBSERVED"].to_numpy()]
    reason[text_only] = "observed as text only (empty in the matrix)"
    detail[text_only] = scheduled.loc[text_only, "VARIABLE"]
    gaps = scheduled.assign(reason=reason, detail=detail, missing=~scheduled["OBSERVED"]).dropna(subset=["reason"])
    out = gaps.groupby(["reason", "detail"]).agg(scheduled_cells=("missing", "size"), missing_cells=("missing", "sum")).reset_index()
    return out.astype({"missing_cells": "int64"}).sort_values(["scheduled_cells", "reason", "detail"], ascending=[False, True, True],
                                                               ignore_index=True)[GAP_COLUMNS]
