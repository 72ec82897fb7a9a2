"""Missingness profile of a study: % missing per variable x visit x site, and missing-data patterns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.missingness._validation import column_labels

PROFILE_COLUMNS = ["variable", "visit", "site", "n_expected", "n_missing", "pct_missing", "all_missing"]


def missingness_profile(
    long_df: pd.DataFrame,
    variable_col: str,
    visit_col: str,
    site_col: str,
    value_col: str,
    *,
    subject_col: str | None = None,
) -> pd.DataFrame:
    """Share of missing values per variable x visit x site of a long table (one row per value).

    Parameters
    ----------
    long_df : DataFrame in long format; ``value_col`` is null (NaN/None/NA) where missing. Any
        value type is allowed (a non-null string counts as observed).
    variable_col, visit_col, site_col, value_col : column names.
    subject_col : optional subject column. Without it, ``n_expected`` is the number of rows of
        the group, so values absent from the table are not seen. With it, every subject seen at a
        site is expected at every visit for every variable, and absent rows count as missing.

    Returns
    -------
    DataFrame with columns variable, visit, site, n_expected, n_missing, pct_missing (0-100) and
    all_missing (True when no value is observed: e.g. a variable never collected at a site's visit),
    sorted by variable, visit, site. Raises ValueError naming absent columns.
    """
    needed = [variable_col, visit_col, site_col, value_col] + ([subject_col] if subject_col else [])
    absent = [c for c in needed if c not in long_df.columns]
    if absent:
        raise ValueError(f"long_df has no column(s) {', '.join(map(repr, absent))}")
    keys = [variable_col, visit_col, site_col]
    observed = long_df[value_col].notna()
    if subject_col is None:
        grouped = long_df.assign(_obs=observed).groupby(keys, dropna=False, observed=True)["_obs"]
        out = pd.DataFrame({"n_expected": grouped.size(), "n_observed": grouped.sum()}).reset_index()
    else:
        subjects = long_df[[site_col, subject_col]].drop_duplicates()
        grid = (subjects.groupby(site_col, dropna=False, observed=True).size().rename("n_expected").reset_index()
                .merge(long_df[[variable_col]].drop_duplicates(), how="cross")
                .merge(long_df[[visit_col]].drop_duplicates(), how="cross"))
        seen = (long_df.loc[observed, keys + [subject_col]].drop_duplicates()
                .groupby(keys, dropna=False, observed=True).size().rename("n_observed").reset_index())
        out = grid.merge(seen, on=keys, how="left").fillna({"n_observed": 0})
    out["n_expected"] = out["n_expected"].astype("int64")
    out["n_missing"] = out["n_expected"] - out["n_observed"].astype("int64")
    out["pct_missing"] = 100.0 * out["n_missing"] / out["n_expected"]
    out["all_missing"] = out["n_missing"] == out["n_expected"]
    out = out.rename(columns={variable_col: "variable", visit_col: "visit", site_col: "site"})
    return out[PROFILE_COLUMNS].sort_values(["variable", "visit", "site"], ignore_index=True)


def missing_patterns(X: np.ndarray | pd.DataFrame) -> pd.DataFrame:
    """Distinct missing-data patterns of a wide table X (n_rows, n_columns), most frequent first.

    Returns a DataFrame with columns pattern (one character per column in column order: "1"
    observed, "0" missing), missing_columns (comma-separated names, "" for complete rows),
    n_missing_columns, count and share (of rows, 0-1).
    """
    if isinstance(X, pd.DataFrame):
        missing = X.isna().to_numpy()
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (n_rows, n_columns), got shape {arr.shape}")
        missing = pd.isna(pd.DataFrame(arr)).to_numpy()
    labels = column_labels(X, missing.shape[1])
    if missing.shape[0] == 0:
        return pd.DataFrame(columns=["pattern", "missing_columns", "n_missing_columns", "count", "share"])
    keys, counts = np.unique(missing, axis=0, return_counts=True)
    out = pd.DataFrame({
        "pattern": ["".join("0" if m else "1" for m in key) for key in keys],
        "missing_columns": [", ".join(labels[i] for i in np.flatnonzero(key)) for key in keys],
        "n_missing_columns": keys.sum(axis=1),
        "count": counts,
        "share": counts / missing.shape[0],
    })
    return out.sort_values(["count", "pattern"], ascending=[False, False], ignore_index=True)
