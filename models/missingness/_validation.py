"""Input checks shared by the missingness and imputation code.

Every public function in ``models.missingness`` and ``models.impute.knn`` takes a numeric matrix
with NaN for missing cells; these helpers turn an array or DataFrame into a float64 matrix and
raise ``ValueError`` naming the offending column(s) for the inputs that have no sensible
missing-data meaning (non-numeric columns, infinities).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def column_labels(X: object, n_columns: int) -> list[str]:
    """Names used in error messages: DataFrame column names, else ``"column <i>"``."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    return [f"column {i}" for i in range(n_columns)]


def _join(labels: Sequence[str], idx: np.ndarray | Sequence[int]) -> str:
    return ", ".join(repr(labels[i]) for i in idx)


def as_float_matrix(X: object, name: str = "X", min_rows: int = 1) -> tuple[np.ndarray, list[str]]:
    """Return ``(values, labels)``: a float64 copy of ``X`` with shape (n_rows, n_columns).

    Missing cells (NaN, None, pd.NA) become NaN. Raises ValueError naming the columns when a
    column is not numeric or holds +/-inf, when ``X`` is not 2-D, or has fewer than ``min_rows``
    rows or no columns.
    """
    if isinstance(X, pd.DataFrame):
        bad = [str(c) for c, dt in X.dtypes.items()
               if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))]
        if bad:
            raise ValueError(f"{name}: non-numeric column(s) {', '.join(map(repr, bad))}; "
                             "encode them as numbers before imputation")
        values = X.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_rows, n_columns), got shape {arr.shape}")
        if arr.dtype.kind in "biuf":
            values = arr.astype(np.float64, copy=True)
        else:
            values = np.empty(arr.shape, dtype=np.float64)
            bad_cols = []
            for j in range(arr.shape[1]):
                try:
                    values[:, j] = pd.to_numeric(pd.Series(arr[:, j]), errors="raise")
                except (TypeError, ValueError):
                    bad_cols.append(j)
            if bad_cols:
                raise ValueError(f"{name}: non-numeric column(s) "
                                 f"{_join(column_labels(X, arr.shape[1]), bad_cols)}; "
                                 "encode them as numbers before imputation")
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {values.shape}")
    if values.shape[0] < min_rows:
        raise ValueError(f"{name} has {values.shape[0]} row(s); at least {min_rows} needed")
    labels = column_labels(X, values.shape[1])
    inf_cols = np.flatnonzero(np.isinf(values).any(axis=0))
    if inf_cols.size:
        raise ValueError(f"{name}: infinite values in column(s) {_join(labels, inf_cols)}; "
                         "replace them with NaN (missing) or a finite value")
    return values, labels


def all_missing_columns(values: np.ndarray) -> np.ndarray:
    """Indices of columns with no observed value."""
    return np.flatnonzero(np.isnan(values).all(axis=0))


def constant_columns(values: np.ndarray) -> np.ndarray:
    """Indices of columns with at least one observed value whose observed values are all equal."""
    filled_hi = np.where(np.isnan(values), -np.inf, values).max(axis=0)
    filled_lo = np.where(np.isnan(values), np.inf, values).min(axis=0)
    return np.flatnonzero(filled_hi == filled_lo)


def raise_for_columns(labels: Sequence[str], idx: np.ndarray | Sequence[int], message: str) -> None:
    """Raise ``ValueError(message.format(columns=...))`` naming ``labels[idx]``, if ``idx`` is non-empty."""
    if len(idx):
        raise ValueError(message.format(columns=_join(labels, idx)))
