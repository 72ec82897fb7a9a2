"""Input validation and the shared encodings used by the evidence metrics.

Every metric works on *clean* frames (:func:`clean_frame`): numeric columns as ``float64``
(datetimes as days since 1970-01-01, booleans as 0/1, missing as NaN) and categorical columns as
strings, with missing values as the explicit category :data:`MISSING`, so that real and synthetic
frames compare equal whatever dtypes their producers chose.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MISSING = "<missing>"
"""Category that stands for a missing value of a categorical column."""

# HistGradientBoosting accepts at most 255 categories per categorical feature; beyond that the
# category codes are given to it as an ordered numeric feature instead.
_MAX_NATIVE_CATEGORIES = 250


def split_columns(
    frames: dict[str, pd.DataFrame | None], categorical: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Validate frames that must share the first frame's columns; return (categorical, numeric).

    ``frames`` maps a parameter name (used in error messages) to a DataFrame or None (skipped).
    Columns not in ``categorical`` must be numeric, boolean or datetime. Both returned lists follow
    the first frame's column order.
    """
    present = {name: df for name, df in frames.items() if df is not None}
    for name, df in present.items():
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise ValueError(f"{name} has no rows")
    ref_name, ref = next(iter(present.items()))
    columns = list(ref.columns)
    if len(set(columns)) != len(columns):
        raise ValueError(f"{ref_name} has duplicated column names")
    for name, df in present.items():
        missing, extra = set(columns) - set(df.columns), set(df.columns) - set(columns)
        if missing or extra:
            raise ValueError(
                f"{name} must have the same columns as {ref_name}: "
                f"missing {sorted(map(str, missing))}, unexpected {sorted(map(str, extra))}"
            )
    if isinstance(categorical, str):
        raise ValueError("categorical must be a list of column names, not a string")
    unknown = [c for c in categorical if c not in columns]
    if unknown:
        raise ValueError(f"categorical names columns that do not exist: {unknown}")
    cat = [c for c in columns if c in set(categorical)]
    num = [c for c in columns if c not in set(categorical)]
    for name, df in present.items():
        for col in num:
            dtype = df[col].dtype
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)):
                raise ValueError(
                    f"column {col!r} of {name} has dtype {dtype}, which is not numeric; "
                    "list it in categorical"
                )
    for col in columns:
        if present[ref_name][col].isna().all():
            raise ValueError(f"column {col!r} of {ref_name} is entirely missing")
    return cat, num


def clean_frame(df: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str]) -> pd.DataFrame:
    """Copy of ``df`` (its columns that are in ``categorical`` or ``numeric``) in the clean encoding.

    Numeric: float64 (datetimes in days since the epoch, NaT/NaN as NaN). Categorical: str, with
    missing values replaced by :data:`MISSING`.
    """
    out = {}
    for col in numeric:
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            days = s - pd.Timestamp(0, tz=s.dt.tz)
            out[col] = days.dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan) / 86400.0
        else:
            out[col] = s.to_numpy(dtype="float64", na_value=np.nan)
    for col in categorical:
        out[col] = df[col].astype(object).where(df[col].notna(), MISSING).astype(str).to_numpy()
    columns = [c for c in df.columns if c in out]
    return pd.DataFrame({c: out[c] for c in columns}, index=pd.RangeIndex(len(df)))


def distance_encoder(categorical: Sequence[str], numeric: Sequence[str]) -> ColumnTransformer:
    """Unfitted encoder mapping a clean frame to the space where record distances are measured.

    Numeric columns are standardized with the fit frame's mean and standard deviation (so one unit
    is one standard deviation of the real data), missing numeric values are set to the mean (0)
    and flagged by an extra 0/1 indicator column per numeric column that had missing values at fit
    time; categorical columns are one-hot encoded (categories unseen at fit time encode as all
    zeros). Two records that differ in one category are therefore sqrt(2) apart.
    """
    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    StandardScaler(), SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True)
                ),
                list(numeric),
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(categorical)),
        ],
        sparse_threshold=0.0,
    )


ENCODING_DESCRIPTION = (
    "Euclidean distance after encoding: numeric columns standardized with the real training rows' mean "
    "and standard deviation (1 unit = 1 SD), a missing numeric value set to the mean plus a 0/1 "
    "missing-indicator column, categorical columns one-hot (two records differing in one category are "
    "sqrt(2) apart; categories unseen in the training rows encode as all zeros)"
)
"""What :func:`distance_encoder` does, in words, for reports and tables of record distances."""


def model_frames(frames: Sequence[pd.DataFrame], categorical: Sequence[str]) -> list[pd.DataFrame]:
    """Clean frames recoded for HistGradientBoosting with ``categorical_features="from_dtype"``.

    Categorical columns become pandas categoricals over the union of the frames' categories (so
    codes agree across frames); a column with more than 250 categories becomes its float code.
    """
    out = [df.copy() for df in frames]
    for col in categorical:
        categories = sorted(set().union(*(set(df[col].unique()) for df in frames)))
        for df in out:
            values = pd.Categorical(df[col], categories=categories)
            df[col] = values if len(categories) <= _MAX_NATIVE_CATEGORIES else values.codes.astype("float64")
    return out


def subsample(df: pd.DataFrame, max_rows: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``df`` drawn without replacement (all rows when None)."""
    if max_rows is None or len(df) <= max_rows:
        return df
    idx = np.sort(rng.choice(len(df), size=max_rows, replace=False))
    return df.iloc[idx].reset_index(drop=True)
